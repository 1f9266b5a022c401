#!/usr/bin/env python3
"""Black-box check of order management as described in docs/PROTOCOL.md.

Written from docs/PROTOCOL.md alone, as a trader's client would use it. Usage:

    .venv/bin/python tests/python/check_orders.py <data-dir>/dev.env

Exercises place / get / list / modify / cancel, funds / positions / trades after a
market fill, the ORDER_EVENTS lifecycle events (read through orders.<USER_ID>.events), error codes, and the retry rules
(RATE_LIMITED: wait a second and resend; timeout / no responders: resend the same
request). Prints one line per check and finishes with `N passed, M failed`; exits
non-zero if any check failed. Every await has a timeout and the whole run is capped.
"""

import asyncio
import re
import sys
import time
import uuid

import msgpack
import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeoutError

OVERALL_TIMEOUT = 85.0  # seconds, whole run
STEP_TIMEOUT = 5.0  # seconds, any single await
MAX_ATTEMPTS = 5  # resends of one request (timeouts, no responders, RATE_LIMITED)

EXCHANGE = "NSE"
SYMBOL = "SBIN-EQ"

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

STATES = {"NEW", "SUBMITTED", "OPEN", "PARTIALLY_FILLED", "FILLED", "PENDING_MODIFY",
          "PENDING_CANCEL", "CANCELLED", "REJECTED", "UNKNOWN"}
