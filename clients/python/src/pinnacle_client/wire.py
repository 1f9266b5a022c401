"""Subjects, header names, subject-token escaping and payload codecs (docs/PROTOCOL.md).

Every name the client puts on the wire lives here, so no other module spells a subject
or a header. Requests are sent as MessagePack maps; replies are decoded as MessagePack,
or as JSON when they carry `Content-Type: application/json`.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import msgpack  # type: ignore[import-untyped]

from .errors import DecodeError

# Headers.
AUTHORIZATION = "Authorization"
CONTENT_TYPE = "Content-Type"
REQUEST_ID = "Pinnacle-Request-Id"
DEADLINE = "Pinnacle-Deadline"
ERROR = "Pinnacle-Error"
TRACEPARENT = "traceparent"
AUDIT_LINK = "Pinnacle-Audit-Link"
AUDIT_PREV_SEQ = "Pinnacle-Audit-Prev-Seq"
AUDIT_PREV_HASH = "Pinnacle-Audit-Prev-Hash"
AUDIT_HASH = "Pinnacle-Audit-Hash"
AUDIT_KEY = "Pinnacle-Audit-Key"
JSON = "application/json"

# Market-data request subjects.
MD_LAST = "md.req.last"
MD_SNAPSHOT = "md.req.snapshot"
MD_CANDLES = "md.req.candles"
MD_SEARCH = "md.req.symbols.search"
MD_LOOKUP = "md.req.symbols.lookup"
MD_STATUS = "md.req.status"

# JetStream streams.
ORDER_EVENTS_STREAM = "ORDER_EVENTS"
AUDIT_STREAM = "AUDIT"


def escape_token(value: str) -> str:
    """A value as one subject token: letters, digits, `-`, `_`, `&` as they are, every
    other UTF-8 byte as `~` and two upper-case hex digits (exactly one spelling)."""
    out = []
    for b in value.encode("utf-8"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-_&"):
            out.append(c)
        else:
            out.append("~%02X" % b)
    return "".join(out)


def tick_subject(exchange: str, symbol: str) -> str:
    return f"md.tick.{escape_token(exchange)}.{escape_token(symbol)}"


def depth_subject(exchange: str, symbol: str) -> str:
    return f"md.depth.{escape_token(exchange)}.{escape_token(symbol)}"


def status_subject(exchange: str = "*") -> str:
    return "md.status.*" if exchange == "*" else f"md.status.{escape_token(exchange)}"


def order_subject(user_id: str, verb: str) -> str:
    # The user id is used exactly as the user API spells it (a lower-case UUID needs no
    # escaping; any other spelling is FORBIDDEN by design).
    return f"orders.{user_id}.{verb}"


def order_events_subject(user_id: str) -> str:
    return f"events.orders.{user_id}"


def audit_subject(user_id: str) -> str:
    return f"audit.credential.{user_id}"


def audit_checkpoint_subject(user_id: str) -> str:
    return f"audit.checkpoint.{user_id}"


def encode(payload: Mapping[str, Any]) -> bytes:
    """A request body: a MessagePack map with string keys, nil fields left out."""
    data: bytes = msgpack.packb({k: v for k, v in payload.items() if v is not None})
    return data


def header(headers: Optional[Mapping[str, str]], name: str) -> Optional[str]:
    """A header's value, its name matched without regard to case."""
    if not headers:
        return None
    want = name.lower()
    for k, v in headers.items():
        if k.lower() == want:
            return v
    return None


def decode(data: bytes, headers: Optional[Mapping[str, str]] = None) -> Any:
    """A payload from Pinnacle: JSON if its Content-Type says so, else MessagePack."""
    try:
        ctype = header(headers, CONTENT_TYPE) or ""
        if ctype.split(";")[0].strip().lower() == JSON:
            return json.loads(data)
        return msgpack.unpackb(data)
    except (ValueError, msgpack.UnpackException) as e:
        raise DecodeError(f"undecodable payload: {e}") from e
