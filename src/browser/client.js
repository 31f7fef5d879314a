// axum-tessera browser client, served at <base>/client.js. No deps, no build.

// Captured at load so install() can't make our requests recurse.
const nativeFetch = globalThis.fetch.bind(globalThis);
const log = (e) => console.debug("tessera:", e);
const now = () => performance.now();

let base = new URL(".", import.meta.url).href; // where we were served from
let opts = { warnBefore: 60, extendEvery: 60 };
let info = null;
let token; // a promise, so concurrent requests share one fetch
let timers = [];
let trail = 0; // trailing extend for activity inside the throttle window
let deadline = 0; // performance.now() ms when the session runs out
let lastExtend = -Infinity;
let dead = false; // session-expired already fired
let chan;

const url = (p) => new URL(p, base);
const emit = (type, detail) => dispatchEvent(new CustomEvent(type, { detail }));
const post = (m) => chan?.postMessage?.(m); // plain data, channel never closed: can't throw
// Timers and listeners must never throw, sync or async.
const safe = (fn) => { try { fn()?.catch?.(log); } catch (e) { log(e); } };
const left = (s) => Math.min(s.remaining_seconds, s.absolute_remaining_seconds);

const get = (p) => nativeFetch(url(p), { cache: "no-store" })
  .then((r) => (r.ok ? r.json() : Promise.reject(r.status)));
const read = () => get("info").catch(log); // undefined when unreachable

export const refreshToken = () => (token = get("csrf-token")
  .then((j) => j.csrf_token)
  .catch((e) => { token = null; log(e); })); // don't cache a failure

export async function sessionFetch(input, init = {}) {
  const isReq = input instanceof Request;
  const method = (init.method || (isReq && input.method) || "GET").toUpperCase();
  // Never leak the token to another origin.
  if (/^(GET|HEAD|OPTIONS|TRACE)$/.test(method) ||
    new URL(isReq ? input.url : input, location.href).origin !== location.origin) return nativeFetch(input, init);
  // A stream can be read only once: no retry.
  const replay = !(init.body instanceof ReadableStream);
  const spare = replay && isReq ? input.clone() : input;
  const send = (inp, tok) => {
    const h = new Headers(init.headers || inp.headers);
    if (tok) h.set("X-CSRF-Token", tok);
    return nativeFetch(inp, { ...init, headers: h });
  };
  const res = await send(input, await (token || refreshToken()));
  // A 403 most likely means login/logout rotated the session id and token.
  return res.status === 403 && replay ? send(spare, await refreshToken()) : res;
}

export const install = () => { globalThis.fetch = sessionFetch; };
export const state = () => info;

// t is a performance.now() deadline; re-arm past setTimeout's 2^31 ms limit.
function at(t, fn) {
  const d = t - now();
  timers.push(setTimeout(() => safe(d > 2e9 ? () => at(t, fn) : fn), Math.min(d, 2e9)));
}

// Keeps a pending trailing extend unless `all`: that activity was real.
function stop(all) {
  timers.forEach(clearTimeout);
  timers = [];
  if (all) { clearTimeout(trail); trail = 0; info = { session: null }; token = null; }
}

// Server's relative seconds + local monotonic clock: immune to clock skew.
function schedule(i) {
  stop();
  info = i;
  const s = i?.session;
  if (!s) return;
  dead = false;
  deadline = now() + left(s) * 1e3;
  at(deadline - opts.warnBefore * 1e3, () =>
    emit("session-warning", { remaining_seconds: Math.max(0, Math.round((deadline - now()) / 1e3)) }));
  at(deadline, sync);
}

function expire(reason, fromPeer) {
  stop(1);
  if (dead) return;
  dead = true;
  if (!fromPeer) post({ t: "end", reason });
  emit("session-expired", { reason });
}

// Confirm before declaring expiry: another tab may have extended.
async function sync() {
  const i = await read();
  if (!i) return at(now() + 15e3, sync); // unreachable: don't guess, ask later
  const s = i.session;
  if (info?.session && (!s || !s.is_active || left(s) <= 0)) expire("timeout");
  else schedule(i);
}

export async function extend() {
  lastExtend = now(); // before the request: a burst of events sends one
  const r = await sessionFetch(url("extend"), { method: "POST" }).catch(log);
  if (r?.status === 401) expire("timeout");
  const i = r?.ok && (await r.json().catch(log));
  if (!i) return null;
  schedule(i);
  post({ t: "extend", i });
  return i;
}

function onActivity() {
  if (!info?.session || dead || trail) return;
  const wait = lastExtend + opts.extendEvery * 1e3 - now();
  if (wait <= 0) return void extend();
  // Activity inside the window still counts: extend at its end, before expiry.
  trail = setTimeout(() => { trail = 0; safe(extend); }, Math.min(wait, deadline - now() - 2e3));
}

// This tab logged out on purpose: stop quietly here, tell the other tabs.
export function notifyLogout() {
  stop(1);
  dead = true;
  post({ t: "end", reason: "logout" });
}

export const clear = () => sessionFetch(url("clear"), { method: "POST" })
  .then((r) => (r.ok && notifyLogout(), r.ok), (e) => (log(e), false));

export function watchSocket(ws) {
  // 4001: the server ended the session. 1001 is only a restart or navigation.
  ws.addEventListener("close", (e) => safe(() => e.code === 4001 && expire(e.reason || "closed")));
  return ws;
}

export async function start(o = {}) {
  opts = { ...opts, ...o };
  if (o.base) base = new URL(o.base.replace(/\/?$/, "/"), location.href).href;
  if (!chan) {
    chan = self.BroadcastChannel ? new BroadcastChannel("tessera-session") : {};
    chan.onmessage = ({ data: m }) => safe(() => {
      // A peer's extend restarts our throttle window; its end matters only with a session.
      if (m.t === "extend") { lastExtend = now(); schedule(m.i); }
      if (m.t === "end" && info?.session) expire(m.reason, true);
    });
    for (const t of "pointerdown keydown scroll wheel touchstart".split(" "))
      addEventListener(t, () => safe(onActivity), { passive: true, capture: true });
    // Timers stall while the machine sleeps: re-read when seen.
    document.addEventListener("visibilitychange", () =>
      safe(() => !document.hidden && info?.session && sync()));
  }
  const i = await read();
  if (i) schedule(i);
  return i || null;
}
