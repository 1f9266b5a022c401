//! Every NATS subject, stream, queue group and header name that Pinnacle uses.
//!
//! Nothing else in the workspace spells a subject as a string literal: build it here.
//! The layout is documented in `docs/PROTOCOL.md`; keep the two in step.

/// Root of all market-data subjects.
pub const MD_TICK_PREFIX: &str = "md.tick";
/// Wildcard that matches every tick on every exchange.
pub const MD_TICK_ALL: &str = "md.tick.>";
/// Root of the five-level book subjects: `md.depth.<EXCHANGE>.<SYMBOL>`.
pub const MD_DEPTH_PREFIX: &str = "md.depth";
/// Root of the market-status subjects: `md.status.<EXCHANGE>`.
pub const MD_STATUS_PREFIX: &str = "md.status";
/// Wildcard every market-data request-reply verb lives under: `md.req.<verb>`.
pub const MD_REQUEST_ALL: &str = "md.req.>";
/// Queue group of publishers answering `md.req.>`, so each request is answered once.
pub const MD_QUEUE: &str = "md-service";
/// Queue group shared by every order worker, so each request is handled once.
pub const ORDER_WORKER_QUEUE: &str = "order-workers";
/// Wildcard the order workers subscribe to. Requests are `orders.<user_id>.<verb>`; the
/// workers take the whole `orders.>` tree so that a malformed subject still gets a
/// structured error rather than "no responders". Nothing else may publish under `orders.`.
pub const ORDERS_ALL: &str = "orders.>";
/// JetStream stream that stores every order lifecycle event, per user.
pub const ORDER_EVENTS_STREAM: &str = "ORDER_EVENTS";
/// Subjects captured by [`ORDER_EVENTS_STREAM`].
pub const ORDER_EVENTS_ALL: &str = "events.orders.>";
/// JetStream stream that stores every audit event.
pub const AUDIT_STREAM: &str = "AUDIT";
/// Subjects captured by [`AUDIT_STREAM`].
pub const AUDIT_ALL: &str = "audit.>";
/// Every audit chain: one HMAC chain per `audit.credential.<user_id>` subject.
pub const AUDIT_CREDENTIAL_ALL: &str = "audit.credential.>";
/// Every signed audit checkpoint: `audit.checkpoint.<user_id>`.
pub const AUDIT_CHECKPOINT_ALL: &str = "audit.checkpoint.>";
/// JetStream KV bucket holding each broker account's latest credential generation (the
/// generation register, `pinnacle_common::keystore::generations`). Its stream is
/// [`CREDENTIAL_GENERATIONS_STREAM`] and its keys are broker account ids.
pub const CREDENTIAL_GENERATIONS_BUCKET: &str = "CREDENTIAL_GENERATIONS";
/// The stream behind [`CREDENTIAL_GENERATIONS_BUCKET`] (JetStream names it `KV_<bucket>`).
pub const CREDENTIAL_GENERATIONS_STREAM: &str = "KV_CREDENTIAL_GENERATIONS";
/// JetStream KV bucket holding the SmartAPI rate windows every order worker shares
/// (`pinnacle_smartapi::limits::shared`): key = `<limit bucket>.<hash of the client code>`,
/// value = the send times inside the bucket's longest window.
pub const SMARTAPI_RATE_BUCKET: &str = "SMARTAPI_RATE";
/// The stream behind [`SMARTAPI_RATE_BUCKET`].
pub const SMARTAPI_RATE_STREAM: &str = "KV_SMARTAPI_RATE";

/// NATS header names.
pub mod headers {
    /// `Bearer <api token>`: who is asking. Required on every order request.
    pub const AUTHORIZATION: &str = "Authorization";
    /// `application/json` switches a request (and its reply) from MessagePack to JSON.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// A caller-chosen id echoed in the reply and written to audit events.
    pub const REQUEST_ID: &str = "Pinnacle-Request-Id";
    /// The caller's deadline, milliseconds since the Unix epoch. A request taken after it
    /// is answered `DEADLINE_EXCEEDED` without being acted on.
    pub const DEADLINE: &str = "Pinnacle-Deadline";
    /// Set on error replies to the stable error code, so a client can branch without decoding.
    pub const ERROR_CODE: &str = "Pinnacle-Error";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C vendor trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// JetStream de-duplication id.
    pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
    /// JetStream optimistic concurrency: the stream sequence of the subject's last message
    /// (0: none). The audit chain's one-writer-per-subject guard.
    pub const NATS_EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
    /// Audit chain: the link's position in its chain, from 1.
    pub const AUDIT_LINK: &str = "Pinnacle-Audit-Link";
    /// Audit chain: the previous link's stream sequence (0 for the first link).
    pub const AUDIT_PREV_SEQ: &str = "Pinnacle-Audit-Prev-Seq";
    /// Audit chain: the previous link's hash, hex (64 zeros for the first link).
    pub const AUDIT_PREV_HASH: &str = "Pinnacle-Audit-Prev-Hash";
    /// Audit chain: this link's HMAC-SHA256, hex.
    pub const AUDIT_HASH: &str = "Pinnacle-Audit-Hash";
    /// Audit chain and checkpoints: the master key id the HMAC key was derived from.
    pub const AUDIT_KEY_ID: &str = "Pinnacle-Audit-Key";
}

