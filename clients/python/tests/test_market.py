"""Market data against `pinnacle dev`: requests, streams and the self-healing picture."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Dict

import pytest

from conftest import with_client
from pinnacle_client import (
    Client,
    ErrorCode,
    Interval,
    MarketState,
    PinnacleError,
    Tick,
    tick_subject,
)

SIMULATED = {"RELIANCE-EQ", "SBIN-EQ", "TCS-EQ", "INFY-EQ", "HDFCBANK-EQ"}


def test_last_tick_and_streams(env: Dict[str, str]) -> None:
    async def body(client: Client) -> None:
        ticks = await client.market.ticks("md.tick.NSE.SBIN-EQ")
        depth = await client.market.depth("md.depth.NSE.SBIN-EQ")
        live = await asyncio.wait_for(ticks.__aiter__().__anext__(), 5)
        book = await asyncio.wait_for(depth.__aiter__().__anext__(), 5)
        assert isinstance(live, Tick) and live.symbol == "SBIN-EQ" and live.ltp > 0
        assert book.bids and book.asks and book.bids[0].price < book.asks[0].price
        last = await client.market.last("NSE", "SBIN-EQ")
        assert last.seq >= live.seq and last.open is not None  # SNAP_QUOTE carries QUOTE fields
        await ticks.unsubscribe()
        await depth.unsubscribe()
        with pytest.raises(PinnacleError) as e:
            await client.market.last("NSE", "NOSUCH-EQ")
        assert e.value.code == ErrorCode.UNKNOWN_SYMBOL

    with_client(env, body)


def test_snapshot_pages_and_lists(env: Dict[str, str]) -> None:
    async def body(client: Client) -> None:
        whole = await client.market.snapshot("md.tick.NSE.*", page_size=2)  # three pages
        assert SIMULATED <= {t.symbol for t in whole.ticks}
        assert any(s.exchange == "NSE" for s in whole.status)
        listed = await client.market.snapshot(symbols=[("NSE", "TCS-EQ"), ("NSE", "INFY-EQ")])
        assert {t.symbol for t in listed.ticks} == {"TCS-EQ", "INFY-EQ"}
        with pytest.raises(PinnacleError) as e:
            await client.market.snapshot("md.nonsense")
        assert e.value.code == ErrorCode.INVALID_REQUEST

    with_client(env, body)


def test_candles_symbols_and_status(env: Dict[str, str]) -> None:
    async def body(client: Client) -> None:
        end = datetime.now() + timedelta(hours=5, minutes=30) - timedelta(days=7)  # naive IST
        start = end - timedelta(days=10)
        candles = await client.market.candles("NSE", "SBIN-EQ", Interval.ONE_DAY, start, end)
        assert candles.source == "simulated" and candles.interval is Interval.ONE_DAY
        assert candles.candles, "ten days hold trading days"
        assert all(c.low <= c.open <= c.high and c.low <= c.close <= c.high for c in candles.candles)
        with pytest.raises(PinnacleError) as e:
            await client.market.candles("NSE", "SBIN-EQ", "ONE_DAY", end, start)  # inverted
        assert e.value.code == ErrorCode.RANGE_TOO_LARGE

        found = await client.market.search("sbi", exchange="NSE", limit=5)
        assert found and found[0].symbol.startswith("SBI")
        sbin = await client.market.lookup("NSE", symbol="SBIN-EQ")
        assert sbin.tick_size > 0 and sbin.lot_size >= 1
        assert (await client.market.lookup("NSE", token=sbin.token)).symbol == "SBIN-EQ"

        every = await client.market.status()
        assert {"NSE", "BSE", "MCX"} <= {s.exchange for s in every}
        nse = await client.market.status("NSE")
        assert len(nse) == 1 and isinstance(nse[0].status, MarketState)
        with pytest.raises(PinnacleError) as e:
            await client.market.status("NOWHERE")
        assert e.value.code == ErrorCode.UNKNOWN_EXCHANGE

    with_client(env, body)


def test_live_ticks_start_late_and_heal_a_gap(env: Dict[str, str]) -> None:
    async def body(client: Client) -> None:
        live = await client.market.live("md.tick.NSE.>")
        # Started late: the snapshot gives every symbol at once, before its next tick.
        assert SIMULATED <= {t.symbol for t in live.ticks.values()}
        assert "NSE" in live.status
        # Force a gap: pretend we hold an older tick, so the next live one jumps.
        key = tick_subject("NSE", "TCS-EQ")
        live.ticks[key] = replace(live.ticks[key], seq=live.ticks[key].seq - 5)
        updates = live.updates()
        deadline = asyncio.get_running_loop().time() + 10
        while live.heals == 0 or (live._healing is not None and not live._healing.done()):
            assert asyncio.get_running_loop().time() < deadline, "no heal after a forced gap"
            await asyncio.wait_for(updates.__anext__(), 5)
        assert live.gaps >= 1 and live.last_error is None
        fresh = await client.market.last("NSE", "TCS-EQ")
        held = live.get("NSE", "TCS-EQ")
        assert held is not None and held.seq >= fresh.seq - 10
        await updates.aclose()
        await live.stop()

    with_client(env, body)
