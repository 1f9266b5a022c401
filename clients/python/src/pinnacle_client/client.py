"""The connection: `Client` owns one NATS connection and sends every request.

A request is sent as a MessagePack map with the headers of docs/PROTOCOL.md (`Authorization:
Bearer`, `Pinnacle-Request-Id`, `Pinnacle-Deadline`). `Requester.call` resends the *same*
bytes under the same request id when no reply comes (timeout, no responders) and, with
backoff, when the reply is a refusal PROTOCOL.md calls retryable, up to `RetryPolicy.attempts`.
The verbs themselves live in `market`, `orders`, `events` and `audit`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Union

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription
from nats.errors import BadSubscriptionError, ConnectionClosedError, ConnectionDrainingError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from . import wire
from .errors import DecodeError, ErrorCode, NoReplyError, PinnacleError

if TYPE_CHECKING:
    from .audit import AuditReader


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request is tried."""

    attempts: int = 5
    """Sends of one request at most (the first included)."""
    timeout: float = 5.0
    """Seconds to wait for each reply; also sets `Pinnacle-Deadline` on order requests."""
    backoff: float = 0.2
    """First wait before a resend, doubled each time up to `max_backoff` (with jitter)."""
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.timeout <= 0:
            raise ValueError("a RetryPolicy needs attempts >= 1 and a positive timeout")

    def delay(self, attempt: int, code: Optional[str]) -> float:
        d: float = min(self.max_backoff, self.backoff * (2.0 ** (attempt - 1)))
        d *= 0.5 + random.random() / 2
        if code == ErrorCode.RATE_LIMITED:
            d = max(d, 1.0)  # the rate window is one second
        return d


class Requester:
    """Sends requests and turns replies into results or `PinnacleError`s."""

    def __init__(self, nc: NatsClient, token: Optional[str], retry: RetryPolicy) -> None:
        self.nc = nc
        self._token = token  # never logged, never put in an exception
        self.retry = retry

    async def call(
        self,
        subject: str,
        payload: Mapping[str, Any],
        *,
        auth: bool,
        retry: Optional[RetryPolicy] = None,
    ) -> Any:
        """One logical request: the reply's `result`, or raises `PinnacleError` /
        `NoReplyError`. Every resend carries the same payload bytes and request id."""
        policy = retry or self.retry
        data = wire.encode(payload)
        request_id = f"py-{uuid.uuid4()}"
        lost_reply = False
        last: Optional[BaseException] = None
        for attempt in range(1, policy.attempts + 1):
            headers: Dict[str, str] = {wire.REQUEST_ID: request_id}
            if auth:
                headers[wire.AUTHORIZATION] = f"Bearer {self._token}"
                deadline_ms = int((time.time() + policy.timeout) * 1000)
                headers[wire.DEADLINE] = str(deadline_ms)
            try:
                msg = await self.nc.request(subject, data, timeout=policy.timeout, headers=headers)
            except (NatsTimeoutError, asyncio.TimeoutError, NoRespondersError) as e:
                lost_reply, last = True, e
                if attempt < policy.attempts:
                    await asyncio.sleep(policy.delay(attempt, None))
                continue
            reply = wire.decode(msg.data, msg.headers)
            if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
                raise DecodeError(f"{subject}: reply is not {{ok, result|error}}: {reply!r}")
            if reply["ok"]:
                return reply.get("result")
            err = reply.get("error")
            if not isinstance(err, dict):
                raise DecodeError(f"{subject}: error reply without an error map: {reply!r}")
            echoed = wire.header(msg.headers, wire.REQUEST_ID) or request_id
            error = PinnacleError(
                str(err.get("code", "")), str(err.get("message", "")), request_id=echoed
            )
            error.after_lost_reply = lost_reply
            if error.retryable and attempt < policy.attempts:
                last = error
                await asyncio.sleep(policy.delay(attempt, error.code))
                continue
            raise error
        if isinstance(last, PinnacleError):
            raise last  # still refused (retryable) at the last attempt
        raise NoReplyError(subject, policy.attempts, last or TimeoutError())


