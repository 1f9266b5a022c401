"""Market data: the `md.req.*` requests, tick/depth/status subscriptions and `LiveTicks`,
a picture of the latest tick per symbol that heals itself after gaps and reconnects.

Market data is public: these requests carry no token. `LiveTicks` follows the snapshot
recipe of docs/PROTOCOL.md: subscribe first, then snapshot the same subject page by page,
keep per symbol only a tick with a higher `seq`, and snapshot again after a reconnect or
when a symbol's `seq` jumps by more than one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Generic,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from . import wire
from .client import Requester, end_subscription
from .errors import DecodeError
from .models import _int, _list, _map
from .models import (
    Candles,
    Depth,
    ExchangeStatus,
    Instrument,
    Interval,
    Snapshot,
    SymbolRef,
    Tick,
)

if TYPE_CHECKING:
    from .client import Client

T = TypeVar("T")
IST = timezone(timedelta(hours=5, minutes=30))


def ist_minute(when: Union[datetime, str]) -> str:
    """A candle bound as `md.req.candles` wants it: `yyyy-MM-dd HH:mm` in IST. A naive
    datetime is taken to be IST already; a string is passed through."""
    if isinstance(when, str):
        return when
    if when.tzinfo is not None:
        when = when.astimezone(IST)
    return when.strftime("%Y-%m-%d %H:%M")


class Stream(Generic[T]):
    """A subscription whose messages are decoded into `T`; iterate it with `async for`.
    Undecodable messages are counted in `undecodable` and skipped."""

    def __init__(self, sub: Subscription, decode: Callable[[Any], T]) -> None:
        self.sub = sub
        self._decode = decode
        self.undecodable = 0

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[T]:
        async for msg in self.sub.messages:
            try:
                yield self._decode(wire.decode(msg.data, msg.headers))
            except DecodeError:
                self.undecodable += 1

    async def unsubscribe(self) -> None:
        await end_subscription(self.sub)


class MarketData:
    """`client.market`: requests and subscriptions on `md.*`."""

    def __init__(self, requester: Requester, client: "Client") -> None:
        self._r = requester
        self._client = client

    async def _call(self, subject: str, payload: Dict[str, Any]) -> Any:
        return await self._r.call(subject, payload, auth=False)

    # --- requests ---------------------------------------------------------------------

    async def last(self, exchange: str, symbol: str) -> Tick:
        """The latest tick of a symbol (`NOT_FOUND` before its first tick)."""
        return Tick.from_wire(await self._call(wire.MD_LAST, {"exchange": exchange, "symbol": symbol}))

    async def snapshot(
        self,
        subject: Optional[str] = None,
        *,
        symbols: Optional[Sequence[Tuple[str, str]]] = None,
        page_size: Optional[int] = None,
    ) -> Snapshot:
        """The latest tick of every symbol matching a tick subject filter (every page), or of
        the listed `(exchange, symbol)` pairs, with every exchange's status."""
        if (subject is None) == (symbols is None):
            raise ValueError("give either a tick subject filter or a list of symbols")
        if symbols is not None:
            listed = [{"exchange": e, "symbol": s} for e, s in symbols]
            page = _map(await self._call(wire.MD_SNAPSHOT, {"symbols": listed}), "snapshot")
            return Snapshot(
                ticks=tuple(Tick.from_wire(t) for t in _list(page, "ticks")),
                missing=tuple(SymbolRef.from_wire(m) for m in page.get("missing") or []),
                status=tuple(ExchangeStatus.from_wire(s) for s in _list(page, "status")),
                ts_ms=_int(page, "ts_ms"),
            )
        ticks: List[Tick] = []
        after: Optional[str] = None
        while True:
            req = {"subject": subject, "after": after, "limit": page_size}
            page = _map(await self._call(wire.MD_SNAPSHOT, req), "snapshot")
            ticks.extend(Tick.from_wire(t) for t in _list(page, "ticks"))
            after = page.get("next")
            if after is None:
                return Snapshot(
                    ticks=tuple(ticks),
                    missing=(),
                    status=tuple(ExchangeStatus.from_wire(s) for s in _list(page, "status")),
                    ts_ms=_int(page, "ts_ms"),
                )
            if not isinstance(after, str):
                raise DecodeError(f"snapshot next: expected a string, got {after!r}")

    async def candles(
        self,
        exchange: str,
        symbol: str,
        interval: Union[Interval, str],
        start: Union[datetime, str],
        end: Union[datetime, str],
    ) -> Candles:
        """Historical candles from `start` to `end` (both inclusive; see `ist_minute`)."""
        req = {
            "exchange": exchange,
            "symbol": symbol,
            "interval": Interval(interval).value,
            "from": ist_minute(start),
            "to": ist_minute(end),
        }
        return Candles.from_wire(await self._call(wire.MD_CANDLES, req))

    async def search(
        self, query: str, *, exchange: Optional[str] = None, limit: Optional[int] = None
    ) -> List[Instrument]:
        """Instruments whose symbol or name matches `query` (case-insensitive)."""
        req = {"query": query, "exchange": exchange, "limit": limit}
        result = _map(await self._call(wire.MD_SEARCH, req), "search")
        return [Instrument.from_wire(i) for i in _list(result, "instruments")]

    async def lookup(
        self, exchange: str, *, symbol: Optional[str] = None, token: Optional[str] = None
    ) -> Instrument:
        """One instrument by symbol or exchange token."""
        req = {"exchange": exchange, "symbol": symbol, "token": token}
        return Instrument.from_wire(await self._call(wire.MD_LOOKUP, req))

    async def status(self, exchange: Optional[str] = None) -> List[ExchangeStatus]:
        """Market status now, of one exchange or every one."""
        result = _map(await self._call(wire.MD_STATUS, {"exchange": exchange}), "status")
        return [ExchangeStatus.from_wire(s) for s in _list(result, "exchanges")]

    # --- subscriptions ----------------------------------------------------------------

    async def ticks(self, subject: str = "md.tick.>") -> Stream[Tick]:
        """Live ticks on a subject filter (see `wire.tick_subject` for one symbol). Core
        NATS: ticks published while you are away are missed; `live` heals that."""
        return Stream(await self._client.nc.subscribe(subject), Tick.from_wire)

    async def depth(self, subject: str = "md.depth.>") -> Stream[Depth]:
        return Stream(await self._client.nc.subscribe(subject), Depth.from_wire)

    async def status_events(self, subject: str = "md.status.*") -> Stream[ExchangeStatus]:
        return Stream(await self._client.nc.subscribe(subject), ExchangeStatus.from_wire)

    async def live(self, subject: str = "md.tick.>") -> "LiveTicks":
        """A started `LiveTicks` on `subject`."""
        book = LiveTicks(self, self._client, subject)
        await book.start()
        return book


