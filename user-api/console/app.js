// The Pinnacle console: logs a trader in with an API token (or name and password, through
// POST /v1/login), then talks to Pinnacle the way any client does: NATS over WebSocket for
// market data, orders and order events (docs/PROTOCOL.md), and the user API over HTTP for
// accounts, tokens, the audit trail and (admin) users, kill switches and keys.
// Plain ES modules, no build step; everything is served by the user API itself.

import { Connection, NatsError } from "./nats.js";
import { decode } from "./msgpack.js";

const $ = (sel, root = document) => root.querySelector(sel);
const enc = new TextEncoder();
const dec = new TextDecoder();

const session = {
  token: null,      // the API token (kept in sessionStorage: this tab only)
  me: null,         // GET /v1/me
  nats: null,       // Connection
  watch: [],        // [{exchange, symbol}]
  ticks: new Map(), // subject -> {tick, points: [ltp…]}
  orders: new Map(),
  accounts: [],
};

// ---------- formatting ----------

const rupees = new Intl.NumberFormat("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const counts = new Intl.NumberFormat("en-IN");

function money(paise) {
  if (paise === null || paise === undefined) return "–";
  return "₹" + rupees.format(Number(paise) / 100);
}

// Times are shown in IST, the markets' time, whatever the browser's zone.
const IST = { timeZone: "Asia/Kolkata", hour12: false };
const istDay = (d) => d.toLocaleDateString("en-IN", IST);

function when(ms) {
  if (!ms) return "–";
  const d = new Date(Number(ms));
  const today = istDay(new Date()) === istDay(d);
  return (today ? d.toLocaleTimeString("en-IN", IST) : d.toLocaleString("en-IN", IST)) + " IST";
}

function iso(text) {
  return text ? new Date(text).toLocaleString("en-IN", IST) + " IST" : "–";
}

/** "812.35" -> 81235 paise, exactly (no binary floats); "" -> null. */
export function toPaise(text) {
  const value = String(text || "").trim();
  if (!value) return null;
  const m = /^(\d+)(?:\.(\d{1,2}))?$/.exec(value);
  if (!m) throw new NatsError("INVALID_REQUEST", `"${value}" is not a price in rupees (e.g. 812.35)`);
  return Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
}

/** docs/PROTOCOL.md "Escaping": one spelling per value. */
export function escapeToken(value) {
  let out = "";
  for (const b of enc.encode(value)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-_&]/.test(c) ? c : "~" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function button(label, onClick, accessibleName) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (accessibleName) b.setAttribute("aria-label", accessibleName);
  b.addEventListener("click", onClick);
  return b;
}

function showAlert(error) {
  const box = $("#alert");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = describe(error);
}

function describe(error) {
  if (error && error.code) return `${error.code}: ${error.message}`;
  return String(error && error.message ? error.message : error);
}

function setResult(el, error, text) {
  el.classList.toggle("error", Boolean(error));
  el.classList.toggle("good", !error);
  el.textContent = error ? describe(error) : text;
}

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

// ---------- the user API (HTTP) ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const err = json && json.error ? json.error : { code: `HTTP_${response.status}`, message: text };
    throw new ApiError(response.status, err.code, err.message);
  }
  return json;
}

const userPath = (rest = "") => `/v1/users/${encodeURIComponent(session.me.user_id)}${rest}`;

// ---------- NATS requests (docs/PROTOCOL.md) ----------

/** A JSON request; resolves with `result`, throws {code, message} on an error reply. */
async function request(subject, body, { auth = false, timeoutMs = 5000 } = {}) {
  const headers = {
    "Content-Type": "application/json",
    "Pinnacle-Request-Id": `console-${crypto.randomUUID()}`,
  };
  if (auth) headers.Authorization = `Bearer ${session.token}`;
  const reply = await session.nats.request(subject, enc.encode(JSON.stringify(body || {})), headers, timeoutMs);
  const parsed = JSON.parse(dec.decode(reply.data));
  if (!parsed.ok) throw new NatsError(parsed.error.code, parsed.error.message);
  return parsed.result;
}

const orderSubject = (verb) => `orders.${session.me.user_id}.${verb}`;
const orderRequest = (verb, body) => request(orderSubject(verb), body, { auth: true });

