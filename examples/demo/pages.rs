//! The demo's HTML: one layout with a small inline stylesheet, the session banner the
//! browser client drives, and the pages. Handlers in `app.rs` gather the data; this file
//! only renders it (every value it is given is escaped here).

use axum::response::Html;
use axum_tessera::{Flash, FlashLevel};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2933;background:#f4f6f8}
header{display:flex;align-items:center;gap:1rem;padding:.75rem 1.5rem;background:#fff;border-bottom:1px solid #e1e5ea}
a{color:#2f6fde}
header .brand{font-weight:700;margin-right:auto;color:inherit;text-decoration:none}
header form{margin:0}
main{max-width:880px;margin:1.5rem auto;padding:0 1.5rem;display:grid;gap:1.25rem}
.card{background:#fff;border:1px solid #e1e5ea;border-radius:10px;padding:1.25rem 1.5rem}
h1{font-size:1.5rem;margin:0 0 .75rem}h2{font-size:1.1rem;margin:0 0 .75rem}
label{display:block;margin:.5rem 0}
input[type=text],input[type=password],input:not([type]){display:block;width:100%;padding:.5rem .6rem;border:1px solid #c4cbd3;border-radius:6px;font:inherit}
label.check{display:flex;gap:.5rem;align-items:center}
button{font:inherit;padding:.45rem .9rem;border-radius:6px;border:1px solid #2f6fde;background:#2f6fde;color:#fff;cursor:pointer}
button.quiet{background:#fff;color:#2f6fde}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1.25rem;margin:0}
dt{color:#616e7c}dd{margin:0}
.flash{padding:.6rem 1rem;border-radius:8px;border:1px solid}
.flash.success{background:#e3f9e5;border-color:#91d8a0;color:#0e5a1e}
.flash.info{background:#e6f0ff;border-color:#a8c5f5;color:#173f7a}
.flash.warning{background:#fff7e0;border-color:#f0cf75;color:#6b4d00}
.flash.error{background:#ffe9e9;border-color:#f1a3a3;color:#7a1212}
#session-banner{position:sticky;top:0;z-index:1;display:flex;gap:1rem;align-items:center;justify-content:center;padding:.6rem 1rem;background:#fff7e0;border-bottom:1px solid #f0cf75}
#session-banner.ended{background:#ffe9e9;border-color:#f1a3a3}
table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:.45rem .4rem;border-top:1px solid #e1e5ea;vertical-align:top}
.muted{color:#616e7c;font-size:.9rem}
"#;

/// The client wiring every page runs: CSRF on `fetch`, the expiry banner, cross-tab logout.
/// `window.tessera` is the client, for the console and the browser tests.
const CLIENT: &str = r#"<script type="module">
import * as tessera from "/api/session/client.js";
window.tessera = tessera;
tessera.install();
const idle = Number(document.body.dataset.idle) || 1800;
const banner = document.getElementById("session-banner");
const text = document.getElementById("session-banner-text");
const stay = document.getElementById("stay-signed-in");
const expiresIn = document.getElementById("expires-in");
let warned = null, deadline = 0, seen = null, seenAt = 0;
const left = (s) => Math.min(s.remaining_seconds, s.absolute_remaining_seconds);
addEventListener("session-warning", (e) => {
  warned = tessera.state();
  deadline = performance.now() + e.detail.remaining_seconds * 1e3;
  banner.hidden = false;
  tick();
});
addEventListener("session-expired", (e) => {
  warned = null;
  banner.hidden = false;
  banner.classList.add("ended");
  stay.hidden = true;
  text.id = "session-ended";
  text.textContent = e.detail.reason === "logout"
    ? "You signed out in another tab."
    : "Your session has ended.";
  const again = document.createElement("a");
  again.href = "/";
  again.textContent = "Sign in again";
  banner.append(again);
  if (expiresIn) expiresIn.textContent = "ended";
});
stay.addEventListener("click", () => tessera.extend());
document.getElementById("logout-form")?.addEventListener("submit", () => tessera.notifyLogout());
function tick() {
  const state = tessera.state();
  // The client replaced its state: an extension (here or in another tab) happened.
  if (state !== seen) { seen = state; seenAt = performance.now(); }
  if (warned && state !== warned) { warned = null; banner.hidden = true; }
  if (warned) {
    const s = Math.max(0, Math.round((deadline - performance.now()) / 1e3));
    text.textContent = `Your session ends in ${s} s.`;
  }
  const s = state?.session;
  if (expiresIn && s && !banner.classList.contains("ended")) {
    const rest = Math.max(0, Math.round(left(s) - (performance.now() - seenAt) / 1e3));
    expiresIn.textContent = `${rest} s`;
  }
}
setInterval(tick, 1000);
tessera.start({
  warnBefore: Math.min(60, Math.ceil(idle * 0.4)),
  extendEvery: Math.min(60, Math.max(1, Math.floor(idle * 0.2))),
}).then(tick);
</script>"#;

/// What the header shows about the visitor, when signed in.
pub struct Viewer<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
}

/// A whole page: header, banner, flash messages, then `body`.
pub fn layout(
    title: &str,
    viewer: Option<&Viewer<'_>>,
    flashes: &[Flash],
    idle_secs: i64,
    body: &str,
) -> Html<String> {
    let account = match viewer {
        Some(v) => format!(
            r#"<span class="muted">Signed in as <strong>{user}</strong></span>
<a href="/sessions">Your devices</a>
<form id="logout-form" method="post" action="/logout"><input type="hidden" name="csrf_token" value="{csrf}"><button id="logout" class="quiet" type="submit">Sign out</button></form>"#,
            user = escape(v.user),
            csrf = escape(v.csrf),
        ),
        None => String::new(),
    };
    let flashes: String = flashes
        .iter()
        .map(|f| {
            let role = if f.level() == FlashLevel::Error {
                "alert"
            } else {
                "status"
            };
            format!(
                r#"<p class="flash {level}" role="{role}">{message}</p>"#,
                level = f.level(),
                message = escape(f.message()),
            )
        })
        .collect();
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title} · tessera demo</title><style>{STYLE}</style></head>
<body data-idle="{idle_secs}">
<div id="session-banner" role="alert" hidden><span id="session-banner-text"></span><button id="stay-signed-in" type="button">Stay signed in</button></div>
<header><a class="brand" href="/">tessera demo</a>{account}</header>
<main>{flashes}{body}</main>
{CLIENT}
</body></html>"#,
        title = escape(title),
    ))
}

/// The sign-in card. `next` is an already validated local path, if any.
pub fn login_form(csrf: &str, next: Option<&str>) -> String {
    let next = next
        .map(|n| format!(r#"<input type="hidden" name="next" value="{}">"#, escape(n)))
        .unwrap_or_default();
    format!(
        r#"<section class="card"><h1>Sign in</h1>
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{csrf}">{next}
<label>User <input id="username" name="username" autocomplete="username"></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label>
<label class="check"><input id="remember" name="remember" type="checkbox" value="on"> Keep me signed in on this device</label>
<button id="login" type="submit">Sign in</button>
</form>
<p class="muted">Try alice / alice or admin / admin. Unticked, the cookie ends with the browser.</p></section>"#,
        csrf = escape(csrf),
    )
}

/// What the layer knows about the current session, for the panel.
pub struct Panel {
    pub principal: String,
    pub scopes: Vec<String>,
    pub created: String,
    pub last_activity: String,
    /// Seconds left when the page was rendered; the client counts down from its own state.
    pub expires_in: u64,
    pub absolute_in: u64,
    pub token_source: String,
    pub persistent: bool,
    pub id_hash: String,
    /// (this device's position, devices in all), 1-based.
    pub devices: (usize, usize),
}

/// The signed-in home page: greeting, counter, and the session panel.
pub fn dashboard(user: &str, counter: u64, csrf: &str, panel: &Panel) -> String {
    let scopes = if panel.scopes.is_empty() {
        "none".to_owned()
    } else {
        escape(&panel.scopes.join(", "))
    };
    let cookie = if panel.persistent {
        "persistent (kept until the absolute deadline)"
    } else {
        "browser session (ends when the browser closes)"
    };
    format!(
        r#"<section class="card"><h1 id="greeting">Hello, {user}!</h1>
<p>Counter: <span id="counter">{counter}</span></p>
<form method="post" action="/counter"><input type="hidden" name="csrf_token" value="{csrf}"><button id="increment" type="submit">Increment</button></form>
</section>
<section class="card" id="session-panel"><h2>Your session</h2><dl>
<dt>Principal</dt><dd>{principal}</dd>
<dt>Scopes</dt><dd>{scopes}</dd>
<dt>Session</dt><dd><code>{id_hash}</code> <span class="muted">(a hash; the ID never leaves the cookie)</span></dd>
<dt>Created</dt><dd>{created}</dd>
<dt>Last activity</dt><dd>{last}</dd>
<dt>Expires in</dt><dd><span id="expires-in">{expires_in} s</span> <span class="muted">idle; {absolute_h} h {absolute_m} min at most</span></dd>
<dt>Token source</dt><dd>{source}</dd>
<dt>Cookie</dt><dd>{cookie}</dd>
<dt>This device</dt><dd>{n} of {total} signed-in devices · <a href="/sessions">manage</a></dd>
</dl></section>"#,
        user = escape(user),
        csrf = escape(csrf),
        principal = escape(&panel.principal),
        id_hash = escape(&panel.id_hash),
        created = escape(&panel.created),
        last = escape(&panel.last_activity),
        expires_in = panel.expires_in,
        absolute_h = panel.absolute_in / 3600,
        absolute_m = panel.absolute_in % 3600 / 60,
        source = escape(&panel.token_source),
        n = panel.devices.0,
        total = panel.devices.1,
    )
}

/// One row of the devices page.
pub struct Device {
    pub hash: String,
    pub this: bool,
    pub created: String,
    pub last_seen: String,
    pub user_agent: String,
    /// The store key in hex, for the "log out this session" form.
    pub key: String,
}

/// The devices page: every live session of the principal, each with its own logout.
pub fn sessions(devices: &[Device], csrf: &str) -> String {
    let csrf = escape(csrf);
    let rows: String = devices
        .iter()
        .map(|d| {
            format!(
                r#"<tr class="session"><td><code>{hash}</code>{this}</td><td>{created}</td><td>{seen}</td><td>{ua}</td><td><form method="post" action="/sessions/logout"><input type="hidden" name="csrf_token" value="{csrf}"><input type="hidden" name="session" value="{key}"><button class="quiet" type="submit">Log out this session</button></form></td></tr>"#,
                hash = escape(&d.hash),
                this = if d.this { " (this one)" } else { "" },
                created = escape(&d.created),
                seen = escape(&d.last_seen),
                ua = escape(&d.user_agent),
                key = escape(&d.key),
            )
        })
        .collect();
    format!(
        r#"<section class="card"><h1>Your devices</h1>
<table><tr><th>Session</th><th>Created</th><th>Last seen</th><th>Browser</th><th></th></tr>{rows}</table>
<form method="post" action="/sessions/logout-all"><input type="hidden" name="csrf_token" value="{csrf}"><p><button id="logout-all" type="submit">Log out everywhere</button></p></form>
<p><a href="/">Back</a></p></section>"#
    )
}
