"""Wire types: the maps of docs/PROTOCOL.md as frozen dataclasses, and their enums.

Each type has `from_wire(map)`, which checks every documented field's type and parses
enumerated strings into enums (an unknown value is a `DecodeError`, never a default).
Fields Pinnacle may add later are ignored. Money is integer paise, times integer
milliseconds since the Unix epoch (UTC), as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, Optional, Sequence, Tuple, Type, TypeVar

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


# --- market data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
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

    @classmethod
    def from_wire(cls, v: Any) -> "Tick":
        m = _map(v, "tick")
        return cls(
            exchange=_str(m, "exchange"),
            symbol=_str(m, "symbol"),
            seq=_int(m, "seq"),
            ts_ms=_int(m, "ts_ms"),
            ltp=_int(m, "ltp"),
            last_qty=_int(m, "last_qty"),
            volume=_int(m, "volume"),
            bid=_int(m, "bid"),
            ask=_int(m, "ask"),
            mode=_enum(TickMode, m, "mode"),
            **{k: _opt_int(m, k) for k in _TICK_OPTIONAL},
        )


_TICK_OPTIONAL = (
    "open", "high", "low", "close", "avg_price", "total_buy_qty", "total_sell_qty",
    "upper_circuit", "lower_circuit", "open_interest",
)


@dataclass(frozen=True)
class Level:
    """One price level of a book."""

    price: int
    qty: int
    orders: int

    @classmethod
    def from_wire(cls, v: Any) -> "Level":
        m = _map(v, "level")
        return cls(price=_int(m, "price"), qty=_int(m, "qty"), orders=_int(m, "orders"))


@dataclass(frozen=True)
class Depth:
    """The book that goes with the tick of the same `seq` (`md.depth.<EXCHANGE>.<SYMBOL>`)."""

    exchange: str
    symbol: str
    seq: int
    ts_ms: int
    bids: Tuple[Level, ...]
    """Best (highest) first."""
    asks: Tuple[Level, ...]
    """Best (lowest) first."""

    @classmethod
    def from_wire(cls, v: Any) -> "Depth":
        m = _map(v, "depth")
        return cls(
            exchange=_str(m, "exchange"),
            symbol=_str(m, "symbol"),
            seq=_int(m, "seq"),
            ts_ms=_int(m, "ts_ms"),
            bids=tuple(Level.from_wire(x) for x in _list(m, "bids")),
            asks=tuple(Level.from_wire(x) for x in _list(m, "asks")),
        )


@dataclass(frozen=True)
class ExchangeStatus:
    """An exchange's market status (`md.req.status`, `md.status.<EXCHANGE>`)."""

    exchange: str
    status: MarketState
    reason: Optional[str]
    ts_ms: int
    next_change_ms: Optional[int]

    @classmethod
    def from_wire(cls, v: Any) -> "ExchangeStatus":
        m = _map(v, "status")
        return cls(
            exchange=_str(m, "exchange"),
            status=_enum(MarketState, m, "status"),
            reason=_opt_str(m, "reason"),
            ts_ms=_int(m, "ts_ms"),
            next_change_ms=_opt_int(m, "next_change_ms"),
        )


@dataclass(frozen=True)
class SymbolRef:
    exchange: str
    symbol: str

    @classmethod
    def from_wire(cls, v: Any) -> "SymbolRef":
        m = _map(v, "symbol")
        return cls(exchange=_str(m, "exchange"), symbol=_str(m, "symbol"))


@dataclass(frozen=True)
class Snapshot:
    """An `md.req.snapshot` reply; every page of a wildcard snapshot merged."""

    ticks: Tuple[Tick, ...]
    missing: Tuple[SymbolRef, ...]
    status: Tuple[ExchangeStatus, ...]
    ts_ms: int


@dataclass(frozen=True)
class Candle:
    ts_ms: int
    """The candle's start."""
    open: int
    high: int
    low: int
    close: int
    volume: int

    @classmethod
    def from_wire(cls, v: Any) -> "Candle":
        m = _map(v, "candle")
        return cls(*(_int(m, k) for k in ("ts_ms", "open", "high", "low", "close", "volume")))


@dataclass(frozen=True)
class Candles:
    exchange: str
    symbol: str
    interval: Interval
    source: str
    """`angel_one` or `simulated`."""
    candles: Tuple[Candle, ...]

    @classmethod
    def from_wire(cls, v: Any) -> "Candles":
        m = _map(v, "candles")
        return cls(
            exchange=_str(m, "exchange"),
            symbol=_str(m, "symbol"),
            interval=_enum(Interval, m, "interval"),
            source=_str(m, "source"),
            candles=tuple(Candle.from_wire(c) for c in _list(m, "candles")),
        )


