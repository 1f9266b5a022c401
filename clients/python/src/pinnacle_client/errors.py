"""Exceptions: every refusal from Pinnacle is a `PinnacleError` carrying the protocol's code.

The codes are those of docs/PROTOCOL.md ("Replies and errors"). Pinnacle adds codes but
never renames them, so `PinnacleError.code` is a plain string; compare it with `ErrorCode`
members (a `str` enum, so `err.code == ErrorCode.FORBIDDEN` works) and keep a fallback for
codes this version does not know.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional


class ErrorCode(str, Enum):
    """The stable error codes of docs/PROTOCOL.md."""

    BAD_PAYLOAD = "BAD_PAYLOAD"
    INVALID_REQUEST = "INVALID_REQUEST"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    UNKNOWN_VERB = "UNKNOWN_VERB"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    NO_BROKER_ACCOUNT = "NO_BROKER_ACCOUNT"
    AMBIGUOUS_ACCOUNT = "AMBIGUOUS_ACCOUNT"
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
    CREDENTIAL_UNAVAILABLE = "CREDENTIAL_UNAVAILABLE"
    BROKER_REJECTED = "BROKER_REJECTED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    INSUFFICIENT_HOLDINGS = "INSUFFICIENT_HOLDINGS"
    NOT_AT_BROKER = "NOT_AT_BROKER"
    INVALID_STATE = "INVALID_STATE"
    RISK_MAX_QUANTITY = "RISK_MAX_QUANTITY"
    RISK_MAX_VALUE = "RISK_MAX_VALUE"
    RISK_EXCHANGE = "RISK_EXCHANGE"
    RISK_SYMBOL = "RISK_SYMBOL"
    RATE_LIMITED = "RATE_LIMITED"
    KILL_SWITCH = "KILL_SWITCH"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INTERNAL = "INTERNAL"
    INVALID_INTERVAL = "INVALID_INTERVAL"
    RANGE_TOO_LARGE = "RANGE_TOO_LARGE"
    UNKNOWN_EXCHANGE = "UNKNOWN_EXCHANGE"
    REGULATORY = "REGULATORY"
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PRICE_UNAVAILABLE = "PRICE_UNAVAILABLE"
    EVENTS_UNAVAILABLE = "EVENTS_UNAVAILABLE"


# Refusals that PROTOCOL.md says leave no trace and may simply be sent again (with the
# same `client_order_id` for a place): nothing was stored, so a resend is safe.
RETRYABLE: frozenset[str] = frozenset(
    {
        ErrorCode.PRICE_UNAVAILABLE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.AUDIT_UNAVAILABLE,
        ErrorCode.DEADLINE_EXCEEDED,
        ErrorCode.BROKER_UNAVAILABLE,
        ErrorCode.EVENTS_UNAVAILABLE,
    }
)


class PinnacleError(Exception):
    """Pinnacle answered a request with `{"ok": false, "error": {code, message}}`."""

    def __init__(self, code: str, message: str, *, request_id: Optional[str] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        """The protocol's error code, e.g. `"FORBIDDEN"` (compare with `ErrorCode`)."""
        self.message = message
        """The human-readable message; never holds a secret."""
        self.request_id = request_id
        """The `Pinnacle-Request-Id` of the request, to find it in audit events and logs."""
        self.after_lost_reply = False
        """Whether an earlier send of this request got no reply (it may have taken effect)."""

    @property
    def retryable(self) -> bool:
        """Whether PROTOCOL.md says the same request may simply be sent again."""
        return self.code in RETRYABLE


class NoReplyError(Exception):
    """No reply after every attempt (timeouts or no responders): the outcome is unknown.

    For a place, resend with the same `client_order_id` later (or `get` it): the server
    never stores a second order for one id.
    """

    def __init__(self, subject: str, attempts: int, last: BaseException) -> None:
        super().__init__(f"no reply on {subject} after {attempts} attempts ({last!r})")
        self.subject = subject
        self.attempts = attempts


class DecodeError(Exception):
    """A message from Pinnacle could not be decoded into the documented shape."""
