//! `md.req.snapshot`: the latest tick of many symbols in one reply, from the last-value
//! cache, with every exchange's status, so a late subscriber or a client that saw a
//! sequence gap rebuilds its picture in one request (docs/PROTOCOL.md, "Snapshots and
//! gap healing").
//!
//! Bounded: at most [`MAX_SYMBOLS`] symbols per request, and never more bytes than the
//! server's `max_payload`. A list past the bound is refused with `RANGE_TOO_LARGE`; a
//! wildcard is paged (`next` → `after`) instead.

use pinnacle_common::codec::Encoding;
use pinnacle_common::error::{ErrorBody, ErrorCode};
use pinnacle_common::model::LastRequest;
use pinnacle_common::model::{ExchangeStatus, MarketTick, SnapshotReply, SnapshotRequest};

use crate::cache::LastValues;
pub use crate::filter::TickFilter;
use crate::instruments::Catalog;

/// Most symbols in one request (a list) or one page (a wildcard).
pub const MAX_SYMBOLS: usize = 1000;
/// Largest snapshot request body: room for [`MAX_SYMBOLS`] listed symbols (other
/// `md.req.*` requests keep the service's 16 KiB limit).
pub const MAX_REQUEST_BYTES: usize = 96 * 1024;
/// Room left in `max_payload` for the reply envelope and headers.
const ENVELOPE_BYTES: usize = 4096;

/// How big a reply may be, and how it is measured.
#[derive(Debug, Clone, Copy)]
struct Fit {
    /// The reply's encoding (its size depends on it).
    encoding: Encoding,
    /// The server's `max_payload`, for the messages.
    max_payload: usize,
    /// Bytes the encoded reply may take: `max_payload` less the envelope.
    budget: usize,
}

impl Fit {
    /// Whether `reply` fits the budget once encoded.
    fn fits(&self, reply: &SnapshotReply) -> Result<bool, ErrorBody> {
        Ok(encoded_len(self.encoding, reply)? <= self.budget)
    }
}

/// Answers one snapshot request. `statuses` are every exchange's current status;
/// `max_payload` is the server's limit, which the encoded reply must fit.
pub fn answer(
    cache: &LastValues,
    catalog: &Catalog,
    request: &SnapshotRequest,
    statuses: Vec<ExchangeStatus>,
    encoding: Encoding,
    max_payload: usize,
) -> Result<SnapshotReply, ErrorBody> {
    let fit = Fit {
        encoding,
        max_payload,
        budget: max_payload.saturating_sub(ENVELOPE_BYTES),
    };
    let empty = SnapshotReply {
        ticks: Vec::new(),
        missing: Vec::new(),
        status: statuses,
        next: None,
        ts_ms: chrono::Utc::now().timestamp_millis(),
    };
    match (&request.subject, request.symbols.is_empty()) {
        (Some(_), false) | (None, true) => Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            "give either symbols (a list) or subject (a md.tick. wildcard)",
        )),
        (None, false) => by_list(cache, catalog, &request.symbols, empty, fit),
        (Some(filter), true) => by_filter(cache, filter, request, empty, fit),
    }
}

/// The latest tick of every listed symbol, in one reply or refused (never cut short).
fn by_list(
    cache: &LastValues,
    catalog: &Catalog,
    symbols: &[LastRequest],
    mut reply: SnapshotReply,
    fit: Fit,
) -> Result<SnapshotReply, ErrorBody> {
    if symbols.len() > MAX_SYMBOLS {
        return Err(too_large(format!(
            "{} symbols asked for; at most {MAX_SYMBOLS} per snapshot",
            symbols.len()
        )));
    }
    (reply.ticks, reply.missing) = look_up(cache, catalog, symbols)?;
    if !fit.fits(&reply)? {
        return Err(too_large(format!(
            "{} ticks do not fit in one {}-byte reply; ask for fewer symbols",
            reply.ticks.len(),
            fit.max_payload
        )));
    }
    Ok(reply)
}

/// The cached ticks of `symbols`, and those listed in the master that have none yet; a
/// symbol in neither is an error.
fn look_up(
    cache: &LastValues,
    catalog: &Catalog,
    symbols: &[LastRequest],
) -> Result<(Vec<MarketTick>, Vec<LastRequest>), ErrorBody> {
    let mut ticks = Vec::with_capacity(symbols.len());
    let mut missing = Vec::new();
    for wanted in symbols {
        let exchange = wanted.exchange.to_ascii_uppercase();
        match cache.get(&exchange, &wanted.symbol) {
            Some(tick) => ticks.push(tick),
            None if catalog.by_symbol(&exchange, &wanted.symbol).is_some() => {
                missing.push(wanted.clone());
            }
            None => {
                crate::exchange::listed(&exchange, catalog)?;
                return Err(crate::exchange::unknown_symbol(&exchange, &wanted.symbol));
            }
        }
    }
    Ok((ticks, missing))
}

