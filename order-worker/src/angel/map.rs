//! Translating between Pinnacle's order model and SmartAPI's records.

use pinnacle_common::broker::{BrokerOutcome, OrderTerms};
use pinnacle_common::model::{
    Funds, Holding, OrderRequest, OrderStatus, OrderType, Position, Product, Side, Trade,
};
use pinnacle_smartapi::envelope::paise_to_rupees;
use pinnacle_smartapi::types::{
    is_unique_order_id, HoldingRecord, OrderAck, OrderParams, OrderRecord, PositionRecord, Rms,
    TradeRecord,
};

/// The SmartAPI variety an order of `order_type` is placed with (SPEC §3.1): stop-loss
/// orders are `STOPLOSS`, the rest `NORMAL`. A function of the stored order type alone, so
/// modify and cancel name the variety place sent without asking the broker; the order type
/// cannot be modified, so it never changes.
pub fn variety(order_type: OrderType) -> &'static str {
    match order_type {
        OrderType::Market | OrderType::Limit => "NORMAL",
        OrderType::StoplossLimit | OrderType::StoplossMarket => "STOPLOSS",
    }
}

/// The SmartAPI parameters for `order` on `token`, tagged with `tag`.
pub fn order_params(order: &OrderRequest, token: &str, tag: Option<String>) -> OrderParams {
    let ordertype = match order.order_type {
        OrderType::Market => "MARKET",
        OrderType::Limit => "LIMIT",
        OrderType::StoplossLimit => "STOPLOSS_LIMIT",
        OrderType::StoplossMarket => "STOPLOSS_MARKET",
    };
    OrderParams {
        variety: variety(order.order_type).into(),
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
        broker_unique_id: unique_id(&record.uniqueorderid),
        status: status(record),
        filled_quantity: record.filledshares,
        average_price: (record.filledshares > 0 && record.averageprice > 0)
            .then_some(record.averageprice),
        terms: terms(record),
        fill_value: None,
        reason: (!record.text.is_empty()).then(|| record.text.clone()),
    }
}

/// An order the broker acknowledged (`ack`'s ids), nothing filled, taken to be `status`
/// (an acknowledgement says nothing of the order's state).
pub fn acknowledged(ack: &OrderAck, status: OrderStatus) -> BrokerOutcome {
    BrokerOutcome {
        broker_order_id: ack.orderid.clone(),
        broker_unique_id: unique_id(&ack.uniqueorderid),
        status,
        filled_quantity: 0,
        average_price: None,
        terms: OrderTerms::default(),
        fill_value: None,
        reason: None,
    }
}

/// A `uniqueorderid` as the broker sent it, if it is one Pinnacle stores and can read the
/// order's details by ([`is_unique_order_id`]). Anything else is not stored, and the order
/// is found by its tag instead.
pub fn unique_id(raw: &str) -> Option<String> {
    is_unique_order_id(raw).then(|| raw.to_string())
}

/// The terms a record states (quantity and prices above zero); read them by the stored
/// order's type ([`OrderTerms::for_type`]), which a modify never changes.
fn terms(record: &OrderRecord) -> OrderTerms {
    let positive = |value: i64| (value > 0).then_some(value);
    OrderTerms {
        quantity: positive(record.quantity),
        price: positive(record.price),
        trigger_price: positive(record.triggerprice),
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
        assert_eq!(status(&record("modified", 0)), OrderStatus::Open);
        assert_eq!(
            status(&record("modify pending", 0)),
            OrderStatus::PendingModify
        );
        assert_eq!(
            status(&record("cancel pending", 0)),
            OrderStatus::PendingCancel
        );
    }

    fn request(order_type: OrderType) -> OrderRequest {
        let stop = order_type.is_stop();
        OrderRequest {
            client_order_id: "c-1".into(),
            exchange: "nse".into(),
            symbol: "SBIN-EQ".into(),
            side: Side::Buy,
            order_type,
            quantity: 3,
            price: order_type.has_limit().then_some(19_450),
            trigger_price: stop.then_some(19_400),
            product: Product::Intraday,
            account: None,
        }
    }

    #[test]
    fn only_a_unique_id_the_details_can_be_read_by_is_stored() {
        let uuid = "2f5b7d2e-9c1a-4c1e-8f3a-6d0b1c2e3f40";
        assert_eq!(unique_id(uuid).as_deref(), Some(uuid));
        for junk in ["", "a/b", "../x", "id with space", "ünï", &"a".repeat(65)] {
            assert_eq!(unique_id(junk), None, "{junk:?}");
        }
        let record = OrderRecord {
            orderid: "1".into(),
            uniqueorderid: uuid.into(),
            ..OrderRecord::default()
        };
        assert_eq!(outcome(&record).broker_unique_id.as_deref(), Some(uuid));
    }

    #[test]
    fn the_variety_modify_and_cancel_name_is_the_one_place_sent() {
        for order_type in [
            OrderType::Market,
            OrderType::Limit,
            OrderType::StoplossLimit,
            OrderType::StoplossMarket,
        ] {
            let placed = order_params(&request(order_type), "3045", Some("tag".into()));
            assert_eq!(placed.variety, variety(order_type), "{order_type:?}");
        }
        assert_eq!(variety(OrderType::Limit), "NORMAL");
        assert_eq!(variety(OrderType::StoplossLimit), "STOPLOSS");
    }

    #[test]
    fn a_modify_sends_the_whole_order_with_its_id() {
        let mut params = order_params(&request(OrderType::StoplossLimit), "3045", None);
        params.orderid = Some("261201000000001".into());
        let body = serde_json::to_value(&params).expect("encodes");
        assert_eq!(body["variety"], "STOPLOSS");
        assert_eq!(body["ordertype"], "STOPLOSS_LIMIT");
        assert_eq!(body["orderid"], "261201000000001");
        assert_eq!(body["quantity"], "3");
        assert_eq!(body["price"], "194.50");
        assert_eq!(body["triggerprice"], "194.00");
        assert_eq!(body["exchange"], "NSE");
        assert!(body.get("ordertag").is_none(), "a modify carries no tag");
    }

    #[test]
    fn terms_come_from_the_record_for_the_fields_the_type_has() {
        let record = OrderRecord {
            quantity: 3,
            price: 19_500,
            triggerprice: 19_400,
            ..OrderRecord::default()
        };
        let of = |record: &OrderRecord, order_type| {
            let t = outcome(record).terms.for_type(order_type);
            (t.quantity, t.price, t.trigger_price)
        };
        assert_eq!(
            of(&record, OrderType::StoplossLimit),
            (Some(3), Some(19_500), Some(19_400))
        );
        assert_eq!(of(&record, OrderType::Limit), (Some(3), Some(19_500), None));
        assert_eq!(
            of(&record, OrderType::StoplossMarket),
            (Some(3), None, Some(19_400))
        );
        assert_eq!(of(&record, OrderType::Market), (Some(3), None, None));
        assert_eq!(
            of(&OrderRecord::default(), OrderType::Limit),
            (None, None, None)
        );
    }
}
