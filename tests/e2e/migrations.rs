//! The schema's migrations, on SQLite and PostgreSQL: every one can be rolled back and
//! applied again over what its rollback left, and rolling them all back leaves no table
//! and no function behind.

use pinnacle_migrations::{Migrator, MigratorTrait};
use pinnacle_tests::Backend;
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::each_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_migration_rolls_back_and_applies_again() {
    each_backend(|backend| async move {
        let test_db = pinnacle_tests::TestDb::create(backend).await;
        let db = Database::connect(test_db.url.as_str())
            .await
            .expect("connect");
        Migrator::up(&db, None).await.expect("up");
        let applied = Migrator::get_applied_migrations(&db)
            .await
            .expect("applied")
            .len();
        assert_eq!(applied, Migrator::migrations().len());
        // One at a time, newest first, each applied again before the next goes, then all.
        for step in 1..=u32::try_from(applied).expect("few") {
            Migrator::down(&db, Some(step))
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: rolling back {step}: {e}"));
            Migrator::up(&db, None)
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: applying {step} again: {e}"));
        }
        Migrator::down(&db, None).await.expect("every rollback");
        assert!(Migrator::get_applied_migrations(&db)
            .await
            .expect("applied")
            .is_empty());
        // Nothing is left behind: no table but the migrations' own, no function.
        let left = match backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'"
            }
            Backend::Postgres => {
                "SELECT table_name AS name FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_name <> 'seaql_migrations' \
                 UNION ALL SELECT proname FROM pg_proc \
                 WHERE pronamespace = 'public'::regnamespace"
            }
        };
        let rows = db
            .query_all(Statement::from_string(db.get_database_backend(), left))
            .await
            .expect("what is left");
        let names: Vec<String> = rows
            .iter()
            .map(|row| row.try_get("", "name").expect("name"))
            .collect();
        assert!(names.is_empty(), "{backend:?}: left behind: {names:?}");
        Migrator::up(&db, None).await.expect("up again");
        let _ = db.close().await;
    })
    .await;
}
