"""The user's order events, stored in the JetStream stream ORDER_EVENTS and read through
the `events` verb (`orders.<USER_ID>.events`, docs/PROTOCOL.md "Replaying your events").

`client.events.stream(since=...)` reads every state change from a point in time (or from
the oldest kept, 7 days) a page at a time and then, with `follow=True`, goes on live: a
plain subscription to `events.orders.<USER_ID>` says when to ask for the next page, and a
quiet `idle` seconds asks anyway (that heals an announcement missed in a reconnect).
Traders create no JetStream consumers; each page resumes from the last one's
`last_sequence`, so nothing is missed or seen twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional, Union

from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError

from . import wire
from .client import end_subscription
from .errors import DecodeError, PinnacleError
from .models import OrderEvent

if TYPE_CHECKING:
    from .client import Requester

PAGE = 500
"""Events asked for per page (the most the verb gives)."""


def _since_ms(since: Union[datetime, int]) -> int:
    if isinstance(since, datetime):
        aware = since if since.tzinfo is not None else since.replace(tzinfo=timezone.utc)
        return int(aware.timestamp() * 1000)
    return int(since)


class OrderEvents:
    """`client.events`."""

    def __init__(self, requester: "Requester", nc: NatsClient, user_id: str) -> None:
        self._requester = requester
        self._nc = nc
        self._user_id = user_id
        self.undecodable = 0
        """Stored messages that were not order events (skipped)."""

    async def page(
        self,
        *,
        after: Optional[int] = None,
        since: Union[datetime, int, None] = None,
        limit: int = PAGE,
        stream: Optional[str] = None,
    ) -> Dict[str, Any]:
        """One page as the verb answers it: `{events, last_sequence, pending, stream,
        rewound}`, each event `{sequence, traceparent, event}` (the event as a map). Read on
        with `after=page["last_sequence"], stream=page["stream"]`: a stream re-created
        meanwhile is then read again from its first event, in a page marked `rewound`."""
        request: Dict[str, Any] = {"limit": limit}
        if after is not None:
            request["after"] = after
        if stream is not None:
            request["stream"] = stream
        if since is not None:
            request["since_ms"] = _since_ms(since)
        subject = wire.order_subject(self._user_id, "events")
        result = await self._requester.call(subject, request, auth=True)
        if not isinstance(result, dict) or not isinstance(result.get("events"), list):
            raise DecodeError(f"{subject}: not an event page: {result!r}")
        return result

    async def stream(
        self,
        since: Union[datetime, int, None] = None,
        *,
        follow: bool = True,
        idle: float = 2.0,
    ) -> AsyncIterator[OrderEvent]:
        """Order events, oldest first: from `since` (a datetime, naive meaning UTC, or
        milliseconds since the epoch), or from the oldest kept when None.

        With `follow=False` it stops once caught up (the server reports nothing stored
        after the last page). With `follow=True` it waits for new events until the caller
        stops iterating, asking for the next page whenever one is announced on
        `events.orders.<USER_ID>`, or after `idle` seconds without one; a retryable refusal
        (`EVENTS_UNAVAILABLE`) that outlasts the client's own resends is waited out too."""
        sub: Optional[Subscription] = None
        if follow:  # before the first page, so nothing stored meanwhile is waited for
            sub = await self._nc.subscribe(wire.order_events_subject(self._user_id))
        try:
            after: Optional[int] = None
            stream: Optional[str] = None
            while True:
                try:
                    page = await self.page(
                        after=after,
                        since=since if after is None else None,
                        stream=stream,
                    )
                except PinnacleError as e:
                    if sub is None or not e.retryable:
                        raise
                    await asyncio.sleep(idle)  # following: a JetStream outage is waited out
                    continue
                for stored in page["events"]:
                    event = self._event(stored)
                    if event is not None:
                        yield event
                after = int(page["last_sequence"])
                stream = page.get("stream")
                if page.get("pending"):
                    continue
                if sub is None:
                    return
                await _next_announcement(sub, idle)
        finally:
            if sub is not None:
                await end_subscription(sub)

    def _event(self, stored: Any) -> Optional[OrderEvent]:
        try:
            event = OrderEvent.from_wire(stored["event"])
        except (DecodeError, KeyError, TypeError):
            self.undecodable += 1
            return None
        return dataclasses.replace(
            event,
            stream_seq=int(stored.get("sequence", 0)),
            traceparent=stored.get("traceparent"),
        )

    async def replay(
        self, since: Union[datetime, int, None] = None, *, idle: float = 2.0
    ) -> List[OrderEvent]:
        """Every event from `since` up to now, as a list."""
        return [e async for e in self.stream(since, follow=False, idle=idle)]


async def _next_announcement(sub: Subscription, idle: float) -> None:
    """Waits up to `idle` seconds for an announced event, then takes every announcement
    already waiting, so a burst of events costs one page."""
    try:
        await sub.next_msg(timeout=idle)
    except (NatsTimeoutError, asyncio.TimeoutError):
        return
    while sub.pending_msgs > 0:
        try:
            await sub.next_msg(timeout=0.1)
        except (NatsTimeoutError, asyncio.TimeoutError):
            return