FINAL = {"FILLED", "CANCELLED", "REJECTED"}
# "Allowed moves" from PROTOCOL.md, Order states and lifecycle events.
_WORKING = {"PARTIALLY_FILLED", "FILLED", "PENDING_MODIFY", "PENDING_CANCEL", "CANCELLED"}
ALLOWED = {
    "NEW": {"SUBMITTED", "REJECTED"},
    "SUBMITTED": {"OPEN", "PARTIALLY_FILLED", "FILLED", "REJECTED", "CANCELLED", "UNKNOWN"},
    "OPEN": set(_WORKING) | {"REJECTED"},  # a broker's late rejection, before any fill
    "PARTIALLY_FILLED": set(_WORKING),  # "the same"
    "PENDING_MODIFY": {"OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "UNKNOWN"},
    "PENDING_CANCEL": {"CANCELLED", "FILLED", "OPEN", "PARTIALLY_FILLED", "UNKNOWN"},
    "UNKNOWN": {"OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED"},
    "FILLED": set(), "CANCELLED": set(), "REJECTED": set(),
}

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


def note(text):
    print(f"NOTE {text}")


def parse_env(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            env[key.strip()] = value  # values are never quoted
    return env


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_str(v):
    return isinstance(v, str)


def is_str_or_nil(v):
    return v is None or isinstance(v, str)


def is_int_or_nil(v):
    return v is None or is_int(v)


def is_map(v):
    return isinstance(v, dict)


TYPE_NAMES = {is_int: "integer", is_str: "string", is_str_or_nil: "string or nil",
              is_int_or_nil: "integer or nil", is_map: "map"}

ORDER_SPEC = {
    "order_id": is_str, "client_order_id": is_str, "exchange": is_str, "symbol": is_str,
    "side": is_str, "order_type": is_str, "quantity": is_int, "price": is_int_or_nil,
    "broker_order_id": is_str_or_nil, "status": is_str, "filled_quantity": is_int,
    "average_price": is_int_or_nil, "reject_reason": is_str_or_nil,
    "created_at_ms": is_int, "updated_at_ms": is_int,
}
FUNDS_SPEC = {"cash": is_int, "used": is_int, "blocked": is_int, "available": is_int}
POSITION_SPEC = {
    "exchange": is_str, "symbol": is_str, "net_quantity": is_int,
    "average_price": is_int_or_nil, "buy_quantity": is_int, "sell_quantity": is_int,
    "realized_pnl": is_int,
}
TRADE_SPEC = {
    "order_id": is_str, "exchange": is_str, "symbol": is_str, "side": is_str,
    "quantity": is_int, "price": is_int, "ts_ms": is_int,
}
EVENT_SPEC = {"event_id": is_str, "ts_ms": is_int, "previous_status": is_str_or_nil,
              "order": is_map}


def spec_problems(obj, spec):
    if not isinstance(obj, dict):
        return [f"not a map: {obj!r}"]
    problems = []
    for field, pred in spec.items():
        if field not in obj:
            problems.append(f"missing {field}")
        elif not pred(obj[field]):
            problems.append(f"{field}={obj[field]!r} is not {TYPE_NAMES.get(pred, pred.__name__)}")
    return problems


def check_fields(name, obj, spec):
    problems = spec_problems(obj, spec)
    return check(name, not problems, "; ".join(problems))


def hdr(msg, key):
    """Case-insensitive header lookup on a nats-py Msg."""
    for k, v in (msg.headers or {}).items():
        if k.lower() == key.lower():
            return v
    return None


# --- the client ------------------------------------------------------------------

class Client:
    """A trader's client for orders.<USER_ID>.<verb>, following PROTOCOL.md's retry rules."""

    def __init__(self, nc, user_id, token):
        self.nc = nc
        self.user_id = user_id
        self.token = token
        self.stats = {"timeouts": 0, "no_responders": 0, "rate_limited": 0}

    async def call(self, verb, payload, retry_rate_limited=True, attempts=MAX_ATTEMPTS):
        """One logical request. Resends the *same* bytes with the *same* Pinnacle-Request-Id
        on timeout / no responders, and after a one-second wait on RATE_LIMITED.
        Returns the decoded reply map (with `_headers` added), or raises after `attempts`."""
        subject = f"orders.{self.user_id}.{verb}"
        data = msgpack.packb(payload)
        headers = {"Authorization": f"Bearer {self.token}",
                   "Pinnacle-Request-Id": f"check-orders-{uuid.uuid4()}"}
        last = None
        for _ in range(attempts):
            try:
                msg = await asyncio.wait_for(
                    self.nc.request(subject, data, timeout=STEP_TIMEOUT, headers=headers),
                    STEP_TIMEOUT + 1)
            except (NatsTimeoutError, asyncio.TimeoutError) as e:
                self.stats["timeouts"] += 1
                last = e
                continue  # resend the same request
            except NoRespondersError as e:
                self.stats["no_responders"] += 1
                last = e
                await asyncio.sleep(0.5)
                continue  # resend the same request
            reply = msgpack.unpackb(msg.data)
            if not isinstance(reply, dict):
                raise RuntimeError(f"{verb}: reply is not a map: {reply!r}")
            reply["_headers"] = msg.headers or {}
            reply["_msg"] = msg
            code = (reply.get("error") or {}).get("code") if not reply.get("ok") else None
            if code == "RATE_LIMITED" and retry_rate_limited:
                self.stats["rate_limited"] += 1
                last = RuntimeError("RATE_LIMITED")
                await asyncio.sleep(1.0)  # "wait a second and resend the same request"
                continue
            return reply
        raise RuntimeError(f"{verb}: no usable reply after {attempts} attempts ({last!r})")

    async def ok(self, verb, payload):
        """Call and return `result`; raises with the error if the reply is not ok."""
        reply = await self.call(verb, payload)
        if not reply.get("ok"):
            raise RuntimeError(f"{verb} {payload!r}: {reply.get('error')!r}")
        return reply["result"]


def err_code(reply):
    if reply.get("ok"):
        return None
    return (reply.get("error") or {}).get("code")


def expect_error(name, reply, code):
    got = err_code(reply)
    header = hdr(reply["_msg"], "Pinnacle-Error")
    ok = (reply.get("ok") is False and got == code and header == code
          and is_str((reply.get("error") or {}).get("message")))
    return check(name, ok, f"got ok={reply.get('ok')!r} error={reply.get('error')!r} "
                           f"Pinnacle-Error={header!r}")


async def last_ltp(nc, exchange, symbol):
    """The current ltp of a symbol, from its tick stream."""
    fut = asyncio.get_running_loop().create_future()

    async def on_tick(msg):
        if not fut.done():
            fut.set_result(msgpack.unpackb(msg.data))

    sub = await asyncio.wait_for(nc.subscribe(f"md.tick.{exchange}.{symbol}", cb=on_tick),
                                 STEP_TIMEOUT)
    try:
        tick = await asyncio.wait_for(fut, STEP_TIMEOUT)
    finally:
        await asyncio.wait_for(sub.unsubscribe(), STEP_TIMEOUT)
    return tick["ltp"]


# --- steps ----------------------------------------------------------------------

async def step_limit_order(c, nc, ctx):
    """1 and 2: rest a far-below LIMIT buy, read it back, list, modify, cancel."""
    ltp = await last_ltp(nc, EXCHANGE, SYMBOL)
    check("ticks: got an ltp for NSE:SBIN-EQ", is_int(ltp) and ltp > 0, repr(ltp))
    price = max(5, (ltp // 4) // 5 * 5)  # a quarter of the market, whole 5-paise ticks
    coid = f"chk-limit-{uuid.uuid4().hex[:20]}"
    req = {"client_order_id": coid, "exchange": EXCHANGE, "symbol": SYMBOL, "side": "BUY",
           "order_type": "LIMIT", "quantity": 3, "price": price}
    funds0 = await c.ok("funds", {})

    rec = await c.ok("place", req)
    check_fields("place LIMIT: order record has documented fields and types", rec, ORDER_SPEC)
    check("place LIMIT: rests as OPEN, nothing filled",
          rec.get("status") == "OPEN" and rec.get("filled_quantity") == 0
          and rec.get("average_price") is None, repr(rec))
    check("place LIMIT: echoes client_order_id, exchange, symbol, side, order_type, "
          "quantity, price",
          all(rec.get(k) == req[k] for k in
              ("client_order_id", "exchange", "symbol", "side", "order_type", "quantity",
               "price")), repr(rec))
    oid = rec.get("order_id", "")
    check("place LIMIT: order_id is a UUID", bool(UUID_RE.match(oid or "")), repr(oid))
    check("place LIMIT: broker_order_id is PAPER-<order_id>",
          rec.get("broker_order_id") == f"PAPER-{oid}", repr(rec.get("broker_order_id")))
    check("place LIMIT: updated_at_ms >= created_at_ms",
          is_int(rec.get("created_at_ms")) and is_int(rec.get("updated_at_ms"))
          and rec["updated_at_ms"] >= rec["created_at_ms"], repr(rec))
    ctx["limit_oid"] = oid
    ctx["limit_coid"] = coid

    # Idempotent resend: same client_order_id returns the first result, no second order.
    again = await c.ok("place", req)
    check("place LIMIT again (same client_order_id): same order returned",
          again.get("order_id") == oid, repr(again))

    # get by order_id and by client_order_id
    by_id = await c.ok("get", {"order_id": oid})
    check_fields("get by order_id: order record fields and types", by_id, ORDER_SPEC)
    check("get by order_id: same order, OPEN",
          by_id.get("order_id") == oid and by_id.get("client_order_id") == coid
          and by_id.get("status") == "OPEN", repr(by_id))
    by_coid = await c.ok("get", {"client_order_id": coid})
    check("get by client_order_id: same order", by_coid.get("order_id") == oid,
          repr(by_coid))

    # funds: blocked covers the resting buy
    funds1 = await c.ok("funds", {})
    check("funds while LIMIT rests: blocked grew by price x quantity",
          funds1.get("blocked", 0) - funds0.get("blocked", 0) == price * 3,
          f"before={funds0!r} after={funds1!r}")

    # list: everything, and with status filters
    lst = await c.ok("list", {})
    orders = lst.get("orders") if isinstance(lst, dict) else None
    check("list (empty payload): result has an `orders` list", isinstance(orders, list),
          repr(lst))
    orders = orders or []
    check("list (empty payload): contains the LIMIT order",
          any(o.get("order_id") == oid for o in orders), f"{len(orders)} orders")
    bad = [p for o in orders for p in spec_problems(o, ORDER_SPEC)]
    check("list: every entry is an order record", not bad, "; ".join(bad[:5]))
    created = [o.get("created_at_ms") for o in orders]
    check("list: newest first (created_at_ms non-increasing)",
          all(is_int(a) and is_int(b) and a >= b for a, b in zip(created, created[1:])),
          repr(created))
    lst_open = (await c.ok("list", {"status": ["OPEN"], "limit": 500})).get("orders") or []
    check("list status=[OPEN]: contains the order, and only OPEN orders",
          any(o.get("order_id") == oid for o in lst_open)
          and all(o.get("status") == "OPEN" for o in lst_open),
          repr([(o.get("order_id"), o.get("status")) for o in lst_open]))
    lst_done = (await c.ok("list", {"status": ["FILLED", "CANCELLED"]})).get("orders") or []
    check("list status=[FILLED, CANCELLED]: does not contain the OPEN order",
          all(o.get("order_id") != oid for o in lst_done)
          and all(o.get("status") in ("FILLED", "CANCELLED") for o in lst_done),
          repr([(o.get("order_id"), o.get("status")) for o in lst_done]))
    lst_one = (await c.ok("list", {"limit": 1})).get("orders")
    check("list limit=1: at most one order", isinstance(lst_one, list) and len(lst_one) <= 1,
          repr(lst_one))

    # modify quantity and price in one request (price stays far below the market)
    new_qty, new_price = 5, price - 5 if price > 5 else price + 5
    before = by_id
    mod = await c.ok("modify", {"order_id": oid, "quantity": new_qty, "price": new_price})
    check_fields("modify: order record fields and types", mod, ORDER_SPEC)
    check("modify (quantity+price): record has the new quantity and price, still OPEN",
          mod.get("quantity") == new_qty and mod.get("price") == new_price
          and mod.get("status") == "OPEN" and mod.get("order_id") == oid, repr(mod))
    check("modify: updated_at_ms moved forward (or stayed)",
          is_int(mod.get("updated_at_ms"))
          and mod["updated_at_ms"] >= before.get("updated_at_ms", 0), repr(mod))
    got = await c.ok("get", {"client_order_id": coid})
    check("get after modify: stored quantity and price changed",
          got.get("quantity") == new_qty and got.get("price") == new_price
          and got.get("status") == "OPEN", repr(got))
    # modify only the quantity, by client_order_id
    mod2 = await c.ok("modify", {"client_order_id": coid, "quantity": new_qty + 1})
    check("modify (quantity only, by client_order_id): quantity changed, price kept",
          mod2.get("quantity") == new_qty + 1 and mod2.get("price") == new_price, repr(mod2))
    final_qty = new_qty + 1
    funds2 = await c.ok("funds", {})
    check("funds after modify: blocked follows the new price x quantity",
          funds2.get("blocked", 0) - funds0.get("blocked", 0) == new_price * final_qty,
          f"before={funds0!r} after={funds2!r}")
    ctx["limit_final"] = (final_qty, new_price)
    ctx["limit_modifies"] = [(new_qty, new_price), (final_qty, new_price)]

    # cancel
    can = await c.ok("cancel", {"order_id": oid})
    check("cancel: record is CANCELLED", can.get("status") == "CANCELLED"
          and can.get("order_id") == oid, repr(can))
    got = await c.ok("get", {"order_id": oid})
    check("get after cancel: CANCELLED, quantity/price kept, nothing filled",
          got.get("status") == "CANCELLED" and got.get("quantity") == final_qty
          and got.get("price") == new_price and got.get("filled_quantity") == 0, repr(got))
    funds3 = await c.ok("funds", {})
    check("funds after cancel: blocked back to where it was",
          funds3.get("blocked") == funds0.get("blocked"), f"before={funds0!r} after={funds3!r}")
    lst_can = (await c.ok("list", {"status": ["CANCELLED"]})).get("orders") or []
    check("list status=[CANCELLED]: contains the cancelled order",
          any(o.get("order_id") == oid for o in lst_can), f"{len(lst_can)} orders")

    expect_error("cancel a CANCELLED order: INVALID_STATE",
                 await c.call("cancel", {"order_id": oid}), "INVALID_STATE")
    expect_error("modify a CANCELLED order: INVALID_STATE",
                 await c.call("modify", {"client_order_id": coid, "quantity": 9}),
                 "INVALID_STATE")
    got = await c.ok("get", {"order_id": oid})
    check("get after refused modify: order unchanged",
          got.get("status") == "CANCELLED" and got.get("quantity") == final_qty, repr(got))


async def step_market_order(c, ctx):
    """3: a MARKET buy, then funds / positions / trades reflect the fill."""
    funds0 = await c.ok("funds", {})
    pos0 = await c.ok("positions", {})
    trades0 = await c.ok("trades", {})

    def find_pos(res):
        for p in (res.get("positions") or []) if isinstance(res, dict) else []:
            if p.get("exchange") == EXCHANGE and p.get("symbol") == SYMBOL:
                return p
        return None

    p0 = find_pos(pos0)
    net0 = p0["net_quantity"] if p0 else 0
    qty = 2
    coid = f"chk-mkt-{uuid.uuid4().hex[:20]}"
    rec = await c.ok("place", {"client_order_id": coid, "exchange": EXCHANGE,
                               "symbol": SYMBOL, "side": "BUY", "order_type": "MARKET",
                               "quantity": qty})
    check_fields("place MARKET: order record fields and types", rec, ORDER_SPEC)
    fill = rec.get("average_price")
    check("place MARKET: FILLED in full with an average_price",
          rec.get("status") == "FILLED" and rec.get("filled_quantity") == qty
          and is_int(fill) and fill > 0, repr(rec))
    oid = rec.get("order_id")
    ctx["market_oid"] = oid
    fill = fill if is_int(fill) else 0

    funds = await c.ok("funds", {})
    check_fields("funds: cash, used, blocked, available are integers", funds, FUNDS_SPEC)
    if not spec_problems(funds, FUNDS_SPEC):
        check("funds: available = cash - used - blocked",
              funds["available"] == funds["cash"] - funds["used"] - funds["blocked"],
              repr(funds))
        check("funds: used grew by quantity x fill price",
              funds["used"] - funds0.get("used", 0) == qty * fill,
              f"before={funds0!r} after={funds!r} fill={fill}")
        check("funds: available fell by quantity x fill price",
              funds0.get("available", 0) - funds["available"] == qty * fill,
              f"before={funds0!r} after={funds!r}")
        check("funds: cash unchanged by a fill (used carries it)",
              funds["cash"] == funds0.get("cash"), f"before={funds0!r} after={funds!r}")
        check("funds: blocked unchanged by a MARKET fill",
              funds["blocked"] == funds0.get("blocked"), f"before={funds0!r} after={funds!r}")

    pos = await c.ok("positions", {})
    plist = pos.get("positions") if isinstance(pos, dict) else None
    check("positions: result has a `positions` list", isinstance(plist, list), repr(pos))
    bad = [p for x in (plist or []) for p in spec_problems(x, POSITION_SPEC)]
    check("positions: every entry has the documented fields and types", not bad,
          "; ".join(bad[:5]))
    p = find_pos(pos)
    check("positions: NSE:SBIN-EQ net_quantity grew by the bought quantity",
          p is not None and p.get("net_quantity") == net0 + qty, f"before={p0!r} after={p!r}")
    if p is not None and not spec_problems(p, POSITION_SPEC):
        check("positions: net_quantity = buy_quantity - sell_quantity",
              p["net_quantity"] == p["buy_quantity"] - p["sell_quantity"], repr(p))
        check("positions: open position has an average_price",
              is_int(p["average_price"]) and p["average_price"] > 0, repr(p))
        if p0 is None or p0.get("net_quantity") == 0:
            check("positions: fresh position's average_price is the fill price",
                  p["average_price"] == fill, f"{p!r} fill={fill}")

    trades = await c.ok("trades", {})
    tlist = trades.get("trades") if isinstance(trades, dict) else None
    check("trades: result has a `trades` list", isinstance(tlist, list), repr(trades))
    tlist = tlist or []
    bad = [p for x in tlist for p in spec_problems(x, TRADE_SPEC)]
    check("trades: every entry has the documented fields and types", not bad,
          "; ".join(bad[:5]))
    mine = [t for t in tlist if t.get("order_id") == oid]
    check("trades: the MARKET order's fills sum to its quantity at its price",
          mine and sum(t.get("quantity", 0) for t in mine) == qty
          and all(t.get("side") == "BUY" and t.get("price") == fill
                  and t.get("exchange") == EXCHANGE and t.get("symbol") == SYMBOL
                  for t in mine), repr(mine))
    check("trades: one more trade than before",
          len(tlist) - len((trades0 or {}).get("trades") or []) == len(mine) and mine,
          f"before={len((trades0 or {}).get('trades') or [])} after={len(tlist)}")
    ts = [t.get("ts_ms") for t in tlist]
    check("trades: oldest first (ts_ms non-decreasing)",
          all(is_int(a) and is_int(b) and a <= b for a, b in zip(ts, ts[1:])), repr(ts))
    check("trades: no trade for the cancelled LIMIT order",
          all(t.get("order_id") != ctx.get("limit_oid") for t in tlist))


async def step_events(c, ctx):
    """4: read orders.<USER_ID>.events page by page from the start (Replaying your events);
    check the cancelled order's path."""
    oid, moid = ctx.get("limit_oid"), ctx.get("market_oid")
    events = {oid: [], moid: []}
    msgs = []
    pages = []
    after = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        page = await c.ok("events", {"after": after, "limit": 3})
        pages.append(page)
        for stored in page.get("events") or []:
            ev = stored.get("event") if isinstance(stored, dict) else None
            msgs.append((stored, ev))
            order = ev.get("order") if isinstance(ev, dict) else None
            if isinstance(order, dict) and order.get("order_id") in events:
                events[order["order_id"]].append(ev)
        after = page.get("last_sequence")
        if page.get("pending") == 0:
            # Caught up. Events are relayed after the commit: until both orders' last
            # events are stored, ask again from here a moment later.
            settled = [(oid, "CANCELLED"), (moid, "FILLED")]
            if all(any(e["order"].get("status") == st for e in events[o]) for o, st in settled):
                break
            await asyncio.sleep(0.2)
    seqs = [stored.get("sequence") for stored, _ in msgs]
    check("events: pages of at most `limit`, sequences rising, last_sequence = the last one",
          all(len(p.get("events") or []) <= 3 for p in pages)
          and all(is_int(a) and is_int(b) and a < b for a, b in zip(seqs, seqs[1:]))
          and (not seqs or pages[-1].get("last_sequence") == seqs[-1]), repr(seqs))
    past = await c.ok("events", {"after": after})
    check("events: past the end, an empty page at the same place",
          past.get("events") == [] and past.get("pending") == 0
          and past.get("last_sequence") == after, repr(past))
    expect_error("events: after and since_ms together: INVALID_REQUEST",
                 await c.call("events", {"after": 1, "since_ms": 1}), "INVALID_REQUEST")
    check("events: replayed something from ORDER_EVENTS", bool(msgs))
    bad = []
    for stored, ev in msgs:
        bad += spec_problems(ev, EVENT_SPEC)
        if isinstance(ev, dict) and isinstance(ev.get("order"), dict):
            bad += ["order." + p for p in spec_problems(ev["order"], ORDER_SPEC)]
        if not str(stored.get("traceparent") or "").startswith("00-"):
            bad.append(f"traceparent {stored.get('traceparent')!r}")
    check("events: every event has documented fields/types and a traceparent",
          not bad, "; ".join(bad[:5]))
    ids = [ev.get("event_id") for _, ev in msgs]
    check("events: event_ids are unique UUIDs",
          len(set(ids)) == len(ids) and all(UUID_RE.match(i or "") for i in ids))

    def path_problems(evs):
        problems = []
        if not evs:
            return ["no events"]
        if evs[0].get("previous_status") is not None or evs[0]["order"].get("status") != "NEW":
            problems.append(f"first event is {evs[0].get('previous_status')!r} -> "
                            f"{evs[0]['order'].get('status')!r}, doc says nil -> NEW")
        for a, b in zip(evs, evs[1:]):
            if b.get("previous_status") != a["order"].get("status"):
                problems.append(f"gap: {a['order'].get('status')} then "
                                f"{b.get('previous_status')} -> {b['order'].get('status')}")
        for e in evs[1:]:
            frm, to = e.get("previous_status"), e["order"].get("status")
            if to not in ALLOWED.get(frm, set()):
                problems.append(f"{frm} -> {to} is not an allowed move")
        tss = [e.get("ts_ms") for e in evs]
        if any(not is_int(x) for x in tss) or tss != sorted(tss):
            problems.append(f"ts_ms not in order: {tss}")
        return problems

    evs = events.get(oid) or []
    pairs = [(e.get("previous_status"), e.get("order", {}).get("status")) for e in evs]
    print(f"INFO cancelled order path: {pairs}")
    probs = path_problems(evs)
    check("events (cancelled order): starts nil -> NEW, consecutive, every move allowed",
          not probs, "; ".join(probs))
    # What the doc's state machine and the paper broker say this order went through:
    # placed -> NEW, sent -> SUBMITTED, rests -> OPEN; each modify goes OPEN -> PENDING_MODIFY
    # -> OPEN ("a change is on its way to the broker"); cancel goes OPEN -> PENDING_CANCEL
    # -> CANCELLED.
    n_mod = len(ctx.get("limit_modifies") or [])
    expected = ([(None, "NEW"), ("NEW", "SUBMITTED"), ("SUBMITTED", "OPEN")]
                + [("OPEN", "PENDING_MODIFY"), ("PENDING_MODIFY", "OPEN")] * n_mod
                + [("OPEN", "PENDING_CANCEL"), ("PENDING_CANCEL", "CANCELLED")])
    check("events (cancelled order): exactly NEW, SUBMITTED, OPEN, "
          f"{n_mod}x(PENDING_MODIFY, OPEN), PENDING_CANCEL, CANCELLED",
          pairs == expected, f"got {pairs}")
    last = evs[-1]["order"] if evs else {}
    fq, fp = ctx.get("limit_final", (None, None))
    check("events (cancelled order): last event's record is CANCELLED with final qty/price",
          last.get("status") == "CANCELLED" and last.get("quantity") == fq
          and last.get("price") == fp, repr(last))
    open_after = [e["order"] for e in evs if e.get("previous_status") == "PENDING_MODIFY"]
    check("events (cancelled order): records after each modify carry the new quantity/price",
          [(o.get("quantity"), o.get("price")) for o in open_after]
          == list(ctx.get("limit_modifies") or []),
          repr([(o.get("quantity"), o.get("price")) for o in open_after]))
    check("events (cancelled order): nothing after CANCELLED (final)",
          all(e["order"].get("status") == "CANCELLED" for e in evs[-1:])
          and sum(1 for e in evs if e.get("previous_status") == "CANCELLED") == 0, repr(pairs))

    mevs = events.get(moid) or []
    mpairs = [(e.get("previous_status"), e.get("order", {}).get("status")) for e in mevs]
    print(f"INFO market order path: {mpairs}")
    probs = path_problems(mevs)
    check("events (market order): starts nil -> NEW, consecutive, ends FILLED, moves allowed",
          not probs and mpairs and mpairs[-1][1] == "FILLED", "; ".join(probs) or repr(mpairs))


async def step_errors(c):
    """5: error codes."""
    expect_error("get unknown order_id: NOT_FOUND",
                 await c.call("get", {"order_id": str(uuid.uuid4())}), "NOT_FOUND")
    expect_error("get unknown client_order_id: NOT_FOUND",
                 await c.call("get", {"client_order_id": "no-such-order-xyz"}), "NOT_FOUND")
    expect_error("cancel unknown order_id: NOT_FOUND",
                 await c.call("cancel", {"order_id": str(uuid.uuid4())}), "NOT_FOUND")
    expect_error("modify unknown client_order_id: NOT_FOUND",
                 await c.call("modify", {"client_order_id": "no-such-order-xyz",
                                         "quantity": 2}), "NOT_FOUND")
    expect_error("get with neither order_id nor client_order_id: INVALID_REQUEST",
                 await c.call("get", {}), "INVALID_REQUEST")
    expect_error("cancel with neither id: INVALID_REQUEST",
                 await c.call("cancel", {}), "INVALID_REQUEST")
    expect_error("list with a bad status name: BAD_PAYLOAD",
                 await c.call("list", {"status": ["NOT_A_STATE"]}), "BAD_PAYLOAD")
    expect_error("list with a lower-case status name: BAD_PAYLOAD",
                 await c.call("list", {"status": ["open"]}), "BAD_PAYLOAD")
    expect_error("list with limit 0 (range is 1-500): INVALID_REQUEST",
                 await c.call("list", {"limit": 0}), "INVALID_REQUEST")
    expect_error("list with limit 501 (range is 1-500): INVALID_REQUEST",
                 await c.call("list", {"limit": 501}), "INVALID_REQUEST")


async def step_rate_limit(c, nc, ctx):
    """6: go past the per-second limit (default 9 place/modify/cancel); a RATE_LIMITED
    request is resent, unchanged, after a one-second wait and then gets its real answer."""
    ltp = await last_ltp(nc, EXCHANGE, SYMBOL)
    price = max(5, (ltp // 4) // 5 * 5)

    def limit_req():
        return {"client_order_id": f"chk-rl-{uuid.uuid4().hex[:20]}", "exchange": EXCHANGE,
                "symbol": SYMBOL, "side": "BUY", "order_type": "LIMIT", "quantity": 1,
                "price": price}

    placed = []  # client_order_ids that must be cancelled at the end
    funds0 = await c.ok("funds", {})
    await asyncio.sleep(1.1)  # a fresh one-second window

    # Back-to-back (one at a time, no pause): the 10th within the second is RATE_LIMITED.
    reqs = [limit_req() for _ in range(12)]
    replies = []
    t0 = time.monotonic()
    for q in reqs:
        replies.append(await c.call("place", q, retry_rate_limited=False))
    took = time.monotonic() - t0
    codes = [err_code(r) or r["result"].get("status") for r in replies]
    n_ok = sum(1 for r in replies if r.get("ok"))
    limited = [q for q, r in zip(reqs, replies) if err_code(r) == "RATE_LIMITED"]
    placed += [q["client_order_id"] for q, r in zip(reqs, replies) if r.get("ok")]
    check(f"rate limit: 12 back-to-back places in {took:.2f}s: at most 9 accepted, "
          "the rest RATE_LIMITED",
          took >= 1.0 or (n_ok <= 9 and limited
                          and all(x in ("OPEN", "RATE_LIMITED") for x in codes)), repr(codes))
    if limited:
        rl = next(r for r in replies if err_code(r) == "RATE_LIMITED")
        expect_error("rate limit: reply is an error with Pinnacle-Error RATE_LIMITED", rl,
                     "RATE_LIMITED")
        # "wait a second and resend the same request"
        before = c.stats["rate_limited"]
        await asyncio.sleep(1.0)
        again = [await c.call("place", q) for q in limited]
        check("rate limit: after a second, resending the same requests places them (OPEN)",
              all(r.get("ok") and r["result"].get("status") == "OPEN"
                  and r["result"].get("client_order_id") == q["client_order_id"]
                  for q, r in zip(limited, again)),
              f"{[err_code(r) or r['result'].get('status') for r in again]} "
              f"(resends after RATE_LIMITED: {c.stats['rate_limited'] - before})")
        placed += [q["client_order_id"] for q, r in zip(limited, again) if r.get("ok")]

    # Concurrent burst: the limit is per second, so it must hold for parallel requests too.
    await asyncio.sleep(1.1)
    reqs = [limit_req() for _ in range(15)]
    t0 = time.monotonic()
    replies = await asyncio.gather(*[c.call("place", q, retry_rate_limited=False)
                                     for q in reqs])
    took = time.monotonic() - t0
    codes = [err_code(r) or r["result"].get("status") for r in replies]
    n_ok = sum(1 for r in replies if r.get("ok"))
    placed += [q["client_order_id"] for q, r in zip(reqs, replies) if r.get("ok")]
    check(f"rate limit: 15 concurrent places in {took:.2f}s: at most 9 accepted",
          took >= 1.0 or n_ok <= 9, f"{n_ok} accepted: {codes}")

    # Clean up one at a time with the client's wait-and-resend rule; all must end CANCELLED.
    await asyncio.sleep(1.1)
    before = c.stats["rate_limited"]
    results = [await c.call("cancel", {"client_order_id": coid}) for coid in placed]
    statuses = [err_code(r) or r["result"].get("status") for r in results]
    resends = c.stats["rate_limited"] - before
    check(f"rate limit: {len(placed)} back-to-back cancels with wait-and-resend "
          f"({resends} RATE_LIMITED resends) all end CANCELLED",
          all(x == "CANCELLED" for x in statuses) and (len(placed) <= 9 or resends > 0),
          repr(statuses))
    funds = await c.ok("funds", {})
    check("funds after cleanup: blocked back to where it was",
          funds.get("blocked") == funds0.get("blocked"), f"before={funds0!r} after={funds!r}")
    note(f"client resends: {c.stats}")


async def step_retry_same_request(c, nc, ctx):
    """6: a timeout / no-responders resend is the same request; place stays idempotent."""
    coid = f"chk-retry-{uuid.uuid4().hex[:20]}"
    req = {"client_order_id": coid, "exchange": EXCHANGE, "symbol": SYMBOL, "side": "BUY",
           "order_type": "MARKET", "quantity": 1}
    await asyncio.sleep(1.1)  # a fresh rate-limit window
    # Simulate a reply that was lost: send, ignore the reply, then resend the same request.
    data = msgpack.packb(req)
    headers = {"Authorization": f"Bearer {c.token}"}
    inbox = nc.new_inbox()
    lost = await asyncio.wait_for(nc.subscribe(inbox), STEP_TIMEOUT)
    await asyncio.wait_for(nc.publish(f"orders.{c.user_id}.place", data, reply=inbox,
                                      headers=headers), STEP_TIMEOUT)
    first = msgpack.unpackb((await lost.next_msg(timeout=STEP_TIMEOUT)).data)
    await asyncio.wait_for(lost.unsubscribe(), STEP_TIMEOUT)
    second = await c.ok("place", req)
    check("retry after a lost reply: same order returned",
          first.get("ok") and second.get("order_id") == first["result"].get("order_id"),
          f"first={first!r} second={second!r}")
    lst = (await c.ok("list", {"limit": 500})).get("orders") or []
    check("retry after a lost reply: exactly one order with that client_order_id",
          sum(1 for o in lst if o.get("client_order_id") == coid) == 1)
    # No responders: the bare subject `orders` has none; the client sees NoRespondersError.
    try:
        await asyncio.wait_for(nc.request("orders", b"", timeout=2, headers=headers), 3)
        check("bare subject `orders` has no responders", False, "got a reply")
    except NoRespondersError:
        check("bare subject `orders` has no responders", True)
    except (NatsTimeoutError, asyncio.TimeoutError):
        check("bare subject `orders` has no responders", False, "timed out instead")


# --- main -----------------------------------------------------------------------

async def main(env_path):
    env = parse_env(env_path)
    user_id, token = env["DEMO_USER_ID"], env["DEMO_API_TOKEN"]

    async def on_error(e):  # failures surface as checks; keep nats-py quiet
        pass

    nc = await asyncio.wait_for(
        nats.connect(env["NATS_URL"], connect_timeout=STEP_TIMEOUT, max_reconnect_attempts=1,
                     allow_reconnect=False, error_cb=on_error), STEP_TIMEOUT + 1)
    c = Client(nc, user_id, token)
    ctx = {}
    try:
        steps = [
            ("limit order", lambda: step_limit_order(c, nc, ctx), 25),
            ("market order", lambda: step_market_order(c, ctx), 15),
            ("errors", lambda: step_errors(c), 15),
            ("events", lambda: step_events(c, ctx), 20),
            ("rate limit", lambda: step_rate_limit(c, nc, ctx), 30),
            ("retry", lambda: step_retry_same_request(c, nc, ctx), 10),
        ]
        for name, step, limit in steps:
            try:
                await asyncio.wait_for(step(), limit)
            except Exception as e:  # noqa: BLE001
                check(f"{name}: step completed", False, f"{type(e).__name__}: {e}")
    finally:
        try:
            await asyncio.wait_for(nc.close(), STEP_TIMEOUT)
        except Exception:  # noqa: BLE001
            pass


def run():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} <path to dev.env>", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), OVERALL_TIMEOUT))
    except Exception as e:  # noqa: BLE001
        check("run completed", False, f"{type(e).__name__}: {e}")
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    run()
