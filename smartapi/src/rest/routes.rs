//! Every REST route the client calls: its name, method, path and rate-limit bucket.

use crate::limits::Bucket;

/// A REST route: its name (for spans, errors and fault injection), method, path and limit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Route {
    pub(super) name: &'static str,
    pub(super) post: bool,
    pub(super) path: &'static str,
    pub(super) bucket: Bucket,
}

macro_rules! route {
    ($name:literal, $post:literal, $path:literal, $bucket:ident) => {
        Route {
            name: $name,
            post: $post,
            path: $path,
            bucket: Bucket::$bucket,
        }
    };
}

pub(super) const LOGIN: Route = route!(
    "loginByPassword",
    true,
    "/rest/auth/angelbroking/user/v1/loginByPassword",
    Login
);
pub(super) const REFRESH: Route = route!(
    "generateTokens",
    true,
    "/rest/auth/angelbroking/jwt/v1/generateTokens",
    Refresh
);
pub(super) const PROFILE: Route = route!(
    "getProfile",
    false,
    "/rest/secure/angelbroking/user/v1/getProfile",
    Profile
);
pub(super) const LOGOUT: Route = route!(
    "logout",
    true,
    "/rest/secure/angelbroking/user/v1/logout",
    Logout
);
pub(super) const RMS: Route = route!(
    "getRMS",
    false,
    "/rest/secure/angelbroking/user/v1/getRMS",
    Rms
);
pub(super) const PLACE: Route = route!(
    "placeOrder",
    true,
    "/rest/secure/angelbroking/order/v1/placeOrder",
    Orders
);
pub(super) const MODIFY: Route = route!(
    "modifyOrder",
    true,
    "/rest/secure/angelbroking/order/v1/modifyOrder",
    Orders
);
pub(super) const CANCEL: Route = route!(
    "cancelOrder",
    true,
    "/rest/secure/angelbroking/order/v1/cancelOrder",
    Orders
);
pub(super) const ORDER_BOOK: Route = route!(
    "getOrderBook",
    false,
    "/rest/secure/angelbroking/order/v1/getOrderBook",
    OrderBook
);
pub(super) const TRADE_BOOK: Route = route!(
    "getTradeBook",
    false,
    "/rest/secure/angelbroking/order/v1/getTradeBook",
    TradeBook
);
pub(super) const DETAILS: Route = route!(
    "details",
    false,
    "/rest/secure/angelbroking/order/v1/details/",
    OrderDetails
);
pub(super) const POSITIONS: Route = route!(
    "getPosition",
    false,
    "/rest/secure/angelbroking/order/v1/getPosition",
    Positions
);
pub(super) const HOLDINGS: Route = route!(
    "getHolding",
    false,
    "/rest/secure/angelbroking/portfolio/v1/getHolding",
    Holdings
);
pub(super) const LTP: Route = route!(
    "getLtpData",
    true,
    "/rest/secure/angelbroking/order/v1/getLtpData",
    Ltp
);
pub(super) const QUOTE: Route = route!(
    "quote",
    true,
    "/rest/secure/angelbroking/market/v1/quote",
    Quote
);
pub(super) const SEARCH: Route = route!(
    "searchScrip",
    true,
    "/rest/secure/angelbroking/order/v1/searchScrip",
    SearchScrip
);
pub(super) const CANDLES: Route = route!(
    "getCandleData",
    true,
    "/rest/secure/angelbroking/historical/v1/getCandleData",
    Candles
);
