#!/usr/bin/env python3
"""A moving-average crossover on Pinnacle's simulated feed, trading paper orders.

    python examples/ma_crossover.py --env-file .pinnacle/dev.env --symbol SBIN-EQ --duration 60

Follows one symbol's ticks through a self-healing `LiveTicks` picture and keeps a fast and
a slow simple moving average of the last traded price. When the fast average crosses above
the slow one it bids for `--quantity` shares with a LIMIT order `--offset` price steps
below the best bid (a passive order that may rest); when it crosses below, it cancels a
resting bid and, if it holds shares, offers them `--offset` steps above the best ask. An order that has rested `--stale-after` seconds
without filling is cancelled. Fills and cancels are followed on the order-event stream.
Long only, DELIVERY product: it never sells what it does not hold.

It stops after `--duration` seconds (or on Ctrl-C), cancels every order of this run that is
still working (found by its client order ids, `ma-<run>-<n>`), and prints `placed N, cancelled M, filled K`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Optional

from pinnacle_client import (
    Client,
    ErrorCode,
    NoReplyError,
    Order,
    OrderStatus,
    OrderType,
    PinnacleError,
    Product,
    Side,
    Tick,
    tick_subject,
)


@dataclass
class Strategy:
    client: Client
    exchange: str
    symbol: str
    quantity: int
    fast: Deque[int]
    slow: Deque[int]
    stale_after: float
    step: int  # paise per `--offset` price step: the instrument's tick size times the offset
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # prefix of our client order ids
    working: Dict[str, float] = field(default_factory=dict)  # order id -> placed at (monotonic)
    held: int = 0  # shares bought and not sold, from fills
    placed: int = 0
    cancelled: int = 0
    filled: int = 0
    last_sign: int = 0

    def signal(self, ltp: int) -> int:
        """+1 when the fast average crosses above the slow, -1 below, else 0."""
        self.fast.append(ltp)
        self.slow.append(ltp)
        if len(self.slow) < (self.slow.maxlen or 0):
            return 0
        diff = sum(self.fast) / len(self.fast) - sum(self.slow) / len(self.slow)
        sign = (diff > 0) - (diff < 0)
        crossed = sign if sign != 0 and self.last_sign != 0 and sign != self.last_sign else 0
        if sign != 0:
            self.last_sign = sign
        return crossed

    async def on_tick(self, tick: Tick) -> None:
        crossed = self.signal(tick.ltp)
        if crossed > 0:
            print(f"{tick.symbol} fast above slow at {tick.ltp / 100:.2f}")
            await self.place(Side.BUY, tick.bid - self.step)
        elif crossed < 0:
            print(f"{tick.symbol} fast below slow at {tick.ltp / 100:.2f}")
            await self.cancel_all()
            if self.held > 0:
                await self.place(Side.SELL, tick.ask + self.step, self.held)
        now = time.monotonic()
        for order_id, at in list(self.working.items()):
            if now - at > self.stale_after:
                await self.cancel(order_id)

    async def place(self, side: Side, price: int, quantity: Optional[int] = None) -> None:
        # Our own client order id: a retry inside the client resends it, so a lost reply can
        # never place the order twice, and `sweep` finds the order whatever happened.
        coid = f"ma-{self.run_id}-{self.placed + 1}"
        try:
            order = await self.client.orders.place(
                self.exchange, self.symbol, side, OrderType.LIMIT, quantity or self.quantity,
                price=price, product=Product.DELIVERY, client_order_id=coid)
        except PinnacleError as e:  # e.g. INSUFFICIENT_FUNDS, RISK_*, KILL_SWITCH
            print(f"  place refused: {e.code}: {e.message}")
            return
        except NoReplyError:  # outcome unknown: `sweep` cancels it if it was placed
            print(f"  no reply to place {coid}")
            return
        self.placed += 1
        print(f"  placed {order.side.value} {order.quantity} @ {price / 100:.2f}: {order.status.value}")
        self.track(order)

    async def cancel(self, order_id: str) -> None:
        self.working.pop(order_id, None)
        try:
            order = await self.client.orders.cancel(order_id)
        except PinnacleError as e:
            if e.code != ErrorCode.INVALID_STATE:  # it filled meanwhile: nothing to cancel
                print(f"  cancel refused: {e.code}: {e.message}")
            return
        self.cancelled += 1
        print(f"  cancelled {order.order_id[:8]} ({order.filled_quantity} filled)")

    async def cancel_all(self) -> None:
        for order_id in list(self.working):
            await self.cancel(order_id)

    async def sweep(self) -> None:
        """Cancels every working order of this run, tracked or not (e.g. after a lost reply)."""
        working = await self.client.orders.list([OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED], limit=500)
        for order in working:
            if order.client_order_id.startswith(f"ma-{self.run_id}-"):
                await self.cancel(order.order_id)

    def track(self, order: Order) -> None:
        if order.status.is_working or order.status in (OrderStatus.NEW, OrderStatus.SUBMITTED):
            self.working.setdefault(order.order_id, time.monotonic())
        else:
            self.working.pop(order.order_id, None)

    def on_fill(self, order: Order, filled_now: int) -> None:
        self.filled += 1
        self.held += filled_now if order.side is Side.BUY else -filled_now
        print(f"  fill: {order.side.value} {filled_now} @ {(order.average_price or 0) / 100:.2f}, holding {self.held}")


async def follow_fills(strategy: Strategy, since_ms: int) -> None:
    """Applies fills from the order-event stream (only this run's orders)."""
    seen: Dict[str, int] = {}
    async for event in strategy.client.events.stream(since=since_ms):
        order = event.order
        if order.symbol != strategy.symbol:
            continue
        before = seen.get(order.order_id, 0)
        if order.filled_quantity > before:
            seen[order.order_id] = order.filled_quantity
            strategy.on_fill(order, order.filled_quantity - before)
        if order.status.is_final:
            strategy.working.pop(order.order_id, None)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env-file", default=None, help="KEY=VALUE file (default: $PINNACLE_ENV_FILE or .pinnacle/dev.env)")
    ap.add_argument("--exchange", default="NSE")
    ap.add_argument("--symbol", default="SBIN-EQ")
    ap.add_argument("--fast", type=int, default=5, help="ticks in the fast average")
    ap.add_argument("--slow", type=int, default=20, help="ticks in the slow average")
    ap.add_argument("--quantity", type=int, default=1)
    ap.add_argument("--offset", type=int, default=1, help="price steps (tick sizes) away from the touch")
    ap.add_argument("--stale-after", type=float, default=3.0, help="seconds before a resting order is cancelled")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds to run")
    args = ap.parse_args()

    client = await Client.from_env(args.env_file)
    instrument = await client.market.lookup(args.exchange, symbol=args.symbol)
    strategy = Strategy(client, args.exchange, instrument.symbol, args.quantity,
                        deque(maxlen=args.fast), deque(maxlen=args.slow), args.stale_after,
                        instrument.tick_size * args.offset)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(args.duration, stop.set)

    fills = asyncio.create_task(follow_fills(strategy, int(time.time() * 1000)))
    live = await client.market.live(tick_subject(args.exchange, args.symbol))
    print(f"following {args.exchange}:{args.symbol}; SMA({args.fast}) x SMA({args.slow}); "
          f"market {live.status[args.exchange].status.value if args.exchange in live.status else '?'}")

    async def trade() -> None:
        async for tick in live.updates():
            if stop.is_set():
                return  # between two ticks, never in the middle of a request
            await strategy.on_tick(tick)

    await trade()
    await strategy.sweep()
    await asyncio.sleep(0.5)  # let the last fills arrive
    fills.cancel()
    await asyncio.gather(fills, return_exceptions=True)
    await live.stop()
    await client.close()
    print(f"placed {strategy.placed}, cancelled {strategy.cancelled}, filled {strategy.filled}; "
          f"holding {strategy.held}; {live.gaps} gaps healed")


if __name__ == "__main__":
    asyncio.run(main())
