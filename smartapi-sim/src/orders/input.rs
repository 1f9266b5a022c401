//! Parsing place/modify request bodies (SPEC §3.1): strings or numbers, rupee prices.

use serde_json::Value;

use super::order::{Refusal, SimOrder};
use crate::codes;
use crate::json::{money_paise, number, text};

const VARIETIES: [&str; 4] = ["NORMAL", "STOPLOSS", "ROBO", "AMO"];
const ORDER_TYPES: [&str; 4] = ["MARKET", "LIMIT", "STOPLOSS_LIMIT", "STOPLOSS_MARKET"];
const PRODUCTS: [&str; 5] = ["DELIVERY", "CARRYFORWARD", "MARGIN", "INTRADAY", "BO"];

/// A validated placeOrder body.
#[derive(Debug, Clone)]
pub struct OrderInput {
    pub variety: String,
    pub symbol: String,
    pub token: String,
    pub exchange: String,
    pub side: String,
    pub ordertype: String,
    pub producttype: String,
    pub duration: String,
    pub quantity: i64,
    pub disclosed_quantity: i64,
    pub price_paise: i64,
    pub trigger_price_paise: i64,
    pub ordertag: String,
}

impl OrderInput {
    /// Validates the body; the instrument lookup happens in the caller.
    pub fn parse(body: &Value) -> Result<OrderInput, Refusal> {
        let upper = |k: &str| {
            text(body, k)
                .map(|s| s.trim().to_ascii_uppercase())
                .unwrap_or_default()
        };
        let variety = upper("variety");
        if !VARIETIES.contains(&variety.as_str()) {
            return Err((codes::INVALID_VARIETY, "Invalid Order Variety".into()));
        }
        let ordertype = upper("ordertype");
        if !ORDER_TYPES.contains(&ordertype.as_str()) {
            return Err((codes::GENERAL, "Invalid Order Type".into()));
        }
        let producttype = upper("producttype");
        if !PRODUCTS.contains(&producttype.as_str()) {
            return Err((codes::INVALID_PRODUCT, "Invalid Product Type".into()));
        }
        let side = upper("transactiontype");
        if side != "BUY" && side != "SELL" {
            return Err((codes::GENERAL, "Invalid Transaction Type".into()));
        }
        let duration = match upper("duration").as_str() {
            "" | "DAY" => "DAY".to_owned(),
            "IOC" => "IOC".to_owned(),
            _ => return Err((codes::GENERAL, "Invalid Duration".into())),
        };
        let ordertag = text(body, "ordertag").unwrap_or_default();
        if ordertag.chars().count() >= 20 {
            return Err((
                codes::TAG_TOO_LONG,
                "ordertag length should be less than 20 characters".into(),
            ));
        }
        let quantity = integer(body, "quantity")?
            .ok_or_else(|| (codes::GENERAL, "Invalid Quantity".to_owned()))?;
        Ok(OrderInput {
            variety,
            symbol: text(body, "tradingsymbol").unwrap_or_default(),
            token: text(body, "symboltoken").unwrap_or_default(),
            exchange: upper("exchange"),
            side,
            ordertype,
            producttype,
            duration,
            quantity,
            disclosed_quantity: integer(body, "disclosedquantity")?.unwrap_or(0),
            price_paise: price(body, "price")?.unwrap_or(0),
            trigger_price_paise: price(body, "triggerprice")?.unwrap_or(0),
            ordertag,
        })
    }
}

/// Applies the fields a modifyOrder body carries to an open order.
pub fn apply_modification(order: &mut SimOrder, body: &Value) -> Result<(), Refusal> {
    if let Some(t) = text(body, "ordertype")
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
    {
        if !ORDER_TYPES.contains(&t.as_str()) {
            return Err((codes::GENERAL, "Invalid Order Type".into()));
        }
        order.ordertype = t;
    }
    if let Some(q) = integer(body, "quantity")? {
        if q <= 0 || (order.lot_size > 1 && q % order.lot_size != 0) {
            return Err((codes::GENERAL, "Invalid Quantity".into()));
        }
        order.quantity = q;
    }
    if let Some(p) = price(body, "price")? {
        order.price_paise = p;
    }
    if let Some(p) = price(body, "triggerprice")? {
        order.trigger_price_paise = p;
    }
    if let Some(d) = text(body, "duration")
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| s == "DAY" || s == "IOC")
    {
        order.duration = d;
    }
    if order.ordertype == "LIMIT" && order.price_paise <= 0 {
        return Err((codes::GENERAL, "Invalid Price".into()));
    }
    Ok(())
}

fn integer(body: &Value, key: &str) -> Result<Option<i64>, Refusal> {
    match number(body, key) {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => Ok(Some(n as i64)),
        Some(_) => Err((codes::GENERAL, format!("Invalid {key}"))),
    }
}

fn price(body: &Value, key: &str) -> Result<Option<i64>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(_) => money_paise(body, key)
            .map(Some)
            .ok_or_else(|| (codes::GENERAL, format!("Invalid {key}"))),
    }
}
