//! The order verbs served by the order worker: the last token of `orders.<user_id>.<verb>`.
//!
//! The constants are the verbs as spelled on the wire (for building subjects); a request's
//! verb is parsed once into [`OrderVerb`], and everything after that matches on the enum.

use std::fmt;
use std::str::FromStr;

/// Place a new order.
pub const PLACE: &str = "place";
/// Change a working order's quantity or price.
pub const MODIFY: &str = "modify";
/// Cancel a working order.
pub const CANCEL: &str = "cancel";
/// Fetch one order.
pub const GET: &str = "get";
/// List orders, newest first.
pub const LIST: &str = "list";
/// The account's cash and margin.
pub const FUNDS: &str = "funds";
/// The account's net positions.
pub const POSITIONS: &str = "positions";
/// The account's fills.
pub const TRADES: &str = "trades";
/// The account's delivery holdings.
pub const HOLDINGS: &str = "holdings";
/// Cancel the account's working intraday orders and close its intraday positions now.
pub const SQUAREOFF: &str = "squareoff";
/// A page of the user's order events from the `ORDER_EVENTS` stream.
pub const EVENTS: &str = "events";
/// Every verb, for error messages and discovery.
pub const ALL: [&str; 11] = [
    PLACE, MODIFY, CANCEL, GET, LIST, FUNDS, POSITIONS, HOLDINGS, TRADES, SQUAREOFF, EVENTS,
];

/// An order verb, parsed from its subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderVerb {
    /// [`PLACE`].
    Place,
    /// [`MODIFY`].
    Modify,
    /// [`CANCEL`].
    Cancel,
    /// [`GET`].
    Get,
    /// [`LIST`].
    List,
    /// [`FUNDS`].
    Funds,
    /// [`POSITIONS`].
    Positions,
    /// [`HOLDINGS`].
    Holdings,
    /// [`TRADES`].
    Trades,
    /// [`SQUAREOFF`].
    SquareOff,
    /// [`EVENTS`].
    Events,
}

impl OrderVerb {
    /// Every verb, in the order of [`ALL`].
    pub const ALL: [Self; 11] = [
        Self::Place,
        Self::Modify,
        Self::Cancel,
        Self::Get,
        Self::List,
        Self::Funds,
        Self::Positions,
        Self::Holdings,
        Self::Trades,
        Self::SquareOff,
        Self::Events,
    ];

    /// The verb as spelled in the subject.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Place => PLACE,
            Self::Modify => MODIFY,
            Self::Cancel => CANCEL,
            Self::Get => GET,
            Self::List => LIST,
            Self::Funds => FUNDS,
            Self::Positions => POSITIONS,
            Self::Holdings => HOLDINGS,
            Self::Trades => TRADES,
            Self::SquareOff => SQUAREOFF,
            Self::Events => EVENTS,
        }
    }

    /// Whether the verb changes orders (and so needs the `trade` scope) rather than
    /// only reading them (`read`).
    pub const fn is_trading(self) -> bool {
        matches!(
            self,
            Self::Place | Self::Modify | Self::Cancel | Self::SquareOff
        )
    }
}

impl fmt::Display for OrderVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subject token that is no order verb.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order verb; expected one of: {}", ALL.join(", "))]
pub struct UnknownVerb;

impl FromStr for OrderVerb {
    type Err = UnknownVerb;

    fn from_str(token: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|verb| verb.as_str() == token)
            .ok_or(UnknownVerb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_parses_back_and_nothing_else_does() {
        for (verb, text) in OrderVerb::ALL.into_iter().zip(ALL) {
            assert_eq!(verb.as_str(), text);
            assert_eq!(text.parse::<OrderVerb>(), Ok(verb));
        }
        for bad in ["", "PLACE", "place ", "plac", "placex", "*", ">", "list.x"] {
            assert_eq!(bad.parse::<OrderVerb>(), Err(UnknownVerb), "{bad:?}");
        }
        let trading: Vec<_> = OrderVerb::ALL
            .into_iter()
            .filter(|v| v.is_trading())
            .collect();
        assert_eq!(
            trading,
            [
                OrderVerb::Place,
                OrderVerb::Modify,
                OrderVerb::Cancel,
                OrderVerb::SquareOff
            ]
        );
    }
}