class LiveTicks:
    """The latest tick of every symbol under a tick subject filter, and every exchange's
    status; healed by a fresh snapshot after each reconnect and each `seq` gap.

    Read `ticks` (tick subject -> `Tick`), `get(exchange, symbol)` and `status`, or iterate
    `updates()` for every tick that made the picture newer, in order of arrival.
    """

    def __init__(self, market: MarketData, client: "Client", subject: str) -> None:
        self.subject = subject
        self.ticks: Dict[str, Tick] = {}
        self.status: Dict[str, ExchangeStatus] = {}
        self.gaps = 0
        """`seq` jumps seen on live ticks (each triggers a heal)."""
        self.heals = 0
        """Snapshots applied after the first (gaps and reconnects)."""
        self._market = market
        self._client = client
        self._subs: List[Subscription] = []
        self._healing: Optional["asyncio.Task[None]"] = None
        self._queues: List["asyncio.Queue[Tick]"] = []
        self._unregister: Optional[Callable[[], None]] = None
        self.last_error: Optional[BaseException] = None
        """Why the last heal failed (None once one succeeds); the next gap tries again."""

    async def start(self) -> None:
        nc = self._client.nc
        self._subs.append(await nc.subscribe(self.subject, cb=self._on_tick))  # 1. subscribe
        self._subs.append(await nc.subscribe(wire.status_subject(), cb=self._on_status))
        await nc.flush()
        self._unregister = self._client.on_reconnect(self._reconnected)
        await self._snapshot()  # 2. then snapshot

    def get(self, exchange: str, symbol: str) -> Optional[Tick]:
        return self.ticks.get(wire.tick_subject(exchange, symbol))

    async def updates(self) -> AsyncIterator[Tick]:
        """Every tick that is newer than what the picture held, live or from a snapshot."""
        queue: "asyncio.Queue[Tick]" = asyncio.Queue()
        self._queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)

    async def heal(self) -> None:
        """Snapshots the subject again and applies it (joins a heal already under way)."""
        await asyncio.shield(self._start_heal())

    def _start_heal(self) -> "asyncio.Task[None]":
        if self._healing is None or self._healing.done():
            self.heals += 1
            self._healing = asyncio.get_running_loop().create_task(self._snapshot())
            self._healing.add_done_callback(self._healed)
        return self._healing

    def _healed(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled():
            self.last_error = task.exception()

    async def stop(self) -> None:
        if self._unregister is not None:
            self._unregister()
        for sub in self._subs:
            await end_subscription(sub)
        self._subs.clear()
        if self._healing is not None and not self._healing.done():
            self._healing.cancel()

    def _apply(self, tick: Tick) -> Optional[Tick]:  # 3. keep only newer ticks
        key = wire.tick_subject(tick.exchange, tick.symbol)
        held = self.ticks.get(key)
        if held is None or tick.seq > held.seq:
            self.ticks[key] = tick
            for q in self._queues:
                q.put_nowait(tick)
        return held

    async def _snapshot(self) -> None:
        snap = await self._market.snapshot(self.subject)
        self.status.update({s.exchange: s for s in snap.status})
        for tick in snap.ticks:
            self._apply(tick)

    async def _on_tick(self, msg: Msg) -> None:
        try:
            tick = Tick.from_wire(wire.decode(msg.data, msg.headers))
        except DecodeError:
            return
        held = self._apply(tick)
        if held is not None and tick.seq > held.seq + 1:  # 4. heal a gap
            self.gaps += 1
            self._start_heal()

    async def _on_status(self, msg: Msg) -> None:
        try:
            st = ExchangeStatus.from_wire(wire.decode(msg.data, msg.headers))
        except DecodeError:
            return
        self.status[st.exchange] = st

    async def _reconnected(self) -> None:
        self._start_heal()

