//! The trader verbs' arguments: flags, the enums they take (parsed, in any case) and the
//! wire spelling of those enums.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value};

/// How to print, for every trader verb (where to connect comes from `--env-file` or the
/// environment).
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Print the result as JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `BUY` or `SELL`, in any case.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SideArg {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// The order types, in any case.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TypeArg {
    /// At the market (needs no price).
    Market,
    /// At `--price` or better.
    Limit,
    /// A limit order at `--price` once the market reaches `--trigger` (also `SL`).
    #[value(alias = "stoploss_limit", alias = "sl")]
    StoplossLimit,
    /// A market order once the market reaches `--trigger` (also `SL-M`).
    #[value(alias = "stoploss_market", alias = "sl-m")]
    StoplossMarket,
}

/// The products, in any case.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProductArg {
    /// Cash delivery (CNC), held across days.
    Delivery,
    /// Intraday (MIS), squared off before the close.
    Intraday,
    /// Derivatives carried forward (NRML).
    Carryforward,
    /// Margin trading.
    Margin,
}

/// The order states, in any case (`partially_filled` or `partially-filled`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    /// Stored, not yet sent.
    New,
    /// Sent to the broker, no answer yet.
    Submitted,
    /// Working at the broker.
    Open,
    /// Partly filled, still working.
    #[value(alias = "partially_filled")]
    PartiallyFilled,
    /// Filled in full.
    Filled,
    /// A modify is in flight.
    #[value(alias = "pending_modify")]
    PendingModify,
    /// A cancel is in flight.
    #[value(alias = "pending_cancel")]
    PendingCancel,
    /// Cancelled.
    Cancelled,
    /// Refused.
    Rejected,
    /// The broker's answer was lost; being settled.
    Unknown,
}

pub(super) fn wire<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().replace('-', "_").to_uppercase())
        .unwrap_or_default()
}

/// Which order: `--order-id` or `--client-order-id`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct OrderRef {
    /// Pinnacle's order id.
    #[arg(long)]
    pub order_id: Option<String>,
    /// Your client order id.
    #[arg(long)]
    pub client_order_id: Option<String>,
}

impl OrderRef {
    pub(super) fn fields(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(id) = &self.order_id {
            out.insert("order_id".into(), id.clone().into());
        }
        if let Some(id) = &self.client_order_id {
            out.insert("client_order_id".into(), id.clone().into());
        }
        out
    }
}

fn rupees(text: &str) -> Result<i64, String> {
    pinnacle_publisher::sim::parse_rupees(text)
        .ok_or_else(|| format!("`{text}` is not a price in rupees like 820.50"))
}

/// What `pinnacle order place` sends.
#[derive(Debug, Clone, Args)]
pub struct PlaceArgs {
    /// Exchange segment.
    #[arg(long, default_value = "NSE")]
    pub exchange: String,
    /// Trading symbol, e.g. SBIN-EQ.
    #[arg(long)]
    pub symbol: String,
    /// buy or sell.
    #[arg(long, ignore_case = true)]
    pub side: SideArg,
    /// Number of shares (units).
    #[arg(long)]
    pub quantity: i64,
    /// Order type; default: limit with --price, market without.
    #[arg(long = "type", ignore_case = true)]
    pub order_type: Option<TypeArg>,
    /// Limit price in rupees, e.g. 820.50.
    #[arg(long, value_parser = rupees)]
    pub price: Option<i64>,
    /// Trigger price in rupees, for the stop-loss types.
    #[arg(long, value_parser = rupees)]
    pub trigger: Option<i64>,
    /// Product.
    #[arg(long, ignore_case = true, default_value = "delivery")]
    pub product: ProductArg,
    /// Your id for this order (1–64 of A–Z a–z 0–9 - _); default: a new UUID. Resend
    /// the same id to retry safely: it never places a second order.
    #[arg(long)]
    pub client_order_id: Option<String>,
    /// Broker account label, when you have several.
    #[arg(long)]
    pub account: Option<String>,
}