// ---------- login ----------

async function loginWithToken(token, minted = false) {
  session.token = token;
  let me;
  try {
    me = await api("GET", "/v1/me");
  } catch (e) {
    session.token = null;
    throw e;
  }
  session.me = me;
  sessionStorage.setItem("pinnacle.token", token);
  // A token minted by a password login lives only as long as the session: logout revokes
  // it. A token the trader typed in is theirs to keep.
  if (minted) sessionStorage.setItem("pinnacle.minted", "1");
  else sessionStorage.removeItem("pinnacle.minted");
  // Nothing secret stays in the page once it is used.
  $("#token").value = "";
  $("#login-pass").value = "";
  await start();
}

async function loginWithPassword(name, password) {
  const response = await fetch("/v1/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name, password }),
  });
  const json = await response.json().catch(() => null);
  if (!response.ok) {
    const err = json && json.error ? json.error : { code: `HTTP_${response.status}`, message: "login failed" };
    throw new ApiError(response.status, err.code, err.message);
  }
  await loginWithToken(json.token, true);
}

async function logout() {
  session.loggingOut = true;
  if (sessionStorage.getItem("pinnacle.minted") && session.me && session.me.kind === "user") {
    await api("DELETE", userPath(`/tokens/${session.me.token_id}`)).catch(() => {});
  }
  sessionStorage.removeItem("pinnacle.minted");
  sessionStorage.removeItem("pinnacle.token");
  if (session.nats) session.nats.close();
  location.hash = "";
  location.reload();
}

// Subscriptions the page wants, kept across reconnects: id -> {subject, callback, sid}.
const wanted = new Map();
let nextWanted = 1;

/** Subscribes now and again after every reconnect; returns an id for `unfollowSubject`. */
function followSubject(subject, callback) {
  const id = nextWanted++;
  wanted.set(id, { subject, callback, sid: session.nats.subscribe(subject, callback) });
  return id;
}

function unfollowSubject(id) {
  const held = wanted.get(id);
  wanted.delete(id);
  if (held && session.nats && !session.nats.closed) session.nats.unsubscribe(held.sid);
}

/** After a lost connection: retry with backoff, resubscribe, then heal what was missed. */
async function reconnect(delayMs = 500) {
  setConn(false, "NATS connection lost; reconnecting…");
  await new Promise((r) => setTimeout(r, delayMs));
  try {
    await connectNats();
  } catch {
    reconnect(Math.min(delayMs * 2, 10000));
    return;
  }
  for (const held of wanted.values()) held.sid = session.nats.subscribe(held.subject, held.callback);
  // Ticks, status and orders changed while away: snapshot them again (PROTOCOL.md, step 4).
  await healMarket().catch(showAlert);
  if (session.me.kind === "user") await refreshOrders().catch(showAlert);
  route();
}

async function connectNats() {
  const config = await fetch("/console/config.json", { cache: "no-store" }).then((r) => r.json());
  const url = $("#nats-url").value.trim() || sessionStorage.getItem("pinnacle.nats") || config.nats_ws_url;
  if (!url) throw new NatsError("NO_NATS_URL", "no NATS WebSocket URL: enter one under NATS login");
  const trader = session.me.kind === "user";
  const pass = $("#nats-pass").value || sessionStorage.getItem("pinnacle.natspass") || "";
  const conn = await Connection.open(url, {
    user: trader && pass ? session.me.user_id : undefined,
    pass: pass || undefined,
    // Traders may read replies only on their own inbox (nats/README.md).
    inboxPrefix: trader ? `_INBOX.${session.me.user_id}` : "_INBOX",
    name: trader ? `console-${session.me.user_id}` : "console-admin",
  });
  sessionStorage.setItem("pinnacle.nats", url);
  if (pass) sessionStorage.setItem("pinnacle.natspass", pass);
  conn.onclose = () => {
    if (session.nats === conn && !session.loggingOut) reconnect();
  };
  conn.onerror = (e) => showAlert(e);
  session.nats = conn;
  setConn(true, `NATS ${url}`);
}

function setConn(ok, text) {
  const el = $("#conn");
  el.textContent = text;
  el.classList.toggle("ok", ok);
  el.classList.toggle("bad", !ok);
}

