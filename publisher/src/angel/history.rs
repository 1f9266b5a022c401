//! Historical candles from SmartAPI's getCandleData for `md.req.candles`.
//!
//! The request is validated first (interval names and per-interval range limits, SPEC
//! §4), so only well-formed requests reach the broker. Prices arrive in rupees and leave
//! in paise. A broker failure is a structured error, never simulated data in disguise:
//! - the broker's rate limit (or ours, queued too long) → `RATE_LIMITED`;
//! - a business error (`status: false`, e.g. `AB1004`) → `BROKER_REJECTED`, with the code;
//! - a timeout, transport failure, unreadable reply or failed login → `BROKER_UNAVAILABLE`.

use std::sync::Arc;

use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::Candle;
use pinnacle_smartapi::types::CandleRequest;
use pinnacle_smartapi::{SmartApiError, SmartApiErrorKind};

use super::auth::AngelAuth;
use crate::calendar::ist;
use crate::candles::CandleQuery;

/// Candles from Angel One.
#[derive(Debug)]
pub struct AngelHistory {
    /// The platform session (shared with the feed).
    auth: Arc<AngelAuth>,
}

impl AngelHistory {
    /// Candles through `auth`'s session.
    pub fn new(auth: Arc<AngelAuth>) -> Self {
        Self { auth }
    }

    /// Candles for the instrument `token` on `exchange`; at most `limit` of them.
    pub async fn candles(
        &self,
        exchange: &str,
        token: &str,
        query: &CandleQuery,
        limit: usize,
    ) -> Result<Vec<Candle>, ErrorBody> {
        let format = |t: chrono::DateTime<chrono::Utc>| {
            t.with_timezone(&ist()).format("%Y-%m-%d %H:%M").to_string()
        };
        let request = CandleRequest {
            exchange: exchange.to_string(),
            symboltoken: token.to_string(),
            interval: query.interval.name().to_string(),
            fromdate: format(query.from),
            todate: format(query.to),
        };
        let session = self.auth.session().await.map_err(|e| broker_error(&e))?;
        let rows = match self.auth.rest().candles(&session.jwt, &request).await {
            Err(e) if e.kind() == SmartApiErrorKind::Session => {
                tracing::info!(
                    code = e.code(),
                    "SmartAPI session refused for candles; renewing it"
                );
                let renewed = self
                    .auth
                    .renew(&session)
                    .await
                    .map_err(|e| broker_error(&e))?;
                self.auth.rest().candles(&renewed.jwt, &request).await
            }
            other => other,
        }
        .map_err(|e| broker_error(&e))?;
        if rows.len() > limit {
            return Err(ErrorBody::new(
                ErrorCode::RangeTooLarge,
                format!(
                    "more than {limit} candles would not fit in one reply; ask for a shorter range"
                ),
            ));
        }
        Ok(rows
            .into_iter()
            .map(|row| Candle {
                ts_ms: row.time.timestamp_millis(),
                open: row.open,
                high: row.high,
                low: row.low,
                close: row.close,
                volume: row.volume,
            })
            .collect())
    }
}

/// The reply for a failed SmartAPI call (the message names the route and the broker's
/// code and text, never a credential).
pub fn broker_error(error: &SmartApiError) -> ErrorBody {
    tracing::warn!(kind = ?error.kind(), code = error.code(), %error, "Angel One candles failed");
    match error.kind() {
        SmartApiErrorKind::RateLimited => ErrorBody::new(
            ErrorCode::RateLimited,
            format!("Angel One historical data is rate limited; retry later ({error})"),
        ),
        SmartApiErrorKind::Api => ErrorBody::new(
            ErrorCode::BrokerRejected,
            format!("Angel One refused the candle request: {error}"),
        ),
        SmartApiErrorKind::Login | SmartApiErrorKind::Session => ErrorBody::new(
            ErrorCode::BrokerUnavailable,
            format!("the platform's Angel One session could not be established: {error}"),
        ),
        _ => ErrorBody::new(
            ErrorCode::BrokerUnavailable,
            format!("Angel One historical data is unavailable: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_failures_have_stable_codes() {
        let code = |e: SmartApiError| broker_error(&e).code;
        assert_eq!(
            code(SmartApiError::rate_limited("getCandleData")),
            ErrorCode::RateLimited
        );
        assert_eq!(
            code(SmartApiError::from_code("AB1004", "Something Went Wrong")),
            ErrorCode::BrokerRejected
        );
        assert_eq!(
            code(SmartApiError::timeout(
                "getCandleData",
                std::time::Duration::from_secs(7)
            )),
            ErrorCode::BrokerUnavailable
        );
        let body = broker_error(&SmartApiError::from_code("AB1004", "Something Went Wrong"));
        assert!(body.message.contains("AB1004"), "{}", body.message);
    }
}
