//! The trader's verbs over NATS, as docs/PROTOCOL.md defines them: `order
//! place|modify|cancel|get|list`, `portfolio funds|positions|holdings|trades`, `events`
//! (replay and follow your order events from `ORDER_EVENTS`) and `md
//! last|candles|symbols|lookup|status`.
//!
//! Each verb sends one request and prints the result as a table for people, or as JSON
//! with `--json` for scripts. A refused request prints one line, `error: CODE: message`,
//! and exits non-zero. Settings come from the environment, which `--env-file` (or
//! `PINNACLE_ENV_FILE`) fills first: `NATS_URL`, `PINNACLE_USER_ID`/`DEMO_USER_ID`,
//! `PINNACLE_API_TOKEN`/`DEMO_API_TOKEN` (the `dev.env` that `pinnacle dev` writes has
//! them all).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use clap::{Args, Subcommand, ValueEnum};
use pinnacle_common::codec::Encoding;
use pinnacle_common::subjects::{self, headers};
use serde_json::{json, Map, Value};

use crate::client::ClientEnv;

/// How long a reply may take before the verb gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

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

fn wire<T: ValueEnum>(value: T) -> String {
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
    fn fields(&self) -> Map<String, Value> {
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

/// `pinnacle order …`.
#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Place an order.
    Place {
        /// Exchange segment.
        #[arg(long, default_value = "NSE")]
        exchange: String,
        /// Trading symbol, e.g. SBIN-EQ.
        #[arg(long)]
        symbol: String,
        /// buy or sell.
        #[arg(long, ignore_case = true)]
        side: SideArg,
        /// Number of shares (units).
        #[arg(long)]
        quantity: i64,
        /// Order type; default: limit with --price, market without.
        #[arg(long = "type", ignore_case = true)]
        order_type: Option<TypeArg>,
        /// Limit price in rupees, e.g. 820.50.
        #[arg(long, value_parser = rupees)]
        price: Option<i64>,
        /// Trigger price in rupees, for the stop-loss types.
        #[arg(long, value_parser = rupees)]
        trigger: Option<i64>,
        /// Product.
        #[arg(long, ignore_case = true, default_value = "delivery")]
        product: ProductArg,
        /// Your id for this order (1–64 of A–Z a–z 0–9 - _); default: a new UUID. Resend
        /// the same id to retry safely: it never places a second order.
        #[arg(long)]
        client_order_id: Option<String>,
        /// Broker account label, when you have several.
        #[arg(long)]
        account: Option<String>,
    },
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

/// A connection as the trader in the env file.
struct Session {
    client: async_nats::Client,
    user_id: Option<String>,
    token: Option<String>,
}

impl Session {
    async fn open() -> anyhow::Result<Self> {
        let env = ClientEnv::load(None)?;
        let settings = env.nats();
        let client = tokio::time::timeout(
            Duration::from_secs(5),
            pinnacle_common::nats::connect(&settings, "pinnacle-cli"),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no NATS server answered at {} within 5 s (set NATS_URL or --env-file)",
                settings.url
            )
        })??;
        Ok(Self {
            client,
            user_id: env.get(&["PINNACLE_USER_ID", "DEMO_USER_ID"]),
            token: env.get(&["PINNACLE_API_TOKEN", "DEMO_API_TOKEN"]),
        })
    }

    /// Sends `body` to `subject` (with the token, for order subjects); the result, or the
    /// error as one line.
    async fn request(&self, subject: String, body: Value, auth: bool) -> anyhow::Result<Value> {
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
        if auth {
            let token = self
                .token
                .as_deref()
                .context("set PINNACLE_API_TOKEN (or use --env-file with DEMO_API_TOKEN)")?;
            hdrs.insert(headers::AUTHORIZATION, format!("Bearer {token}").as_str());
        }
        let payload = Encoding::MsgPack.encode(&body)?;
        let reply = tokio::time::timeout(
            REPLY_TIMEOUT,
            self.client
                .request_with_headers(subject.clone(), hdrs, payload),
        )
        .await
        .with_context(|| format!("no reply on {subject} within {REPLY_TIMEOUT:?}"))?
        .with_context(|| format!("no service answers on {subject} (is it running?)"))?;
        let reply: Value = Encoding::MsgPack
            .decode(&reply.payload)
            .context("the reply is not a Pinnacle reply")?;
        result_of(reply)
    }

    async fn order(&self, verb: &str, body: Value) -> anyhow::Result<Value> {
        let user_id = self
            .user_id
            .as_deref()
            .context("set PINNACLE_USER_ID (or use --env-file with DEMO_USER_ID)")?;
        self.request(subjects::order(user_id, verb), body, true)
            .await
    }
}

