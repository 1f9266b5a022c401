//! [`TestStack`]: the whole system for one test, wired by `pinnacle_cli::stack`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use pinnacle_cli::stack::{Stack, StackSettings};
use pinnacle_common::codec::Encoding;
use pinnacle_common::config::{
    DatabaseSettings, MarketDataSettings, NatsSettings, SimFeedSettings, UserApiSettings,
    WorkerSettings,
};
use pinnacle_common::crypto::Vault;
use pinnacle_common::model::{OrderReply, OrderRequest, OrderType, Reply, Side, Tick};
use pinnacle_common::subjects::{self, headers, verbs};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::{Backend, TestDb, TestNats};

/// The admin token every test stack uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-5e1f0c";

/// A user created through the API, with an API token.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// User id.
    pub id: String,
    /// Bearer token (trade + read).
    pub token: String,
}

impl TestUser {
    /// The token's secret part: everything after `pnk_<id>_`. The secret is base64url and
    /// may itself hold `_`, so it is split off after the id, never at the last `_`.
    pub fn token_secret(&self) -> &str {
        self.token
            .strip_prefix("pnk_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(_, secret)| secret)
            .expect("an API token is pnk_<id>_<secret>")
    }
}

/// nats-server + database + publisher + worker + user API, torn down on drop.
#[derive(Debug)]
pub struct TestStack {
    /// Which database engine.
    pub backend: Backend,
    /// A plain client connection for the test itself.
    pub client: async_nats::Client,
    /// HTTP client for the user API.
    pub http: reqwest::Client,
    /// The user API's base URL.
    pub api_url: String,
    /// The stack's database connection.
    pub db: DatabaseConnection,
    /// The vault the stack encrypts with.
    pub vault: Arc<Vault>,
    /// Where the stack serves `/metrics`, when the test asked for it.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The running services; `None` once stopped.
    stack: Option<Stack>,
    /// What they were started with, for [`TestStack::restart`].
    settings: StackSettings,
    /// Dropped after the stack, so the database outlives it.
    _db: TestDb,
    /// Dropped last.
    pub nats: TestNats,
}

/// A worker's settings for tests: the defaults, with intraday square-off off, so that no
/// test depends on the time of day it runs at (a square-off would close its intraday
/// positions after 15:15 IST); a test of square-off sets its own time.
pub fn worker_settings() -> WorkerSettings {
    WorkerSettings {
        square_off_at: pinnacle_common::config::SquareOffAt::OFF,
        // Off unless a test turns it on: tests that mute the order-update stream expect
        // the orders to stay as they are.
        order_book_sweep_ms: 0,
        ..WorkerSettings::default()
    }
}

impl TestStack {
    /// Starts everything on `backend` with test-friendly defaults.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts everything, letting the test adjust the settings first.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut StackSettings)) -> Self {
        crate::logs::install();
        let nats = TestNats::start();
        let test_db = TestDb::create(backend).await;
        let vault = Arc::new(Vault::new(1, &[42u8; 32]));
        let mut settings = StackSettings {
            nats: NatsSettings::for_url(nats.url()),
            database: DatabaseSettings {
                database_url: test_db.url.clone(),
                database_max_connections: 8,
            },
            vault: vault.clone(),
            sim: SimFeedSettings {
                interval_ms: 20,
                // Ticks at any hour, so these tests pass whenever they run.
                hours: pinnacle_common::config::SimHours::Always,
                ..SimFeedSettings::default()
            },
            md: MarketDataSettings::default(),
            angel: Default::default(),
            worker: worker_settings(),
            api: UserApiSettings {
                bind: "127.0.0.1:0".into(),
                admin_token: Some(SecretString::from(ADMIN_TOKEN)),
            },
            metrics: Default::default(),
        };
        adjust(&mut settings);
        let vault = settings.vault.clone();
        let stack = Stack::start(settings.clone()).await.expect("stack starts");
        let client = async_nats::connect(nats.url()).await.expect("test client");
        serving(&client).await;
        Self {
            backend,
            client,
            http: reqwest::Client::new(),
            api_url: stack.api_url(),
            db: stack.db.clone(),
            metrics_addr: stack.metrics_addr,
            vault,
            stack: Some(stack),
            settings,
            _db: test_db,
            nats,
        }
    }

