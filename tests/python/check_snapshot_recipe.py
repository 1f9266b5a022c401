#!/usr/bin/env python3
"""Runs the snapshot recipe of docs/PROTOCOL.md ("Market data: snapshots and gap healing")
verbatim against a running `pinnacle dev` stack, and checks the picture it builds.

The recipe is the fenced Python block after the `<!-- recipe: snapshot -->` marker; it is
executed as written (its `main()` too), then its `Picture` is driven through a late start,
a dropped connection and a forced gap. Usage:

    .venv/bin/python tests/python/check_snapshot_recipe.py <data-dir>/dev.env

Prints one line per check and `N passed, M failed`; exits non-zero if any check failed.
"""

import asyncio
import contextlib
import io
import re
import sys
from pathlib import Path

import msgpack
import nats

ROOT = Path(__file__).resolve().parents[2]
OVERALL_TIMEOUT = 60.0
MARKER = "<!-- recipe: snapshot"

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


def recipe_source():
    text = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    start = text.index(MARKER)
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    if block is None:
        sys.exit("check_snapshot_recipe: no python block after the recipe marker")
    return block.group(1)


def load_recipe():
    namespace = {"__name__": "snapshot_recipe"}
    exec(compile(recipe_source(), "docs/PROTOCOL.md#recipe", "exec"), namespace)
    return namespace


def parse_env(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep:
                env[key] = value
    return env


async def fresh_snapshot(nc, subject="md.tick.>"):
    """Every tick under `subject` now, by tick subject (independent of the recipe)."""
    out, after = {}, None
    while True:
        req = {"subject": subject, "after": after, "limit": 2}
        reply = msgpack.unpackb((await nc.request("md.req.snapshot", msgpack.packb(req), timeout=5)).data)
        page = reply["result"]
        for tick in page["ticks"]:
            out[tick["exchange"] + "." + tick["symbol"]] = tick
        after = page["next"]
        if after is None:
            return out


def keyed(picture):
    return {t["exchange"] + "." + t["symbol"]: t for t in picture.ticks.values()}


async def caught_up(picture, target, timeout=10.0):
    """Waits until the picture holds every target symbol at or past the target's seq."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        held = keyed(picture)
        if all(k in held and held[k]["seq"] >= t["seq"] for k, t in target.items()):
            return held
        await asyncio.sleep(0.05)
    return None


def exact(held, target):
    """Symbols at the same seq must be identical ticks; returns (compared, mismatches)."""
    same = [k for k, t in target.items() if held[k]["seq"] == t["seq"]]
    bad = [k for k in same if held[k] != target[k]]
    return len(same), bad


async def main(env_path):
    env = parse_env(env_path)
    url = env.get("NATS_URL", "nats://127.0.0.1:4222")
    recipe = load_recipe()
    Picture = recipe["Picture"]

    # The example as a user runs it: it prints what it rebuilt.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        await recipe["main"](url)
    printed = out.getvalue()
    check("the recipe's main() runs and reports symbols and exchanges",
          re.match(r"^[1-9]\d* symbols; \[.*'NSE'.*\] exchanges$", printed.strip()), printed)

    # Late start: the picture and every exchange's status at once.
    nc = await nats.connect(url)
    picture = Picture("md.tick.>")
    await picture.start(nc)
    check("status of every exchange right after start, with no md.status wait",
          {"NSE", "BSE", "NFO", "BFO", "CDS", "MCX"} <= set(picture.status), sorted(picture.status))
    target = await fresh_snapshot(nc)
    check("the snapshot covers every ticking symbol", len(picture.ticks) >= len(target) >= 5,
          f"{len(picture.ticks)} held, {len(target)} ticking")
    held = await caught_up(picture, target)
    if check("live ticks carry the picture past the service's snapshot", held is not None):
        compared, bad = exact(held, target)
        check("the rebuilt picture equals the service's ticks", compared > 0 and not bad,
              f"{compared} compared, differ: {bad}")

    # Dropped connection: ticks missed while away are healed by start() on a new one.
    before = keyed(picture)
    await nc.close()
    await asyncio.sleep(1.0)
    nc = await nats.connect(url)
    await picture.start(nc)
    after = keyed(picture)
    moved = [k for k in before if after[k]["seq"] > before[k]["seq"] + 1]
    check("after a reconnect the snapshot skips the missed ticks", moved, "no symbol moved")
    target = await fresh_snapshot(nc)
    held = await caught_up(picture, target)
    if check("the healed picture catches up", held is not None):
        compared, bad = exact(held, target)
        check("the healed picture equals the service's ticks", compared > 0 and not bad,
              f"{compared} compared, differ: {bad}")

    # A forced gap: set one symbol back; its next tick jumps, and the recipe re-snapshots.
    key = next(iter(picture.ticks))
    picture.ticks[key] = dict(picture.ticks[key], seq=picture.ticks[key]["seq"] - 5)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while picture.gaps == 0 and loop.time() < deadline:
        await asyncio.sleep(0.05)
    check("a seq jump is seen as a gap", picture.gaps > 0)
    if picture.healing is not None:
        await asyncio.wait_for(picture.healing, 5)
    check("the gap is healed by a snapshot", picture.healing is not None and picture.healing.done()
          and picture.healing.exception() is None)
    await nc.drain()


def run():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), OVERALL_TIMEOUT))
    except Exception as error:  # noqa: BLE001 - any failure is a failed check
        check("the recipe ran to the end", False, repr(error))
    print(f"check_snapshot_recipe: {PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(run())
