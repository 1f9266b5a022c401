//! JSON renderings of orders and trades (SPEC §3.2). The same record is typed three ways:
//! the order book uses strings, order details use numbers, and the order WebSocket uses
//! numeric prices with string quantities.

use serde_json::{json, Value};

use super::order::SimOrder;
use crate::market::rupees_str;

/// Which typing convention to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// getOrderBook: every number is a string.
    Book,
    /// details/{uniqueorderid}: JSON numbers.
    Details,
    /// Order-update WebSocket `orderData`: numeric prices, string quantities.
    OrderWs,
}

/// Instrument type guessed from the exchange and the symbol's suffix (SPEC §5 values).
pub fn instrument_type(exchange: &str, symbol: &str, name: &str) -> &'static str {
    let index = matches!(
        name,
        "NIFTY" | "BANKNIFTY" | "FINNIFTY" | "MIDCPNIFTY" | "SENSEX" | "BANKEX" | "NIFTYNXT50"
    );
    let fut = symbol.ends_with("FUT");
    let opt = symbol.ends_with("CE") || symbol.ends_with("PE");
    match exchange {
        "NFO" | "BFO" if fut => {
            if index {
                "FUTIDX"
            } else {
                "FUTSTK"
            }
        }
        "NFO" | "BFO" if opt => {
            if index {
                "OPTIDX"
            } else {
                "OPTSTK"
            }
        }
        "MCX" | "NCDEX" if fut => "FUTCOM",
        "MCX" | "NCDEX" if opt => "OPTFUT",
        "CDS" if fut => "FUTCUR",
        "CDS" if opt => "OPTCUR",
        _ => "",
    }
}

/// An order record in `style`.
pub fn order_record(o: &SimOrder, style: Style) -> Value {
    let money = |paise: i64| match style {
        Style::Book => Value::String(rupees_str(paise, &o.exchange)),
        Style::Details | Style::OrderWs => json!(paise as f64 / 100.0),
    };
    let qty = |n: i64| match style {
        Style::Book | Style::OrderWs => Value::String(n.to_string()),
        Style::Details => json!(n),
    };
    let (unfilled, cancelled) = open_and_cancelled(o);
    let (stamp, exch_time) = times(o);
    json!({
        "variety": o.variety,
        "ordertype": o.ordertype,
        "producttype": o.producttype,
        "duration": o.duration,
        "price": money(o.price_paise),
        "triggerprice": money(o.trigger_price_paise),
        "quantity": qty(o.quantity),
        "disclosedquantity": qty(o.disclosed_quantity),
        "squareoff": money(0),
        "stoploss": money(0),
        "trailingstoploss": money(0),
        "tradingsymbol": o.symbol,
        "transactiontype": o.side,
        "exchange": o.exchange,
        "symboltoken": o.token,
        "ordertag": o.ordertag,
        "instrumenttype": instrument_type(&o.exchange, &o.symbol, ""),
        "strikeprice": match style { Style::Book => json!("-1"), _ => json!(-1.0) },
        "optiontype": "",
        "expirydate": "",
        "lotsize": qty(o.lot_size),
        "cancelsize": qty(cancelled),
        "averageprice": money(o.average_price_paise),
        "filledshares": qty(o.filled),
        "unfilledshares": qty(unfilled),
        "orderid": o.orderid,
        "text": o.text,
        "status": o.status,
        "orderstatus": o.status,
        "updatetime": stamp,
        "exchtime": exch_time,
        "exchorderupdatetime": exch_time,
        "fillid": o.fill_id,
        "filltime": o.filled_at.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default(),
        "parentorderid": "",
        "uniqueorderid": o.uniqueorderid,
        "exchangeorderid": if o.status == "rejected" { String::new() } else { o.exchange_order_id.clone() },
    })
}

/// The quantities still working and cancelled: a cancelled order's rest is cancelled, and
/// a cancelled or rejected order works nothing.
fn open_and_cancelled(o: &SimOrder) -> (i64, i64) {
    let rest = o.quantity - o.filled;
    match o.status.as_str() {
        "cancelled" => (0, rest),
        "rejected" => (0, 0),
        _ => (rest, 0),
    }
}

/// The update time, and the exchange's time (none before the exchange has seen the
/// order, or when it rejected it).
fn times(o: &SimOrder) -> (String, String) {
    let stamp = o.updated_at.format("%d-%b-%Y %H:%M:%S").to_string();
    let exch_time = if o.status == "rejected" || o.status == "open pending" {
        String::new()
    } else {
        stamp.clone()
    };
    (stamp, exch_time)
}

/// The record the order WebSocket greets with: every field present, all empty.
pub fn empty_record() -> Value {
    let keys = [
        "variety",
        "ordertype",
        "producttype",
        "duration",
        "price",
        "triggerprice",
        "quantity",
        "disclosedquantity",
        "squareoff",
        "stoploss",
        "trailingstoploss",
        "tradingsymbol",
        "transactiontype",
        "exchange",
        "symboltoken",
        "ordertag",
        "instrumenttype",
        "strikeprice",
        "optiontype",
        "expirydate",
        "lotsize",
        "cancelsize",
        "averageprice",
        "filledshares",
        "unfilledshares",
        "orderid",
        "text",
        "status",
        "orderstatus",
        "updatetime",
        "exchtime",
        "exchorderupdatetime",
        "fillid",
        "filltime",
        "parentorderid",
        "uniqueorderid",
        "exchangeorderid",
    ];
    Value::Object(
        keys.iter()
            .map(|k| ((*k).to_owned(), Value::String(String::new())))
            .collect(),
    )
}

/// A trade-book record for a filled order (all strings, as the book).
pub fn trade_record(o: &SimOrder) -> Value {
    let value = o.average_price_paise as i128 * o.filled as i128;
    json!({
        "exchange": o.exchange,
        "producttype": o.producttype,
        "tradingsymbol": o.symbol,
        "instrumenttype": instrument_type(&o.exchange, &o.symbol, ""),
        "symbolgroup": "EQ",
        "strikeprice": "-1",
        "optiontype": "",
        "expirydate": "",
        "marketlot": o.lot_size.to_string(),
        "precision": if o.exchange == "CDS" { "4" } else { "2" },
        "multiplier": "-1",
        "tradevalue": rupees_str(value as i64, &o.exchange),
        "transactiontype": o.side,
        "fillprice": rupees_str(o.average_price_paise, &o.exchange),
        "fillsize": o.filled.to_string(),
        "orderid": o.orderid,
        "fillid": o.fill_id,
        "filltime": o.filled_at.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default(),
    })
}
