"""The audit-stream reader and chain verifier against the real AUDIT stream, and against
tampered copies of it."""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List

import pytest

from conftest import with_client
from pinnacle_client import AuditKeys, ChainVerifier, Client, OrderType, ProblemKind, Side
from pinnacle_client.audit import AuditMessage, parse_link
from pinnacle_client import wire


@pytest.fixture(scope="module")
def keys(env: Dict[str, str]) -> AuditKeys:
    if not env.get("PINNACLE_MASTER_KEY_FILE"):
        pytest.skip("dev.env names no master key file")
    return AuditKeys.from_file(env["PINNACLE_MASTER_KEY_FILE"])


def _read(env: Dict[str, str], user_id: str) -> List[AuditMessage]:
    async def body(client: Client) -> List[AuditMessage]:
        # An order reaches the credentials, so the chain has at least one order.place link.
        await client.orders.place("NSE", "HDFCBANK-EQ", Side.BUY, OrderType.MARKET, 1)
        return [m async for m in client.audit().messages(user_id)]

    return with_client(env, body)


def _verify(msgs: List[AuditMessage], keys: "AuditKeys | None") -> ChainVerifier:
    v = ChainVerifier(keys)
    for m in msgs:
        v.add_message(m.seq, m.subject, m.payload, m.headers)
    return v


def test_the_real_chain_verifies(env: Dict[str, str], keys: AuditKeys) -> None:
    msgs = _read(env, env["DEMO_USER_ID"])
    report = _verify(msgs, keys).report()
    assert report.ok, [str(p) for p in report.problems]
    assert report.hashes_checked and report.links >= 2 and report.chains == 1
    events = [parse_link(m.seq, m.subject, m.payload, m.headers).event for m in msgs
              if m.subject == wire.audit_subject(env["DEMO_USER_ID"])]
    assert any(e["purpose"] == "order.place" and e["outcome"] == "authorized" for e in events)
    assert all(env["DEMO_API_TOKEN"] not in repr(e) for e in events)

    whole = with_client(env, lambda c: c.audit().verify(keys=keys))
    assert whole.ok, [str(p) for p in whole.problems]
    assert whole.chains >= 1 and whole.links >= report.links


def test_tampered_copies_are_caught(env: Dict[str, str], keys: AuditKeys) -> None:
    chain = wire.audit_subject(env["DEMO_USER_ID"])
    msgs = [m for m in _read(env, env["DEMO_USER_ID"]) if m.subject == chain]
    assert len(msgs) >= 2
    target = msgs[-1]

    # An edited event: one byte of the stored payload changed (the headers kept).
    flipped = target.payload.replace(b"authorized", b"authorizeD")
    assert flipped != target.payload
    edited = msgs[:-1] + [replace(target, payload=flipped)]
    report = _verify(edited, keys).report()
    assert report.first_bad_seq == target.seq and report.problems[0].kind is ProblemKind.BAD_HASH

    # A link deleted from the middle: its successor skips a position and names it.
    if len(msgs) >= 3:
        report = _verify(msgs[:-2] + msgs[-1:], None).report()
        assert report.first_bad_seq == msgs[-2].seq and report.problems[0].kind is ProblemKind.POSITION

    # A link whose hash header was replaced (forged without the key): the structure fits,
    # the HMAC does not.
    prev = parse_link(msgs[-2].seq, chain, msgs[-2].payload, msgs[-2].headers)
    forged_headers = dict(target.headers)
    forged_headers[wire.AUDIT_PREV_HASH] = prev.hash.hex()
    forged_headers[wire.AUDIT_HASH] = "ab" * 32
    forged = msgs[:-1] + [replace(target, headers=forged_headers)]
    assert _verify(forged, None).report().ok  # only the key can tell
    assert _verify(forged, keys).report().problems[0].kind is ProblemKind.BAD_HASH

    # A message without chain headers on a chain subject.
    bare = msgs[:-1] + [replace(target, headers={})]
    assert _verify(bare, keys).report().problems[0].kind is ProblemKind.NOT_CHAINED
