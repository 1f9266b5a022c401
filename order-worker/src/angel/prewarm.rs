//! Sessions ready before they are needed: each worker looks every
//! `PINNACLE_WORKER_SESSION_CHECK_MS` for `angel_one` accounts whose stored session is
//! about to end (or ended at the daily rollover) and renews it in the background, so that
//! the first order of the day pays no login.
//!
//! * When: [`pinnacle_smartapi::session::renew_at`]. A session that ends at the rollover is
//!   replaced by a login `PINNACLE_WORKER_SESSION_AFTER_ROLLOVER_MS` after it; one that
//!   ends earlier is refreshed `PINNACLE_WORKER_SESSION_RENEW_AHEAD_MS` ahead of its end.
//! * Which accounts: those with a stored session that ended less than a day ago or is
//!   still live, i.e. accounts in use. An account nobody has used since before yesterday's
//!   rollover logs in on its next order, as before.
//! * Single flight: the renewal goes through [`AngelOneBroker::prepare_session`], the same
//!   in-process lock and `login_lease_*` row lease as a request's renewal, so however many
//!   workers see the account due at once, one logs in and the others take its session.
//! * A renewal that fails is tried again after a backoff (one check period, doubling to
//!   30 minutes), never in a tight loop; the account then logs in on its next order.
//! * The stored credentials are opened with the audit purpose `session.prewarm`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pinnacle_common::entities::broker_accounts;
use pinnacle_common::shutdown::Shutdown;
use pinnacle_smartapi::session::renew_at;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::AngelOneBroker;
use crate::engine::Engine;

/// The audit actor of background renewals.
pub const ACTOR: &str = "pinnacle-session-prewarm";

/// Sessions that ended longer ago than this are left for the next order.
const IN_USE_WITHIN: chrono::Duration = chrono::Duration::hours(24);

/// The longest pause after failed renewals.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// When and how often.
#[derive(Debug, Clone, Copy)]
pub struct Prewarm {
    /// Between looks at the accounts.
    pub check: Duration,
    /// Refresh a session that ends before the rollover this long before its end.
    pub ahead: Duration,
    /// Log in this long after a session ended at the rollover.
    pub after_rollover: Duration,
}

impl Prewarm {
    /// From `PINNACLE_WORKER_SESSION_*`; None when `check` is 0 (off).
    pub fn from_settings(settings: &pinnacle_common::config::WorkerSettings) -> Option<Self> {
        (settings.session_check_ms > 0).then(|| Self {
            check: Duration::from_millis(settings.session_check_ms),
            ahead: Duration::from_millis(settings.session_renew_ahead_ms),
            after_rollover: Duration::from_millis(settings.session_after_rollover_ms),
        })
    }
}

/// Renews due sessions until `shutdown`.
pub async fn run(
    engine: Arc<Engine>,
    db: DatabaseConnection,
    broker: Arc<AngelOneBroker>,
    prewarm: Prewarm,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(prewarm.check) => {}
        }
        let clock = broker.session_policy().clock;
        let rollover = broker.session_policy().rollover_ist;
        let now = clock.now();
        let rows = broker_accounts::Entity::find()
            .filter(broker_accounts::Column::Broker.eq(super::NAME))
            .filter(broker_accounts::Column::SessionExpiresAt.gt(now - IN_USE_WITHIN))
            .all(&db)
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "session prewarm could not list accounts");
                continue;
            }
        };
        for row in rows {
            let (Some(ends_at), Some(_)) = (row.session_expires_at, &row.jwt_token_enc) else {
                continue;
            };
            if now < renew_at(ends_at, rollover, prewarm.ahead, prewarm.after_rollover)
                || backoff.is_waiting(&row.id, now)
            {
                continue;
            }
            match renew(&engine, &broker, &row).await {
                Ok(new_end) => {
                    backoff.succeeded(&row.id);
                    tracing::info!(
                        account = %row.id,
                        ends_at = %new_end,
                        "SmartAPI session renewed in the background"
                    );
                }
                Err(error) => {
                    let pause = backoff.failed(&row.id, now, prewarm.check);
                    tracing::warn!(
                        account = %row.id,
                        %error,
                        retry_in_ms = pause.as_millis() as u64,
                        "background SmartAPI session renewal failed; the next order logs in"
                    );
                }
            }
        }
    }
}

/// Accounts whose last background attempt failed: account id → (failures in a row, not
/// before). The pause doubles with each failure, from the check interval up to
/// [`MAX_BACKOFF`], so a failing login is never retried in a tight loop.
#[derive(Debug, Default)]
pub(super) struct Backoff(HashMap<String, (u32, DateTime<Utc>)>);

impl Backoff {
    pub(super) fn is_waiting(&self, account_id: &str, now: DateTime<Utc>) -> bool {
        self.0
            .get(account_id)
            .is_some_and(|(_, until)| now < *until)
    }

    pub(super) fn succeeded(&mut self, account_id: &str) {
        self.0.remove(account_id);
    }

    /// Counts a failure; returns the pause before the next try.
    pub(super) fn failed(
        &mut self,
        account_id: &str,
        now: DateTime<Utc>,
        check: Duration,
    ) -> Duration {
        let failures = self.0.get(account_id).map_or(0, |(n, _)| *n) + 1;
        let pause = check.saturating_mul(1 << failures.min(16)).min(MAX_BACKOFF);
        let until = now + chrono::Duration::from_std(pause).unwrap_or_default();
        self.0.insert(account_id.to_string(), (failures, until));
        pause
    }
}

async fn renew(
    engine: &Engine,
    broker: &AngelOneBroker,
    row: &broker_accounts::Model,
) -> Result<DateTime<Utc>, String> {
    let creds = engine
        .open_credentials(ACTOR, row, "session.prewarm")
        .await
        .map_err(|e| e.message)?;
    broker
        .prepare_session(&creds)
        .await
        .map_err(|e| e.to_string())
}