@dataclass(frozen=True)
class Instrument:
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

    @classmethod
    def from_wire(cls, v: Any) -> "Instrument":
        m = _map(v, "instrument")
        return cls(
            token=_str(m, "token"),
            symbol=_str(m, "symbol"),
            name=_str(m, "name"),
            exchange=_str(m, "exchange"),
            expiry=_str(m, "expiry"),
            strike=_opt_int(m, "strike"),
            lot_size=_int(m, "lot_size"),
            instrument_type=_str(m, "instrument_type"),
            tick_size=_int(m, "tick_size"),
        )


# --- orders and portfolio ------------------------------------------------------------


@dataclass(frozen=True)
class Order:
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

    @classmethod
    def from_wire(cls, v: Any) -> "Order":
        m = _map(v, "order")
        return cls(
            order_id=_str(m, "order_id"),
            client_order_id=_str(m, "client_order_id"),
            exchange=_str(m, "exchange"),
            symbol=_str(m, "symbol"),
            side=_enum(Side, m, "side"),
            order_type=_enum(OrderType, m, "order_type"),
            quantity=_int(m, "quantity"),
            price=_opt_int(m, "price"),
            trigger_price=_opt_int(m, "trigger_price"),
            product=_enum(Product, m, "product"),
            broker_order_id=_opt_str(m, "broker_order_id"),
            status=_enum(OrderStatus, m, "status"),
            filled_quantity=_int(m, "filled_quantity"),
            average_price=_opt_int(m, "average_price"),
            reject_reason=_opt_str(m, "reject_reason"),
            created_at_ms=_int(m, "created_at_ms"),
            updated_at_ms=_int(m, "updated_at_ms"),
        )


@dataclass(frozen=True)
class OrderEvent:
    """One state change of one order (`events.orders.<USER_ID>`, stream ORDER_EVENTS)."""

    event_id: str
    ts_ms: int
    previous_status: Optional[OrderStatus]
    """The state it left; None for the first event (`NEW`)."""
    order: Order
    """The order after the change."""
    stream_seq: int = 0
    """The event's sequence in ORDER_EVENTS (0 when not read from the stream)."""
    traceparent: Optional[str] = None
    """The W3C trace context of the span that published it."""

    @classmethod
    def from_wire(cls, v: Any) -> "OrderEvent":
        m = _map(v, "order event")
        return cls(
            event_id=_str(m, "event_id"),
            ts_ms=_int(m, "ts_ms"),
            previous_status=_opt_enum(OrderStatus, m, "previous_status"),
            order=Order.from_wire(m.get("order")),
        )


@dataclass(frozen=True)
class Funds:
    """Paise. On the paper broker `available = cash - used - blocked`."""

    cash: int
    used: int
    blocked: int
    available: int

    @classmethod
    def from_wire(cls, v: Any) -> "Funds":
        m = _map(v, "funds")
        return cls(*(_int(m, k) for k in ("cash", "used", "blocked", "available")))


@dataclass(frozen=True)
class Position:
    exchange: str
    symbol: str
    product: Product
    net_quantity: int
    average_price: Optional[int]
    """Weighted average price of the open position; None when flat."""
    buy_quantity: int
    sell_quantity: int
    realized_pnl: int

    @classmethod
    def from_wire(cls, v: Any) -> "Position":
        m = _map(v, "position")
        return cls(
            exchange=_str(m, "exchange"),
            symbol=_str(m, "symbol"),
            product=_enum(Product, m, "product"),
            net_quantity=_int(m, "net_quantity"),
            average_price=_opt_int(m, "average_price"),
            buy_quantity=_int(m, "buy_quantity"),
            sell_quantity=_int(m, "sell_quantity"),
            realized_pnl=_int(m, "realized_pnl"),
        )


@dataclass(frozen=True)
class Holding:
    exchange: str
    symbol: str
    quantity: int
    average_price: Optional[int]

    @classmethod
    def from_wire(cls, v: Any) -> "Holding":
        m = _map(v, "holding")
        return cls(
            exchange=_str(m, "exchange"),
            symbol=_str(m, "symbol"),
            quantity=_int(m, "quantity"),
            average_price=_opt_int(m, "average_price"),
        )


@dataclass(frozen=True)
class Trade:
    """One fill. On Angel One `order_id` is the broker's order id."""

    order_id: str
    exchange: str
    symbol: str
    product: Product
    side: Side
    quantity: int
    price: int
    ts_ms: int

    @classmethod
    def from_wire(cls, v: Any) -> "Trade":
        m = _map(v, "trade")
        return cls(
            order_id=_str(m, "order_id"),
            exchange=_str(m, "exchange"),
            symbol=_str(m, "symbol"),
            product=_enum(Product, m, "product"),
            side=_enum(Side, m, "side"),
            quantity=_int(m, "quantity"),
            price=_int(m, "price"),
            ts_ms=_int(m, "ts_ms"),
        )
