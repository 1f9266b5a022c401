"""The user's order events: `events.orders.<USER_ID>` in the JetStream stream ORDER_EVENTS.

`client.events.stream(since=...)` replays every state change from a point in time (or
from the oldest kept, 7 days) and then, with `follow=True`, goes on live. It uses an
ordered consumer with a fresh name created through the subject that names its filter,
which is all a trader's NATS permissions allow (docs/PROTOCOL.md "Replaying your events").
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import AsyncIterator, List, Union

from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from . import wire
from .client import end_subscription
from .errors import DecodeError
from .models import OrderEvent


def _start_time(since: Union[datetime, int]) -> datetime:
    if isinstance(since, datetime):
        return since if since.tzinfo is not None else since.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(since / 1000, tz=timezone.utc)


class OrderEvents:
    """`client.events`."""

    def __init__(self, nc: NatsClient, user_id: str) -> None:
        self._nc = nc
        self._user_id = user_id
        self.undecodable = 0
        """Messages on the subject that were not order events (skipped)."""

    async def stream(
        self,
        since: Union[datetime, int, None] = None,
        *,
        follow: bool = True,
        idle: float = 2.0,
    ) -> AsyncIterator[OrderEvent]:
        """Order events, oldest first: from `since` (a datetime, naive meaning UTC, or
        milliseconds since the epoch), or from the oldest kept when None.

        With `follow=False` it stops once caught up: after the event the server reports
        nothing pending behind, or after `idle` seconds with no event at all. With
        `follow=True` it waits for new events until the caller stops iterating."""
        config = ConsumerConfig(name=f"py-{uuid.uuid4().hex[:16]}")
        if since is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = _start_time(since)
        js = self._nc.jetstream()
        sub = await js.subscribe(
            wire.order_events_subject(self._user_id),
            stream=wire.ORDER_EVENTS_STREAM,
            ordered_consumer=True,
            config=config,
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=None if follow else idle)
                except (NatsTimeoutError, asyncio.TimeoutError):
                    return  # caught up (follow=False only)
                try:
                    event = OrderEvent.from_wire(wire.decode(msg.data, msg.headers))
                except DecodeError:
                    self.undecodable += 1
                    continue
                meta = msg.metadata
                yield OrderEvent(
                    event_id=event.event_id,
                    ts_ms=event.ts_ms,
                    previous_status=event.previous_status,
                    order=event.order,
                    stream_seq=meta.sequence.stream,
                    traceparent=wire.header(msg.headers, wire.TRACEPARENT),
                )
                if not follow and meta.num_pending == 0:
                    return
        finally:
            await end_subscription(sub)

    async def replay(
        self, since: Union[datetime, int, None] = None, *, idle: float = 2.0
    ) -> List[OrderEvent]:
        """Every event from `since` up to now, as a list."""
        return [e async for e in self.stream(since, follow=False, idle=idle)]
