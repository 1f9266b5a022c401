"""The AUDIT stream: read it, and check its HMAC chains and signed checkpoints as
docs/AUDIT.md describes.

Each user's `audit.credential.<USER_ID>` subject is one chain. A link is the stored
MessagePack event plus five headers; its hash is

    HMAC-SHA256(K_chain[key_id], "pinnacle/audit-chain/v1" ‖ u64(len subject) ‖ subject
                ‖ u32(key_id) ‖ u64(position) ‖ u64(prev_seq) ‖ prev_hash ‖ u64(len payload)
                ‖ payload)

with K_chain = HKDF-SHA256(salt "pinnacle/hkdf/v1", master key, info "pinnacle/audit-chain")
(the checkpoint key likewise with info "pinnacle/audit-checkpoint"). Without the master
key ring, `ChainVerifier` still checks the links' structure (positions, `prev_seq`,
`prev_hash`), which catches deleted, reordered and inserted links but not an edited one;
with it, every hash and checkpoint signature is recomputed too. Reading AUDIT needs the
`auditor` NATS login in production (a trader cannot); `pinnacle dev` has no authorization.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from . import wire
from .client import end_subscription
from .errors import DecodeError

GENESIS = bytes(32)
_CHAIN_DOMAIN = b"pinnacle/audit-chain/v1"
_CHECKPOINT_DOMAIN = b"pinnacle/audit-checkpoint/v1"
_HKDF_SALT = b"pinnacle/hkdf/v1"
_CREDENTIAL_PREFIX = "audit.credential."
_CHECKPOINT_PREFIX = "audit.checkpoint."


# --- keys ------------------------------------------------------------------------------


def _hkdf_sha256(master: bytes, info: bytes) -> bytes:
    prk = hmac.new(_HKDF_SALT, master, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # one 32-byte block


class AuditKeys:
    """The two audit subkeys of every master key in a ring (id -> 32-byte key)."""

    def __init__(self, ring: Mapping[int, bytes]) -> None:
        for key_id, key in ring.items():
            if len(key) != 32:
                raise ValueError(f"master key {key_id} is {len(key)} bytes, not 32")
        # Only the derived subkeys are kept, never the master keys.
        self._chain = {i: _hkdf_sha256(k, b"pinnacle/audit-chain") for i, k in ring.items()}
        self._checkpoint = {
            i: _hkdf_sha256(k, b"pinnacle/audit-checkpoint") for i, k in ring.items()
        }

    def __repr__(self) -> str:
        return f"AuditKeys(ids={sorted(self._chain)})"

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "AuditKeys":
        """A `PINNACLE_MASTER_KEY_FILE`: one `<id>:<base64>` per line, `#` comments."""
        return cls(parse_key_ring(Path(path).read_text(encoding="utf-8").splitlines()))

    @classmethod
    def from_inline(cls, ring: str) -> "AuditKeys":
        """A `PINNACLE_MASTER_KEYS` value: `1:<base64>,2:<base64>`."""
        return cls(parse_key_ring(ring.split(",")))

    def link_hash(
        self, key_id: int, subject: str, position: int, prev_seq: int, prev_hash: bytes,
        payload: bytes,
    ) -> Optional[bytes]:
        """A link's hash; None when `key_id` is not in the ring."""
        key = self._chain.get(key_id)
        if key is None:
            return None
        subj = subject.encode()
        msg = b"".join((
            _CHAIN_DOMAIN, struct.pack(">Q", len(subj)), subj, struct.pack(">I", key_id),
            struct.pack(">QQ", position, prev_seq), prev_hash,
            struct.pack(">Q", len(payload)), payload,
        ))
        return hmac.new(key, msg, hashlib.sha256).digest()

    def checkpoint_signature(self, cp: "Checkpoint") -> Optional[bytes]:
        key = self._checkpoint.get(cp.key_id)
        if key is None:
            return None
        subj = cp.subject.encode()
        msg = b"".join((
            _CHECKPOINT_DOMAIN, struct.pack(">Q", len(subj)), subj,
            struct.pack(">QQ", cp.link_seq, cp.position), cp.hash, struct.pack(">I", cp.key_id),
            struct.pack(">q", cp.ts_ms),
        ))
        return hmac.new(key, msg, hashlib.sha256).digest()