pub mod verbs;
pub use verbs::OrderVerb;

/// Core NATS (not stored): the id of an API token the user API has just revoked. Order
/// workers drop it from their token cache at once; the cache's one-second lifetime covers
/// an announcement missed during a reconnect.
pub const TOKENS_REVOKED: &str = "pinnacle.tokens.revoked";

/// Core NATS (not stored): a change to what order workers cache for the order path (a
/// user's broker accounts or default account, a user's risk limits, the global limits).
/// The payload is a small JSON object (`pinnacle_common::invalidate::Invalidation`).
/// Workers drop the named entry at once; the cache's one-second lifetime covers an
/// announcement missed during a reconnect and a write made straight to the database.
pub const CACHE_INVALIDATE: &str = "pinnacle.cache.invalidate";

/// Core NATS, served by nobody: a request here is answered by the server itself ("no
/// responders"), and only once it has handled everything the same connection sent before
/// it. An announcer ([`TOKENS_REVOKED`], [`CACHE_INVALIDATE`]) sends one after its
/// announcement, so that when it answers its own caller, the announcement already waits
/// in every worker's connection ahead of any order sent afterwards.
pub const SERVER_BARRIER: &str = "pinnacle.barrier";

/// Market-data request-reply subjects, served by the publisher.
pub mod md {
    /// Prefix of every request subject.
    pub const REQUEST_PREFIX: &str = "md.req.";
    /// The latest tick of one symbol (last-value cache).
    pub const LAST: &str = "md.req.last";
    /// Historical candles.
    pub const CANDLES: &str = "md.req.candles";
    /// Search the instrument master by symbol prefix or name.
    pub const SYMBOLS_SEARCH: &str = "md.req.symbols.search";
    /// Look one instrument up by token or symbol.
    pub const SYMBOLS_LOOKUP: &str = "md.req.symbols.lookup";
    /// Market status per exchange.
    pub const STATUS: &str = "md.req.status";
    /// The latest tick of many symbols at once (a list or a `md.tick.` wildcard), with
    /// every exchange's status: what a late subscriber or a client that saw a gap needs.
    pub const SNAPSHOT: &str = "md.req.snapshot";
}

/// `md.depth.<EXCHANGE>.<SYMBOL>`: the five-level book, escaped like [`tick`].
pub fn depth(exchange: &str, symbol: &str) -> String {
    market_subject(MD_DEPTH_PREFIX, exchange, symbol)
}

/// `md.status.<EXCHANGE>`: published whenever that exchange's phase changes.
pub fn status(exchange: &str) -> String {
    format!("{MD_STATUS_PREFIX}.{}", escape_token(exchange))
}

/// Subject prefixes a service must never publish a reply into: Pinnacle's own namespaces
/// (so a caller cannot make a worker write into another user's audit trail or events, or
/// onto the internal announcements under `pinnacle.`, which its NATS permissions deny it)
/// and the NATS system subjects.
pub const PROTECTED_PREFIXES: [&str; 6] = ["audit.", "events.", "orders.", "md.", "pinnacle.", "$"];

/// Whether `reply_to` is a subject a service may answer on (not a protected prefix).
pub fn is_safe_reply(reply_to: &str) -> bool {
    !PROTECTED_PREFIXES.iter().any(|p| reply_to.starts_with(p))
}

/// `md.tick.<EXCHANGE>.<SYMBOL>` with the symbol escaped by [`escape_token`].
pub fn tick(exchange: &str, symbol: &str) -> String {
    market_subject(MD_TICK_PREFIX, exchange, symbol)
}

/// `<prefix>.<EXCHANGE>.<SYMBOL>` in one allocation (this runs once per published tick).
fn market_subject(prefix: &str, exchange: &str, symbol: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + exchange.len() + symbol.len() + 8);
    out.push_str(prefix);
    out.push('.');
    push_escaped(&mut out, exchange);
    out.push('.');
    push_escaped(&mut out, symbol);
    out
}

/// `orders.<user_id>.<verb>`: a request subject confined to one user.
pub fn order(user_id: &str, verb: &str) -> String {
    format!("orders.{}.{verb}", escape_token(user_id))
}

/// An order request subject split into its parts, the user token left as it was spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderSubject<'a> {
    /// The user token exactly as it appears in the subject (escaped, not decoded).
    pub user_token: &'a str,
    /// The verb (last token), parsed.
    pub verb: OrderVerb,
}

