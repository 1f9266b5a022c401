//! Reading a stored order row: its enum columns parsed (a corrupt value is an error,
//! never read as a default), its wire view, and the reply for a placed order. The lowest
//! layer of the engine: every other part reads rows through it.

use chrono::Utc;
use pinnacle_common::entities::orders;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::{OrderReply, OrderStatus};
use sea_orm::DbErr;

use super::errors::internal;

/// Milliseconds since the Unix epoch, the unit of leases and outbox claims.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A stored order holds a value its column does not allow: the row is corrupt. It is
/// reported (to the caller as `INTERNAL`, to the log with the order id and the column),
/// never read as some default.
#[derive(Debug, thiserror::Error)]
#[error("order {order_id}: column {column}: {source}")]
pub struct CorruptOrder {
    /// The order's id.
    pub order_id: String,
    /// The column that holds the bad value, e.g. `side`.
    pub column: &'static str,
    /// What was found there.
    #[source]
    pub source: pinnacle_common::model::UnknownValue,
}

impl From<CorruptOrder> for DbErr {
    fn from(error: CorruptOrder) -> Self {
        DbErr::Custom(error.to_string())
    }
}

impl From<CorruptOrder> for ErrorBody {
    fn from(error: CorruptOrder) -> Self {
        internal("reading a stored order", error)
    }
}

/// Parses `text`, the stored value of `column` of `order`.
fn column<T>(order: &orders::Model, column: &'static str, text: &str) -> Result<T, CorruptOrder>
where
    T: std::str::FromStr<Err = pinnacle_common::model::UnknownValue>,
{
    text.parse().map_err(|source| CorruptOrder {
        order_id: order.id.clone(),
        column,
        source,
    })
}

/// The stored status; an unknown one is a [`CorruptOrder`], never read as some state.
pub fn status_of(order: &orders::Model) -> Result<OrderStatus, CorruptOrder> {
    column(order, "status", &order.status)
}

/// The order as the wire shows it; a corrupt enum column is an error.
pub fn view(order: &orders::Model) -> Result<OrderReply, CorruptOrder> {
    Ok(OrderReply {
        order_id: order.id.clone(),
        client_order_id: order.client_order_id.clone(),
        exchange: order.exchange.clone(),
        symbol: order.symbol.clone(),
        side: column(order, "side", &order.side)?,
        order_type: column(order, "order_type", &order.order_type)?,
        quantity: order.quantity,
        price: order.price,
        trigger_price: order.trigger_price,
        product: column(order, "product", &order.product)?,
        broker_order_id: order.broker_order_id.clone(),
        status: status_of(order)?,
        filled_quantity: order.filled_quantity,
        average_price: order.average_price,
        reject_reason: order.reject_reason.clone(),
        created_at_ms: order.created_at.timestamp_millis(),
        updated_at_ms: order.updated_at.timestamp_millis(),
    })
}

/// The reply for a placed order: its state, or for a rejected one the original error.
pub fn reply_for(order: &orders::Model) -> Result<OrderReply, ErrorBody> {
    if status_of(order)? == OrderStatus::Rejected {
        // No stored code (a rejection recorded before codes were kept) is the broker's.
        let code = match order.reject_code.as_deref() {
            Some(text) => column::<ErrorCode>(order, "reject_code", text)?,
            None => ErrorCode::BrokerRejected,
        };
        return Err(ErrorBody::new(
            code,
            order.reject_reason.clone().unwrap_or_default(),
        ));
    }
    Ok(view(order)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_common::error::ErrorCode;
    use pinnacle_common::model::{OrderType, Product, Side};

    fn row() -> orders::Model {
        let now = Utc::now();
        orders::Model {
            id: "ord-1".into(),
            user_id: "u1".into(),
            broker_account_id: "acct-1".into(),
            client_order_id: "c-1".into(),
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            side: Side::Sell.as_str().into(),
            order_type: OrderType::StoplossMarket.as_str().into(),
            quantity: 5,
            price: None,
            trigger_price: Some(81_000),
            product: Product::Intraday.as_str().into(),
            status: OrderStatus::Rejected.as_str().into(),
            filled_quantity: 0,
            average_price: None,
            filled_value: None,
            broker_order_id: None,
            broker_unique_id: None,
            reject_code: Some(ErrorCode::RiskMaxValue.as_str().into()),
            reject_reason: Some("too big".into()),
            created_at: now,
            updated_at: now,
            lease_owner: None,
            lease_until_ms: None,
        }
    }

    #[test]
    fn a_sound_row_reads_back_as_stored() {
        let view = view(&row()).expect("sound");
        assert_eq!(
            (view.side, view.order_type, view.product, view.status),
            (
                Side::Sell,
                OrderType::StoplossMarket,
                Product::Intraday,
                OrderStatus::Rejected
            )
        );
        let error = reply_for(&row()).expect_err("rejected");
        assert_eq!(error.code, ErrorCode::RiskMaxValue);
    }

    #[test]
    fn a_corrupt_enum_column_is_reported_with_order_and_column_never_defaulted() {
        type Spoil = fn(&mut orders::Model);
        let corrupt: [(&str, Spoil); 5] = [
            ("side", |r| r.side = "buy".into()),
            ("order_type", |r| r.order_type = String::new()),
            ("product", |r| r.product = "CNC".into()),
            ("status", |r| r.status = "DONE".into()),
            ("reject_code", |r| r.reject_code = Some("OOPS".into())),
        ];
        for (column, spoil) in corrupt {
            let mut bad = row();
            spoil(&mut bad);
            if column != "reject_code" {
                let error = view(&bad).expect_err(column);
                assert_eq!((error.order_id.as_str(), error.column), ("ord-1", column));
                assert!(error.to_string().contains("ord-1"), "{error}");
            }
            // The reply is INTERNAL, never a guessed value.
            if column != "status" && column != "reject_code" {
                bad.status = OrderStatus::Open.as_str().into();
            }
            let reply = reply_for(&bad).expect_err(column);
            assert_eq!(reply.code, ErrorCode::Internal, "{column}");
        }
        let mut bad = row();
        bad.status = "NOPE".into();
        assert!(matches!(
            status_of(&bad),
            Err(CorruptOrder {
                column: "status",
                ..
            })
        ));
    }
}