/// One page of the ticks matching a subject filter, halved until it fits; `next` names
/// where the following page starts.
fn by_filter(
    cache: &LastValues,
    filter: &str,
    request: &SnapshotRequest,
    template: SnapshotReply,
    fit: Fit,
) -> Result<SnapshotReply, ErrorBody> {
    let filter = TickFilter::parse(filter)?;
    let limit = match request.limit {
        None => MAX_SYMBOLS,
        Some(n) if n == 0 || n as usize > MAX_SYMBOLS => {
            return Err(too_large(format!("limit {n} is outside 1..={MAX_SYMBOLS}")))
        }
        Some(n) => n as usize,
    };
    let (mut page, mut more) = cache.matching(&filter, request.after.as_deref(), limit);
    loop {
        let next = more.then(|| page.last().map(|(s, _)| s.clone())).flatten();
        let reply = SnapshotReply {
            ticks: page.iter().map(|(_, t)| t.clone()).collect(),
            missing: Vec::new(),
            status: template.status.clone(),
            next,
            ts_ms: template.ts_ms,
        };
        if fit.fits(&reply)? {
            return Ok(reply);
        }
        if page.len() <= 1 {
            return Err(too_large(format!(
                "one tick does not fit in a {}-byte reply",
                fit.max_payload
            )));
        }
        // Too big for one message: halve the page; the rest comes with `next`.
        page.truncate(page.len() / 2);
        more = true;
    }
}

fn too_large(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::RangeTooLarge, message)
}

fn encoded_len(encoding: Encoding, reply: &SnapshotReply) -> Result<usize, ErrorBody> {
    encoding
        .encode(reply)
        .map(|b| b.len())
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinnacle_common::model::{Book, Level, Tick};

    /// A tick with a full five-level book, so each one encodes to a few hundred bytes.
    fn tick(symbol: &str, seq: u64) -> MarketTick {
        let mut tick = MarketTick::from_core(Tick {
            exchange: "NSE".into(),
            symbol: symbol.into(),
            seq,
            ts_ms: 1,
            ltp: 100_000,
            last_qty: 1,
            volume: 1,
            bid: 99_995,
            ask: 100_005,
        });
        let level = |i: i64| Level {
            price: 100_000 + i,
            qty: 1_000 + i,
            orders: i,
        };
        tick.depth = Some(Box::new(Book {
            bids: (1..=5).map(|i| level(-i)).collect(),
            asks: (1..=5).map(level).collect(),
        }));
        tick
    }

    fn cache(n: usize) -> LastValues {
        let cache = LastValues::new();
        let ticks: Vec<_> = (0..n).map(|i| tick(&format!("S{i:04}"), 7)).collect();
        cache.update(&ticks);
        cache
    }

    fn by_subject(subject: &str) -> SnapshotRequest {
        SnapshotRequest {
            subject: Some(subject.into()),
            ..SnapshotRequest::default()
        }
    }

    #[test]
    fn a_page_that_would_not_fit_max_payload_is_shortened_and_continued() {
        let (cache, catalog) = (cache(200), Catalog::sample());
        let one = Encoding::Json
            .encode(&tick("S0000", 7))
            .expect("encode")
            .len();
        // Room for about 40 ticks: the 200 come in several pages, none past the limit.
        let max_payload = ENVELOPE_BYTES + 40 * one;
        let mut request = by_subject("md.tick.NSE.*");
        let mut seen = Vec::new();
        loop {
            let page = answer(
                &cache,
                &catalog,
                &request,
                vec![],
                Encoding::Json,
                max_payload,
            )
            .expect("a page");
            let len = Encoding::Json.encode(&page).expect("encode").len();
            assert!(len <= max_payload - ENVELOPE_BYTES, "{len} bytes");
            assert!(!page.ticks.is_empty());
            seen.extend(page.ticks.iter().map(|t| t.symbol.clone()));
            match page.next {
                Some(next) => request.after = Some(next),
                None => break,
            }
        }
        let expected: Vec<_> = (0..200).map(|i| format!("S{i:04}")).collect();
        assert_eq!(seen, expected, "every tick once, in subject order");

        // A list that does not fit is refused, never cut short silently.
        let list = SnapshotRequest {
            symbols: (0..200)
                .map(|i| LastRequest {
                    exchange: "NSE".into(),
                    symbol: format!("S{i:04}"),
                })
                .collect(),
            ..SnapshotRequest::default()
        };
        let refused = answer(&cache, &catalog, &list, vec![], Encoding::Json, max_payload);
        assert_eq!(
            refused.map(|_| ()).map_err(|e| e.code),
            Err(ErrorCode::RangeTooLarge)
        );
        // With room, the same list is answered in full.
        let fits =
            answer(&cache, &catalog, &list, vec![], Encoding::MsgPack, 1 << 20).expect("fits");
        assert_eq!(fits.ticks.len(), 200);
        assert!(fits.ticks.iter().all(|t| t.seq == 7));
    }
}
