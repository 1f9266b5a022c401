//! Translating between Pinnacle's order model and SmartAPI's records.

use pinnacle_common::broker::BrokerOutcome;
use pinnacle_common::model::{
    Funds, Holding, OrderRequest, OrderStatus, OrderType, Position, Product, Side, Trade,
};
use pinnacle_smartapi::envelope::paise_to_rupees;
use pinnacle_smartapi::types::{
    HoldingRecord, OrderParams, OrderRecord, PositionRecord, Rms, TradeRecord,
};

/// The SmartAPI parameters for `order` on `token`, tagged with `tag`.
pub fn order_params(order: &OrderRequest, token: &str, tag: Option<String>) -> OrderParams {
    let (variety, ordertype) = match order.order_type {
        OrderType::Market => ("NORMAL", "MARKET"),
        OrderType::Limit => ("NORMAL", "LIMIT"),
        OrderType::StoplossLimit => ("STOPLOSS", "STOPLOSS_LIMIT"),
        OrderType::StoplossMarket => ("STOPLOSS", "STOPLOSS_MARKET"),
    };
    OrderParams {
        variety: variety.into(),
        tradingsymbol: order.symbol.clone(),
        symboltoken: token.into(),
        transactiontype: side(order.side).into(),
        exchange: order.exchange.to_ascii_uppercase(),
        ordertype: ordertype.into(),
        producttype: product(order.product).into(),
        duration: "DAY".into(),
        price: paise_to_rupees(order.price.unwrap_or(0)),
        triggerprice: order.trigger_price.map(paise_to_rupees),
        quantity: order.quantity.to_string(),
        ordertag: tag,
        orderid: None,
    }
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

fn product(product: Product) -> &'static str {
    match product {
        Product::Delivery => "DELIVERY",
        Product::Intraday => "INTRADAY",
        Product::Carryforward => "CARRYFORWARD",
        Product::Margin => "MARGIN",
    }
}

fn parse_product(text: &str) -> Product {
    match text.to_ascii_uppercase().as_str() {
        "INTRADAY" => Product::Intraday,
        "CARRYFORWARD" => Product::Carryforward,
        "MARGIN" => Product::Margin,
        _ => Product::Delivery,
    }
}

/// Where an order stands, from SmartAPI's lower-case status (SPEC §3.2).
pub fn status(record: &OrderRecord) -> OrderStatus {
    let text = if record.orderstatus.is_empty() {
        &record.status
    } else {
        &record.orderstatus
    };
    match text.to_ascii_lowercase().as_str() {
        "complete" => OrderStatus::Filled,
        "rejected" => OrderStatus::Rejected,
        "cancelled" => OrderStatus::Cancelled,
        "modify pending" => OrderStatus::PendingModify,
        "cancel pending" => OrderStatus::PendingCancel,
        // open, trigger pending, open pending, modified, after market order req received
        _ if record.filledshares > 0 => OrderStatus::PartiallyFilled,
        _ => OrderStatus::Open,
    }
}

/// The outcome a record describes.
pub fn outcome(record: &OrderRecord) -> BrokerOutcome {
    BrokerOutcome {
        broker_order_id: record.orderid.clone(),
        status: status(record),
        filled_quantity: record.filledshares,
        average_price: (record.filledshares > 0 && record.averageprice > 0)
            .then_some(record.averageprice),
    }
}

/// Funds from getRMS.
pub fn funds(rms: &Rms) -> Funds {
    Funds {
        cash: rms.availablecash,
        used: rms.utiliseddebits,
        blocked: 0,
        available: rms.net,
    }
}

/// A position from getPosition.
pub fn position(record: &PositionRecord) -> Position {
    Position {
        exchange: record.exchange.clone(),
        symbol: record.tradingsymbol.clone(),
        product: parse_product(&record.producttype),
        net_quantity: record.netqty,
        average_price: (record.avgnetprice != 0).then_some(record.avgnetprice),
        buy_quantity: record.buyqty,
        sell_quantity: record.sellqty,
        realized_pnl: realised(record),
    }
}

/// Realised P&L on the matched quantity.
fn realised(record: &PositionRecord) -> i64 {
    let matched = record.buyqty.min(record.sellqty);
    matched.saturating_mul(record.sellavgprice - record.buyavgprice)
}

/// A holding from getHolding.
pub fn holding(record: &HoldingRecord) -> Holding {
    Holding {
        exchange: record.exchange.clone(),
        symbol: record.tradingsymbol.clone(),
        quantity: record.quantity + record.t1quantity,
        average_price: record.averageprice,
    }
}

/// A fill from getTradeBook; its time of day is today's, in IST.
pub fn trade(record: &TradeRecord) -> Trade {
    let ist = pinnacle_common::clock::ist();
    let today = chrono::Utc::now().with_timezone(&ist).date_naive();
    let ts_ms = chrono::NaiveTime::parse_from_str(&record.filltime, "%H:%M:%S")
        .ok()
        .and_then(|t| today.and_time(t).and_local_timezone(ist).single())
        .map_or(0, |t| t.timestamp_millis());
    Trade {
        order_id: record.orderid.clone(),
        exchange: record.exchange.clone(),
        symbol: record.tradingsymbol.clone(),
        product: parse_product(&record.producttype),
        side: if record.transactiontype.eq_ignore_ascii_case("SELL") {
            Side::Sell
        } else {
            Side::Buy
        },
        quantity: record.fillsize,
        price: record.fillprice,
        ts_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str, filled: i64) -> OrderRecord {
        OrderRecord {
            orderid: "1".into(),
            status: status.into(),
            orderstatus: status.into(),
            filledshares: filled,
            averageprice: 19450,
            ..OrderRecord::default()
        }
    }

    #[test]
    fn statuses_map_to_the_state_machine() {
        assert_eq!(status(&record("complete", 5)), OrderStatus::Filled);
        assert_eq!(status(&record("open", 0)), OrderStatus::Open);
        assert_eq!(status(&record("open", 2)), OrderStatus::PartiallyFilled);
        assert_eq!(status(&record("trigger pending", 0)), OrderStatus::Open);
        assert_eq!(status(&record("rejected", 0)), OrderStatus::Rejected);
        assert_eq!(status(&record("cancelled", 0)), OrderStatus::Cancelled);
        assert_eq!(outcome(&record("open", 0)).average_price, None);
        assert_eq!(outcome(&record("complete", 5)).average_price, Some(19450));
    }
}
