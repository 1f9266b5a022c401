// A small NATS client over WebSocket, for the console. It speaks the NATS text protocol
// (INFO, CONNECT, PING/PONG, SUB/UNSUB, PUB/HPUB, MSG/HMSG, +OK/-ERR) to a nats-server
// `websocket` listener, so the browser gets exactly the per-user permissions a trader's
// own program gets (nats/README.md): its own orders.<id>.> and events.orders.<id>, market
// data, and replies only on its private inbox _INBOX.<id>.>.

const enc = new TextEncoder();
const dec = new TextDecoder();
const CRLF = enc.encode("\r\n");
/** How long the server has to complete the handshake. */
const HANDSHAKE_MS = 5000;
/** How often the connection is checked with a PING. */
const PING_MS = 3000;
/** No PONG for this long: the connection is dead. */
const STALE_MS = 8000;

export class NatsError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Headers as a case-insensitive multimap, serialised as a NATS/1.0 header block. */
export function encodeHeaders(headers) {
  let block = "NATS/1.0\r\n";
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n:]/.test(name) || /[\r\n]/.test(String(value))) {
      throw new NatsError("INVALID_HEADER", `header ${name} holds a line break`);
    }
    block += `${name}: ${value}\r\n`;
  }
  return enc.encode(block + "\r\n");
}

/** Parses a NATS/1.0 header block into {status, description, headers (lower-case names)}. */
export function decodeHeaders(bytes) {
  const lines = dec.decode(bytes).split("\r\n");
  const first = lines.shift() || "";
  const match = /^NATS\/1\.0(?:\s+(\d{3}))?(?:\s+(.*))?$/.exec(first);
  const headers = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    (headers[name] ||= []).push(line.slice(colon + 1).trim());
  }
  return {
    status: match && match[1] ? Number(match[1]) : 0,
    description: (match && match[2]) || "",
    headers,
  };
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function indexOfCrlf(bytes, from) {
  for (let i = from; i + 1 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10) return i;
  }
  return -1;
}

function randomToken(n = 12) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One connection. Create with `Connection.open(url, options)`. */
export class Connection {
  constructor(ws, options) {
    this.ws = ws;
    this.options = options;
    this.buffer = new Uint8Array(0);
    this.subs = new Map();
    this.nextSid = 1;
    this.pending = new Map();
    this.pongs = [];
    this.info = null;
    this.closed = false;
    this.ready = false;
    this.onclose = null;
    this.onerror = null;
    // Replies arrive on one wildcard subscription under the caller's inbox prefix.
    this.inbox = `${options.inboxPrefix || "_INBOX"}.${randomToken()}`;
  }

