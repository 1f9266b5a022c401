//! Place, modify and cancel orders; the order book, trade book and order details.

use serde_json::{json, Value};

use super::reply::{Ctx, Reply};
use crate::codes;
use crate::json::text;
use crate::orders::record::{order_record, trade_record, Style};
use crate::orders::OrderInput;
use crate::state::lock;

/// The static-IP check of SPEC §1.1: the TCP source address, never the headers.
fn static_ip_refusal(ctx: &Ctx<'_>) -> Option<Reply> {
    let registered = ctx.account.as_ref()?.static_ip?;
    (registered != ctx.ip).then(|| {
        Reply::business(
            codes::GENERAL,
            format!(
                "Request rejected: source IP {} is not the static IP registered for this API key",
                ctx.ip
            ),
        )
    })
}

/// POST placeOrder.
pub fn place(ctx: &Ctx<'_>) -> Reply {
    if let Some(r) = static_ip_refusal(ctx) {
        return r;
    }
    let input = match OrderInput::parse(ctx.body) {
        Ok(i) => i,
        Err((code, msg)) => return Reply::business(code, msg),
    };
    let (symbol, lot, ltp) = {
        let market = lock(&ctx.shared.market);
        match market.get(&input.exchange, &input.token) {
            Some(q)
                if input.symbol.is_empty()
                    || input.symbol.eq_ignore_ascii_case(&q.instrument.symbol) =>
            {
                (q.instrument.symbol.clone(), q.instrument.lot_size, q.ltp)
            }
            _ => return Reply::business(codes::SYMBOL_NOT_FOUND, "Symbol Not Found"),
        }
    };
    let input = OrderInput { symbol, ..input };
    let (order, events) = lock(&ctx.shared.book).place(ctx.client_code(), &input, lot, ltp, ctx.ip);
    ctx.shared.publish(events);
    Reply::Ok(
        json!({"script": order.symbol, "orderid": order.orderid, "uniqueorderid": order.uniqueorderid}),
    )
}

/// POST modifyOrder.
pub fn modify(ctx: &Ctx<'_>) -> Reply {
    if let Some(r) = static_ip_refusal(ctx) {
        return r;
    }
    let orderid = text(ctx.body, "orderid").unwrap_or_default();
    let ltp_of = |e: &str, t: &str| ctx.shared.ltp(e, t).unwrap_or(0);
    let result = lock(&ctx.shared.book).modify(ctx.client_code(), &orderid, ctx.body, ltp_of);
    match result {
        Ok((order, events)) => {
            ctx.shared.publish(events);
            Reply::Ok(json!({"orderid": order.orderid, "uniqueorderid": order.uniqueorderid}))
        }
        Err((code, msg)) => Reply::business(code, msg),
    }
}

/// POST cancelOrder.
pub fn cancel(ctx: &Ctx<'_>) -> Reply {
    if let Some(r) = static_ip_refusal(ctx) {
        return r;
    }
    let orderid = text(ctx.body, "orderid").unwrap_or_default();
    let result = lock(&ctx.shared.book).cancel(ctx.client_code(), &orderid, ctx.body);
    match result {
        Ok((order, events)) => {
            ctx.shared.publish(events);
            Reply::Ok(json!({"orderid": order.orderid, "uniqueorderid": order.uniqueorderid}))
        }
        Err((code, msg)) => Reply::business(code, msg),
    }
}

/// GET getOrderBook: string-typed records; `null` when there are none (as the live API).
pub fn book(ctx: &Ctx<'_>) -> Reply {
    let orders = lock(&ctx.shared.book).orders(ctx.client_code());
    if orders.is_empty() {
        return Reply::Ok(Value::Null);
    }
    Reply::Ok(Value::Array(
        orders
            .iter()
            .map(|o| order_record(o, Style::Book))
            .collect(),
    ))
}

/// GET getTradeBook: one trade per filled order.
pub fn trades(ctx: &Ctx<'_>) -> Reply {
    let orders = lock(&ctx.shared.book).orders(ctx.client_code());
    let trades: Vec<Value> = orders
        .iter()
        .filter(|o| o.filled > 0)
        .map(trade_record)
        .collect();
    if trades.is_empty() {
        return Reply::Ok(Value::Null);
    }
    Reply::Ok(Value::Array(trades))
}

/// GET details/{uniqueorderid}: numeric record. Only the `uniqueorderid` finds the order,
/// as SPEC.md names the route; its `orderid` does not.
pub fn details(ctx: &Ctx<'_>) -> Reply {
    let uid = ctx.path.rsplit('/').next().unwrap_or_default();
    let orders = lock(&ctx.shared.book).orders(ctx.client_code());
    match orders.iter().find(|o| o.uniqueorderid == uid) {
        Some(o) => Reply::Ok(order_record(o, Style::Details)),
        None => Reply::business(codes::ORDER_NOT_FOUND, "Order not found"),
    }
}
