//! SmartAPI request and reply records, with the broker's own field names (SPEC §2, §3).
//!
//! Replies deserialise every number leniently (number or numeric string), and prices are
//! turned from rupees into paise on the way in, so nothing downstream sees a float.

use serde::{Deserialize, Serialize};

use crate::envelope::lenient;

/// The three session tokens from login or refresh.
#[derive(Deserialize)]
pub struct SessionTokens {
    /// The session JWT, sent as `Authorization: Bearer …`.
    #[serde(rename = "jwtToken")]
    pub jwt_token: secrecy::SecretString,
    /// Renews the JWT.
    #[serde(rename = "refreshToken")]
    pub refresh_token: secrecy::SecretString,
    /// Authenticates the market WebSocket.
    #[serde(rename = "feedToken")]
    pub feed_token: secrecy::SecretString,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionTokens([REDACTED])")
    }
}

/// getProfile.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Profile {
    /// Client code.
    #[serde(default)]
    pub clientcode: String,
    /// Account holder's name.
    #[serde(default)]
    pub name: String,
    /// Exchanges enabled, e.g. `["NSE","BSE"]`.
    #[serde(default)]
    pub exchanges: Vec<String>,
    /// Products enabled.
    #[serde(default)]
    pub products: Vec<String>,
}

/// getRMS, in paise.
#[derive(Debug, Clone, Deserialize)]
pub struct Rms {
    /// Net available.
    #[serde(default, deserialize_with = "lenient::paise")]
    pub net: i64,
    /// Available cash.
    #[serde(default, deserialize_with = "lenient::paise")]
    pub availablecash: i64,
    /// Margin used by debits.
    #[serde(default, deserialize_with = "lenient::paise")]
    pub utiliseddebits: i64,
    /// Realised M2M.
    #[serde(default, deserialize_with = "lenient::paise")]
    pub m2mrealized: i64,
    /// Unrealised M2M.
    #[serde(default, deserialize_with = "lenient::paise")]
    pub m2munrealized: i64,
}

/// place and modify (SPEC §3.1). Prices are rupee strings on the wire. A modify sends the
/// whole order again (variety, order type, quantity, prices) with `orderid` set.
#[derive(Debug, Clone, Serialize, Default)]
pub struct OrderParams {
    /// `NORMAL` or `STOPLOSS`.
    pub variety: String,
    /// e.g. `SBIN-EQ`.
    pub tradingsymbol: String,
    /// e.g. `3045`.
    pub symboltoken: String,
    /// `BUY` or `SELL`.
    pub transactiontype: String,
    /// `NSE`, `BSE`, …
    pub exchange: String,
    /// `MARKET`, `LIMIT`, `STOPLOSS_LIMIT`, `STOPLOSS_MARKET`.
    pub ordertype: String,
    /// `DELIVERY`, `INTRADAY`, `CARRYFORWARD`, `MARGIN`.
    pub producttype: String,
    /// `DAY` (Pinnacle never sends `IOC`: it is barred for algo orders).
    pub duration: String,
    /// Rupees, e.g. `"194.50"`.
    pub price: String,
    /// Rupees; stop-loss orders only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggerprice: Option<String>,
    /// Units.
    pub quantity: String,
    /// Pinnacle's idempotency tag ([`crate::tag`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordertag: Option<String>,
    /// Modify only: the broker's id of the order to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orderid: Option<String>,
}

/// Whether `id` is a `uniqueorderid` an order's details can be asked by
/// (`details/{uniqueorderid}`): 1 to 64 ASCII letters, digits or dashes (a UUID).
pub fn is_unique_order_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// What place, modify and cancel return.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderAck {
    /// The broker's order id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub orderid: String,
    /// The broker's UUID for the order.
    #[serde(default, deserialize_with = "lenient::string")]
    pub uniqueorderid: String,
}

/// An order-book, order-details or order-update record (SPEC §3.2), prices in paise.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct OrderRecord {
    /// Broker order id.
    #[serde(deserialize_with = "lenient::string")]
    pub orderid: String,
    /// Broker UUID.
    #[serde(deserialize_with = "lenient::string")]
    pub uniqueorderid: String,
    /// The tag sent with the order.
    #[serde(deserialize_with = "lenient::string")]
    pub ordertag: String,
    /// `NORMAL`, `STOPLOSS`, …
    pub variety: String,
    /// `MARKET`, `LIMIT`, …
    pub ordertype: String,
    /// `DELIVERY`, `INTRADAY`, …
    pub producttype: String,
    /// e.g. `SBIN-EQ`.
    pub tradingsymbol: String,
    /// e.g. `NSE`.
    pub exchange: String,
    /// `BUY` or `SELL`.
    pub transactiontype: String,
    /// Lower-case status: `open`, `complete`, `rejected`, `cancelled`, `trigger pending`, …
    pub status: String,
    /// Same as `status` in practice.
    pub orderstatus: String,
    /// Units ordered.
    #[serde(deserialize_with = "lenient::i64")]
    pub quantity: i64,
    /// Units filled.
    #[serde(deserialize_with = "lenient::i64")]
    pub filledshares: i64,
    /// Units still open.
    #[serde(deserialize_with = "lenient::i64")]
    pub unfilledshares: i64,
    /// Limit price.
    #[serde(deserialize_with = "lenient::paise")]
    pub price: i64,
    /// Stop-loss trigger price (0 when none).
    #[serde(deserialize_with = "lenient::paise")]
    pub triggerprice: i64,
    /// Average fill price.
    #[serde(deserialize_with = "lenient::paise")]
    pub averageprice: i64,
    /// Rejection reason.
    pub text: String,
}

