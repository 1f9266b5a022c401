//! Market data over REST: LTP, quote (LTP/OHLC/FULL), scrip search, deterministic
//! historical candles and open interest (SPEC §3.3, §4). Candles cover the exchange's
//! session on its trading days only (no weekends or holidays) and stop at the simulator's
//! clock.

use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::reply::{Ctx, Reply};
use crate::calendar::{ist, SimCalendar};
use crate::codes;
use crate::hash::{hash_str, mix};
use crate::json::text;
use crate::market::{rupees, Quote};
use crate::state::lock;

/// POST getLtpData.
pub fn ltp(ctx: &Ctx<'_>) -> Reply {
    let exchange = text(ctx.body, "exchange")
        .unwrap_or_default()
        .to_ascii_uppercase();
    let token = text(ctx.body, "symboltoken").unwrap_or_default();
    let market = lock(&ctx.shared.market);
    let Some(q) = market.get(&exchange, &token) else {
        return Reply::business(codes::SYMBOL_NOT_FOUND, "Symbol Not Found");
    };
    Reply::Ok(json!({
        "exchange": exchange, "tradingsymbol": q.instrument.symbol, "symboltoken": token,
        "open": rupees(q.open), "high": rupees(q.high), "low": rupees(q.low),
        "close": rupees(q.close), "ltp": rupees(q.ltp),
    }))
}

