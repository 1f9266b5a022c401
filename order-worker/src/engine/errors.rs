//! The engine's error replies that are not about one stored row: an internal failure
//! (logged with its detail, answered without it) and a broker's refusal (a stable code).

use pinnacle_common::broker::BrokerError;
use pinnacle_common::error::{ErrorBody, ErrorCode};

/// Logs an internal failure and returns the detail-free error for the caller.
pub fn internal(context: &str, error: impl std::fmt::Display) -> ErrorBody {
    tracing::error!(%error, context, "internal error");
    ErrorBody::new(
        ErrorCode::Internal,
        format!("internal error while {context}"),
    )
}

/// Maps a broker failure to its stable code: the one stored with a rejected order, or
/// answered when nothing was stored.
pub fn broker_error(error: &BrokerError) -> ErrorBody {
    let code = match error {
        BrokerError::UnknownSymbol { .. } => ErrorCode::UnknownSymbol,
        BrokerError::InsufficientFunds { .. } => ErrorCode::InsufficientFunds,
        BrokerError::InsufficientHoldings { .. } => ErrorCode::InsufficientHoldings,
        BrokerError::InvalidPrice(_) => ErrorCode::InvalidRequest,
        BrokerError::Regulatory(_) => ErrorCode::Regulatory,
        BrokerError::RateLimited(_) => ErrorCode::RateLimited,
        BrokerError::PriceUnavailable { .. } => ErrorCode::PriceUnavailable,
        BrokerError::Rejected(_) | BrokerError::Credentials(_) => ErrorCode::BrokerRejected,
        // A passing outage, retryable; the place and change pipelines never store it (an
        // outcome they cannot know is `UNKNOWN`, settled by reconciliation).
        BrokerError::Unavailable(_) => ErrorCode::BrokerUnavailable,
    };
    ErrorBody::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_retryable_and_a_refusal_is_a_verdict() {
        let code = |error: BrokerError| broker_error(&error).code;
        assert_eq!(
            code(BrokerError::Unavailable("timed out".into())),
            ErrorCode::BrokerUnavailable
        );
        assert_eq!(
            code(BrokerError::Rejected("AB1012".into())),
            ErrorCode::BrokerRejected
        );
        assert_eq!(
            code(BrokerError::PriceUnavailable {
                exchange: "NSE".into(),
                symbol: "ITC-EQ".into()
            }),
            ErrorCode::PriceUnavailable
        );
    }
}
