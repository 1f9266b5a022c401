//! The Angel One broker: SmartAPI behind the [`Broker`](pinnacle_common::broker::Broker)
//! port.
//!
//! - Sessions come from the account's stored tokens, or a login with its PIN and TOTP
//!   seed; AG8001 renews them once and retries ([`pinnacle_smartapi::session`]).
//! - Every order carries a tag derived from Pinnacle's order id. When a place request
//!   times out or gets an empty reply, the order is looked up by that tag in the order book
//!   instead of being sent again; if it is not there, the order is `UNKNOWN` and
//!   reconciliation asks again later.
//! - Place is one request once the account's order-update stream is live: its reply
//!   carries the broker's order id, the order is OPEN, and fills, cancellations and
//!   rejections arrive on the stream. Before that (a session's first order), one details
//!   request reads the state, since nothing else would report it.
//!   Modify and cancel name the variety place sent, derived from the stored order type
//!   ([`map::variety`]), so they never read the order book; their replies carry only ids,
//!   so one details request (10/s) says how much has filled.
//! - Regulatory settings are checked before anything is sent: the account's registered
//!   static IP (bound locally, or reached through its proxy) and its algo id; MARKET orders
//!   are refused (barred for API orders under NSE's retail algo framework).
//! - [`client`] holds the broker's value and its shared steps, [`broker`] implements
//!   the trait, [`creds`] reads an account's credentials. [`store`] keeps sessions encrypted and audited in the account row, [`symbols`] finds
//!   symbol tokens, [`map`] translates records, and [`updates`] follows each account's
//!   order-update WebSocket into the order state machine, [`watch`] makes sure an account
//!   with working orders is followed even when nobody sends a request; `late` reports an
//!   order the stream shows after Pinnacle settled it as `NOT_AT_BROKER`.

pub mod map;
pub mod prewarm;
pub mod store;
pub mod symbols;
pub mod updates;
pub mod watch;

mod broker;
mod client;
mod creds;
mod late;

pub use client::{AngelOneBroker, NAME, RATE_LIMIT_WAIT};
