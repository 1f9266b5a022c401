//! Subscribe/unsubscribe requests of the market WebSocket (SPEC §8.2, §8.3): validation,
//! limits, error replies and the optional snapshot tick.

use std::collections::HashSet;

use axum::extract::ws::Message;
use serde_json::{json, Value};

use crate::codes;
use crate::config::exchange_name;
use crate::state::{lock, FeedSub, Shared};

/// (mode, exchangeType, token) pairs per connection.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// DEPTH tokens per connection.
pub const MAX_DEPTH_TOKENS: usize = 50;

struct Request {
    subscribe: bool,
    subs: Vec<FeedSub>,
}

fn error(correlation: &str, code: &str, message: &str) -> Vec<Message> {
    let body = json!({"correlationID": correlation, "errorCode": code, "errorMessage": message});
    vec![Message::Text(body.to_string().into())]
}

fn parse(v: &Value) -> Option<Request> {
    let action = match v.get("action")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let params = v.get("params")?;
    let mode = u8::try_from(params.get("mode")?.as_i64()?)
        .ok()
        .filter(|m| (1..=4).contains(m))?;
    let list = params.get("tokenList")?.as_array()?;
    let mut subs = Vec::new();
    for entry in list {
        let et = u8::try_from(entry.get("exchangeType")?.as_i64()?).ok()?;
        exchange_name(et)?;
        for t in entry.get("tokens")?.as_array()? {
            let token = match t {
                Value::String(s) => s.trim().to_owned(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            if token.is_empty() || token.len() > 25 {
                return None;
            }
            subs.push((mode, et, token));
        }
    }
    if subs.is_empty() {
        return None;
    }
    Some(Request {
        subscribe: matches!(action, 1),
        subs,
    })
    .filter(|_| action == 0 || action == 1)
}

/// Applies one text request from connection `id`; returns the frames to send back.
pub fn handle(shared: &Shared, id: u64, text: &str) -> Vec<Message> {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let correlation = value
        .get("correlationID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(req) = parse(&value) else {
        return error(
            &correlation,
            codes::WS_INVALID_PAYLOAD,
            "Invalid Request Payload",
        );
    };
    let mut feeds = lock(&shared.feeds);
    let Some(conn) = feeds.get_mut(&id) else {
        return Vec::new();
    };
    if !req.subscribe {
        for s in &req.subs {
            conn.subs.remove(s);
        }
        return Vec::new();
    }
    if req.subs.iter().any(|(mode, et, _)| *mode == 4 && *et != 1) {
        return error(
            &correlation,
            codes::WS_INVALID_PAYLOAD,
            "Invalid Request Payload",
        );
    }
    let mut seen = HashSet::new();
    let added: Vec<FeedSub> = req
        .subs
        .into_iter()
        .filter(|s| !conn.subs.contains(s) && seen.insert(s.clone()))
        .collect();
    let depth = conn
        .subs
        .iter()
        .chain(added.iter())
        .filter(|(m, _, _)| *m == 4)
        .count();
    if conn.subs.len() + added.len() > MAX_SUBSCRIPTIONS || depth > MAX_DEPTH_TOKENS {
        return error(
            &correlation,
            codes::WS_LIMIT,
            "Invalid Request. Subscription Limit Exceeded",
        );
    }
    conn.subs.extend(added.iter().cloned());
    drop(feeds);
    if shared.config.snapshot_on_subscribe {
        super::ticks::packets(shared, &added)
    } else {
        Vec::new()
    }
}