/// POST market/v1/quote.
pub fn quote(ctx: &Ctx<'_>) -> Reply {
    let mode = text(ctx.body, "mode")
        .unwrap_or_default()
        .to_ascii_uppercase();
    if !matches!(mode.as_str(), "LTP" | "OHLC" | "FULL") {
        return Reply::business(codes::GENERAL, "Invalid mode");
    }
    let Some(tokens) = ctx.body.get("exchangeTokens").and_then(Value::as_object) else {
        return Reply::business(codes::GENERAL, "Invalid exchangeTokens");
    };
    let requested: Vec<(String, String)> = tokens
        .iter()
        .flat_map(|(ex, list)| {
            let list = list.as_array().cloned().unwrap_or_default();
            list.into_iter().map(move |t| {
                (
                    ex.to_ascii_uppercase(),
                    match t {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                )
            })
        })
        .collect();
    if requested.len() > 50 {
        return Reply::business(codes::GENERAL, "Maximum 50 tokens allowed per request");
    }
    let market = lock(&ctx.shared.market);
    let (mut fetched, mut unfetched) = (Vec::new(), Vec::new());
    for (ex, token) in requested {
        match market.get(&ex, &token) {
            Some(q) => fetched.push(quote_row(q, &mode)),
            // SPEC §3.3: the DOCS example of an empty token is AB4018; a token that is
            // not empty but unknown is "Symbol Not Found" (AB1009, §7), as on getLtpData.
            None if token.trim().is_empty() => unfetched.push(json!({
                "exchange": ex, "symbolToken": token, "message": "Symbol token cannot be empty",
                "errorCode": codes::EMPTY_SYMBOL_TOKEN,
            })),
            None => unfetched.push(json!({
                "exchange": ex, "symbolToken": token, "message": "Symbol Not Found",
                "errorCode": codes::SYMBOL_NOT_FOUND,
            })),
        }
    }
    Reply::Ok(json!({"fetched": fetched, "unfetched": unfetched}))
}

fn quote_row(q: &Quote, mode: &str) -> Value {
    let i = &q.instrument;
    let mut row = json!({"exchange": i.exchange, "tradingSymbol": i.symbol, "symbolToken": i.token, "ltp": rupees(q.ltp)});
    let Some(m) = row.as_object_mut() else {
        return row;
    };
    if mode != "LTP" {
        for (k, v) in [
            ("open", q.open),
            ("high", q.high),
            ("low", q.low),
            ("close", q.close),
        ] {
            m.insert(k.into(), json!(rupees(v)));
        }
    }
    if mode == "FULL" {
        let (upper, lower) = q.circuits();
        let t = chrono::DateTime::from_timestamp_millis(q.exchange_ms)
            .unwrap_or_default()
            .with_timezone(&ist());
        let stamp = t.format("%d-%b-%Y %H:%M:%S").to_string();
        let change = q.ltp - q.close;
        let level = |k: i64, sign: i64| json!({"price": rupees(q.ltp + sign * k * q.tick_size()), "quantity": 100 * k, "orders": k});
        let extra = json!({
            "lastTradeQty": q.last_qty, "exchFeedTime": stamp, "exchTradeTime": stamp,
            "netChange": rupees(change), "percentChange": ((change as f64 * 10_000.0 / q.close.max(1) as f64).round() / 100.0),
            "avgPrice": rupees(q.average_price()), "tradeVolume": q.volume, "opnInterest": q.open_interest,
            "lowerCircuit": rupees(lower), "upperCircuit": rupees(upper),
            "totBuyQuan": 1500, "totSellQuan": 1500, "52WeekLow": rupees(q.close * 7 / 10), "52WeekHigh": rupees(q.close * 13 / 10),
            "depth": {"buy": (1..=5).map(|k| level(k, -1)).collect::<Vec<_>>(), "sell": (1..=5).map(|k| level(k, 1)).collect::<Vec<_>>()},
        });
        if let Some(e) = extra.as_object() {
            m.extend(e.clone());
        }
    }
    row
}

/// POST searchScrip: case-insensitive substring of the symbol on one exchange.
pub fn search(ctx: &Ctx<'_>) -> Reply {
    let exchange = text(ctx.body, "exchange")
        .unwrap_or_default()
        .to_ascii_uppercase();
    let needle = text(ctx.body, "searchscrip")
        .unwrap_or_default()
        .to_ascii_uppercase();
    let market = lock(&ctx.shared.market);
    let mut rows: Vec<Value> = market
        .quotes
        .values()
        .map(|q| &q.instrument)
        .filter(|i| {
            i.exchange == exchange
                && !needle.is_empty()
                && i.symbol.to_ascii_uppercase().contains(&needle)
        })
        .map(|i| json!({"exchange": i.exchange, "tradingsymbol": i.symbol, "symboltoken": i.token}))
        .collect();
    rows.sort_by(|a, b| {
        a["tradingsymbol"]
            .as_str()
            .cmp(&b["tradingsymbol"].as_str())
    });
    Reply::Ok(Value::Array(rows))
}

/// (minutes per candle, max days per request) for a SPEC §4 interval.
fn interval(name: &str) -> Option<(i64, i64)> {
    Some(match name {
        "ONE_MINUTE" => (1, 30),
        "THREE_MINUTE" => (3, 60),
        "FIVE_MINUTE" => (5, 100),
        "TEN_MINUTE" => (10, 100),
        "FIFTEEN_MINUTE" => (15, 200),
        "THIRTY_MINUTE" => (30, 200),
        "ONE_HOUR" => (60, 400),
        "ONE_DAY" => (1440, 2000),
        _ => return None,
    })
}

/// A candle request's interval and dates.
#[derive(Debug, Clone, Copy)]
struct Range {
    /// Minutes per candle (1440 for ONE_DAY).
    minutes: i64,
    /// First and last candle start asked for, IST.
    from: NaiveDateTime,
    to: NaiveDateTime,
}

/// What a symbol's simulated history is drawn around.
#[derive(Debug, Clone, Copy)]
struct Series {
    /// Previous close, paise.
    base: i64,
    tick: i64,
    /// Indices trade no volume.
    index: bool,
    lot: i64,
}

/// POST getCandleData (or getOIData when `oi`): deterministic for the same request.
pub fn candles(ctx: &Ctx<'_>, oi: bool) -> Reply {
    let exchange = text(ctx.body, "exchange")
        .unwrap_or_default()
        .to_ascii_uppercase();
    let token = text(ctx.body, "symboltoken").unwrap_or_default();
    let range = match requested_range(ctx.body) {
        Ok(range) => range,
        Err(reply) => return reply,
    };
    let series = {
        let market = lock(&ctx.shared.market);
        let Some(q) = market.get(&exchange, &token) else {
            return Reply::business(codes::SYMBOL_NOT_FOUND, "Symbol Not Found");
        };
        Series {
            base: q.close,
            tick: q.tick_size(),
            index: q.instrument.is_index(),
            lot: q.instrument.lot_size.max(1),
        }
    };
    if oi && matches!(exchange.as_str(), "NSE" | "BSE") {
        return Reply::business(
            codes::GENERAL,
            "Open interest is available for F&O tokens only",
        );
    }
    let seed = hash_str(&format!("{exchange}:{token}"));
    let now = ctx.shared.clock.now();
    let mut rows = Vec::new();
    let mut day = range.from.date();
    while day <= range.to.date() && rows.len() < 50_000 {
        let Some(midnight) = ist()
            .from_local_datetime(&day.and_time(NaiveTime::MIN))
            .single()
        else {
            break;
        };
        for at in day_starts(
            &ctx.shared.config.calendar,
            &exchange,
            midnight,
            &range,
            now,
        ) {
            let stamp = at.format("%Y-%m-%dT%H:%M:%S%:z").to_string();
            let h = mix(seed ^ at.timestamp() as u64);
            rows.push(if oi {
                json!({"time": stamp, "oi": 100_000 + (h % 50_000) as i64 * series.lot})
            } else {
                let lot = if series.index { 0 } else { series.lot };
                candle(stamp, series.base, series.tick, h, lot)
            });
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    Reply::Ok(Value::Array(rows))
}

/// The interval and dates of a candle request, within the interval's range limit.
fn requested_range(body: &Value) -> Result<Range, Reply> {
    let Some((minutes, max_days)) = interval(&text(body, "interval").unwrap_or_default()) else {
        return Err(Reply::business(codes::GENERAL, "Invalid interval"));
    };
    let parse = |k: &str| {
        NaiveDateTime::parse_from_str(text(body, k).unwrap_or_default().trim(), "%Y-%m-%d %H:%M")
            .ok()
    };
    let (Some(from), Some(to)) = (parse("fromdate"), parse("todate")) else {
        return Err(Reply::business(
            codes::GENERAL,
            "Invalid date format, expected yyyy-MM-dd HH:mm",
        ));
    };
    if to < from {
        return Err(Reply::business(
            codes::GENERAL,
            "todate must not be before fromdate",
        ));
    }
    if to - from > Duration::days(max_days) {
        return Err(Reply::business(
            codes::GENERAL,
            format!("Requested range exceeds {max_days} days for this interval"),
        ));
    }
    Ok(Range { minutes, from, to })
}

/// The candle starts of the day beginning at `midnight` (IST): only on trading days, and
/// nothing the clock has not reached (a candle appears once its interval has begun, a
/// daily one once the session has opened).
fn day_starts(
    calendar: &SimCalendar,
    exchange: &str,
    midnight: DateTime<FixedOffset>,
    range: &Range,
    now: DateTime<Utc>,
) -> Vec<DateTime<FixedOffset>> {
    let (open_min, close_min) = SimCalendar::session(exchange);
    let day = midnight.date_naive();
    let session_open = midnight + Duration::minutes(open_min);
    let mut starts = Vec::new();
    if !calendar.is_trading_day(exchange, day) || session_open > now {
        return starts;
    }
    if range.minutes == 1440 {
        if day >= range.from.date() {
            starts.push(midnight);
        }
        return starts;
    }
    let mut m = open_min;
    while m < close_min {
        let at = midnight + Duration::minutes(m);
        let naive = at.naive_local();
        if naive >= range.from && naive <= range.to && at <= now {
            starts.push(at);
        }
        m += range.minutes;
    }
    starts
}

fn candle(stamp: String, base: i64, tick: i64, h: u64, lot: i64) -> Value {
    let off = |x: u64| ((x % 401) as i64 - 200) * base / 20_000 / tick * tick;
    let open = base + off(h);
    let close = base + off(h >> 16);
    let high = open.max(close) + ((h >> 32) % 5) as i64 * tick;
    let low = open.min(close) - ((h >> 40) % 5) as i64 * tick;
    let volume = if lot == 0 {
        0
    } else {
        ((h >> 8) % 10_000) as i64 * lot
    };
    json!([
        stamp,
        rupees(open),
        rupees(high),
        rupees(low),
        rupees(close),
        volume
    ])
}
