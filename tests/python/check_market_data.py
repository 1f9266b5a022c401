#!/usr/bin/env python3
"""Black-box check of the market-data part of docs/PROTOCOL.md against `pinnacle dev`.

Written from docs/PROTOCOL.md alone: subscribes to ticks and depth, decodes them, and
asks for the last value, candles, symbols and market status. Usage:

    .venv/bin/python tests/python/check_market_data.py <data-dir>/dev.env

Prints one line per check, ends with `N passed, M failed`, exits non-zero on failure.
"""

import asyncio
import json
import sys

import msgpack
import nats

OVERALL_TIMEOUT = 40.0
STEP_TIMEOUT = 5.0
PASSED = 0
FAILED = 0


def check(name, ok, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"PASS {name}")
    else:
        FAILED += 1
        print(f"FAIL {name}" + (f": {detail}" if detail else ""))
    return bool(ok)


def escape_token(value: str) -> str:
    out = []
    for b in value.encode("utf-8"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-_&"):
            out.append(c)
        else:
            out.append("~%02X" % b)
    return "".join(out)


def parse_env(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


async def ask(nc, subject, body, as_json=False, raw=None):
    """Returns (reply map, Pinnacle-Error header)."""
    if as_json:
        data = raw if raw is not None else json.dumps(body).encode()
        msg = await nc.request(subject, data, timeout=STEP_TIMEOUT,
                               headers={"Content-Type": "application/json"})
        reply = json.loads(msg.data)
    else:
        data = raw if raw is not None else msgpack.packb(body)
        msg = await nc.request(subject, data, timeout=STEP_TIMEOUT)
        reply = msgpack.unpackb(msg.data)
    return reply, (msg.headers or {}).get("Pinnacle-Error")


async def check_ticks(nc):
    ticks, books = [], []
    done = asyncio.Event()

    async def on_tick(msg):
        ticks.append((msg.subject, msgpack.unpackb(msg.data)))
        if len(ticks) >= 6 and books:
            done.set()

    async def on_depth(msg):
        books.append(msgpack.unpackb(msg.data))

    s1 = await nc.subscribe("md.tick.NSE.>", cb=on_tick)
    s2 = await nc.subscribe("md.depth.NSE." + escape_token("SBIN-EQ"), cb=on_depth)
    try:
        await asyncio.wait_for(done.wait(), STEP_TIMEOUT)
    except asyncio.TimeoutError:
        pass
    await s1.unsubscribe()
    await s2.unsubscribe()
    if not check("ticks arrive on md.tick.NSE.>", len(ticks) >= 6, f"{len(ticks)} ticks"):
        return
    subject, tick = ticks[0]
    core = ["exchange", "symbol", "seq", "ts_ms", "ltp", "last_qty", "volume", "bid", "ask"]
    check("tick has the core fields", all(k in tick for k in core), str(tick))
    check("tick subject is md.tick.<EXCHANGE>.<escaped SYMBOL>",
          subject == f"md.tick.{tick['exchange']}.{escape_token(tick['symbol'])}", subject)
    check("prices are integer paise", all(is_int(tick[k]) for k in ["ltp", "bid", "ask"]))
    check("mode is a known mode", tick.get("mode") in ("LTP", "QUOTE", "SNAP_QUOTE"), str(tick.get("mode")))
    if tick.get("mode") in ("QUOTE", "SNAP_QUOTE"):
        check("QUOTE fields present", all(is_int(tick.get(k)) for k in ["open", "high", "low", "close", "avg_price"]))
        check("day low <= ltp <= day high", tick["low"] <= tick["ltp"] <= tick["high"])
    if tick.get("mode") == "SNAP_QUOTE":
        check("circuit limits bracket the ltp", tick["lower_circuit"] <= tick["ltp"] <= tick["upper_circuit"])
    by_symbol = {}
    gaps = 0
    for _, t in ticks:
        prev = by_symbol.get(t["symbol"])
        if prev is not None and t["seq"] != prev + 1:
            gaps += 1
        by_symbol[t["symbol"]] = t["seq"]
    check("per-symbol sequence numbers have no gaps", gaps == 0, f"{gaps} gaps")
    if check("depth arrives on md.depth.NSE.SBIN-EQ", len(books) >= 1):
        book = books[0]
        check("depth has 5 bids and 5 asks, best first",
              len(book["bids"]) == 5 and len(book["asks"]) == 5
              and book["bids"][0]["price"] > book["bids"][1]["price"]
              and book["asks"][0]["price"] < book["asks"][1]["price"], str(book))


async def check_requests(nc):
    reply, _ = await ask(nc, "md.req.last", {"exchange": "NSE", "symbol": "SBIN-EQ"})
    if check("md.req.last answers", reply.get("ok") is True, str(reply)):
        r = reply["result"]
        check("last value is a tick of SBIN-EQ", r["symbol"] == "SBIN-EQ" and is_int(r["seq"]) and r["seq"] >= 1)
    reply, code = await ask(nc, "md.req.last", {"exchange": "NSE", "symbol": "NOPE-EQ"})
    check("unknown symbol is UNKNOWN_SYMBOL", reply.get("ok") is False and code == "UNKNOWN_SYMBOL"
          and reply["error"]["code"] == "UNKNOWN_SYMBOL", str(reply))

    req = {"exchange": "NSE", "symbol": "SBIN-EQ", "interval": "FIVE_MINUTE",
           "from": "2026-11-23 09:15", "to": "2026-11-23 15:30"}
    reply, _ = await ask(nc, "md.req.candles", req)
    if check("md.req.candles answers", reply.get("ok") is True, str(reply)):
        candles = reply["result"]["candles"]
        check("a session of 5-minute candles", len(candles) == 75, str(len(candles)))
        check("candles are OHLCV in paise", all(
            all(is_int(c[k]) for k in ["ts_ms", "open", "high", "low", "close", "volume"])
            and c["low"] <= min(c["open"], c["close"]) and c["high"] >= max(c["open"], c["close"])
            for c in candles))
    reply, _ = await ask(nc, "md.req.candles", req, as_json=True)
    check("candles in JSON too", reply.get("ok") is True and len(reply["result"]["candles"]) == 75)
    for name, change, expected in [
        ("bad interval", {"interval": "5m"}, "INVALID_INTERVAL"),
        ("range beyond the limit", {"interval": "ONE_MINUTE", "from": "2026-01-01 09:15"}, "RANGE_TOO_LARGE"),
        ("malformed date", {"from": "23/11/2026"}, "INVALID_REQUEST"),
    ]:
        reply, code = await ask(nc, "md.req.candles", {**req, **change}, as_json=True)
        check(f"candles: {name} is {expected}", reply.get("ok") is False and code == expected, str(reply))
    reply, code = await ask(nc, "md.req.candles", None, raw=b"\xc1")
    check("garbage payload is BAD_PAYLOAD", code == "BAD_PAYLOAD", str(reply))

    reply, _ = await ask(nc, "md.req.symbols.search", {"query": "sbin", "exchange": "NSE"})
    if check("md.req.symbols.search answers", reply.get("ok") is True, str(reply)):
        found = reply["result"]["instruments"]
        check("search finds SBIN-EQ", any(i["symbol"] == "SBIN-EQ" for i in found), str(found))
    reply, _ = await ask(nc, "md.req.symbols.lookup", {"exchange": "NSE", "token": "3045"})
    if check("md.req.symbols.lookup by token answers", reply.get("ok") is True, str(reply)):
        inst = reply["result"]
        check("lookup gives symbol, tick size and lot size",
              inst["symbol"] == "SBIN-EQ" and is_int(inst["tick_size"]) and is_int(inst["lot_size"]), str(inst))
    reply, _ = await ask(nc, "md.req.symbols.lookup", {"exchange": "NSE", "symbol": "sbin-eq"})
    check("lookup by symbol", reply.get("ok") is True and reply["result"]["token"] == "3045", str(reply))

    reply, _ = await ask(nc, "md.req.status", {})
    if check("md.req.status answers", reply.get("ok") is True, str(reply)):
        statuses = reply["result"]["exchanges"]
        check("every status is PRE_OPEN, OPEN or CLOSED",
              len(statuses) >= 5 and all(s["status"] in ("PRE_OPEN", "OPEN", "CLOSED") for s in statuses), str(statuses))
        names = {s["exchange"] for s in statuses}
        check("status covers NSE and MCX", {"NSE", "MCX"} <= names, str(names))
    reply, code = await ask(nc, "md.req.status", {"exchange": "NYSE"})
    check("unknown exchange is UNKNOWN_EXCHANGE", code == "UNKNOWN_EXCHANGE", str(reply))


async def main(env_path):
    env = parse_env(env_path)
    nc = await nats.connect(env["NATS_URL"], connect_timeout=STEP_TIMEOUT)
    try:
        await check_ticks(nc)
        await check_requests(nc)
    finally:
        await nc.drain()


def run():
    if len(sys.argv) != 2:
        print("usage: check_market_data.py <dev.env>")
        sys.exit(2)
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), OVERALL_TIMEOUT))
    except Exception as error:  # any crash is a failure, reported as such
        check("run completes", False, repr(error))
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    run()
