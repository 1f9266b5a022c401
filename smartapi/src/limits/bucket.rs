//! The published limits: which bucket a request counts against, and each bucket's windows.

/// Which limit a request counts against. Place, modify and cancel share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// loginByPassword.
    Login,
    /// generateTokens.
    Refresh,
    /// getProfile.
    Profile,
    /// logout.
    Logout,
    /// getRMS.
    Rms,
    /// placeOrder, modifyOrder and cancelOrder combined.
    Orders,
    /// getOrderBook.
    OrderBook,
    /// getTradeBook.
    TradeBook,
    /// getPosition.
    Positions,
    /// getHolding and getAllHolding (each has its own limit; one bucket is stricter).
    Holdings,
    /// searchScrip.
    SearchScrip,
    /// getLtpData.
    Ltp,
    /// details/{uniqueorderid}.
    OrderDetails,
    /// market/v1/quote.
    Quote,
    /// getCandleData and getOIData.
    Candles,
}

/// Requests allowed per second, per minute and per hour (`u32::MAX` = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Per second.
    pub per_second: u32,
    /// Per minute.
    pub per_minute: u32,
    /// Per hour.
    pub per_hour: u32,
}

/// No limit in this window.
pub(super) const NONE: u32 = u32::MAX;

impl Bucket {
    /// Every bucket.
    pub const ALL: [Bucket; 15] = [
        Self::Login,
        Self::Refresh,
        Self::Profile,
        Self::Logout,
        Self::Rms,
        Self::Orders,
        Self::OrderBook,
        Self::TradeBook,
        Self::Positions,
        Self::Holdings,
        Self::SearchScrip,
        Self::Ltp,
        Self::OrderDetails,
        Self::Quote,
        Self::Candles,
    ];

    /// The bucket's name in metric labels and shared-window keys (never a client code).
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::Profile => "profile",
            Self::Logout => "logout",
            Self::Rms => "rms",
            Self::Orders => "orders",
            Self::OrderBook => "order_book",
            Self::TradeBook => "trade_book",
            Self::Positions => "positions",
            Self::Holdings => "holdings",
            Self::SearchScrip => "search_scrip",
            Self::Ltp => "ltp",
            Self::OrderDetails => "order_details",
            Self::Quote => "quote",
            Self::Candles => "candles",
        }
    }

    /// The current documented limit (SPEC §6).
    pub fn limit(self) -> Limit {
        let (per_second, per_minute, per_hour) = match self {
            Self::Login | Self::Logout => (1, NONE, NONE),
            Self::Refresh => (1, NONE, 1000),
            Self::Profile => (3, NONE, 1000),
            Self::Rms => (2, NONE, NONE),
            Self::Orders => (9, 500, 1000),
            Self::OrderBook
            | Self::TradeBook
            | Self::Positions
            | Self::Holdings
            | Self::SearchScrip => (1, NONE, NONE),
            Self::Ltp | Self::OrderDetails | Self::Quote => (10, 500, 5000),
            Self::Candles => (3, 180, 5000),
        };
        Limit {
            per_second,
            per_minute,
            per_hour,
        }
    }
}