def parse_key_ring(lines: Iterable[str]) -> Dict[int, bytes]:
    ring: Dict[int, bytes] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, b64 = line.partition(":")
        if not sep or not key_id.strip().isdigit():
            raise ValueError("a key ring entry is not `<id>:<base64>`")
        ident = int(key_id)
        if ident in ring:
            raise ValueError(f"master key id {ident} repeats")
        ring[ident] = base64.b64decode(b64.strip(), validate=True)
    return ring


# --- what the stream holds -------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """One message on `audit.credential.<USER_ID>` with its chain headers parsed."""

    seq: int
    """Stream sequence."""
    subject: str
    payload: bytes
    """The stored MessagePack event, exactly as hashed."""
    position: int
    prev_seq: int
    prev_hash: bytes
    hash: bytes
    key_id: int

    @property
    def event(self) -> Dict[str, Any]:
        """The decoded audit event (PROTOCOL.md "Audit events")."""
        ev = wire.decode(self.payload)
        if not isinstance(ev, dict):
            raise DecodeError(f"seq {self.seq}: audit event is not a map")
        return ev


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint on `audit.checkpoint.<USER_ID>`."""

    seq: int
    """Stream sequence of the checkpoint message itself."""
    subject: str
    """The chain it checkpoints."""
    link_seq: int
    """Stream sequence of the checkpointed link (the checkpoint map's `seq`)."""
    position: int
    hash: bytes
    key_id: int
    ts_ms: int
    signature: bytes


class ProblemKind(str, Enum):
    NOT_CHAINED = "NotChained"
    """A message on a chain subject without well-formed chain headers."""
    BAD_HASH = "BadHash"
    """The HMAC does not match: the event or its headers were edited (or forged)."""
    UNKNOWN_KEY = "UnknownKey"
    POSITION = "Position"
    """The position is not the previous one plus one: a link deleted, moved or inserted."""
    PREV_SEQ = "PrevSeq"
    PREV_HASH = "PrevHash"
    MISSING = "Missing"
    """The chain's first link read is not link 1, though the stream was read from its start."""
    BAD_SIGNATURE = "BadSignature"
    CHECKPOINT_MISMATCH = "CheckpointMismatch"
    TRUNCATED = "Truncated"
    """A checkpoint names a link beyond the chain's last: its tail was dropped."""


@dataclass(frozen=True)
class Problem:
    seq: int
    subject: str
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.subject} {self.kind.value}: {self.detail}"


