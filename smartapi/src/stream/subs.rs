//! The desired subscription set, its limits (SPEC §8.3), and the JSON subscribe/unsubscribe
//! requests (SPEC §8.2) it turns into, in batches.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::ticks::{ExchangeType, Mode};

/// Server limit: (token, mode) pairs per connection.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// Server limit: DEPTH tokens per connection (and DEPTH is NSE_CM only).
pub const MAX_DEPTH_TOKENS: usize = 50;
/// Tokens are at most 25 ASCII bytes on the wire.
pub const MAX_TOKEN_LEN: usize = 25;

/// One instrument on the feed: exchange type plus exchange token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instrument {
    pub exchange: ExchangeType,
    pub token: String,
}

impl Instrument {
    pub fn new(exchange: ExchangeType, token: impl Into<String>) -> Self {
        Self {
            exchange,
            token: token.into(),
        }
    }
}

/// A subscription request the client refuses before it reaches the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("subscription limit: {requested} (token, mode) pairs requested, at most {MAX_SUBSCRIPTIONS} per connection")]
    TooManySubscriptions { requested: usize },
    #[error("DEPTH mode is only for exchange type 1 (NSE_CM), not {0:?}")]
    DepthExchange(ExchangeType),
    #[error("DEPTH mode: {requested} tokens requested, at most {MAX_DEPTH_TOKENS}")]
    TooManyDepthTokens { requested: usize },
    #[error("invalid token {0:?}: must be 1 to 25 printable ASCII characters")]
    InvalidToken(String),
}

/// Action codes of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Unsubscribe = 0,
    Subscribe = 1,
}

/// What the client wants subscribed; replayed after every reconnect.
#[derive(Debug, Default, Clone)]
pub(crate) struct SubscriptionSet {
    entries: BTreeSet<(Mode, Instrument)>,
}

