//! Domain types that cross the wire. Field names here are the wire names.
//!
//! Money is never a float: prices are integer **paise** (1 rupee = 100 paise).

pub mod audit;
pub mod events;
pub mod market;
pub mod order;
pub mod portfolio;
pub mod squareoff;
pub mod tick;
pub mod wire_text;

pub use audit::{AuditEvent, AuditOutcome, DecryptReason};
pub use events::{EventPage, EventsRequest, EventsStart, StoredEvent};
pub use market::{
    Candle, CandleReply, CandleRequest, ExchangeStatus, Instrument, LastRequest, MarketPhase,
    SnapshotReply, SnapshotRequest, StatusList, StatusRequest, SymbolList, SymbolLookup,
    SymbolSearch,
};
pub use order::{
    ListRequest, ModifyRequest, OrderEvent, OrderList, OrderRef, OrderReply, OrderRequest,
    OrderStatus, OrderType, Product, Reply, Side,
};
pub use portfolio::{
    Funds, Holding, Holdings, PortfolioRequest, Position, Positions, Trade, Trades,
};
pub use squareoff::{SquareOffFailure, SquareOffReply, SquareOffRequest};
pub use tick::{Book, Depth, FeedMode, Level, MarketTick, Tick};
pub use wire_text::UnknownValue;