/// A trade-book record, prices in paise.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct TradeRecord {
    /// Broker order id.
    #[serde(deserialize_with = "lenient::string")]
    pub orderid: String,
    /// Fill id.
    #[serde(deserialize_with = "lenient::string")]
    pub fillid: String,
    /// e.g. `SBIN-EQ`.
    pub tradingsymbol: String,
    /// e.g. `NSE`.
    pub exchange: String,
    /// `BUY` or `SELL`.
    pub transactiontype: String,
    /// Fill price.
    #[serde(deserialize_with = "lenient::paise")]
    pub fillprice: i64,
    /// Units filled.
    #[serde(deserialize_with = "lenient::i64")]
    pub fillsize: i64,
    /// `13:27:53`.
    pub filltime: String,
    /// Product.
    pub producttype: String,
}

/// A getPosition record (all strings on the wire), prices in paise.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PositionRecord {
    /// e.g. `NSE`.
    pub exchange: String,
    /// e.g. `SBIN-EQ`.
    pub tradingsymbol: String,
    /// Token.
    #[serde(deserialize_with = "lenient::string")]
    pub symboltoken: String,
    /// Product.
    pub producttype: String,
    /// Net units (negative when short).
    #[serde(deserialize_with = "lenient::i64")]
    pub netqty: i64,
    /// Units bought today.
    #[serde(deserialize_with = "lenient::i64")]
    pub buyqty: i64,
    /// Units sold today.
    #[serde(deserialize_with = "lenient::i64")]
    pub sellqty: i64,
    /// Average buy price.
    #[serde(deserialize_with = "lenient::paise")]
    pub buyavgprice: i64,
    /// Average sell price.
    #[serde(deserialize_with = "lenient::paise")]
    pub sellavgprice: i64,
    /// Net average.
    #[serde(deserialize_with = "lenient::paise")]
    pub avgnetprice: i64,
}

/// A getHolding record, prices in paise.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct HoldingRecord {
    /// e.g. `SBIN-EQ`.
    pub tradingsymbol: String,
    /// e.g. `NSE`.
    pub exchange: String,
    /// ISIN.
    pub isin: String,
    /// Units held.
    #[serde(deserialize_with = "lenient::i64")]
    pub quantity: i64,
    /// Units bought but not yet delivered (T+1).
    #[serde(deserialize_with = "lenient::i64")]
    pub t1quantity: i64,
    /// Average cost.
    #[serde(deserialize_with = "lenient::paise")]
    pub averageprice: i64,
    /// Last price.
    #[serde(deserialize_with = "lenient::paise")]
    pub ltp: i64,
}

/// A getCandleData row: `[time, open, high, low, close, volume]`, prices in paise.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleRow {
    /// `2023-09-06T11:15:00+05:30`.
    pub time: chrono::DateTime<chrono::FixedOffset>,
    /// Open.
    pub open: i64,
    /// High.
    pub high: i64,
    /// Low.
    pub low: i64,
    /// Close.
    pub close: i64,
    /// Volume (0 for indices).
    pub volume: i64,
}

/// getCandleData's request.
#[derive(Debug, Clone, Serialize)]
pub struct CandleRequest {
    /// `NSE`, `NFO`, `BSE`, `BFO`, `MCX`.
    pub exchange: String,
    /// Token.
    pub symboltoken: String,
    /// `ONE_MINUTE` … `ONE_DAY`.
    pub interval: String,
    /// `yyyy-MM-dd HH:mm`, IST.
    pub fromdate: String,
    /// `yyyy-MM-dd HH:mm`, IST.
    pub todate: String,
}

/// A searchScrip result.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ScripMatch {
    /// Exchange.
    pub exchange: String,
    /// e.g. `SBIN-EQ`.
    pub tradingsymbol: String,
    /// Token.
    #[serde(deserialize_with = "lenient::string")]
    pub symboltoken: String,
}

/// getLtpData, in paise.
#[derive(Debug, Clone, Deserialize)]
pub struct Ltp {
    /// Exchange.
    #[serde(default)]
    pub exchange: String,
    /// Symbol.
    #[serde(default)]
    pub tradingsymbol: String,
    /// Last price.
    #[serde(deserialize_with = "lenient::paise")]
    pub ltp: i64,
    /// Previous close.
    #[serde(default, deserialize_with = "lenient::paise")]
    pub close: i64,
}
