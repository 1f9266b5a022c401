//! The trader's verbs over NATS, as docs/PROTOCOL.md defines them: `order
//! place|modify|cancel|get|list|squareoff`, `portfolio funds|positions|holdings|trades`, `events`
//! (read and follow your order events, stored in `ORDER_EVENTS`) and `md
//! last|candles|symbols|lookup|status`.
//!
//! Each verb sends one request and prints the result as a table for people, or as JSON
//! with `--json` for scripts. A refused request prints one line, `error: CODE: message`,
//! and exits non-zero. Settings come from the environment, which `--env-file` (or
//! `PINNACLE_ENV_FILE`) fills first: `NATS_URL`, `PINNACLE_USER_ID`/`DEMO_USER_ID`,
//! `PINNACLE_API_TOKEN`/`DEMO_API_TOKEN` (the `dev.env` that `pinnacle dev` writes has
//! them all).
//!
//! # Layout
//! - [`args`]: the flags and the enums they take; [`session`]: the connection and its
//!   request-reply; tables come from [`crate::table`].
//! - this file: the verbs, each building one request.

pub mod args;
pub mod session;

use anyhow::Context as _;
use futures::FutureExt as _;
use pinnacle_common::subjects;
use serde_json::{json, Value};

pub use crate::table::Shape;
pub use args::{
    Common, EventsArgs, MdCommand, OrderCommand, OrderRef, PlaceArgs, PortfolioCommand, ProductArg,
    SideArg, StatusArg, TypeArg,
};

use crate::table::cell;
use args::wire;
use session::Session;

/// Prints `result` as a table, or as JSON with `--json`; a closed pipe ends quietly.
pub fn print_value(common: &Common, result: &Value, shape: Shape) {
    if common.json {
        crate::output::line(&serde_json::to_string_pretty(result).unwrap_or_default());
        return;
    }
    crate::output::text_out(&crate::table::render(result, shape));
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
        OrderCommand::Place(place) => ("place", place_body(place), Shape::Order),
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
        OrderCommand::SquareOff { account } => {
            let body = object(vec![("account", account.map(Into::into))]);
            let result = session.order("squareoff", body).await?;
            print_square_off(common, &result);
            return Ok(());
        }
    };
    let result = session.order(verb, body).await?;
    print_value(common, &result, shape);
    Ok(())
}

/// Prints a square-off's reply: what it cancelled, its closing orders and what it could
/// not do (as JSON with `--json`).
fn print_square_off(common: &Common, result: &Value) {
    if common.json {
        print_value(common, result, Shape::Fields);
        return;
    }
    let mut failed = result["failed"].clone();
    for failure in failed.as_array_mut().into_iter().flatten() {
        failure["code"] = failure["error"]["code"].clone();
        failure["message"] = failure["error"]["message"].clone();
    }
    let sections = [
        (
            "Cancelled",
            json!({ "orders": result["cancelled"] }),
            ORDER_COLUMNS,
        ),
        (
            "Closing",
            json!({ "orders": result["closing"] }),
            ORDER_COLUMNS,
        ),
        (
            "Not done (run it again once the reason has passed)",
            json!({ "orders": failed }),
            &["exchange", "symbol", "order_id", "code", "message"][..],
        ),
    ];
    for (title, rows, columns) in sections {
        crate::output::line(&format!("{title}:"));
        crate::output::text_out(&crate::table::render(&rows, Shape::List("orders", columns)));
    }
}

