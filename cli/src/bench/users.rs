//! The benchmark's traders: one user per load slot, each with its own paper account, API
//! token, and risk limits raised so the per-user order rate (Angel One's 9 orders/s by
//! default) never refuses a benchmark order.
//!
//! Users are made the way `pinnacle dev` makes its demo user (the user API's own
//! functions), and their limits are a `risk_limits` row per user, the table the order
//! worker reads, written directly and announced on `pinnacle.cache.invalidate` like any
//! other change.

use async_nats::HeaderMap;
use pinnacle_common::audit::AuditLog;
use pinnacle_common::crypto::Vault;
use pinnacle_common::entities::risk_limits;
use pinnacle_common::invalidate::{self, Invalidation};
use pinnacle_common::subjects::{self, headers, verbs};
use pinnacle_user_api::accounts::{put_account, CredentialStore, PutAccount, Writer};
use pinnacle_user_api::api_tokens::{issue_token, TokenSpec};
use pinnacle_user_api::users::create_user;
use sea_orm::{ActiveModelTrait, DatabaseConnection, IntoActiveModel};
use secrecy::{ExposeSecret, SecretString};

/// The per-user order rate the benchmark sets: far above anything one machine reaches, so
/// the benchmark measures the system and not the rate limit.
pub const BENCH_MAX_ORDERS_PER_SECOND: i32 = 1_000_000;

/// One benchmark trader, ready to send orders.
#[derive(Debug, Clone)]
pub struct BenchUser {
    /// `orders.<user_id>.place`.
    pub place_subject: String,
    /// `Authorization: Bearer …` for this user's token.
    pub headers: HeaderMap,
}

/// Creates `count` users named `bench-<run>-<n>`, each with a paper account and a token.
pub async fn create_users(
    db: &DatabaseConnection,
    vault: &Vault,
    audit: &AuditLog,
    run: &str,
    count: usize,
) -> anyhow::Result<Vec<BenchUser>> {
    let mut users = Vec::with_capacity(count);
    let register =
        pinnacle_common::keystore::Register::new(audit.client(), std::time::Duration::from_secs(5));
    let writer = Writer {
        actor: "pinnacle-bench".into(),
        token_id: None,
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    for n in 0..count {
        let user = create_user(db, &format!("bench-{run}-{n}")).await?;
        let paper = PutAccount::basic(
            "paper",
            SecretString::from(format!("paper-bench-key-{n}")),
            SecretString::from(format!("PAPERBENCH{n}")),
            SecretString::from("0000"),
        );
        let store = CredentialStore {
            db,
            vault,
            audit,
            register: &register,
        };
        put_account(store, &writer, &user.id, "paper", &paper).await?;
        let (_, token) = issue_token(db, vault, &user.id, &TokenSpec::full()).await?;
        raise_limits(db, &user.id).await?;
        let change = Invalidation::Limits {
            user_id: user.id.clone(),
        };
        invalidate::announce(&audit.client(), &change).await;
        let mut hdrs = HeaderMap::new();
        hdrs.insert(
            headers::AUTHORIZATION,
            format!("Bearer {}", token.expose_secret()).as_str(),
        );
        users.push(BenchUser {
            place_subject: subjects::order(&user.id, verbs::PLACE),
            headers: hdrs,
        });
    }
    Ok(users)
}

/// Lifts the user's order-rate limit; every other limit stays unset (the defaults).
async fn raise_limits(db: &DatabaseConnection, user_id: &str) -> anyhow::Result<()> {
    risk_limits::Model {
        scope: user_id.to_string(),
        max_quantity: None,
        max_order_value: None,
        allowed_exchanges: None,
        allowed_symbols: None,
        max_orders_per_second: Some(BENCH_MAX_ORDERS_PER_SECOND),
        kill_switch: false,
        updated_at: chrono::Utc::now(),
    }
    .into_active_model()
    .insert(db)
    .await?;
    Ok(())
}
