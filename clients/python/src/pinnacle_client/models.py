"""Wire types: the maps of docs/PROTOCOL.md as frozen dataclasses, and their enums.

Each type has `from_wire(map)`, which checks every documented field's type and parses
enumerated strings into enums (an unknown value is a `DecodeError`, never a default).
Fields Pinnacle may add later are ignored. Money is integer paise, times integer
milliseconds since the Unix epoch (UTC), as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from functools import lru_cache
from typing import (
    Any,
    ClassVar,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from .errors import DecodeError

E = TypeVar("E", bound=Enum)


class Side(str, Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(str, Enum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOPLOSS_LIMIT = "STOPLOSS_LIMIT"
    STOPLOSS_MARKET = "STOPLOSS_MARKET"


class Product(str, Enum):
    DELIVERY = "DELIVERY"
    INTRADAY = "INTRADAY"
    CARRYFORWARD = "CARRYFORWARD"
    MARGIN = "MARGIN"


class OrderStatus(str, Enum):
    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_MODIFY = "PENDING_MODIFY"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_final(self) -> bool:
        """Nothing leaves FILLED, CANCELLED or REJECTED."""
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)

    @property
    def is_working(self) -> bool:
        """OPEN or PARTIALLY_FILLED: the only states that can be modified or cancelled."""
        return self in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


class MarketState(str, Enum):
    PRE_OPEN = "PRE_OPEN"
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class TickMode(str, Enum):
    LTP = "LTP"
    QUOTE = "QUOTE"
    SNAP_QUOTE = "SNAP_QUOTE"


class Interval(str, Enum):
    """Candle intervals (Angel One's names)."""

    ONE_MINUTE = "ONE_MINUTE"
    THREE_MINUTE = "THREE_MINUTE"
    FIVE_MINUTE = "FIVE_MINUTE"
    TEN_MINUTE = "TEN_MINUTE"
    FIFTEEN_MINUTE = "FIFTEEN_MINUTE"
    THIRTY_MINUTE = "THIRTY_MINUTE"
    ONE_HOUR = "ONE_HOUR"
    ONE_DAY = "ONE_DAY"


# --- field readers: each checks the wire type and names the field on failure ----------


def _map(v: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise DecodeError(f"{what}: expected a map, got {type(v).__name__}")
    return v


def _list(m: Mapping[str, Any], key: str) -> Sequence[Any]:
    v = m.get(key)
    if not isinstance(v, list):
        raise DecodeError(f"{key}: expected a list, got {type(v).__name__}")
    return v


def _int(m: Mapping[str, Any], key: str) -> int:
    v = m.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise DecodeError(f"{key}: expected an integer, got {v!r}")
    return v


def _opt_int(m: Mapping[str, Any], key: str) -> Optional[int]:
    return None if m.get(key) is None else _int(m, key)


def _str(m: Mapping[str, Any], key: str) -> str:
    v = m.get(key)
    if not isinstance(v, str):
        raise DecodeError(f"{key}: expected a string, got {v!r}")
    return v


def _opt_str(m: Mapping[str, Any], key: str) -> Optional[str]:
    return None if m.get(key) is None else _str(m, key)


def _enum(cls: Type[E], m: Mapping[str, Any], key: str) -> E:
    raw = _str(m, key)
    try:
        return cls(raw)
    except ValueError:
        raise DecodeError(f"{key}: unknown {cls.__name__} {raw!r}") from None


def _opt_enum(cls: Type[E], m: Mapping[str, Any], key: str) -> Optional[E]:
    return None if m.get(key) is None else _enum(cls, m, key)


def _value(m: Mapping[str, Any], key: str, hint: Any) -> Any:
    """Reads `m[key]` as the annotated type `hint`: int, str, an enum, a wire type,
    `Optional[...]` of those, or `Tuple[X, ...]` of wire types."""
    args = get_args(hint)
    if get_origin(hint) is Union:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        return None if m.get(key) is None else _value(m, key, inner)
    if get_origin(hint) is tuple:
        return tuple(args[0].from_wire(x) for x in _list(m, key))
    if hint is int:
        return _int(m, key)
    if hint is str:
        return _str(m, key)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum(hint, m, key)
    return hint.from_wire(m.get(key))


W = TypeVar("W", bound="Wire")


class Wire:
    """A wire type: `from_wire` reads each dataclass field by its annotation, under the
    field's name. A field with `metadata={"wire": False}` is not on the wire and keeps its
    default."""

    WHAT: ClassVar[str] = "map"
    """How a decode error names the map."""

    @classmethod
    def from_wire(cls: Type[W], v: Any) -> W:
        m = _map(v, cls.WHAT)
        return cls(**{name: _value(m, name, hint) for name, hint in _wire_fields(cls)})


@lru_cache(maxsize=None)
def _wire_fields(cls: type) -> Tuple[Tuple[str, Any], ...]:
    hints = get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in fields(cls) if f.metadata.get("wire", True))


# --- market data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick(Wire):
    """One price update of one symbol (`md.tick.<EXCHANGE>.<SYMBOL>`)."""

    exchange: str
    symbol: str
    seq: int
    """Per-symbol sequence number, +1 per tick; a jump means ticks were missed."""
    ts_ms: int
    ltp: int
    last_qty: int
    volume: int
    bid: int
    ask: int
    mode: TickMode
    open: Optional[int] = None
    high: Optional[int] = None
    low: Optional[int] = None
    close: Optional[int] = None
    """The previous session's close."""
    avg_price: Optional[int] = None
    total_buy_qty: Optional[int] = None
    total_sell_qty: Optional[int] = None
    upper_circuit: Optional[int] = None
    lower_circuit: Optional[int] = None
    open_interest: Optional[int] = None

    WHAT: ClassVar[str] = "tick"


@dataclass(frozen=True)
class Level(Wire):
    """One price level of a book."""

    price: int
    qty: int
    orders: int

    WHAT: ClassVar[str] = "level"


@dataclass(frozen=True)
class Depth(Wire):
    """The book that goes with the tick of the same `seq` (`md.depth.<EXCHANGE>.<SYMBOL>`)."""

    exchange: str
    symbol: str
    seq: int
    ts_ms: int
    bids: Tuple[Level, ...]
    """Best (highest) first."""
    asks: Tuple[Level, ...]
    """Best (lowest) first."""

    WHAT: ClassVar[str] = "depth"


@dataclass(frozen=True)
class ExchangeStatus(Wire):
    """An exchange's market status (`md.req.status`, `md.status.<EXCHANGE>`)."""

    exchange: str
    status: MarketState
    reason: Optional[str]
    ts_ms: int
    next_change_ms: Optional[int]

    WHAT: ClassVar[str] = "status"


@dataclass(frozen=True)
class SymbolRef(Wire):
    exchange: str
    symbol: str

    WHAT: ClassVar[str] = "symbol"


@dataclass(frozen=True)
class Snapshot:
    """An `md.req.snapshot` reply; every page of a wildcard snapshot merged."""

    ticks: Tuple[Tick, ...]
    missing: Tuple[SymbolRef, ...]
    status: Tuple[ExchangeStatus, ...]
    ts_ms: int


@dataclass(frozen=True)
class Candle(Wire):
    ts_ms: int
    """The candle's start."""
    open: int
    high: int
    low: int
    close: int
    volume: int

    WHAT: ClassVar[str] = "candle"


@dataclass(frozen=True)
class Candles(Wire):
    exchange: str
    symbol: str
    interval: Interval
    source: str
    """`angel_one` or `simulated`."""
    candles: Tuple[Candle, ...]

    WHAT: ClassVar[str] = "candles"


@dataclass(frozen=True)
class Instrument(Wire):
    """One instrument of the instrument master."""

    token: str
    symbol: str
    name: str
    exchange: str
    expiry: str
    strike: Optional[int]
    lot_size: int
    instrument_type: str
    tick_size: int

    WHAT: ClassVar[str] = "instrument"


# --- orders and portfolio ------------------------------------------------------------


@dataclass(frozen=True)
class Order(Wire):
    """The order record every order verb answers with."""

    order_id: str
    client_order_id: str
    exchange: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: int
    price: Optional[int]
    trigger_price: Optional[int]
    product: Product
    broker_order_id: Optional[str]
    status: OrderStatus
    filled_quantity: int
    average_price: Optional[int]
    reject_reason: Optional[str]
    created_at_ms: int
    updated_at_ms: int

    WHAT: ClassVar[str] = "order"


@dataclass(frozen=True)
class OrderEvent(Wire):
    """One state change of one order (`events.orders.<USER_ID>`, stream ORDER_EVENTS)."""

    event_id: str
    ts_ms: int
    previous_status: Optional[OrderStatus]
    """The state it left; None for the first event (`NEW`)."""
    order: Order
    """The order after the change."""
    stream_seq: int = field(default=0, metadata={"wire": False})
    """The event's sequence in ORDER_EVENTS (0 when not read from the stream)."""
    traceparent: Optional[str] = field(default=None, metadata={"wire": False})
    """The W3C trace context of the span that published it."""

    WHAT: ClassVar[str] = "order event"


@dataclass(frozen=True)
class ErrorDetail(Wire):
    """A refusal inside a result: the protocol's error `code` and a message for people."""

    code: str
    message: str

    WHAT: ClassVar[str] = "error"


@dataclass(frozen=True)
class SquareOffFailure(Wire):
    """An order a square-off could not cancel, or a position it could not close."""

    exchange: str
    symbol: str
    order_id: Optional[str]
    """The working order not cancelled, or the refused closing order; None when no order
    was stored."""
    error: ErrorDetail

    WHAT: ClassVar[str] = "square-off failure"


@dataclass(frozen=True)
class SquareOff(Wire):
    """What `orders.<USER_ID>.squareoff` did. An empty `failed` means every working
    INTRADAY order is cancelled and every open INTRADAY position has its closing order
    working or filled; otherwise send it again once the reason has passed."""

    cancelled: Tuple[Order, ...]
    closing: Tuple[Order, ...]
    """One closing order per open INTRADAY position, as it now stands."""
    failed: Tuple[SquareOffFailure, ...]

    WHAT: ClassVar[str] = "square-off"


@dataclass(frozen=True)
class Funds(Wire):
    """Paise. On the paper broker `available = cash - used - blocked`."""

    cash: int
    used: int
    blocked: int
    available: int

    WHAT: ClassVar[str] = "funds"


@dataclass(frozen=True)
class Position(Wire):
    exchange: str
    symbol: str
    product: Product
    net_quantity: int
    average_price: Optional[int]
    """Weighted average price of the open position; None when flat."""
    buy_quantity: int
    sell_quantity: int
    realized_pnl: int

    WHAT: ClassVar[str] = "position"


@dataclass(frozen=True)
class Holding(Wire):
    exchange: str
    symbol: str
    quantity: int
    average_price: Optional[int]

    WHAT: ClassVar[str] = "holding"


@dataclass(frozen=True)
class Trade(Wire):
    """One fill. On Angel One `order_id` is the broker's order id."""

    order_id: str
    exchange: str
    symbol: str
    product: Product
    side: Side
    quantity: int
    price: int
    ts_ms: int

    WHAT: ClassVar[str] = "trade"