@dataclass
class VerifyReport:
    links: int = 0
    chains: int = 0
    checkpoints: int = 0
    hashes_checked: bool = False
    """Whether hashes and signatures were recomputed (a key ring was given)."""
    problems: List[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> Optional[int]:
        return min((p.seq for p in self.problems), default=None)


@dataclass
class _Tip:
    seq: int
    position: int
    hash: bytes
    by_position: Dict[int, Tuple[int, bytes]] = field(default_factory=dict)


class ChainVerifier:
    """Checks links and checkpoints in stream order, one chain per subject.

    Feed it every message of the stream (or of one user's two subjects) in order with
    `add_message`, or already-parsed `Link`s and `Checkpoint`s with `add_link` and
    `add_checkpoint`, then call `report()`. `from_start` says the messages begin at the
    stream's first sequence, so a chain that does not start at link 1 is reported."""

    def __init__(self, keys: Optional[AuditKeys] = None, *, from_start: bool = True) -> None:
        self.keys = keys
        self.from_start = from_start
        self._tips: Dict[str, _Tip] = {}
        self._checkpoints: List[Checkpoint] = []
        self._report = VerifyReport(hashes_checked=keys is not None)

    def add_message(self, seq: int, subject: str, payload: bytes, headers: Optional[Mapping[str, str]]) -> None:
        if subject.startswith(_CHECKPOINT_PREFIX):
            try:
                self.add_checkpoint(parse_checkpoint(seq, payload))
            except DecodeError as e:
                self._problem(seq, subject, ProblemKind.NOT_CHAINED, f"malformed checkpoint: {e}")
        elif subject.startswith(_CREDENTIAL_PREFIX):
            try:
                link = parse_link(seq, subject, payload, headers)
            except DecodeError as e:
                self._problem(seq, subject, ProblemKind.NOT_CHAINED, str(e))
                return
            self.add_link(link)

    def add_link(self, link: Link) -> None:
        self._report.links += 1
        if self.keys is not None:
            want = self.keys.link_hash(
                link.key_id, link.subject, link.position, link.prev_seq, link.prev_hash, link.payload
            )
            if want is None:
                self._problem(link.seq, link.subject, ProblemKind.UNKNOWN_KEY, f"key id {link.key_id} is not in the ring")
            elif not hmac.compare_digest(want, link.hash):
                self._problem(link.seq, link.subject, ProblemKind.BAD_HASH, "the HMAC does not match: edited or forged")
        tip = self._tips.get(link.subject)
        if tip is None:
            self._report.chains += 1
            if link.position == 1 and link.prev_hash != GENESIS:
                self._problem(link.seq, link.subject, ProblemKind.PREV_HASH, "link 1 must follow the zero hash")
            elif link.position != 1 and self.from_start:
                self._problem(link.seq, link.subject, ProblemKind.MISSING,
                              f"the chain starts at link {link.position}: links before it are missing")
            tip = _Tip(link.seq, link.position, link.hash)
            self._tips[link.subject] = tip
        else:
            if link.position != tip.position + 1:
                # A skipped position: the deleted link had the sequence this one names.
                seq = link.prev_seq if link.position > tip.position + 1 and link.prev_seq > tip.seq else link.seq
                self._problem(seq, link.subject, ProblemKind.POSITION,
                              f"link {link.position} follows link {tip.position}")
            elif link.prev_seq != tip.seq:
                self._problem(link.seq, link.subject, ProblemKind.PREV_SEQ,
                              f"prev_seq {link.prev_seq}, but the previous link is at {tip.seq}")
            elif link.prev_hash != tip.hash:
                self._problem(link.seq, link.subject, ProblemKind.PREV_HASH,
                              "prev_hash is not the previous link's hash")
            tip.seq, tip.position, tip.hash = link.seq, link.position, link.hash
        tip.by_position[link.position] = (link.seq, link.hash)

    def add_checkpoint(self, cp: Checkpoint) -> None:
        self._report.checkpoints += 1
        self._checkpoints.append(cp)

    def report(self) -> VerifyReport:
        """Checks the checkpoints against the chains read, and returns every problem."""
        report = replace(self._report, problems=list(self._report.problems))
        for cp in self._checkpoints:
            if self.keys is not None:
                want = self.keys.checkpoint_signature(cp)
                if want is None or not hmac.compare_digest(want, cp.signature):
                    report.problems.append(Problem(cp.seq, cp.subject, ProblemKind.BAD_SIGNATURE,
                                                   "the checkpoint's signature does not verify"))
                    continue
            tip = self._tips.get(cp.subject)
            if tip is None:
                if self.from_start:
                    report.problems.append(Problem(cp.link_seq, cp.subject, ProblemKind.TRUNCATED,
                                                   f"checkpoint of link {cp.position}, but the chain is empty"))
                continue
            held = tip.by_position.get(cp.position)
            if held is None:
                if cp.position > tip.position:
                    report.problems.append(Problem(tip.seq + 1, cp.subject, ProblemKind.TRUNCATED,
                                                   f"checkpoint of link {cp.position}, the chain ends at {tip.position}"))
            elif held != (cp.link_seq, cp.hash):
                report.problems.append(Problem(cp.link_seq, cp.subject, ProblemKind.CHECKPOINT_MISMATCH,
                                               f"link {cp.position} differs from its checkpoint"))
        report.problems.sort(key=lambda p: p.seq)
        return report

    def _problem(self, seq: int, subject: str, kind: ProblemKind, detail: str) -> None:
        self._report.problems.append(Problem(seq, subject, kind, detail))


def _hex32(value: Optional[str], what: str) -> bytes:
    try:
        raw = bytes.fromhex(value or "")
    except ValueError:
        raise DecodeError(f"malformed {what}") from None
    if len(raw) != 32:
        raise DecodeError(f"malformed {what}")
    return raw


def _uint(value: Optional[str], what: str) -> int:
    if value is None:
        raise DecodeError(f"no {what} header: the event is not chained")
    if not value.isdigit():
        raise DecodeError(f"malformed {what} header")
    return int(value)


def parse_link(seq: int, subject: str, payload: bytes, headers: Optional[Mapping[str, str]]) -> Link:
    """A chain message as a `Link`; `DecodeError` if a chain header is absent or malformed."""
    def h(name: str) -> Optional[str]:
        return wire.header(headers, name)

    return Link(
        seq=seq,
        subject=subject,
        payload=payload,
        position=_uint(h(wire.AUDIT_LINK), wire.AUDIT_LINK),
        prev_seq=_uint(h(wire.AUDIT_PREV_SEQ), wire.AUDIT_PREV_SEQ),
        prev_hash=_hex32(h(wire.AUDIT_PREV_HASH), wire.AUDIT_PREV_HASH),
        hash=_hex32(h(wire.AUDIT_HASH), wire.AUDIT_HASH),
        key_id=_uint(h(wire.AUDIT_KEY), wire.AUDIT_KEY),
    )


def parse_checkpoint(seq: int, payload: bytes) -> Checkpoint:
    m = wire.decode(payload)
    if not isinstance(m, dict):
        raise DecodeError("checkpoint is not a map")
    try:
        return Checkpoint(
            seq=seq,
            subject=str(m["subject"]),
            link_seq=int(m["seq"]),
            position=int(m["position"]),
            hash=_hex32(m["hash"], "hash"),
            key_id=int(m["key_id"]),
            ts_ms=int(m["ts_ms"]),
            signature=_hex32(m["signature"], "signature"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(f"checkpoint field: {e}") from None


@dataclass(frozen=True)
class AuditMessage:
    """One message of the AUDIT stream, as stored."""

    seq: int
    subject: str
    payload: bytes
    headers: Dict[str, str]


class AuditReader:
    """Reads AUDIT with an ordered consumer (`client.audit()`)."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc

    async def messages(
        self, user_id: Optional[str] = None, *, start_seq: Optional[int] = None, idle: float = 2.0
    ) -> AsyncIterator[AuditMessage]:
        """Every message (events and checkpoints; one user's with `user_id`) from the
        stream's start or `start_seq`, stopping once caught up."""
        config = ConsumerConfig(name=f"py-audit-{uuid.uuid4().hex[:12]}")
        subject = "audit.>"
        if user_id is not None:
            subject = wire.audit_subject(user_id)
            config.filter_subjects = [subject, wire.audit_checkpoint_subject(user_id)]
        if start_seq is not None:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start_seq
        js = self._nc.jetstream()
        sub = await js.subscribe(subject, stream=wire.AUDIT_STREAM, ordered_consumer=True, config=config)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=idle)
                except (NatsTimeoutError, asyncio.TimeoutError):
                    return
                meta = msg.metadata
                yield AuditMessage(meta.sequence.stream, msg.subject, msg.data, dict(msg.headers or {}))
                if meta.num_pending == 0:
                    return
        finally:
            await end_subscription(sub)

    async def verify(self, user_id: Optional[str] = None, keys: Optional[AuditKeys] = None) -> VerifyReport:
        """Reads the whole stream (or one user's chain and checkpoints) and checks it."""
        verifier = ChainVerifier(keys)
        async for m in self.messages(user_id):
            verifier.add_message(m.seq, m.subject, m.payload, m.headers)
        return verifier.report()