  /**
   * Connects and completes the handshake. `options`: {user, pass, inboxPrefix, name}.
   * Resolves once the server has answered the first PING (so a bad login fails here).
   */
  static open(url, options = {}) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        reject(new NatsError("CONNECT_FAILED", `cannot open ${url}: ${e.message}`));
        return;
      }
      ws.binaryType = "arraybuffer";
      const conn = new Connection(ws, options);
      let ready = false;
      const fail = (error) => {
        if (!ready) {
          ready = true;
          reject(error);
        }
      };
      ws.onerror = () => fail(new NatsError("CONNECT_FAILED", `no NATS WebSocket answered at ${url}`));
      ws.onclose = () => {
        fail(new NatsError("CONNECT_FAILED", "the NATS server closed the connection"));
        conn.lost();
      };
      // A server that accepts the socket but never answers (stopped, overloaded) fails too.
      const handshake = setTimeout(() => {
        fail(new NatsError("CONNECT_FAILED", `no NATS handshake from ${url} within ${HANDSHAKE_MS} ms`));
        conn.lost();
      }, HANDSHAKE_MS);
      ws.onmessage = (event) => conn.receive(new Uint8Array(event.data));
      conn.onInfo = () => {
        const connect = {
          verbose: false, pedantic: false, headers: true, no_responders: true,
          protocol: 1, lang: "pinnacle-console", version: "1",
          name: options.name || "pinnacle-console",
        };
        if (options.user) connect.user = options.user;
        if (options.pass) connect.pass = options.pass;
        conn.send(`CONNECT ${JSON.stringify(connect)}\r\n`);
        conn.ping().then(() => {
          conn.send(`SUB ${conn.inbox}.* ${conn.replySid = conn.nextSid++}\r\n`);
          conn.subs.set(conn.replySid, (msg) => conn.reply(msg));
          clearTimeout(handshake);
          ready = true;
          conn.ready = true;
          conn.keepalive();
          resolve(conn);
        }, fail);
      };
    });
  }

  send(data) {
    if (this.closed) throw new NatsError("DISCONNECTED", "not connected to NATS");
    this.ws.send(typeof data === "string" ? enc.encode(data) : data);
  }

  ping() {
    return new Promise((resolve, reject) => {
      this.pongs.push({ resolve, reject });
      this.send("PING\r\n");
    });
  }

  close() {
    this.closed = true;
    clearInterval(this.pinger);
    this.ws.close();
  }

  /**
   * PINGs the server every PING_MS; a connection with no PONG for STALE_MS is dead (a
   * half-open socket, a stopped server) and is dropped, so the page notices and reconnects.
   */
  keepalive() {
    this.lastPong = Date.now();
    this.pinger = setInterval(() => {
      if (Date.now() - this.lastPong > STALE_MS) {
        this.lost();
        return;
      }
      try {
        this.send("PING\r\n");
      } catch {
        this.lost();
      }
    }, PING_MS);
  }

  /** The connection is gone: fail what waits on it and tell the page, once. */
  lost() {
    if (this.gone) return;
    this.gone = true;
    this.closed = true;
    clearInterval(this.pinger);
    for (const { reject } of this.pending.values()) reject(new NatsError("DISCONNECTED", "connection closed"));
    this.pending.clear();
    for (const { reject } of this.pongs.splice(0)) reject(new NatsError("DISCONNECTED", "connection closed"));
    try {
      this.ws.close();
    } catch {
      // already closing
    }
    if (this.onclose) this.onclose();
  }

  /** Subscribes; `callback(msg)` gets {subject, reply, data (Uint8Array), headers}. */
  subscribe(subject, callback) {
    const sid = this.nextSid++;
    this.subs.set(sid, callback);
    this.send(`SUB ${subject} ${sid}\r\n`);
    return sid;
  }

  unsubscribe(sid) {
    if (this.subs.delete(sid) && !this.closed) this.send(`UNSUB ${sid}\r\n`);
  }

  publish(subject, data, headers = null, reply = "") {
    const payload = data || new Uint8Array(0);
    const replyPart = reply ? ` ${reply}` : "";
    if (headers) {
      const hdr = encodeHeaders(headers);
      const head = enc.encode(`HPUB ${subject}${replyPart} ${hdr.length} ${hdr.length + payload.length}\r\n`);
      this.send(concat(concat(concat(head, hdr), payload), CRLF));
    } else {
      const head = enc.encode(`PUB ${subject}${replyPart} ${payload.length}\r\n`);
      this.send(concat(concat(head, payload), CRLF));
    }
  }

  /** Request-reply; resolves with the reply message, rejects on timeout or no responders. */
  request(subject, data, headers = null, timeoutMs = 5000) {
    const token = randomToken(8);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new NatsError("TIMEOUT", `no reply on ${subject} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(token, {
        resolve: (msg) => { clearTimeout(timer); resolve(msg); },
        reject: (err) => { clearTimeout(timer); reject(err); },
      });
      try {
        this.publish(subject, data, headers, `${this.inbox}.${token}`);
      } catch (e) {
        this.pending.get(token)?.reject(e);
        this.pending.delete(token);
      }
    });
  }

  reply(msg) {
    const token = msg.subject.slice(this.inbox.length + 1);
    const waiter = this.pending.get(token);
    if (!waiter) return;
    this.pending.delete(token);
    if (msg.status === 503) {
      waiter.reject(new NatsError("NO_RESPONDERS", "no service answers this subject"));
    } else {
      waiter.resolve(msg);
    }
  }

  receive(chunk) {
    this.buffer = this.buffer.length ? concat(this.buffer, chunk) : chunk;
    for (;;) {
      const end = indexOfCrlf(this.buffer, 0);
      if (end < 0) return;
      const line = dec.decode(this.buffer.subarray(0, end));
      const [op] = line.split(" ", 1);
      const verb = op.toUpperCase();
      if (verb === "MSG" || verb === "HMSG") {
        const parts = line.split(" ").filter(Boolean);
        const withHeaders = verb === "HMSG";
        const total = Number(parts[parts.length - 1]);
        const headerLen = withHeaders ? Number(parts[parts.length - 2]) : 0;
        const fixed = withHeaders ? 5 : 4;
        const reply = parts.length > fixed ? parts[3] : "";
        const start = end + 2;
        if (this.buffer.length < start + total + 2) return;
        const body = this.buffer.subarray(start, start + total);
        const head = withHeaders ? decodeHeaders(body.subarray(0, headerLen)) : { status: 0, headers: {} };
        const msg = {
          subject: parts[1],
          reply,
          data: body.slice(headerLen),
          headers: head.headers,
          status: head.status,
        };
        this.buffer = this.buffer.subarray(start + total + 2);
        const callback = this.subs.get(Number(parts[2]));
        if (callback) {
          try {
            callback(msg);
          } catch (e) {
            console.error("subscriber failed", e);
          }
        }
        continue;
      }
      this.buffer = this.buffer.subarray(end + 2);
      if (verb === "PING") {
        this.send("PONG\r\n");
      } else if (verb === "PONG") {
        this.lastPong = Date.now();
        this.pongs.shift()?.resolve();
      } else if (verb === "INFO") {
        this.info = JSON.parse(line.slice(5));
        if (this.onInfo) {
          const first = this.onInfo;
          this.onInfo = null;
          first();
        }
      } else if (verb === "-ERR") {
        const error = new NatsError("NATS_ERROR", line.slice(5).replace(/^'|'$/g, ""));
        // A login refused before the first PONG fails the handshake; later errors (a
        // permissions violation) leave the connection open.
        if (!this.ready) this.pongs.shift()?.reject(error);
        if (this.onerror) this.onerror(error);
      }
    }
  }
}
