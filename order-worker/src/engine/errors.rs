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

/// Maps a broker failure to the stable code stored with a rejected order.
pub fn broker_error(error: &BrokerError) -> ErrorBody {
    let code = match error {
        BrokerError::UnknownSymbol { .. } => ErrorCode::UnknownSymbol,
        BrokerError::InsufficientFunds { .. } => ErrorCode::InsufficientFunds,
        BrokerError::InsufficientHoldings { .. } => ErrorCode::InsufficientHoldings,
        BrokerError::InvalidPrice(_) => ErrorCode::InvalidRequest,
        BrokerError::Regulatory(_) => ErrorCode::Regulatory,
        BrokerError::RateLimited(_) => ErrorCode::RateLimited,
        BrokerError::PriceUnavailable { .. } => ErrorCode::PriceUnavailable,
        BrokerError::Rejected(_) | BrokerError::Credentials(_) | BrokerError::Unavailable(_) => {
            ErrorCode::BrokerRejected
        }
    };
    ErrorBody::new(code, error.to_string())
}