    /// The database's URL, for a test that opens its own connections.
    pub fn db_url(&self) -> &str {
        &self._db.url
    }

    /// Stops the services gracefully.
    pub async fn stop(&mut self) {
        if let Some(stack) = self.stack.take() {
            stack.stop().await.expect("clean shutdown");
        }
    }

    /// Stops the services gracefully and starts them again on the same database and
    /// nats-server (a restart of every process; nothing in memory survives it).
    pub async fn restart(&mut self) {
        self.stop().await;
        let stack = Stack::start(self.settings.clone())
            .await
            .expect("stack restarts");
        self.api_url = stack.api_url();
        self.db = stack.db.clone();
        self.metrics_addr = stack.metrics_addr;
        self.stack = Some(stack);
        serving(&self.client).await;
    }

    /// Like [`TestStack::restart`], with the settings adjusted first.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut StackSettings)) {
        adjust(&mut self.settings);
        self.restart().await;
    }

    /// Sends JSON to the user API with a bearer token; returns the status and JSON body.
    pub async fn api_send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let request = self.http.request(method, format!("{}{path}", self.api_url));
        Self::api_reply(request.bearer_auth(token).json(body)).await
    }

    /// `GET` from the user API with a bearer token (no body); the status and JSON body.
    pub async fn api_get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let request = self.http.get(format!("{}{path}", self.api_url));
        Self::api_reply(request.bearer_auth(token)).await
    }

    /// Sends `request`; its status and JSON body (`null` when the body is not JSON).
    async fn api_reply(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// `POST` JSON to the user API with a bearer token.
    pub async fn api_post(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.api_send(reqwest::Method::POST, path, token, body)
            .await
    }

    /// `PUT` JSON to the user API with a bearer token.
    pub async fn api_put(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.api_send(reqwest::Method::PUT, path, token, body).await
    }

    /// Creates a user and a token through the API (as admin).
    pub async fn create_user(&self, name: &str) -> TestUser {
        let (status, user) = self
            .api_post(
                "/v1/users",
                ADMIN_TOKEN,
                &serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(status, 201, "create user: {user}");
        let id = user["id"].as_str().expect("user id").to_string();
        let (status, token) = self
            .api_post(
                &format!("/v1/users/{id}/tokens"),
                ADMIN_TOKEN,
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 201, "issue token: {token}");
        TestUser {
            id,
            token: token["token"].as_str().expect("token").to_string(),
        }
    }

    /// Stores paper credentials for `user` (as the user), with recognisable secret values.
    pub async fn put_paper_account(&self, user: &TestUser, label: &str) -> serde_json::Value {
        let (status, body) = self
            .api_put(
                &format!("/v1/users/{}/broker-accounts/{label}", user.id),
                &user.token,
                &serde_json::json!({
                    "broker": "paper",
                    "api_key": format!("SECRET-apikey-{}", user.id),
                    "client_code": format!("SECRET-client-{}", user.id),
                    "secret": format!("SECRET-pin-{}", user.id),
                }),
            )
            .await;
        assert_eq!(status, 200, "put account: {body}");
        body
    }

    /// A user with a paper account, ready to trade.
    pub async fn trader(&self, name: &str) -> TestUser {
        let user = self.create_user(name).await;
        self.put_paper_account(&user, "paper").await;
        user
    }

    /// Waits until `n` ticks of `symbol` have been published (so the paper broker has a price).
    pub async fn wait_for_ticks(&self, symbol: &str, n: usize) -> Vec<Tick> {
        let mut sub = self
            .client
            .subscribe(subjects::tick("NSE", symbol))
            .await
            .expect("subscribe");
        let mut ticks = Vec::new();
        while ticks.len() < n {
            let message = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("a tick within 10 s")
                .expect("subscription open");
            ticks.push(
                Encoding::MsgPack
                    .decode(&message.payload)
                    .expect("tick decodes"),
            );
        }
        ticks
    }

    /// Sends a raw order request with the given token, encoding and payload.
    pub async fn request(
        &self,
        subject: String,
        token: Option<&str>,
        encoding: Encoding,
        payload: bytes::Bytes,
    ) -> async_nats::Message {
        let mut hdrs = HeaderMap::new();
        if let Some(token) = token {
            hdrs.insert(headers::AUTHORIZATION, format!("Bearer {token}").as_str());
        }
        hdrs.insert(headers::CONTENT_TYPE, encoding.content_type());
        tokio::time::timeout(
            Duration::from_secs(10),
            self.client.request_with_headers(subject, hdrs, payload),
        )
        .await
        .expect("reply within 10 s")
        .expect("request succeeds")
    }

    /// Calls `orders.<user>.<verb>` with a MessagePack-encoded `body`; returns the reply as JSON.
    pub async fn call(
        &self,
        user: &TestUser,
        verb: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let payload = rmp_serde::to_vec_named(&body).expect("encode");
        let reply = self
            .request(
                subjects::order(&user.id, verb),
                Some(&user.token),
                Encoding::MsgPack,
                payload.into(),
            )
            .await;
        rmp_serde::from_slice(&reply.payload).expect("reply decodes")
    }

    /// Sets risk limits for `scope` (`global` or a user id) directly in the database, and
    /// announces the change to the workers' caches as every writer in Pinnacle does (see
    /// [`TestStack::set_limits_quietly`] for a write nobody announces).
    pub async fn set_limits(&self, limits: pinnacle_common::entities::risk_limits::Model) {
        use pinnacle_common::invalidate::{announce, Invalidation};
        let change = match limits.scope.as_str() {
            pinnacle_common::entities::risk_limits::GLOBAL => Invalidation::GlobalLimits,
            user_id => Invalidation::Limits {
                user_id: user_id.to_string(),
            },
        };
        self.set_limits_quietly(limits).await;
        announce(&self.client, &change).await;
    }

    /// Lifts the order rate of `scope` (a user id, or `global`) to `per_second`, with no other
    /// limit, for a test that sends faster than Angel One's 9 orders a second by default.
    pub async fn lift_order_rate(&self, scope: &str, per_second: i32) {
        self.set_limits(pinnacle_common::entities::risk_limits::Model {
            max_orders_per_second: Some(per_second),
            ..crate::no_limits(scope)
        })
        .await;
    }

    /// Announces `change` on `pinnacle.cache.invalidate`, as the user API does after a write.
    pub async fn announce(&self, change: &pinnacle_common::invalidate::Invalidation) {
        pinnacle_common::invalidate::announce(&self.client, change).await;
    }

    /// [`TestStack::set_limits`] without the announcement: a write straight to the
    /// database, which workers see within the cache's lifetime.
    pub async fn set_limits_quietly(&self, limits: pinnacle_common::entities::risk_limits::Model) {
        use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel};
        let exists =
            pinnacle_common::entities::risk_limits::Entity::find_by_id(limits.scope.clone())
                .one(&self.db)
                .await
                .expect("query")
                .is_some();
        let mut row = limits.into_active_model();
        if exists {
            row = row.reset_all();
            row.update(&self.db).await.expect("update limits");
        } else {
            row.insert(&self.db).await.expect("insert limits");
        }
    }

    /// The user's (first) broker account row.
    pub async fn broker_account(
        &self,
        user_id: &str,
    ) -> pinnacle_common::entities::broker_accounts::Model {
        use pinnacle_common::entities::broker_accounts;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        broker_accounts::Entity::find()
            .filter(broker_accounts::Column::UserId.eq(user_id))
            .one(&self.db)
            .await
            .expect("query")
            .expect("account")
    }

    /// How many orders `user_id` has stored.
    pub async fn order_count(&self, user_id: &str) -> u64 {
        use pinnacle_common::entities::orders;
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        orders::Entity::find()
            .filter(orders::Column::UserId.eq(user_id))
            .count(&self.db)
            .await
            .expect("count")
    }

    /// Another order worker in the stack's queue group, as in a scaled-out deployment, run
    /// with `settings` until the returned token is cancelled.
    pub async fn second_worker(
        &self,
        settings: pinnacle_common::config::WorkerSettings,
    ) -> (
        tokio::task::JoinSet<pinnacle_cli::stack::ServiceResult>,
        pinnacle_common::shutdown::Shutdown,
    ) {
        let stop = pinnacle_common::shutdown::Shutdown::new();
        let mut tasks = tokio::task::JoinSet::new();
        pinnacle_cli::stack::spawn_worker(
            &mut tasks,
            &pinnacle_common::config::NatsSettings::for_url(self.nats.url()),
            self.db.clone(),
            self.vault.clone(),
            settings,
            pinnacle_common::audit::AuditChains::default(),
            &pinnacle_common::health::Health::new(),
            stop.clone(),
        )
        .await
        .expect("second worker");
        (tasks, stop)
    }

    /// Publishes a hand-made tick for NSE `symbol`, so a test controls the price.
    pub async fn publish_tick(&self, symbol: &str, seq: u64, ltp: i64, last_qty: i64) {
        let tick = Tick {
            exchange: "NSE".into(),
            symbol: symbol.into(),
            seq,
            ts_ms: chrono::Utc::now().timestamp_millis(),
            ltp,
            last_qty,
            volume: 0,
            bid: ltp - 5,
            ask: ltp + 5,
        };
        let payload = Encoding::MsgPack.encode(&tick).expect("encode");
        self.client
            .publish(subjects::tick("NSE", symbol), payload)
            .await
            .expect("publish");
        self.client.flush().await.expect("flush");
    }

    /// Places `order` as `user` over MessagePack and decodes the reply.
    pub async fn place(&self, user: &TestUser, order: &OrderRequest) -> Reply<OrderReply> {
        let payload = Encoding::MsgPack.encode(order).expect("encode");
        let reply = self
            .request(
                subjects::order(&user.id, verbs::PLACE),
                Some(&user.token),
                Encoding::MsgPack,
                payload,
            )
            .await;
        Encoding::MsgPack
            .decode(&reply.payload)
            .expect("reply decodes")
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        if self.stack.is_some() {
            // Not stopped explicitly (e.g. a failed assertion): services die with the runtime.
            self.stack.take();
        }
    }
}

/// Limits for `scope` with nothing set.
pub fn no_limits(scope: &str) -> pinnacle_common::entities::risk_limits::Model {
    pinnacle_common::entities::risk_limits::Model::unlimited(scope)
}

/// A market order for `quantity` of NSE `symbol`.
pub fn market(client_order_id: &str, symbol: &str, quantity: i64) -> OrderRequest {
    OrderRequest {
        client_order_id: client_order_id.to_string(),
        exchange: "NSE".into(),
        symbol: symbol.to_string(),
        side: Side::Buy,
        order_type: OrderType::Market,
        quantity,
        price: None,
        trigger_price: None,
        product: Default::default(),
        account: None,
    }
}

/// Waits until an order worker has joined the queue group: a worker joins only once it
/// has a price (see docs/ARCHITECTURE.md, "Readiness and backpressure"), and answers
/// `$SRV.PING` from then on.
async fn serving(client: &async_nats::Client) {
    let ping = format!("$SRV.PING.{}", pinnacle_order_worker::service::SERVICE_NAME);
    crate::eventually(
        Duration::from_secs(30),
        "an order worker serving",
        || async {
            client
                .request(ping.clone(), bytes::Bytes::new())
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}
