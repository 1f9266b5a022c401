"""The retry rules, against a responder of our own on the same NATS server: a resend after
a lost reply or a retryable refusal is byte-for-byte the same request, under the same
request id; a final refusal is not resent; the bound holds."""

from __future__ import annotations

import uuid
from typing import Dict, List, Tuple

import msgpack
import pytest

from conftest import connect, run
from pinnacle_client import ErrorCode, NoReplyError, PinnacleError, RetryPolicy
from pinnacle_client.client import Requester

FAST = RetryPolicy(attempts=4, timeout=0.5, backoff=0.01, max_backoff=0.02)


def _error(code: str) -> bytes:
    return msgpack.packb({"ok": False, "error": {"code": code, "message": code.lower()}})


def test_resends_are_identical_and_bounded(env: Dict[str, str]) -> None:
    async def body() -> None:
        client = await connect(env)
        nc = client.nc
        subject = f"test.pyclient.{uuid.uuid4().hex}"
        seen: List[Tuple[bytes, str, str]] = []
        # Drop the first request, refuse the second as retryable, answer the third.
        script = [None, _error("PRICE_UNAVAILABLE"), msgpack.packb({"ok": True, "result": {"n": 3}})]

        async def respond(msg):  # type: ignore[no-untyped-def]
            seen.append((msg.data, msg.headers["Pinnacle-Request-Id"], msg.headers["Authorization"]))
            reply = script[len(seen) - 1] if len(seen) <= len(script) else _error("RATE_LIMITED")
            if reply is not None:
                await msg.respond(reply)

        sub = await nc.subscribe(subject, cb=respond)
        try:
            requester = Requester(nc, "pnk_test", FAST)
            result = await requester.call(subject, {"client_order_id": "abc", "quantity": 1}, auth=True)
            assert result == {"n": 3} and len(seen) == 3
            assert len({s[0] for s in seen}) == 1 and len({s[1] for s in seen}) == 1
            assert seen[0][2] == "Bearer pnk_test"

            # A final refusal is raised at once, with the resend history.
            seen.clear()
            script[:] = [None, _error("INVALID_STATE")]
            with pytest.raises(PinnacleError) as e:
                await requester.call(subject, {"x": 1}, auth=True)
            assert e.value.code == ErrorCode.INVALID_STATE and e.value.after_lost_reply and len(seen) == 2

            # Retryable refusals forever: the last one is raised after `attempts` sends.
            seen.clear()
            script[:] = []
            with pytest.raises(PinnacleError) as e:
                await requester.call(subject, {"x": 1}, auth=True, retry=RetryPolicy(3, 0.5, 0.01, 0.02))
            assert e.value.code == ErrorCode.RATE_LIMITED and len(seen) == 3
        finally:
            await sub.unsubscribe()
            await client.close()

        # Nobody answers: NoReplyError after the bound.
        client = await connect(env)
        try:
            with pytest.raises(NoReplyError) as e2:
                await Requester(client.nc, None, FAST).call(f"test.nobody.{uuid.uuid4().hex}", {}, auth=False)
            assert e2.value.attempts == FAST.attempts
        finally:
            await client.close()

    run(body())
