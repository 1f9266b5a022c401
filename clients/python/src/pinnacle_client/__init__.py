"""pinnacle_client: a typed asyncio client for Pinnacle's NATS protocol (docs/PROTOCOL.md).

Layout:

- `client`: `Client` (one NATS connection, `Client.connect` / `Client.from_env`) and the
  request machinery (`RetryPolicy`: resends of the same request after a lost reply or a
  retryable refusal);
- `market`: `md.req.*` requests, tick/depth/status streams, `LiveTicks` (snapshot + gap
  healing);
- `orders`: place, modify, cancel, get, list, square_off; `Portfolio`: funds, positions, holdings, trades;
- `events`: the user's order events from ORDER_EVENTS, replayed from a point in time;
- `audit`: the AUDIT stream reader and `ChainVerifier` (HMAC chains and checkpoints);
- `models`: the wire types (dataclasses) and enums; `wire`: subjects, headers, codecs;
- `errors`: `PinnacleError` (with the protocol's `code`), `ErrorCode`, `NoReplyError`.

    async with await Client.from_env(".pinnacle/dev.env") as client:
        tick = await client.market.last("NSE", "SBIN-EQ")
        order = await client.orders.place("NSE", "SBIN-EQ", Side.BUY, OrderType.MARKET, 1)
"""

from .audit import AuditKeys, AuditReader, ChainVerifier, Problem, ProblemKind, VerifyReport
from .client import Client, RetryPolicy, load_env
from .errors import DecodeError, ErrorCode, NoReplyError, PinnacleError, RETRYABLE
from .market import LiveTicks, ist_minute
from .models import (
    Candle,
    Candles,
    Depth,
    ExchangeStatus,
    Funds,
    Holding,
    Instrument,
    Interval,
    Level,
    MarketState,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Side,
    Snapshot,
    SquareOff,
    SquareOffFailure,
    SymbolRef,
    Tick,
    TickMode,
    Trade,
)
from .orders import new_client_order_id
from .wire import escape_token, tick_subject

__all__ = [
    "AuditKeys", "AuditReader", "Candle", "Candles", "ChainVerifier", "Client", "DecodeError",
    "Depth", "ErrorCode", "ExchangeStatus", "Funds", "Holding", "Instrument", "Interval",
    "Level", "LiveTicks", "MarketState", "NoReplyError", "Order", "OrderEvent", "OrderStatus",
    "OrderType", "PinnacleError", "Position", "Problem", "ProblemKind", "Product", "RETRYABLE",
    "RetryPolicy", "Side", "Snapshot", "SquareOff", "SquareOffFailure", "SymbolRef", "Tick", "TickMode", "Trade", "VerifyReport",
    "escape_token", "ist_minute", "load_env", "new_client_order_id", "tick_subject",
]
__version__ = "0.1.0"