/// The body of `order place`: a limit order with `--price`, a market order without,
/// unless `--type` says otherwise; a new client order id unless one is given.
fn place_body(place: PlaceArgs) -> Value {
    let order_type = place.order_type.unwrap_or(if place.price.is_some() {
        TypeArg::Limit
    } else {
        TypeArg::Market
    });
    let client_order_id = place
        .client_order_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    object(vec![
        ("client_order_id", Some(client_order_id.into())),
        ("exchange", Some(place.exchange.into())),
        ("symbol", Some(place.symbol.into())),
        ("side", Some(wire(place.side).into())),
        ("order_type", Some(wire(order_type).into())),
        ("quantity", Some(place.quantity.into())),
        ("price", place.price.map(Into::into)),
        ("trigger_price", place.trigger.map(Into::into)),
        ("product", Some(wire(place.product).into())),
        ("account", place.account.map(Into::into)),
    ])
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

/// Runs `pinnacle events`: reads the user's events oldest first, a page at a time through
/// the `events` verb (traders create no JetStream consumers), then stops when caught up,
/// or follows: each event announced on `events.orders.<user>` fetches the next page, and
/// so does a quiet [`FOLLOW_POLL`], which heals an announcement missed in a reconnect.
pub async fn events(common: &Common, args: EventsArgs) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let session = Session::open().await?;
    let follow = args.follow || args.new;
    // Subscribed before the first page, so an event stored meanwhile is not waited for.
    let mut notices = if follow {
        let subject = subjects::order_events(session.user_id()?);
        let subscriber = session.client().subscribe(subject).await;
        Some(subscriber.context("following your order events")?)
    } else {
        None
    };
    let mut request = if args.new {
        json!({"since_ms": chrono::Utc::now().timestamp_millis()})
    } else {
        json!({})
    };
    let mut printed = 0_u64;
    loop {
        let page = match session
            .order(subjects::verbs::EVENTS, request.clone())
            .await
        {
            Ok(page) => page,
            // Following, a refusal that says "not now" (JetStream unavailable) is waited
            // out like a quiet stream.
            Err(error) if follow && is_retryable(&error) => {
                eprintln!("{error}; asking again in {FOLLOW_POLL:?}");
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        if page["rewound"] == true {
            eprintln!(
                "the order event stream was re-created since the last page: reading the new \
                 one from its first event (earlier events are no longer in it)"
            );
        }
        for stored in page["events"].as_array().into_iter().flatten() {
            crate::output::line(&event_line(common, &stored["event"]));
            printed += 1;
        }
        // The position, and the stream it counts in, so a re-created stream is noticed.
        request = json!({"after": page["last_sequence"], "stream": page["stream"]});
        if page["pending"].as_u64().unwrap_or(0) > 0 {
            continue;
        }
        let Some(notices) = notices.as_mut() else {
            if printed == 0 {
                crate::output::line("(no events)");
            }
            return Ok(());
        };
        // Caught up: wait for the next announcement (or the poll), then take whatever
        // else arrived meanwhile, so a burst of events costs one page.
        if let Ok(None) = tokio::time::timeout(FOLLOW_POLL, notices.next()).await {
            anyhow::bail!("the connection closed while following your order events");
        }
        while let Some(Some(_)) = notices.next().now_or_never() {}
    }
}

/// Whether `error` is a refusal the protocol says to resend
/// ([`pinnacle_common::error::ErrorCode::is_retryable`]).
fn is_retryable(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<pinnacle_common::error::ErrorBody>()
        .is_some_and(|refusal| refusal.code.is_retryable())
}

/// How long `events --follow` waits for an announcement before it asks anyway.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// One order event as `events` prints it: JSON with `--json`, else one line.
fn event_line(common: &Common, event: &Value) -> String {
    if common.json {
        return event.to_string();
    }
    let order = &event["order"];
    format!(
        "{}  {}  {} -> {}  {} {} {} {}",
        cell(&event["ts_ms"]),
        cell(&order["order_id"]),
        cell(&event["previous_status"]),
        cell(&order["status"]),
        cell(&order["side"]),
        cell(&order["quantity"]),
        cell(&order["symbol"]),
        cell(&order["client_order_id"]),
    )
}

/// Runs `pinnacle md …`.
pub async fn md(common: &Common, command: MdCommand) -> anyhow::Result<()> {
    let session = Session::open().await?;
    let (subject, body, shape) = md_request(command);
    let result = session.request(subject.to_string(), body, false).await?;
    print_value(common, &result, shape);
    Ok(())
}

/// The subject, body and table shape of one `md` request.
fn md_request(command: MdCommand) -> (&'static str, Value, Shape) {
    match command {
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
    }
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
