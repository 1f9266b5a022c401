//! Databases for tests (feature `testing`, for dev-dependencies only): a fresh PostgreSQL
//! database on the test server, dropped with its handle. The end-to-end harness
//! (`pinnacle-tests`' `TestDb`) and the crates' own unit tests share it.

use sea_orm::{ConnectionTrait, Database, DbErr};

/// The server tests create their databases on: `PINNACLE_TEST_POSTGRES_URL`, or the local
/// one.
pub fn postgres_admin_url() -> String {
    std::env::var("PINNACLE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database on [`postgres_admin_url`]'s server, dropped (its connections
/// closed) with this value.
#[derive(Debug)]
pub struct PostgresDatabase {
    url: String,
    name: String,
}

impl PostgresDatabase {
    /// Creates a database named `<prefix>_<uuid>`.
    pub async fn create(prefix: &str) -> Result<Self, DbErr> {
        let admin = postgres_admin_url();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let server = Database::connect(admin.as_str()).await?;
        let created = server
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await;
        let _ = server.close().await;
        created?;
        let root = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(root, _)| root);
        Ok(Self {
            url: format!("{root}/{name}"),
            name,
        })
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // Drop may run inside a test's runtime: a thread with a runtime of its own.
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let server = Database::connect(postgres_admin_url()).await.ok()?;
                let _ = server
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
                server.close().await.ok()
            })
        })
        .join();
    }
}