/// The `result` of a reply, or its error as `CODE: message`.
fn result_of(reply: Value) -> anyhow::Result<Value> {
    if reply["ok"] == true {
        return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
    }
    let code = reply["error"]["code"].as_str().unwrap_or("ERROR");
    let message = reply["error"]["message"].as_str().unwrap_or("no message");
    anyhow::bail!("{code}: {message}")
}

fn object(pairs: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

/// Runs `pinnacle order …`.
pub async fn order(common: &Common, command: OrderCommand) -> anyhow::Result<()> {
    let session = Session::open().await?;
    let (verb, body, shape) = match command {
        OrderCommand::Place {
            exchange,
            symbol,
            side,
            quantity,
            order_type,
            price,
            trigger,
            product,
            client_order_id,
            account,
        } => {
            let order_type = order_type.unwrap_or(if price.is_some() {
                TypeArg::Limit
            } else {
                TypeArg::Market
            });
            let body = object(vec![
                (
                    "client_order_id",
                    Some(
                        client_order_id
                            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
                            .into(),
                    ),
                ),
                ("exchange", Some(exchange.into())),
                ("symbol", Some(symbol.into())),
                ("side", Some(wire(side).into())),
                ("order_type", Some(wire(order_type).into())),
                ("quantity", Some(quantity.into())),
                ("price", price.map(Into::into)),
                ("trigger_price", trigger.map(Into::into)),
                ("product", Some(wire(product).into())),
                ("account", account.map(Into::into)),
            ]);
            ("place", body, Shape::Order)
        }
        OrderCommand::Modify {
            order,
            quantity,
            price,
            trigger,
        } => {
            let mut body = order.fields();
            for (key, value) in [
                ("quantity", quantity),
                ("price", price),
                ("trigger_price", trigger),
            ] {
                if let Some(value) = value {
                    body.insert(key.into(), value.into());
                }
            }
            ("modify", Value::Object(body), Shape::Order)
        }
        OrderCommand::Cancel { order } => ("cancel", Value::Object(order.fields()), Shape::Order),
        OrderCommand::Get { order } => ("get", Value::Object(order.fields()), Shape::Order),
        OrderCommand::List { status, limit } => {
            let mut body = json!({ "limit": limit });
            if !status.is_empty() {
                let status: Vec<String> = status.into_iter().map(wire).collect();
                body["status"] = json!(status);
            }
            ("list", body, Shape::List("orders", ORDER_COLUMNS))
        }
    };
    let result = session.order(verb, body).await?;
    print_value(common, &result, shape);
    Ok(())
}

/// Runs `pinnacle portfolio …`.
pub async fn portfolio(common: &Common, command: PortfolioCommand) -> anyhow::Result<()> {
    let session = Session::open().await?;
    let (verb, account, shape) = match command {
        PortfolioCommand::Funds { account } => ("funds", account, Shape::Money),
        PortfolioCommand::Positions { account } => (
            "positions",
            account,
            Shape::List(
                "positions",
                &[
                    "exchange",
                    "symbol",
                    "product",
                    "net_quantity",
                    "average_price",
                    "realized_pnl",
                ],
            ),
        ),
        PortfolioCommand::Holdings { account } => (
            "holdings",
            account,
            Shape::List(
                "holdings",
                &["exchange", "symbol", "quantity", "average_price"],
            ),
        ),
        PortfolioCommand::Trades { account } => (
            "trades",
            account,
            Shape::List(
                "trades",
                &[
                    "ts_ms", "order_id", "exchange", "symbol", "side", "quantity", "price",
                ],
            ),
        ),
    };
    let body = object(vec![("account", account.map(Into::into))]);
    let result = session.order(verb, body).await?;
    print_value(common, &result, shape);
    Ok(())
}

/// Runs `pinnacle events`: replays the user's events oldest first through a named ordered
/// consumer filtered to `events.orders.<user>` (the only kind a trader may create on the
/// shipped permissions), then stops when caught up, or follows.
pub async fn events(common: &Common, args: EventsArgs) -> anyhow::Result<()> {
    use async_nats::jetstream::consumer::{push, DeliverPolicy};
    use futures::StreamExt as _;
    let session = Session::open().await?;
    let user_id = session
        .user_id
        .clone()
        .context("set PINNACLE_USER_ID (or use --env-file with DEMO_USER_ID)")?;
    let js = async_nats::jetstream::new(session.client.clone());
    let consumer = js
        .create_consumer_on_stream(
            push::OrderedConfig {
                name: Some(format!("events-{}", uuid::Uuid::new_v4().simple())),
                deliver_subject: session.client.new_inbox(),
                filter_subject: subjects::order_events(&user_id),
                deliver_policy: if args.new {
                    DeliverPolicy::New
                } else {
                    DeliverPolicy::All
                },
                ..Default::default()
            },
            subjects::ORDER_EVENTS_STREAM,
        )
        .await
        .context("opening your order events (ORDER_EVENTS)")?;
    let mut left = consumer.cached_info().num_pending;
    let follow = args.follow || args.new;
    if left == 0 && !follow {
        crate::output::line("(no events)");
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .context("reading your order events")?;
    while let Some(message) = messages.next().await {
        let message = message.context("reading your order events")?;
        let event: Value = Encoding::MsgPack
            .decode(&message.payload)
            .context("an event that is not a Pinnacle order event")?;
        if common.json {
            crate::output::line(&event.to_string());
        } else {
            let order = &event["order"];
            crate::output::line(&format!(
                "{}  {}  {} -> {}  {} {} {} {}",
                cell(&event["ts_ms"]),
                cell(&order["order_id"]),
                cell(&event["previous_status"]),
                cell(&order["status"]),
                cell(&order["side"]),
                cell(&order["quantity"]),
                cell(&order["symbol"]),
                cell(&order["client_order_id"]),
            ));
        }
        left = left.saturating_sub(1);
        if left == 0 && !follow {
            break;
        }
    }
    Ok(())
}

/// Runs `pinnacle md …`.
pub async fn md(common: &Common, command: MdCommand) -> anyhow::Result<()> {
    let session = Session::open().await?;
    let (subject, body, shape) = match command {
        MdCommand::Last { exchange, symbol } => (
            subjects::md::LAST,
            json!({"exchange": exchange, "symbol": symbol}),
            Shape::Fields,
        ),
        MdCommand::Candles {
            exchange,
            symbol,
            interval,
            from,
            to,
        } => (
            subjects::md::CANDLES,
            json!({"exchange": exchange, "symbol": symbol,
                "interval": interval.to_uppercase(), "from": from, "to": to}),
            Shape::List(
                "candles",
                &["ts_ms", "open", "high", "low", "close", "volume"],
            ),
        ),
        MdCommand::Symbols {
            query,
            exchange,
            limit,
        } => (
            subjects::md::SYMBOLS_SEARCH,
            object(vec![
                ("query", Some(query.into())),
                ("exchange", exchange.map(Into::into)),
                ("limit", Some(limit.into())),
            ]),
            Shape::List(
                "instruments",
                &[
                    "exchange",
                    "symbol",
                    "token",
                    "name",
                    "lot_size",
                    "tick_size",
                ],
            ),
        ),
        MdCommand::Lookup { exchange, symbol } => (
            subjects::md::SYMBOLS_LOOKUP,
            json!({"exchange": exchange, "symbol": symbol}),
            Shape::Fields,
        ),
        MdCommand::Status { exchange } => (
            subjects::md::STATUS,
            object(vec![("exchange", exchange.map(Into::into))]),
            Shape::List(
                "exchanges",
                &["exchange", "status", "reason", "next_change_ms"],
            ),
        ),
    };
    let result = session.request(subject.to_string(), body, false).await?;
    print_value(common, &result, shape);
    Ok(())
}

/// The columns of an order table.
const ORDER_COLUMNS: &[&str] = &[
    "order_id",
    "client_order_id",
    "status",
    "side",
    "symbol",
    "order_type",
    "quantity",
    "filled_quantity",
    "price",
    "average_price",
    "reject_reason",
];

/// How a result is laid out as a table.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One order record, field per line.
    Order,
    /// Any map, field per line.
    Fields,
    /// Funds: amounts in rupees.
    Money,
    /// A list under `key`, these columns.
    List(&'static str, &'static [&'static str]),
}

/// Prints `result` as a table, or as JSON with `--json`; a closed pipe ends quietly.
pub fn print_value(common: &Common, result: &Value, shape: Shape) {
    if common.json {
        crate::output::line(&serde_json::to_string_pretty(result).unwrap_or_default());
        return;
    }
    crate::output::text_out(&table(result, shape));
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            items.join(",")
        }
        other => other.to_string(),
    }
}

/// Paise as `₹1234.50` (`-₹0.05` below zero).
fn rupees_text(paise: i64) -> String {
    let sign = if paise < 0 { "-" } else { "" };
    let abs = paise.unsigned_abs();
    format!("{sign}₹{}.{:02}", abs / 100, abs % 100)
}

/// A result as text for people.
fn table(result: &Value, shape: Shape) -> String {
    let empty = Map::new();
    let fields = result.as_object().unwrap_or(&empty);
    match shape {
        Shape::Order | Shape::Fields => {
            let width = fields.keys().map(String::len).max().unwrap_or(0);
            fields
                .iter()
                .map(|(k, v)| format!("{k:width$}  {}\n", cell(v)))
                .collect()
        }
        Shape::Money => fields
            .iter()
            .map(|(k, v)| match v.as_i64() {
                Some(paise) => format!("{k:10} {}\n", rupees_text(paise)),
                None => format!("{k:10} {}\n", cell(v)),
            })
            .collect(),
        Shape::List(key, columns) => {
            let rows: Vec<Vec<String>> = result[key]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|row| columns.iter().map(|c| cell(&row[*c])).collect())
                        .collect()
                })
                .unwrap_or_default();
            if rows.is_empty() {
                return format!("(no {key})\n");
            }
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .chain([c.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<String>| {
                let mut out: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:w$}"))
                    .collect();
                if let Some(last) = out.last_mut() {
                    *last = last.trim_end().to_string();
                }
                out.join("  ") + "\n"
            };
            let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
            for row in rows {
                out.push_str(&line(row));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_error_reply_is_one_readable_line() {
        let error = result_of(json!({"ok": false, "error":
            {"code": "INSUFFICIENT_FUNDS", "message": "needs ₹10"}}))
        .expect_err("an error");
        assert_eq!(error.to_string(), "INSUFFICIENT_FUNDS: needs ₹10");
        assert_eq!(
            result_of(json!({"ok": true, "result": 1})).expect("ok"),
            json!(1)
        );
    }

    #[test]
    fn lists_are_tables_and_funds_are_rupees() {
        let result = json!({"orders": [
            {"order_id": "a", "status": "FILLED", "quantity": 10},
            {"order_id": "bb", "status": "OPEN", "quantity": 5},
        ]});
        let text = table(
            &result,
            Shape::List("orders", &["order_id", "status", "quantity"]),
        );
        assert_eq!(
            text,
            "ORDER_ID  STATUS  QUANTITY\na         FILLED  10\nbb        OPEN    5\n"
        );
        assert_eq!(
            table(&json!({"orders": []}), Shape::List("orders", &["x"])),
            "(no orders)\n"
        );
        let funds = table(&json!({"cash": 100_000_050, "used": -5}), Shape::Money);
        assert!(funds.contains("₹1000000.50"), "{funds}");
        assert!(funds.contains("-₹0.05"), "{funds}");
        let scopes = table(
            &json!({"tokens": [{"id": "t1", "scopes": ["trade", "read"]}]}),
            Shape::List("tokens", &["id", "scopes"]),
        );
        assert_eq!(scopes, "ID  SCOPES\nt1  trade,read\n");
    }
}