async function start() {
  const me = session.me;
  $("#who").textContent = me.kind === "admin" ? "admin" : `${me.name} (${me.user_id}) · scopes ${me.scopes.join(", ")}`;
  $("#logout").hidden = false;
  $("#tabs").hidden = false;
  for (const a of document.querySelectorAll("#tabs [data-trader]")) a.hidden = me.kind !== "user";
  for (const a of document.querySelectorAll("#tabs [data-admin]")) a.hidden = me.kind !== "admin";
  try {
    await connectNats();
  } catch (e) {
    setConn(false, "NATS not connected");
    showAlert(e);
  }
  if (session.nats) {
    await startMarket().catch(showAlert);
    if (me.kind === "user") await startTrading().catch(showAlert);
  }
  if (!location.hash || location.hash === "#login") location.hash = "#market";
  route();
}

// ---------- views ----------

const loaders = {
  market: () => {},
  trade: () => refreshOrders(),
  portfolio: () => refreshPortfolio(),
  audit: () => refreshAudit(),
  account: () => refreshAccount(),
  admin: () => refreshAdmin(),
};

function route() {
  let name = location.hash.replace("#", "") || "login";
  if (!session.me) name = "login";
  if (session.me && !(name in loaders)) name = "market";
  if (session.me && session.me.kind !== "user" && ["trade", "portfolio", "audit", "account"].includes(name)) name = "market";
  if (session.me && session.me.kind !== "admin" && name === "admin") name = "market";
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  for (const a of document.querySelectorAll("#tabs a[data-for]")) {
    if (a.dataset.for === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `Pinnacle console · ${name}`;
  if (session.me && loaders[name]) Promise.resolve(loaders[name]()).catch(showAlert);
}

// ---------- market: watchlist and status ----------

function saveWatch() {
  localStorage.setItem("pinnacle.watch", JSON.stringify(session.watch));
}

function tickSubject(w) {
  return `md.tick.${escapeToken(w.exchange)}.${escapeToken(w.symbol)}`;
}

async function startMarket() {
  const saved = JSON.parse(localStorage.getItem("pinnacle.watch") || "null");
  if (Array.isArray(saved) && saved.length) {
    session.watch = saved.filter((w) => w && w.exchange && w.symbol);
  } else {
    const page = await request("md.req.snapshot", { subject: "md.tick.>", limit: 12 });
    session.watch = page.ticks.map((t) => ({ exchange: t.exchange, symbol: t.symbol }));
    saveWatch();
  }
  followSubject("md.status.>", (msg) => applyStatus(decode(msg.data)));
  for (const w of session.watch) await follow(w);
  await healMarket();
  renderSymbols();
}

/** Every watched symbol's latest tick and every exchange's status, in one snapshot. */
async function healMarket() {
  const symbols = session.watch.map((w) => ({ exchange: w.exchange, symbol: w.symbol }));
  if (!symbols.length) {
    const status = await request("md.req.status", {});
    for (const s of status.exchanges) applyStatus(s);
    return;
  }
  const page = await request("md.req.snapshot", { symbols });
  for (const s of page.status) applyStatus(s);
  for (const tick of page.ticks) applyTick(tickSubject(tick), tick);
}

/** One symbol's latest tick, after its `seq` jumped (ticks were missed). */
async function healSymbol(w) {
  try {
    applyTick(tickSubject(w), await request("md.req.last", { exchange: w.exchange, symbol: w.symbol }));
  } catch (e) {
    if (e.code !== "NOT_FOUND") showAlert(e);
  }
}

async function follow(w) {
  const subject = tickSubject(w);
  if (session.ticks.has(subject)) return;
  session.ticks.set(subject, { tick: null, points: [], row: null });
  addWatchRow(w, subject);
  session.ticks.get(subject).sub = followSubject(subject, (msg) => applyTick(msg.subject, decode(msg.data)));
  await healSymbol(w);
}

function applyStatus(s) {
  const list = $("#status-list");
  let li = list.querySelector(`[data-exchange="${CSS.escape(s.exchange)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.exchange = s.exchange;
    list.append(li);
  }
  li.className = s.status;
  const next = s.next_change_ms ? `, changes ${when(s.next_change_ms)}` : "";
  li.textContent = `${s.exchange}: ${s.status}${s.reason ? ` (${s.reason})` : ""}${next}`;
}

function addWatchRow(w, subject) {
  const tr = document.createElement("tr");
  tr.dataset.subject = subject;
  const name = document.createElement("th");
  name.scope = "row";
  name.textContent = `${w.exchange}:${w.symbol}`;
  tr.append(name, cell("–", "num ltp"), cell("–", "num chg"), cell("–", "num ba"), cell("–", "num vol"));
  const chart = document.createElement("td");
  chart.innerHTML = `<svg class="spark" width="120" height="28" role="img" aria-label="intraday chart of ${w.symbol}"><polyline points=""/></svg>`;
  const actions = document.createElement("td");
  actions.append(
    button("Trade", () => prefillTicket(w), `Trade ${w.symbol}`),
    button("Remove", () => unfollow(w, subject), `Remove ${w.symbol}`),
  );
  tr.append(chart, actions);
  $("#watchlist tbody").append(tr);
  session.ticks.get(subject).row = tr;
}

function unfollow(w, subject) {
  const held = session.ticks.get(subject);
  if (held) {
    unfollowSubject(held.sub);
    held.row?.remove();
    session.ticks.delete(subject);
  }
  session.watch = session.watch.filter((x) => !(x.exchange === w.exchange && x.symbol === w.symbol));
  saveWatch();
  renderSymbols();
}

function applyTick(subject, tick) {
  const held = session.ticks.get(subject);
  if (!held || !tick) return;
  if (held.tick && tick.seq <= held.tick.seq) return; // the snapshot rule: only newer ticks
  if (held.tick && tick.seq > held.tick.seq + 1 && !held.healing) {
    // A gap: ticks were missed. This one is newer than all of them, so it stands; ask for
    // the latest once more in case more were lost behind it.
    held.healing = true;
    healSymbol({ exchange: tick.exchange, symbol: tick.symbol }).finally(() => { held.healing = false; });
  }
  held.tick = tick;
  held.points.push(Number(tick.ltp));
  if (held.points.length > 600) held.points.shift();
  const tr = held.row;
  tr.querySelector(".ltp").textContent = money(tick.ltp);
  const chg = tr.querySelector(".chg");
  if (tick.close) {
    const diff = Number(tick.ltp) - Number(tick.close);
    const pct = (diff / Number(tick.close)) * 100;
    const sign = diff > 0 ? "+" : diff < 0 ? "−" : "";
    chg.textContent = `${sign}${rupees.format(Math.abs(diff) / 100)} (${sign}${Math.abs(pct).toFixed(2)}%)`;
    chg.className = `num chg ${diff > 0 ? "up" : diff < 0 ? "down" : ""}`;
    chg.title = diff > 0 ? "up since the previous close" : diff < 0 ? "down since the previous close" : "unchanged";
  }
  tr.querySelector(".ba").textContent = `${money(tick.bid)} / ${money(tick.ask)}`;
  tr.querySelector(".vol").textContent = counts.format(Number(tick.volume || 0));
  tr.dataset.seq = tick.seq;
  drawSpark(tr.querySelector("polyline"), held.points);
}

function drawSpark(line, points) {
  if (points.length < 2) return;
  const min = Math.min(...points);
  const max = Math.max(...points);
  const span = max - min || 1;
  const step = 118 / (points.length - 1);
  line.setAttribute("points", points.map((p, i) => `${(1 + i * step).toFixed(1)},${(26 - ((p - min) / span) * 24).toFixed(1)}`).join(" "));
}

function renderSymbols() {
  const list = $("#symbols");
  list.replaceChildren(...session.watch.map((w) => Object.assign(document.createElement("option"), { value: w.symbol })));
}

// ---------- trading: ticket, orders, events ----------

async function startTrading() {
  followSubject(`events.orders.${session.me.user_id}`, (msg) => onOrderEvent(decode(msg.data)));
  session.accounts = await api("GET", userPath("/broker-accounts"));
  const select = $("#t-account");
  for (const a of session.accounts) {
    select.append(Object.assign(document.createElement("option"), { value: a.label, textContent: `${a.label} (${a.broker})` }));
  }
}

function prefillTicket(w) {
  $("#t-exchange").value = w.exchange;
  $("#t-symbol").value = w.symbol;
  const held = session.ticks.get(tickSubject(w));
  if (held && held.tick) $("#t-price").value = (Number(held.tick.ltp) / 100).toFixed(2);
  location.hash = "#trade";
  $("#t-qty").focus();
}

async function placeOrder(form) {
  const data = new FormData(form);
  const type = data.get("order_type");
  const order = {
    client_order_id: `console-${crypto.randomUUID()}`,
    exchange: data.get("exchange").trim().toUpperCase(),
    symbol: data.get("symbol").trim(),
    side: data.get("side"),
    order_type: type,
    quantity: Number(data.get("quantity")),
    product: data.get("product"),
  };
  const price = toPaise(data.get("price"));
  const trigger = toPaise(data.get("trigger_price"));
  if (type === "LIMIT" || type === "STOPLOSS_LIMIT") order.price = price;
  if (type.startsWith("STOPLOSS")) order.trigger_price = trigger;
  if (data.get("account")) order.account = data.get("account");
  const result = await orderRequest("place", order);
  upsertOrder(result);
  return result;
}

function upsertOrder(order) {
  session.orders.set(order.order_id, order);
  renderOrders();
}

function onOrderEvent(event) {
  const order = event.order;
  const li = document.createElement("li");
  li.textContent = `${when(event.ts_ms)} ${order.symbol} ${order.side} ${order.quantity}: ${event.previous_status || "–"} → ${order.status}`;
  const log = $("#events");
  log.prepend(li);
  while (log.children.length > 50) log.lastChild.remove();
  const held = session.orders.get(order.order_id);
  if (!held || (order.updated_at_ms || 0) >= (held.updated_at_ms || 0)) upsertOrder(order);
  refreshLater();
}

const refreshLater = debounce(() => {
  const name = location.hash.replace("#", "");
  if (name === "portfolio") refreshPortfolio().catch(showAlert);
  if (name === "audit") refreshAudit().catch(showAlert);
}, 400);

async function refreshOrders() {
  const { orders } = await orderRequest("list", { limit: 100 });
  session.orders = new Map(orders.map((o) => [o.order_id, o]));
  renderOrders();
}

function renderOrders() {
  const rows = [...session.orders.values()].sort((a, b) => b.created_at_ms - a.created_at_ms);
  fillBody("#orders tbody", rows.map((o) => {
    const tr = document.createElement("tr");
    tr.dataset.orderId = o.order_id;
    tr.dataset.status = o.status;
    tr.append(
      cell(when(o.created_at_ms)), cell(`${o.exchange}:${o.symbol}`), cell(o.side), cell(o.order_type),
      cell(counts.format(o.quantity), "num"), cell(counts.format(o.filled_quantity), "num"),
      cell(money(o.price), "num"), cell(money(o.trigger_price), "num"), cell(money(o.average_price), "num"),
      cell(o.reject_reason ? `${o.status} (${o.reject_reason})` : o.status, `state-${o.status}`),
    );
    const actions = document.createElement("td");
    if (o.status === "OPEN" || o.status === "PARTIALLY_FILLED") {
      actions.append(
        button("Modify", () => openModify(o), `Modify order ${o.symbol} ${o.side} ${o.quantity}`),
        button("Cancel", () => cancelOrder(o), `Cancel order ${o.symbol} ${o.side} ${o.quantity}`),
      );
    }
    tr.append(actions);
    return tr;
  }), "No orders yet.");
}

async function cancelOrder(o) {
  try {
    upsertOrder(await orderRequest("cancel", { order_id: o.order_id }));
    showAlert(null);
  } catch (e) {
    showAlert(e);
  }
}

let modifying = null;

function openModify(o) {
  modifying = o;
  $("#modify-what").textContent = `${o.side} ${o.quantity} ${o.exchange}:${o.symbol} ${o.order_type}, ${o.status}`;
  $("#m-qty").value = o.quantity;
  $("#m-price").value = o.price ? (o.price / 100).toFixed(2) : "";
  $("#m-price").disabled = !(o.order_type === "LIMIT" || o.order_type === "STOPLOSS_LIMIT");
  $("#m-trigger").value = o.trigger_price ? (o.trigger_price / 100).toFixed(2) : "";
  $("#m-trigger").disabled = !o.order_type.startsWith("STOPLOSS");
  $("#modify-result").textContent = "";
  $("#modify-dialog").showModal();
}

async function sendModify() {
  const o = modifying;
  const change = { order_id: o.order_id };
  const qty = Number($("#m-qty").value);
  if (qty && qty !== o.quantity) change.quantity = qty;
  if (!$("#m-price").disabled) {
    const p = toPaise($("#m-price").value);
    if (p !== null && p !== o.price) change.price = p;
  }
  if (!$("#m-trigger").disabled) {
    const t = toPaise($("#m-trigger").value);
    if (t !== null && t !== o.trigger_price) change.trigger_price = t;
  }
  const result = await orderRequest("modify", change);
  upsertOrder(result);
  return result;
}

// ---------- portfolio ----------

async function refreshPortfolio() {
  const [funds, positions, holdings, trades] = await Promise.all([
    orderRequest("funds", {}), orderRequest("positions", {}), orderRequest("holdings", {}), orderRequest("trades", {}),
  ]);
  $("#funds").replaceChildren(...["cash", "used", "blocked", "available"].map((k) => {
    const div = document.createElement("div");
    div.innerHTML = `<dt></dt><dd></dd>`;
    div.querySelector("dt").textContent = k;
    div.querySelector("dd").textContent = money(funds[k]);
    return div;
  }));
  fillBody("#positions tbody", positions.positions.map((p) => row(
    `${p.exchange}:${p.symbol}`, p.product, [counts.format(p.net_quantity), "num"], [money(p.average_price), "num"],
    [counts.format(p.buy_quantity), "num"], [counts.format(p.sell_quantity), "num"],
    [money(p.realized_pnl), `num ${p.realized_pnl > 0 ? "up" : p.realized_pnl < 0 ? "down" : ""}`],
  )), "No positions.");
  fillBody("#holdings tbody", holdings.holdings.map((h) => row(
    `${h.exchange}:${h.symbol}`, [counts.format(h.quantity), "num"], [money(h.average_price), "num"],
  )), "No holdings.");
  fillBody("#trades tbody", trades.trades.slice().reverse().map((t) => row(
    when(t.ts_ms), `${t.exchange}:${t.symbol}`, t.side, t.product, [counts.format(t.quantity), "num"], [money(t.price), "num"], t.order_id,
  )), "No trades today.");
}

/** The square-off button: the first click arms it, a second within 5 s squares off. */
async function squareOff() {
  const button = $("#squareoff");
  const out = $("#squareoff-result");
  if (button.dataset.armed !== "true") {
    button.dataset.armed = "true";
    button.textContent = "Confirm square-off";
    setTimeout(() => {
      button.dataset.armed = "false";
      button.textContent = "Square off intraday…";
    }, 5000);
    return;
  }
  button.dataset.armed = "false";
  button.textContent = "Square off intraday…";
  out.textContent = "squaring off…";
  try {
    const done = await orderRequest("squareoff", {});
    const closing = done.closing.map((o) => `${o.side} ${o.quantity} ${o.symbol} ${o.status}`);
    const failed = done.failed.map((f) => `${f.symbol} ${f.error.code}: ${f.error.message}`);
    if (failed.length) {
      setResult(out, { code: "SQUARE_OFF_INCOMPLETE", message: `${failed.join("; ")}. Square off again once the reason has passed.` });
    } else if (!done.cancelled.length && !closing.length) {
      setResult(out, null, "Nothing to square off: no working INTRADAY order, no open INTRADAY position.");
    } else {
      setResult(out, null, `Squared off: ${done.cancelled.length} order(s) cancelled; closing ${closing.join(", ") || "nothing"}.`);
    }
    await refreshPortfolio();
  } catch (e) {
    setResult(out, e);
  }
}

/** Replaces a table body's rows, or shows `empty` across the table when there are none. */
function fillBody(selector, rows, empty) {
  const body = $(selector);
  if (rows.length) {
    body.replaceChildren(...rows);
    return;
  }
  const td = cell(empty, "empty");
  td.colSpan = body.closest("table").querySelectorAll("thead th").length;
  const tr = document.createElement("tr");
  tr.append(td);
  body.replaceChildren(tr);
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells.map((c) => (Array.isArray(c) ? cell(c[0], c[1]) : cell(c))));
  return tr;
}

// ---------- audit ----------

async function refreshAudit() {
  const events = [];
  let after = 0;
  for (;;) {
    const page = await api("GET", userPath(`/audit?after=${after}&limit=1000`));
    events.push(...page.events);
    if (page.events.length < 1000) break;
    after = page.events[page.events.length - 1].seq;
  }
  const names = new Map(session.accounts.map((a) => [a.id, a.label]));
  $("#audit tbody").replaceChildren(...events.reverse().slice(0, 500).map((e) => row(
    [e.seq, "num"], when(e.ts_ms), e.actor === session.me.user_id ? `you (${e.token_id || "no token"})` : e.actor,
    e.purpose, (e.fields || []).join(", "), e.outcome + (e.reason ? ` (${e.reason})` : ""),
    names.get(e.broker_account_id) || e.broker_account_id || "–", e.trace_id, e.request_id,
  )));
}

async function verifyAudit() {
  const out = $("#verify-result");
  out.textContent = "verifying…";
  try {
    const report = await api("GET", userPath("/audit/verify"));
    if (report.clean) {
      setResult(out, null, `✓ Your chain verifies: ${report.events} events, ${report.checkpoints} checkpoints, every link and checkpoint checks out.`);
    } else {
      const first = report.problems[0];
      const what = first ? `${first.kind} at seq ${first.seq}: ${first.detail}` : report.stream_problems.join("; ");
      setResult(out, { code: "AUDIT_VERIFY_FAILED", message: `${report.problems.length + report.stream_problems.length} problem(s); first: ${what}` });
    }
  } catch (e) {
    setResult(out, e);
  }
}

// ---------- account: broker accounts and tokens ----------

const CREDENTIAL_FIELDS = ["api_key", "client_code", "secret", "totp_seed", "access_token", "jwt_token", "refresh_token", "feed_token"];

async function refreshAccount() {
  session.accounts = await api("GET", userPath("/broker-accounts"));
  $("#accounts tbody").replaceChildren(...session.accounts.map((a) => row(
    a.label, a.broker,
    [CREDENTIAL_FIELDS.map((f) => `${f} ${a.fields_set.includes(f) ? "set" : "not set"}`).join(" · "), "wrap"],
    a.static_ip, a.algo_id, [a.generation, "num"], [a.master_key_id, "num"], iso(a.updated_at),
  )));
  const tokens = await api("GET", userPath("/tokens"));
  $("#tokens tbody").replaceChildren(...tokens.map((t) => {
    const tr = row(t.id + (t.id === session.me.token_id ? " (this session)" : ""), t.scopes.join(", "), iso(t.created_at), iso(t.expires_at), iso(t.revoked_at));
    const actions = document.createElement("td");
    if (!t.revoked_at && t.id !== session.me.token_id) {
      actions.append(button("Revoke", () => revokeToken(t.id), `Revoke token ${t.id}`));
    }
    tr.append(actions);
    return tr;
  }));
}

async function createToken(form) {
  const data = new FormData(form);
  const scopes = data.getAll("scope");
  const days = Number(data.get("days") || 30);
  const created = await api("POST", userPath("/tokens"), { scopes, expires_in_secs: days * 86400 });
  $("#token-value").value = created.token;
  $("#token-shown").hidden = false;
  $("#token-value").focus();
  $("#token-value").select();
  await refreshAccount();
}

async function revokeToken(id) {
  await api("DELETE", userPath(`/tokens/${id}`));
  await refreshAccount();
}

// ---------- admin ----------

async function refreshAdmin() {
  const [users, global, keys] = await Promise.all([api("GET", "/v1/users"), api("GET", "/v1/risk-limits/global"), api("GET", "/v1/keys")]);
  const on = Boolean(global.global && global.global.kill_switch);
  $("#global-kill").textContent = on ? "ON: every new order on the platform is refused (cancels still work)" : "off";
  $("#global-kill").dataset.on = String(on);
  const limits = await Promise.all(users.map((u) => api("GET", `/v1/users/${encodeURIComponent(u.id)}/risk-limits`).catch(() => null)));
  $("#users tbody").replaceChildren(...users.map((u, i) => {
    const mine = Boolean(limits[i] && limits[i].user && limits[i].user.kill_switch);
    const tr = row(u.name + (u.is_admin ? " (admin)" : ""), u.id, iso(u.created_at), u.default_account, mine ? "ON" : "off");
    const actions = document.createElement("td");
    actions.append(button(mine ? "Switch off" : "Switch on", async () => {
      await api("PUT", `/v1/users/${encodeURIComponent(u.id)}/risk-limits`, { kill_switch: !mine }).catch(showAlert);
      await refreshAdmin();
    }, `${mine ? "Switch off" : "Switch on"} the kill switch of ${u.name}`));
    tr.append(actions);
    return tr;
  }));
  const pending = keys.keys.filter((k) => k.key_id !== keys.current_key_id && k.rows > 0 && !k.retired);
  $("#keys-summary").textContent = `Current key ${keys.current_key_id}. ` + (pending.length
    ? `Rotation pending: ${pending.map((k) => `key ${k.key_id} still wraps ${k.rows} account(s)`).join(", ")} (run pinnacle keys rotate).`
    : "Every account's data key is wrapped by the current key.");
  $("#keys tbody").replaceChildren(...keys.keys.map((k) => row(
    [k.key_id, "num"], k.fingerprint, [k.rows, "num"], [counts.format(k.encryptions), "num"],
    k.retired ? "retired" : k.key_id === keys.current_key_id ? "current" : "old (decrypts only)",
  )));
}

// ---------- wiring ----------

function on(selector, event, handler) {
  $(selector).addEventListener(event, async (e) => {
    if (event === "submit") e.preventDefault();
    try {
      showAlert(null);
      await handler(e);
    } catch (err) {
      showAlert(err);
    }
  });
}

on("#login-token", "submit", () => loginWithToken($("#token").value.trim()));
on("#login-password", "submit", () => loginWithPassword($("#login-name").value.trim(), $("#login-pass").value));
on("#logout", "click", logout);
on("#watch-add", "submit", async () => {
  const [exchange, ...rest] = $("#watch-symbol").value.trim().split(":");
  const w = { exchange: exchange.toUpperCase(), symbol: rest.join(":") };
  if (!session.watch.some((x) => x.exchange === w.exchange && x.symbol === w.symbol)) {
    session.watch.push(w);
    saveWatch();
    await follow(w);
    renderSymbols();
  }
  $("#watch-symbol").value = "";
});
on("#ticket", "submit", async (e) => {
  const out = $("#ticket-result");
  out.textContent = "sending…";
  try {
    const o = await placeOrder(e.target);
    setResult(out, null, `Order ${o.order_id}: ${o.status}${o.average_price ? ` at ${money(o.average_price)}` : ""}`);
  } catch (err) {
    setResult(out, err);
  }
});
on("#modify-form", "submit", async () => {
  try {
    const o = await sendModify();
    setResult($("#modify-result"), null, `now ${o.status}`);
    $("#modify-dialog").close();
  } catch (err) {
    setResult($("#modify-result"), err);
  }
});
on("#modify-close", "click", () => $("#modify-dialog").close());
on("#verify", "click", verifyAudit);
on("#squareoff", "click", squareOff);
on("#audit-refresh", "click", refreshAudit);
on("#token-new", "submit", (e) => createToken(e.target));
on("#token-dismiss", "click", () => {
  $("#token-value").value = "";
  $("#token-shown").hidden = true;
});
on("#global-kill-toggle", "click", async () => {
  const now = $("#global-kill").dataset.on === "true";
  await api("PUT", "/v1/risk-limits/global", { kill_switch: !now });
  await refreshAdmin();
});
window.addEventListener("hashchange", route);

const saved = sessionStorage.getItem("pinnacle.token");
if (saved) {
  loginWithToken(saved, Boolean(sessionStorage.getItem("pinnacle.minted"))).catch((e) => {
    sessionStorage.removeItem("pinnacle.token");
    showAlert(e);
    route();
  });
} else {
  route();
}
