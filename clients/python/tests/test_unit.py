"""Unit tests that need no server: escaping, decoding, candle bounds, the audit chain maths."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from datetime import datetime, timezone
from typing import List

import msgpack
import pytest

from pinnacle_client import (
    AuditKeys,
    Candles,
    ChainVerifier,
    DecodeError,
    ErrorCode,
    Order,
    OrderEvent,
    OrderStatus,
    PinnacleError,
    ProblemKind,
    SquareOff,
    Tick,
    TickMode,
    escape_token,
    ist_minute,
)
from pinnacle_client.audit import GENESIS, Link, parse_key_ring

TICK = {"exchange": "NSE", "symbol": "SBIN-EQ", "seq": 7, "ts_ms": 1, "ltp": 81_250,
        "last_qty": 3, "volume": 900, "bid": 81_245, "ask": 81_255, "mode": "LTP"}


def test_escape_token_has_one_spelling() -> None:
    assert escape_token("SBIN-EQ") == "SBIN-EQ"
    assert escape_token("NIFTY 50") == "NIFTY~2050"
    assert escape_token("BAJAJ.AUTO") == "BAJAJ~2EAUTO"
    assert escape_token("M&M_1") == "M&M_1"
    assert escape_token("a~b") == "a~7Eb"
    assert escape_token("é") == "~C3~A9"


def test_ist_minute_converts_aware_times_and_keeps_naive_ones() -> None:
    utc = datetime(2026, 11, 23, 3, 45, tzinfo=timezone.utc)
    assert ist_minute(utc) == "2026-11-23 09:15"
    assert ist_minute(datetime(2026, 11, 23, 15, 30)) == "2026-11-23 15:30"
    assert ist_minute("2026-11-23 10:00") == "2026-11-23 10:00"


def test_tick_decodes_optional_fields_and_rejects_wrong_types() -> None:
    tick = Tick.from_wire(TICK)
    assert tick.mode is TickMode.LTP and tick.open is None and tick.ltp == 81_250
    assert Tick.from_wire({**TICK, "open": 80_000, "extra": "ignored"}).open == 80_000
    with pytest.raises(DecodeError, match="ltp"):
        Tick.from_wire({**TICK, "ltp": "812.50"})
    with pytest.raises(DecodeError, match="seq"):
        Tick.from_wire({**TICK, "seq": True})
    with pytest.raises(DecodeError, match="mode"):
        Tick.from_wire({**TICK, "mode": "ltp"})  # enumerated strings are case-sensitive
    with pytest.raises(DecodeError):
        Tick.from_wire([1, 2])


def test_order_status_enum_is_parsed_strictly() -> None:
    order = {"order_id": "o", "client_order_id": "c", "exchange": "NSE", "symbol": "S",
             "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 5, "trigger_price": None,
             "product": "DELIVERY", "broker_order_id": None, "status": "OPEN", "filled_quantity": 0,
             "average_price": None, "reject_reason": None, "created_at_ms": 1, "updated_at_ms": 2}
    rec = Order.from_wire(order)
    assert rec.status is OrderStatus.OPEN and rec.status.is_working and not rec.status.is_final
    with pytest.raises(DecodeError, match="status"):
        Order.from_wire({**order, "status": "DONE"})


def test_nested_wire_types_decode_and_name_the_field_that_is_wrong() -> None:
    order = {"order_id": "o", "client_order_id": "c", "exchange": "NSE", "symbol": "S",
             "side": "SELL", "order_type": "MARKET", "quantity": 2, "product": "INTRADAY",
             "status": "FILLED", "filled_quantity": 2, "average_price": 7, "created_at_ms": 1,
             "updated_at_ms": 2}  # absent optional fields read as None
    event = OrderEvent.from_wire({"event_id": "e", "ts_ms": 3, "previous_status": "SUBMITTED",
                                  "order": order, "stream_seq": 99})
    assert event.previous_status is OrderStatus.SUBMITTED and event.order.price is None
    assert event.order.status is OrderStatus.FILLED and event.order.quantity == 2
    assert event.stream_seq == 0, "stream_seq is not on the wire: the stream reader sets it"
    with pytest.raises(DecodeError, match="quantity"):
        OrderEvent.from_wire({"event_id": "e", "ts_ms": 3, "order": {**order, "quantity": None}})
    with pytest.raises(DecodeError, match="order event"):
        OrderEvent.from_wire("not a map")
    candles = {"exchange": "NSE", "symbol": "S", "interval": "ONE_DAY", "source": "simulated",
               "candles": [{"ts_ms": 1, "open": 2, "high": 3, "low": 1, "close": 2, "volume": 9}]}
    decoded = Candles.from_wire(candles)
    assert decoded.candles[0].high == 3 and isinstance(decoded.candles, tuple)
    with pytest.raises(DecodeError, match="candles"):
        Candles.from_wire({**candles, "candles": None})
    with pytest.raises(DecodeError, match="volume"):
        Candles.from_wire({**candles, "candles": [{**candles["candles"][0], "volume": 1.5}]})
    square_off = {"cancelled": [], "closing": [order], "failed": [
        {"exchange": "NSE", "symbol": "TCS-EQ", "order_id": None,
         "error": {"code": "PRICE_UNAVAILABLE", "message": "no last price"}}]}
    done = SquareOff.from_wire(square_off)
    assert done.closing[0].side.value == "SELL" and done.failed[0].order_id is None
    assert done.failed[0].error.code == ErrorCode.PRICE_UNAVAILABLE
    with pytest.raises(DecodeError, match="code"):
        SquareOff.from_wire({**square_off, "failed": [{**square_off["failed"][0], "error": {}}]})


def test_error_codes_compare_as_strings_and_know_what_is_retryable() -> None:
    err = PinnacleError("RATE_LIMITED", "slow down")
    assert err.code == ErrorCode.RATE_LIMITED and err.retryable
    assert not PinnacleError("FORBIDDEN", "no").retryable
    assert PinnacleError("SOME_NEW_CODE", "later versions add codes").code == "SOME_NEW_CODE"


def test_key_ring_parsing() -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    assert parse_key_ring(["# comment", "", f"3:{key}"]) == {3: bytes(range(32))}
    with pytest.raises(ValueError):
        parse_key_ring([f"1:{key}", f"1:{key}"])
    with pytest.raises(ValueError):
        parse_key_ring(["not a key"])
    with pytest.raises(ValueError):
        AuditKeys({1: b"short"})


def test_hkdf_matches_rfc5869_construction() -> None:
    # HKDF-SHA256 with one output block, written out independently of the module.
    master = bytes(range(32))
    prk = hmac.new(b"pinnacle/hkdf/v1", master, hashlib.sha256).digest()
    chain_key = hmac.new(prk, b"pinnacle/audit-chain\x01", hashlib.sha256).digest()
    keys = AuditKeys({1: master})
    subject, payload = "audit.credential.u", b"\x81\xa1a\x01"
    msg = (b"pinnacle/audit-chain/v1" + struct.pack(">Q", len(subject)) + subject.encode()
           + struct.pack(">IQQ", 1, 1, 0) + GENESIS + struct.pack(">Q", len(payload)) + payload)
    want = hmac.new(chain_key, msg, hashlib.sha256).digest()
    assert keys.link_hash(1, subject, 1, 0, GENESIS, payload) == want
    assert keys.link_hash(2, subject, 1, 0, GENESIS, payload) is None


def _chain(keys: AuditKeys, subject: str, n: int, start_seq: int = 1) -> List[Link]:
    links, prev_seq, prev_hash = [], 0, GENESIS
    for i in range(n):
        seq = start_seq + 2 * i  # another chain interleaves
        payload = msgpack.packb({"event_id": f"e{i}", "purpose": "order.place"})
        h = keys.link_hash(1, subject, i + 1, prev_seq, prev_hash, payload)
        assert h is not None
        links.append(Link(seq, subject, payload, i + 1, prev_seq, prev_hash, h, 1))
        prev_seq, prev_hash = seq, h
    return links


def _verify(links: List[Link], keys: "AuditKeys | None") -> ChainVerifier:
    v = ChainVerifier(keys)
    for link in links:
        v.add_link(link)
    return v


def test_verifier_accepts_an_intact_chain_and_finds_each_kind_of_tampering() -> None:
    keys = AuditKeys({1: bytes(32)})
    links = _chain(keys, "audit.credential.u", 5)
    report = _verify(links, keys).report()
    assert report.ok and report.links == 5 and report.chains == 1 and report.hashes_checked

    edited = list(links)
    edited[2] = Link(**{**edited[2].__dict__, "payload": edited[2].payload.replace(b"e2", b"e9")})
    report = _verify(edited, keys).report()
    assert report.first_bad_seq == links[2].seq
    assert report.problems[0].kind is ProblemKind.BAD_HASH
    # Without the key an edited payload cannot be seen, but the structure still holds.
    assert _verify(edited, None).report().ok

    deleted = links[:2] + links[3:]
    report = _verify(deleted, None).report()
    assert report.first_bad_seq == links[2].seq and report.problems[0].kind is ProblemKind.POSITION

    swapped = links[:1] + [links[2], links[1]] + links[3:]
    report = _verify(swapped, None).report()
    assert not report.ok and report.problems[0].kind is ProblemKind.POSITION

    truncated_head = links[1:]
    report = _verify(truncated_head, None).report()
    assert report.problems[0].kind is ProblemKind.MISSING


def test_verifier_checks_checkpoints() -> None:
    from pinnacle_client.audit import Checkpoint

    keys = AuditKeys({1: bytes(32)})
    links = _chain(keys, "audit.credential.u", 3)

    def signed(link: Link, seq: int) -> Checkpoint:
        cp = Checkpoint(seq, link.subject, link.seq, link.position, link.hash, 1, 1234, b"")  # seq: its own message
        sig = keys.checkpoint_signature(cp)
        assert sig is not None
        return Checkpoint(**{**cp.__dict__, "signature": sig})

    v = _verify(links, keys)
    v.add_checkpoint(signed(links[2], 10))
    assert v.report().ok and v.report().checkpoints == 1

    v = _verify(links[:2], keys)  # the tail was dropped after it was checkpointed
    v.add_checkpoint(signed(links[2], 10))
    assert v.report().problems[0].kind is ProblemKind.TRUNCATED

    forged = signed(links[2], 10)
    forged = Checkpoint(**{**forged.__dict__, "ts_ms": 99})
    v = _verify(links, keys)
    v.add_checkpoint(forged)
    assert v.report().problems[0].kind is ProblemKind.BAD_SIGNATURE