/// `pinnacle order …`.
#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Place an order.
    Place(PlaceArgs),
    /// Change an open order's quantity, price or trigger.
    Modify {
        #[command(flatten)]
        order: OrderRef,
        /// New total quantity.
        #[arg(long)]
        quantity: Option<i64>,
        /// New limit price in rupees.
        #[arg(long, value_parser = rupees)]
        price: Option<i64>,
        /// New trigger price in rupees.
        #[arg(long, value_parser = rupees)]
        trigger: Option<i64>,
    },
    /// Cancel an open order.
    Cancel {
        #[command(flatten)]
        order: OrderRef,
    },
    /// Show one order.
    Get {
        #[command(flatten)]
        order: OrderRef,
    },
    /// List your orders, newest first.
    List {
        /// Only these states (e.g. open,partially_filled); any case.
        #[arg(long, value_delimiter = ',', value_enum, ignore_case = true)]
        status: Vec<StatusArg>,
        /// At most this many (1–500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Square off now: cancel the account's working INTRADAY orders and close each open
    /// INTRADAY position with a marketable LIMIT order (the daily square-off's orders).
    #[command(name = "squareoff")]
    SquareOff {
        /// Broker account label, when you have several.
        #[arg(long)]
        account: Option<String>,
    },
}

/// `pinnacle portfolio …`.
#[derive(Debug, Subcommand)]
pub enum PortfolioCommand {
    /// Cash, used, blocked and available funds (rupees in the table, paise in JSON).
    Funds {
        /// Broker account label, when you have several.
        #[arg(long)]
        account: Option<String>,
    },
    /// Open positions per instrument and product.
    Positions {
        /// Broker account label, when you have several.
        #[arg(long)]
        account: Option<String>,
    },
    /// Shares held outright.
    Holdings {
        /// Broker account label, when you have several.
        #[arg(long)]
        account: Option<String>,
    },
    /// Fills, oldest first.
    Trades {
        /// Broker account label, when you have several.
        #[arg(long)]
        account: Option<String>,
    },
}

/// `pinnacle md …`: market-data requests (they need no token).
#[derive(Debug, Subcommand)]
pub enum MdCommand {
    /// The latest tick of one symbol.
    Last {
        /// Exchange segment.
        #[arg(long, default_value = "NSE")]
        exchange: String,
        /// Trading symbol.
        symbol: String,
    },
    /// Historical candles.
    Candles {
        /// Exchange segment.
        #[arg(long, default_value = "NSE")]
        exchange: String,
        /// Trading symbol.
        symbol: String,
        /// ONE_MINUTE, THREE_MINUTE, FIVE_MINUTE, TEN_MINUTE, FIFTEEN_MINUTE,
        /// THIRTY_MINUTE, ONE_HOUR or ONE_DAY (any case).
        #[arg(long, default_value = "FIVE_MINUTE")]
        interval: String,
        /// From, "yyyy-MM-dd HH:mm" IST.
        #[arg(long)]
        from: String,
        /// To, "yyyy-MM-dd HH:mm" IST.
        #[arg(long)]
        to: String,
    },
    /// Search the instrument master.
    Symbols {
        /// A symbol or a word of the name.
        query: String,
        /// Only this exchange.
        #[arg(long)]
        exchange: Option<String>,
        /// At most this many (1–500).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One instrument of the master, by symbol.
    Lookup {
        /// Exchange segment.
        #[arg(long, default_value = "NSE")]
        exchange: String,
        /// Trading symbol (any case).
        symbol: String,
    },
    /// Market status, per exchange.
    Status {
        /// Only this exchange.
        #[arg(long)]
        exchange: Option<String>,
    },
}

/// `pinnacle events`: your order events from `ORDER_EVENTS`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Skip the history: only events from now on (implies --follow).
    #[arg(long)]
    pub new: bool,
    /// After the history, keep printing new events until interrupted.
    #[arg(long)]
    pub follow: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enum_flags_go_on_the_wire_in_upper_case() {
        assert_eq!(wire(TypeArg::StoplossMarket), "STOPLOSS_MARKET");
        assert_eq!(wire(SideArg::Sell), "SELL");
        assert_eq!(wire(ProductArg::Intraday), "INTRADAY");
        assert_eq!(wire(StatusArg::PartiallyFilled), "PARTIALLY_FILLED");
        // Every state flag is a state the protocol knows.
        for state in StatusArg::value_variants() {
            let parsed: Result<pinnacle_common::model::OrderStatus, _> =
                serde_json::from_value(json!(wire(*state)));
            assert!(parsed.is_ok(), "{state:?}");
        }
    }
}
