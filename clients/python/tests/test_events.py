"""The order-event stream: replay from a point in time, and follow live."""

from __future__ import annotations

import asyncio
import time
from typing import Dict, List

from conftest import with_client
from pinnacle_client import Client, OrderEvent, OrderStatus, OrderType, Side


def test_replay_from_a_point_in_time(env: Dict[str, str]) -> None:
    async def body(client: Client) -> None:
        since = int(time.time() * 1000) - 1
        tick = await client.market.last("NSE", "INFY-EQ")
        order = await client.orders.place("NSE", "INFY-EQ", Side.BUY, OrderType.LIMIT, 1,
                                          price=max(5, tick.bid // 2 // 5 * 5))
        await client.orders.cancel(order.order_id)
        mine: List[OrderEvent] = []
        deadline = time.monotonic() + 10
        # Events are relayed after the commit: poll until the cancel is in the stream.
        while not any(e.order.status is OrderStatus.CANCELLED for e in mine):
            assert time.monotonic() < deadline, f"events so far: {mine}"
            events = await client.events.replay(since)
            assert all(e.ts_ms >= since for e in events)
            mine = [e for e in events if e.order.order_id == order.order_id]
        path = [(e.previous_status, e.order.status) for e in mine]
        assert path[0] == (None, OrderStatus.NEW)
        for before, after in zip(mine, mine[1:]):  # stored in transition order
            assert after.previous_status is before.order.status
            assert after.stream_seq > before.stream_seq
        assert (OrderStatus.OPEN, OrderStatus.PENDING_CANCEL) in path
        assert all(e.traceparent for e in mine)

        # Replaying from after they were stored finds none of them (`since` is compared with
        # the time the stream stored each event, a moment after its `ts_ms`).
        await asyncio.sleep(0.05)
        later = await client.events.replay(int(time.time() * 1000))
        assert order.order_id not in {e.order.order_id for e in later}

        # A page names the stream its sequences count in; resuming with it reads on, and
        # with a stream that is gone (re-created since) reads the new one from its first
        # event and says so.
        first = await client.events.page(after=0, limit=2)
        assert isinstance(first["stream"], str) and first["stream"], first
        assert first["rewound"] is False
        on = await client.events.page(after=first["last_sequence"], stream=first["stream"])
        assert on["rewound"] is False and on["stream"] == first["stream"]
        assert all(e["sequence"] > first["last_sequence"] for e in on["events"])
        gone = await client.events.page(after=first["last_sequence"], stream="1", limit=2)
        assert gone["rewound"] is True
        assert [e["sequence"] for e in gone["events"]] == [
            e["sequence"] for e in first["events"]
        ]

    with_client(env, body)


def test_follow_live_events(env: Dict[str, str]) -> None:
    async def body(client: Client) -> None:
        got: "asyncio.Queue[OrderEvent]" = asyncio.Queue()

        async def follow() -> None:
            async for event in client.events.stream(since=int(time.time() * 1000)):
                await got.put(event)

        task = asyncio.create_task(follow())
        try:
            await asyncio.sleep(0.2)  # let the consumer exist before the order
            order = await client.orders.place("NSE", "TCS-EQ", Side.BUY, OrderType.MARKET, 1)
            while True:
                event = await asyncio.wait_for(got.get(), 10)
                if event.order.order_id == order.order_id and event.order.status is OrderStatus.FILLED:
                    break
        finally:
            task.cancel()

    with_client(env, body)
