//! The paper broker: fills orders against the live tick stream, with no real money.
//!
//! It listens to `md.tick.>` and keeps the last tick of every symbol. A market order fills
//! in full at the last traded price; a limit order fills at the last price when that is
//! at or better than its limit, and otherwise rests as `OPEN`. The paper account's client
//! code must be present, as it would be for a real broker, so the credential path is
//! exercised end to end: an account without one (never given, or erased when the account
//! was deleted while orders still refer to it) is refused by `preflight`, before anything
//! is stored.
//!
//! Readiness: a worker joins the queue group once its paper broker has seen a tick
//! ([`PaperBroker`]'s `wait_ready`). For a symbol it has no tick for yet, [`Broker::ready_for`](pinnacle_common::broker::Broker::ready_for)
//! asks the publisher's last-value cache (`md.req.last`); a symbol the publisher does not
//! list is `UNKNOWN_SYMBOL`, and one with no price anywhere yet is `PRICE_UNAVAILABLE`
//! (retryable). Both are answered before anything is stored.
//!
//! With a database it keeps the books ([`crate::engine::ledger`]): accepting an order reserves what it
//! needs atomically (cash for buys and intraday shorts, units of the position for sells),
//! refusing it with `INSUFFICIENT_FUNDS` or `INSUFFICIENT_HOLDINGS`; funds, positions,
//! holdings and trades are read from the books' tables. Every account starts with
//! `PINNACLE_WORKER_PAPER_CASH` paise (₹10,00,000 by default).
//!
//! Hours ([`MarketHours`]): with `PINNACLE_SIM_HOURS=exchange` an order taken while its
//! exchange is closed by the calendar (after hours, pre-open, weekends, holidays; at the
//! worker's clock, `PINNACLE_WORKER_SIM_NOW`) is an *after-market order*, as Angel One
//! treats it: it is accepted and reserved as usual (a MARKET or stop-market order at its
//! reference price from the last tick) and rests `OPEN` however marketable it is; it can
//! be modified and cancelled; the matcher ([`crate::matcher`]) fills it at the first tick
//! of the next session. With `always` (the default) every exchange is always open.
//!
//! Prices: limit and trigger prices must be multiples of the instrument's tick size, learnt
//! from the publisher's instrument master (`md.req.symbols.lookup`) with the symbol's first
//! price, and [`DEFAULT_TICK_SIZE`](crate::engine::ledger::DEFAULT_TICK_SIZE) for a symbol the master does not list; an
//! off-tick price is `INVALID_REQUEST`, refused before anything is stored.

mod broker;
mod hours;
mod prices;
#[cfg(test)]
mod tests;

pub use hours::MarketHours;
pub use prices::{PaperBroker, LAST_VALUE_TIMEOUT};