impl OrderSubject<'_> {
    /// Whether the subject names `user_id` in its one canonical spelling,
    /// [`escape_token`]`(user_id)`. Any other spelling that would decode to the same id
    /// (`~62` for `b`, lower-case hex, a `+` sign in the escape) is a different subject:
    /// NATS permissions, stream filters and monitoring match subjects byte for byte, so
    /// the worker must too.
    pub fn is_for(&self, user_id: &str) -> bool {
        let mut canonical = String::with_capacity(user_id.len());
        push_escaped(&mut canonical, user_id);
        self.user_token == canonical
    }
}

/// Splits `orders.<user_id>.<verb>`; `None` unless it has exactly those three tokens, a
/// non-empty user token and a known verb. The user token is not decoded: compare it with
/// [`OrderSubject::is_for`].
pub fn parse_order(subject: &str) -> Option<OrderSubject<'_>> {
    let mut parts = subject.split('.');
    let (Some("orders"), Some(user_token), Some(verb), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let verb = verb.parse().ok()?;
    (!user_token.is_empty()).then_some(OrderSubject { user_token, verb })
}

/// The user token of any subject under `orders.` (`orders.<user_id>…`, whatever follows,
/// known verb or not), not decoded: who a request on the order subjects is for, and so,
/// under the shipped NATS permissions, who sent it. `None` when it names no one.
pub fn order_sender(subject: &str) -> Option<&str> {
    let user_token = subject.strip_prefix("orders.")?.split('.').next()?;
    (!user_token.is_empty()).then_some(user_token)
}

/// `events.orders.<user_id>`: one user's order lifecycle events.
pub fn order_events(user_id: &str) -> String {
    format!("events.orders.{}", escape_token(user_id))
}

/// What every audit chain subject starts with.
pub const AUDIT_CREDENTIAL_PREFIX: &str = "audit.credential.";
/// What every audit checkpoint subject starts with.
pub const AUDIT_CHECKPOINT_PREFIX: &str = "audit.checkpoint.";

/// `audit.credential.<user_id>`: credential accesses for one user's accounts.
pub fn audit_credential(user_id: &str) -> String {
    format!("{AUDIT_CREDENTIAL_PREFIX}{}", escape_token(user_id))
}

/// `audit.checkpoint.<user_id>`: signed checkpoints of the chain on
/// [`audit_credential`]`(user_id)`.
pub fn audit_checkpoint(user_id: &str) -> String {
    format!("{AUDIT_CHECKPOINT_PREFIX}{}", escape_token(user_id))
}

/// The chain subject a checkpoint subject covers (`audit.checkpoint.X` → `audit.credential.X`).
pub fn audit_chain_of_checkpoint(subject: &str) -> Option<String> {
    subject
        .strip_prefix(AUDIT_CHECKPOINT_PREFIX)
        .filter(|token| !token.is_empty() && !token.contains('.'))
        .map(|token| format!("{AUDIT_CREDENTIAL_PREFIX}{token}"))
}

/// The checkpoint subject of a chain subject (`audit.credential.X` → `audit.checkpoint.X`).
pub fn audit_checkpoint_of_chain(subject: &str) -> Option<String> {
    subject
        .strip_prefix(AUDIT_CREDENTIAL_PREFIX)
        .filter(|token| !token.is_empty())
        .map(|token| format!("{AUDIT_CHECKPOINT_PREFIX}{token}"))
}

/// The user id of a chain subject `audit.credential.<user_id>`.
pub fn audit_user_of(subject: &str) -> Option<String> {
    unescape_token(subject.strip_prefix(AUDIT_CREDENTIAL_PREFIX)?)
}

/// Escapes a value so it is exactly one NATS subject token.
///
/// ASCII letters, digits, `-`, `_` and `&` pass through. Every other byte of the UTF-8
/// encoding, including `~` itself, becomes `~HH` (upper-case hex), so `NIFTY 50` becomes
/// `NIFTY~2050` and `BAJAJ.AUTO` becomes `BAJAJ~2EAUTO`. The mapping is reversible.
pub fn escape_token(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_escaped(&mut out, value);
    out
}

/// Appends `value` escaped as by [`escape_token`].
fn push_escaped(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if value.bytes().all(is_plain) {
        out.push_str(value);
        return;
    }
    for byte in value.bytes() {
        if is_plain(byte) {
            out.push(byte as char);
        } else {
            out.push('~');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0x0f)] as char);
        }
    }
}

/// Bytes that stand for themselves in a subject token.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'&')
}

/// Reverses [`escape_token`]. Returns `None` for a token that no escape could have
/// produced: an escaped plain byte (`~62` for `b`), lower-case or signed hex, a bare `~`,
/// or bytes that are not UTF-8. Every value thus has exactly one spelling.
pub fn unescape_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' {
            let high = upper_hex_digit(*bytes.get(i + 1)?)?;
            let low = upper_hex_digit(*bytes.get(i + 2)?)?;
            let byte = (high << 4) | low;
            if is_plain(byte) {
                return None;
            }
            out.push(byte);
            i += 3;
        } else {
            let b = bytes[i];
            if !is_plain(b) {
                return None;
            }
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of one upper-case hex digit, as [`escape_token`] writes them.
fn upper_hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
