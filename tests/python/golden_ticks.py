#!/usr/bin/env python3
"""Golden frames for the SmartWebSocketV2 tick decoder, decoded by Angel One's own SDK.

Builds binary ticks with known field values (our own encoder, written from SPEC §8.5-8.6),
runs each through the official Python SDK's parser (`SmartWebSocketV2._parse_binary_data`
from the `smartapi-python==1.5.5` wheel) and writes `smartapi/tests/golden/ticks.json`:
a list of `{name, hex, sdk}` where `sdk` is the dict the SDK returned. The Rust test
`smartapi/tests/golden.rs` decodes every `hex` and compares it field by field with `sdk`.

    .venv/bin/python tests/python/golden_ticks.py            # regenerate the file
    .venv/bin/python tests/python/golden_ticks.py --check    # fail if it is stale

Packaging quirks of the 1.5.5 wheel (SPEC §11) handled here:
* `import SmartApi` makes an HTTP request at import time, so `smartWebSocketV2.py` is
  loaded by path (its own imports are only `websocket` and `logzero`).
* Constructing `SmartWebSocketV2` creates `./logs/`, so it is constructed in a temporary
  working directory.
* The wheel installs a top-level `test` package that shadows the standard library's;
  nothing here imports `test`.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "smartapi" / "tests" / "golden" / "ticks.json"

LENGTHS = {1: 51, 2: 123, 3: 379, 4: 443}


def load_sdk_class():
    """SmartWebSocketV2 from the installed wheel, without importing the SmartApi package."""
    spec = importlib.util.find_spec("SmartApi")  # locates only; does not run __init__
    if spec is None or not spec.submodule_search_locations:
        sys.exit("golden_ticks: smartapi-python is not installed (run scripts/setup.sh)")
    path = Path(spec.submodule_search_locations[0]) / "smartWebSocketV2.py"
    module_spec = importlib.util.spec_from_file_location("sdk_smart_websocket_v2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SmartWebSocketV2


@contextlib.contextmanager
def scratch_cwd():
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="golden-ticks-") as tmp:
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(old)


class Frame:
    """A little-endian tick built field by field at SPEC offsets."""

    def __init__(self, mode, exchange, token, trailing=b""):
        self.buf = bytearray(LENGTHS[mode])
        self.buf[0] = mode
        self.buf[1] = exchange
        raw = token.encode("ascii")
        assert len(raw) <= 25
        self.buf[2 : 2 + len(raw)] = raw
        self.trailing = trailing

    def put(self, fmt, offset, value):
        struct.pack_into("<" + fmt, self.buf, offset, value)
        return self

    def header(self, seq, ts_ms, ltp):
        return self.put("q", 27, seq).put("q", 35, ts_ms).put("q", 43, ltp)

    def quote(self, ltq, atp, volume, buy, sell, o, h, l, c):
        for off, fmt, v in [
            (51, "q", ltq), (59, "q", atp), (67, "q", volume), (75, "d", buy),
            (83, "d", sell), (91, "q", o), (99, "q", h), (107, "q", l), (115, "q", c),
        ]:
            self.put(fmt, off, v)
        return self

    def snap(self, ltt_s, oi, oi_pct, best5, upper, lower, hi52, lo52):
        self.put("q", 123, ltt_s).put("q", 131, oi).put("d", 139, oi_pct)
        assert len(best5) == 10
        for i, (flag, qty, price, orders) in enumerate(best5):
            base = 147 + 20 * i
            # Unsigned 16-bit, as the SDK reads them (`<H`).
            self.put("H", base, flag).put("q", base + 2, qty)
            self.put("q", base + 10, price).put("H", base + 18, orders)
        return self.put("q", 347, upper).put("q", 355, lower).put("q", 363, hi52).put("q", 371, lo52)

    def depth(self, exchange_ts, received_ts, bids, asks):
        self.put("q", 27, exchange_ts).put("q", 35, received_ts)
        for start, levels in ((43, bids), (243, asks)):
            assert len(levels) == 20
            for i, (qty, price, orders) in enumerate(levels):
                base = start + 10 * i
                self.put("i", base, qty).put("i", base + 4, price).put("h", base + 8, orders)
        return self

    def bytes(self):
        return bytes(self.buf) + self.trailing


def book(best_price, step, side_flag):
    return [(side_flag, 100 * (i + 1), best_price + step * i, i + 1) for i in range(5)]


def vectors():
    """(name, frame bytes): every mode, several exchange types, the awkward cases."""
    ts = 1_732_000_000_000  # epoch ms
    out = []
    out.append(("ltp_nse_cm", Frame(1, 1, "2885").header(1_234_567, ts, 245_050)))
    out.append(("ltp_index_seq0", Frame(1, 1, "99926000").header(0, ts + 1, 2_439_015)))
    out.append(("ltp_cde_fo_currency", Frame(1, 13, "1180").header(77, ts + 2, 832_525_000)))
    out.append(("ltp_mcx_25char_token_negative",
                Frame(1, 5, "ABCDEFGHIJKLMNOPQRSTUVWXY").header(-1, ts + 3, -150)))
    out.append(("ltp_ncx_trailing_bytes",
                Frame(1, 7, "NCX1", trailing=b"\x01\x02\x03\x04\x05").header(9, ts + 4, 410_000)))
    out.append(("quote_nse_fo", Frame(2, 2, "43512").header(55, ts + 5, 2_440_000).quote(
        75, 2_438_550, 1_234_500, 156_225.0, 98_150.0, 2_420_000, 2_445_000, 2_410_000, 2_415_500)))
    out.append(("quote_bse_cm_negative_and_fractional", Frame(2, 3, "500325").header(
        -42, ts + 6, -1).quote(-3, -250, 0, 0.5, -12.25, -100, 0, -999_999_999, 123)))
    out.append(("quote_cde_fo_currency", Frame(2, 13, "1181").header(3, ts + 7, 832_600_000).quote(
        1, 832_550_000, 500, 1_000.0, 2_000.0, 832_000_000, 833_000_000, 831_500_000, 832_100_000)))
    out.append(("quote_bse_fo_trailing_bytes", Frame(2, 4, "1138", trailing=b"\xff" * 3).header(
        8, ts + 8, 10_000).quote(10, 10_001, 20, 30.0, 40.0, 9_000, 11_000, 8_000, 9_500)))
    standard = book(2_440_000, -5, 1) + book(2_440_005, 5, 0)
    out.append(("snap_nse_fo_standard_book", Frame(3, 2, "43512").header(56, ts + 9, 2_440_000).quote(
        75, 2_438_550, 1_234_500, 156_225.0, 98_150.0, 2_420_000, 2_445_000, 2_410_000, 2_415_500)
        .snap(1_732_000_000, 1_520_000, 2.5, standard, 2_684_000, 2_196_000, 2_600_000, 1_800_000)))
    mixed = [(1, 10, 100, 1), (0, 20, 101, 2), (1, 30, 99, 3), (0, 40, 102, 4), (0, 50, 103, 5),
             (1, 60, 98, 6), (1, 70, 97, 7), (0, 80, 104, 8), (1, 90, 96, 9), (0, 100, 105, 10)]
    out.append(("snap_mcx_mixed_flags", Frame(3, 5, "234230").header(57, ts + 10, 100).quote(
        5, 100, 1_000, 500.0, 600.0, 95, 105, 90, 99)
        .snap(1_732_000_001, 8_000, -0.75, mixed, 120, 80, 150, 50)))
    # Flag 0xffff and 0xffff orders: Python reads both as unsigned (65535, never -1).
    odd = [(0xFFFF, 1, 1_000, 0xFFFF)] + [(1, 2, 999, 2)] * 4 + [(0, 3, 1_001, 3)] * 4 + [(2, 4, 998, 4)]
    out.append(("snap_bse_cm_signed_flags_and_orders", Frame(3, 3, "500112").header(
        58, ts + 11, 1_000).quote(1, 1_000, 1, 1.0, 1.0, 1_000, 1_000, 1_000, 1_000)
        .snap(1_732_000_002, 0, 0.0, odd, 1_100, 900, 1_200, -5)))
    # The u16 extremes of the best-five order count and flag: 0, 1, 32767, 32768 (the first
    # value a signed read turns negative) and 65535, on both sides of the book.
    extremes = [0, 1, 0x7FFF, 0x8000, 0xFFFF]
    orders_book = [(1, 10 + i, 2_000 - i, n) for i, n in enumerate(extremes)] + [
        (0, 20 + i, 2_001 + i, n) for i, n in enumerate(reversed(extremes))]
    out.append(("snap_nse_cm_best_five_orders_u16_extremes", Frame(3, 1, "2885").header(
        61, ts + 18, 2_000).quote(1, 2_000, 10, 1.0, 1.0, 2_000, 2_000, 2_000, 2_000)
        .snap(1_732_000_005, 0, 0.0, orders_book, 2_200, 1_800, 2_500, 1_500)))
    flags_book = [(f, 30 + i, 3_000 - i, i + 1) for i, f in enumerate(extremes * 2)]
    out.append(("snap_nse_fo_best_five_flag_u16_extremes", Frame(3, 2, "43513").header(
        62, ts + 19, 3_000).quote(1, 3_000, 10, 1.0, 1.0, 3_000, 3_000, 3_000, 3_000)
        .snap(1_732_000_006, 5, 1.5, flags_book, 3_300, 2_700, 3_500, 2_500)))
    currency = book(832_525_000, -25_000, 1) + book(832_550_000, 25_000, 0)
    out.append(("snap_cde_fo_currency", Frame(3, 13, "1180").header(59, ts + 12, 832_525_000).quote(
        1_000, 832_500_000, 55_000, 12_345.0, 23_456.0, 832_000_000, 833_000_000, 831_000_000,
        832_250_000).snap(1_732_000_003, 12_000, 13.125, currency, 874_000_000, 791_000_000,
                          850_000_000, 810_000_000)))
    out.append(("snap_ncx_trailing_bytes", Frame(3, 7, "NCX9", trailing=b"\x00" * 8).header(
        60, ts + 13, 5_000).quote(2, 5_000, 3, 4.0, 5.0, 5_000, 5_100, 4_900, 4_950)
        .snap(1_732_000_004, 7, 100.0, standard, 6_000, 4_000, 7_000, 3_000)))
    bids = [(100 * (i + 1), 245_000 - 5 * i, i + 1) for i in range(20)]
    asks = [(150 * (i + 1), 245_005 + 5 * i, 20 - i) for i in range(20)]
    out.append(("depth_nse_cm", Frame(4, 1, "2885").depth(ts + 14, ts + 15, bids, asks)))
    negative = [(-(i + 1), -(i * 1_000), -i) for i in range(20)]
    out.append(("depth_nse_cm_negative_and_trailing",
                Frame(4, 1, "1594", trailing=b"\xab\xcd").depth(ts + 16, ts + 17, negative, bids)))
    return [(name, frame.bytes()) for name, frame in out]


def generate():
    sdk_class = load_sdk_class()
    with scratch_cwd():
        parser = sdk_class("jwt-placeholder", "api-key-placeholder", "CLIENT1", "feed-placeholder")
    result = []
    for name, frame in vectors():
        result.append({"name": name, "hex": frame.hex(), "sdk": parser._parse_binary_data(frame)})
    return json.dumps(result, indent=1) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    args = ap.parse_args()
    text = generate()
    count = len(json.loads(text))
    if args.check:
        committed = GOLDEN.read_text() if GOLDEN.exists() else ""
        if committed != text:
            print(f"FAIL golden_ticks: {GOLDEN.relative_to(ROOT)} differs from what the SDK "
                  "produces now; rerun tests/python/golden_ticks.py and commit it")
            return 1
        print(f"PASS golden_ticks: {count} SDK-decoded frames match {GOLDEN.relative_to(ROOT)}")
        return 0
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(text)
    print(f"golden_ticks: wrote {count} frames to {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
