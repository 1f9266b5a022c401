//! Values the engine's unit tests build their cases from.

use pinnacle_common::entities::{broker_accounts, orders, users};
use pinnacle_common::model::{OrderRequest, OrderType, Product, Side};
use pinnacle_migrations::{Migrator, MigratorTrait};
use pinnacle_store::testing::PostgresDatabase;
use sea_orm::{ActiveModelTrait, ConnectOptions, Database, DatabaseConnection, Set};

/// A fresh in-memory SQLite database with every migration applied.
pub(crate) async fn database() -> DatabaseConnection {
    // One connection: each in-memory SQLite connection is its own database.
    let mut options = ConnectOptions::new("sqlite::memory:");
    options.max_connections(1).min_connections(1);
    let db = Database::connect(options).await.expect("sqlite");
    Migrator::up(&db, None).await.expect("migrations");
    db
}

/// A fresh [`database`], and a fresh PostgreSQL one where a server answers ([`postgres`]);
/// the second value keeps the PostgreSQL database until the test ends.
pub(crate) async fn databases() -> Vec<(DatabaseConnection, Option<Postgres>)> {
    let mut all = vec![(database().await, None)];
    if let Some(pg) = postgres().await {
        all.push((pg.db.clone(), Some(pg)));
    }
    all
}

/// [`database`], holding user `u1` and its paper account `id-paper`.
pub(crate) async fn database_with_account() -> DatabaseConnection {
    let db = database().await;
    with_account(&db).await;
    db
}

/// Stores user `u1` and its paper account `id-paper` in `db`.
pub(crate) async fn with_account(db: &DatabaseConnection) {
    users::ActiveModel {
        id: Set("u1".into()),
        name: Set("u1".into()),
        is_admin: Set(false),
        password_hash: Set(None),
        created_at: Set(chrono::Utc::now()),
        default_account: Set(None),
    }
    .insert(db)
    .await
    .expect("user");
    let mut account: broker_accounts::ActiveModel = account_row("paper").into();
    account = account.reset_all();
    account.insert(db).await.expect("account");
}

/// A LIMIT buy of one NSE SBIN-EQ at ₹1 under `client_order_id`, for `product`.
pub(crate) fn limit_buy(client_order_id: &str, product: Product) -> OrderRequest {
    OrderRequest {
        client_order_id: client_order_id.into(),
        exchange: "NSE".into(),
        symbol: "SBIN-EQ".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        quantity: 1,
        price: Some(100),
        trigger_price: None,
        product,
        account: None,
    }
}

/// A paper broker account row of user `u1` labelled `label` (id `id-<label>`), at
/// generation 1, with no credential set.
pub(crate) fn account_row(label: &str) -> broker_accounts::Model {
    let now = chrono::Utc::now();
    broker_accounts::Model {
        id: format!("id-{label}"),
        user_id: "u1".into(),
        label: label.into(),
        broker: "paper".into(),
        api_key_enc: None,
        client_code_enc: None,
        secret_enc: None,
        totp_seed_enc: None,
        access_token_enc: None,
        jwt_token_enc: None,
        refresh_token_enc: None,
        feed_token_enc: None,
        session_expires_at: None,
        data_key_enc: None,
        master_key_id: None,
        generation: 1,
        created_at: now,
        updated_at: now,
        static_ip: None,
        egress_proxy: None,
        algo_id: None,
        login_lease_until: None,
        login_lease_owner: None,
        erased_at: None,
    }
}

/// An order row of `user_id` on `account_id`: a `LIMIT` buy of 10 NSE SBIN-EQ `DELIVERY` at
/// ₹1, `OPEN`, nothing filled, with no broker id and no lease; tests change what they need.
pub(crate) fn order_row(id: &str, user_id: &str, account_id: &str) -> orders::Model {
    let now = chrono::Utc::now();
    orders::Model {
        id: id.into(),
        user_id: user_id.into(),
        broker_account_id: account_id.into(),
        client_order_id: id.into(),
        exchange: "NSE".into(),
        symbol: "SBIN-EQ".into(),
        side: "BUY".into(),
        order_type: "LIMIT".into(),
        quantity: 10,
        price: Some(100),
        trigger_price: None,
        product: Product::Delivery.as_str().into(),
        status: "OPEN".into(),
        filled_quantity: 0,
        average_price: None,
        filled_value: None,
        broker_order_id: None,
        broker_unique_id: None,
        reject_code: None,
        reject_reason: None,
        created_at: now,
        updated_at: now,
        lease_owner: None,
        lease_until_ms: None,
    }
}

/// A fresh PostgreSQL database with every migration applied, on the server the tests use
/// (`PINNACLE_TEST_POSTGRES_URL`, as in `pinnacle-tests`), dropped with this value.
#[derive(Debug)]
pub(crate) struct Postgres {
    /// The connection to it.
    pub(crate) db: DatabaseConnection,
    database: PostgresDatabase,
}

impl Postgres {
    /// Its URL, for a connection of a test's own.
    pub(crate) fn url(&self) -> &str {
        self.database.url()
    }
}

/// [`Postgres`], or `None` when no server answers and `PINNACLE_REQUIRE_POSTGRES` is not
/// `1` (`scripts/test.sh` sets it, so CI never skips).
pub(crate) async fn postgres() -> Option<Postgres> {
    let database = match PostgresDatabase::create("pinnacle_unit").await {
        Ok(database) => database,
        Err(e) if std::env::var("PINNACLE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("PINNACLE_REQUIRE_POSTGRES=1 but no test database on PostgreSQL: {e}")
        }
        Err(_) => {
            eprintln!("note: PostgreSQL unreachable; this test runs on SQLite only");
            return None;
        }
    };
    let db = Database::connect(database.url())
        .await
        .expect("connect to the test database");
    Migrator::up(&db, None).await.expect("migrations");
    Some(Postgres { db, database })
}