impl SubscriptionSet {
    /// Adds `instruments` in `mode`, all or nothing. Duplicates are free (as on the server).
    pub fn add(&mut self, mode: Mode, instruments: &[Instrument]) -> Result<(), SubscribeError> {
        for i in instruments {
            let printable = i.token.bytes().all(|b| b.is_ascii_graphic());
            if i.token.is_empty() || i.token.len() > MAX_TOKEN_LEN || !printable {
                return Err(SubscribeError::InvalidToken(i.token.clone()));
            }
            if mode == Mode::Depth && i.exchange != ExchangeType::NseCm {
                return Err(SubscribeError::DepthExchange(i.exchange));
            }
        }
        let new: BTreeSet<(Mode, Instrument)> = instruments
            .iter()
            .map(|i| (mode, i.clone()))
            .filter(|e| !self.entries.contains(e))
            .collect();
        let requested = self.entries.len() + new.len();
        if requested > MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooManySubscriptions { requested });
        }
        if mode == Mode::Depth {
            let requested = self.in_mode(Mode::Depth).count() + new.len();
            if requested > MAX_DEPTH_TOKENS {
                return Err(SubscribeError::TooManyDepthTokens { requested });
            }
        }
        self.entries.extend(new);
        Ok(())
    }

    /// Removes `instruments` from `mode`; unknown ones are ignored.
    pub fn remove(&mut self, mode: Mode, instruments: &[Instrument]) {
        for i in instruments {
            self.entries.remove(&(mode, i.clone()));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn in_mode(&self, mode: Mode) -> impl Iterator<Item = &Instrument> {
        self.entries
            .iter()
            .filter(move |(m, _)| *m == mode)
            .map(|(_, i)| i)
    }

    /// Every subscribe request needed to restore the whole set on a fresh connection.
    pub fn resubscribe_requests(&self, batch: usize, ids: &mut CorrelationIds) -> Vec<String> {
        let mut by_mode: BTreeMap<Mode, Vec<Instrument>> = BTreeMap::new();
        for (mode, i) in &self.entries {
            by_mode.entry(*mode).or_default().push(i.clone());
        }
        by_mode
            .into_iter()
            .flat_map(|(mode, list)| requests(Action::Subscribe, mode, &list, batch, ids))
            .collect()
    }
}

/// Short alphanumeric correlation IDs (≤10 chars), echoed back in error replies.
#[derive(Debug, Default)]
pub(crate) struct CorrelationIds(u32);

impl CorrelationIds {
    pub fn next_id(&mut self) -> String {
        self.0 = self.0.wrapping_add(1);
        format!("pn{:08x}", self.0)
    }
}

/// JSON request texts for `instruments` in `mode`, at most `batch` tokens each, with
/// `tokenList` grouped by exchange type.
pub(crate) fn requests(
    action: Action,
    mode: Mode,
    instruments: &[Instrument],
    batch: usize,
    ids: &mut CorrelationIds,
) -> Vec<String> {
    instruments
        .chunks(batch.max(1))
        .map(|chunk| {
            let mut by_exchange: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
            for i in chunk {
                by_exchange
                    .entry(i.exchange.code())
                    .or_default()
                    .push(&i.token);
            }
            let token_list: Vec<_> = by_exchange
                .into_iter()
                .map(|(exchange, tokens)| json!({"exchangeType": exchange, "tokens": tokens}))
                .collect();
            json!({
                "correlationID": ids.next_id(),
                "action": action as u8,
                "params": {"mode": mode.code(), "tokenList": token_list},
            })
            .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nse(n: usize) -> Vec<Instrument> {
        (0..n)
            .map(|i| Instrument::new(ExchangeType::NseCm, i.to_string()))
            .collect()
    }

    #[test]
    fn limits_are_enforced_all_or_nothing() {
        let mut s = SubscriptionSet::default();
        s.add(Mode::Ltp, &nse(600)).expect("fits");
        s.add(Mode::Ltp, &nse(600)).expect("duplicates are free");
        assert_eq!(
            s.add(Mode::Quote, &nse(401)),
            Err(SubscribeError::TooManySubscriptions { requested: 1001 })
        );
        assert_eq!(s.len(), 600);
        assert_eq!(
            s.add(Mode::Depth, &[Instrument::new(ExchangeType::NseFo, "1")]),
            Err(SubscribeError::DepthExchange(ExchangeType::NseFo))
        );
        s.add(Mode::Depth, &nse(50)).expect("50 depth tokens");
        assert_eq!(
            s.add(Mode::Depth, &[Instrument::new(ExchangeType::NseCm, "x")]),
            Err(SubscribeError::TooManyDepthTokens { requested: 51 })
        );
        for bad in ["", "with space", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"] {
            assert!(matches!(
                s.add(Mode::Ltp, &[Instrument::new(ExchangeType::NseCm, bad)]),
                Err(SubscribeError::InvalidToken(_))
            ));
        }
        s.remove(Mode::Depth, &nse(50));
        assert_eq!(s.len(), 600);
    }

    #[test]
    fn requests_batch_and_group_by_exchange() {
        let mut ids = CorrelationIds::default();
        let list = vec![
            Instrument::new(ExchangeType::NseCm, "10626"),
            Instrument::new(ExchangeType::McxFo, "234230"),
            Instrument::new(ExchangeType::NseCm, "5290"),
        ];
        let out = requests(Action::Subscribe, Mode::Quote, &list, 2, &mut ids);
        assert_eq!(out.len(), 2);
        let first: serde_json::Value = serde_json::from_str(&out[0]).expect("json");
        assert_eq!(first["action"], 1);
        assert_eq!(first["correlationID"], "pn00000001");
        assert_eq!(first["params"]["mode"], 2);
        assert_eq!(
            first["params"]["tokenList"],
            json!([{"exchangeType":1,"tokens":["10626"]},{"exchangeType":5,"tokens":["234230"]}])
        );
    }
}