class Client:
    """A trader's connection to Pinnacle. Build it with `Client.connect` or `Client.from_env`.

    - `client.market`: ticks, depth, status, snapshots, candles, the instrument master;
    - `client.orders`: place, modify, cancel, get, list, square_off;
    - `client.portfolio`: funds, positions, holdings, trades;
    - `client.events`: the user's order events, read from a point in time and live;
    - `client.audit()`: a reader of the AUDIT stream that checks the HMAC chains.
    """

    def __init__(self, nc: NatsClient, user_id: str, token: Optional[str], retry: RetryPolicy):
        from .events import OrderEvents
        from .market import MarketData
        from .orders import Orders, Portfolio

        self.nc = nc
        self.user_id = user_id
        self.requester = Requester(nc, token, retry)
        self.market = MarketData(self.requester, self)
        self.orders = Orders(self.requester, user_id)
        self.portfolio = Portfolio(self.requester, user_id)
        self.events = OrderEvents(self.requester, nc, user_id)
        # Called after every NATS reconnect (live tick books re-snapshot from here).
        self._on_reconnect: List[Callable[[], Awaitable[None]]] = []

    @classmethod
    async def connect(
        cls,
        servers: Union[str, Sequence[str]],
        *,
        user_id: str,
        token: Optional[str],
        nats_user: Optional[str] = None,
        nats_password: Optional[str] = None,
        retry: RetryPolicy = RetryPolicy(),
        **nats_options: Any,
    ) -> "Client":
        """Connects to NATS as the trader. `servers` may be comma separated. The inbox
        prefix is the trader's private `_INBOX.<USER_ID>` (the only one production NATS
        lets them read). Other keyword arguments go to `nats.connect`."""
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        holder: List[Client] = []

        async def reconnected() -> None:
            if holder:
                for cb in list(holder[0]._on_reconnect):
                    await cb()

        nc = await nats.connect(
            servers=list(servers),
            user=nats_user,
            password=nats_password,
            inbox_prefix=f"_INBOX.{user_id}",
            reconnected_cb=reconnected,
            **nats_options,
        )
        client = cls(nc, user_id, token, retry)
        holder.append(client)
        return client

    @classmethod
    async def from_env(
        cls, env_file: Union[str, Path, None] = None, **kwargs: Any
    ) -> "Client":
        """Connects with settings from the environment, or from a `KEY=VALUE` file such as
        the `dev.env` that `pinnacle dev` writes (default: `$PINNACLE_ENV_FILE`, else
        `.pinnacle/dev.env` if it exists). Reads `NATS_URL`, `PINNACLE_USER_ID` (or
        `DEMO_USER_ID`), `PINNACLE_API_TOKEN` (or `DEMO_API_TOKEN`), `NATS_USER` and
        `NATS_PASSWORD`; the environment wins over the file."""
        env = load_env(env_file)
        user_id = env.get("PINNACLE_USER_ID") or env.get("DEMO_USER_ID")
        token = env.get("PINNACLE_API_TOKEN") or env.get("DEMO_API_TOKEN")
        if not user_id:
            raise ValueError("no PINNACLE_USER_ID (or DEMO_USER_ID) in the environment or env file")
        return await cls.connect(
            env.get("NATS_URL", "nats://127.0.0.1:4222"),
            user_id=user_id,
            token=token,
            nats_user=env.get("NATS_USER"),
            nats_password=env.get("NATS_PASSWORD"),
            **kwargs,
        )

    def audit(self) -> "AuditReader":
        """A reader of the AUDIT stream (needs the `auditor` NATS login in production)."""
        from .audit import AuditReader

        return AuditReader(self.nc)

    def on_reconnect(self, cb: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Runs `cb` after every reconnect; returns a function that unregisters it."""
        self._on_reconnect.append(cb)
        return lambda: self._on_reconnect.remove(cb) if cb in self._on_reconnect else None

    async def close(self) -> None:
        """Drains subscriptions and closes the connection."""
        if not self.nc.is_closed:
            await self.nc.drain()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def load_env(env_file: Union[str, Path, None] = None) -> Dict[str, str]:
    """The file's `KEY=VALUE` lines (values never quoted; `#` comments skipped), overlaid
    with the process environment."""
    path: Optional[Path] = None
    if env_file is not None:
        path = Path(env_file)
    elif os.environ.get("PINNACLE_ENV_FILE"):
        path = Path(os.environ["PINNACLE_ENV_FILE"])
    elif Path(".pinnacle/dev.env").exists():
        path = Path(".pinnacle/dev.env")
    env: Dict[str, str] = {}
    if path is not None:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            env[key.strip()] = value
    env.update({k: v for k, v in os.environ.items() if k in _ENV_KEYS})
    return env


_ENV_KEYS = (
    "NATS_URL", "PINNACLE_USER_ID", "DEMO_USER_ID", "PINNACLE_API_TOKEN", "DEMO_API_TOKEN",
    "NATS_USER", "NATS_PASSWORD", "PINNACLE_MASTER_KEY_FILE",
)


async def end_subscription(sub: Subscription) -> None:
    """Ends a subscription; one the connection already ended (closed, draining) is done."""
    try:
        await sub.unsubscribe()
    except (ConnectionClosedError, ConnectionDrainingError, BadSubscriptionError):
        pass
