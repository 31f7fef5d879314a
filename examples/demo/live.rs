//! The live page: `GET /live` shows what a WebSocket to `/live/ws` receives; the socket
//! pushes the session's user and scopes once a second and closes with 4001 and the cause as
//! soon as the session ends (logout here or on another device, expiry, eviction, ...).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use axum_tessera::live::{LiveEvent, LiveSession, LiveUpgrade};
use axum_tessera::{OptionalSession, Session};
use serde_json::json;
use tokio::sync::watch;

use super::pages;

/// The close code of "your session ended": the browser client (`watchSocket`) turns it into
/// its `session-expired` event.
const SESSION_ENDED: u16 = 4001;
/// RFC 6455 "going away": the server shuts down; the session itself lives on.
const GOING_AWAY: u16 = 1001;

/// Set once at shutdown: every open socket closes with 1001.
static SHUTDOWN: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(false));
/// Sockets still open, so shutdown can wait for their close frames to go out.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// `/live` and `/live/ws`, to be served under the browser layer.
pub fn routes() -> Router {
    Router::new()
        .route("/live", get(page))
        .route("/live/ws", get(socket))
}

/// Closes every open live socket with 1001 (going away) and waits (at most 2 s) until their
/// close frames are out: upgraded connections are no longer the server's, so its graceful
/// shutdown would not wait for them, and a dropped socket would look like a crash.
#[allow(dead_code)] // `main` calls it; the end-to-end tests do not
pub async fn close_sockets() {
    SHUTDOWN.send_replace(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while OPEN.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn page(session: Session) -> Response {
    let Some(p) = session.principal() else {
        return Redirect::to("/?next=%2Flive").into_response();
    };
    let csrf = session.csrf_token();
    let viewer = pages::Viewer {
        user: p.id(),
        csrf: &csrf,
    };
    let body = r#"<h1>Live session</h1>
<p>Socket: <strong id="live-status">connecting…</strong></p>
<pre id="live-log" aria-live="polite"></pre>
<script>
const status = document.getElementById("live-status");
const log = document.getElementById("live-log");
// Any close but 4001 (1001 at a server's shutdown, a dropped network) reconnects, with a
// growing pause; only 4001 means the session is over.
let pause = 500;
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/live/ws");
  let opened = false;
  ws.onopen = () => { opened = true; pause = 500; status.textContent = "open"; };
  ws.onmessage = (e) => { log.textContent = e.data + "\n" + log.textContent.split("\n").slice(0, 9).join("\n"); };
  ws.onclose = (e) => {
    if (e.code === 4001) {
      status.innerHTML = 'signed out (' + (e.reason || "session ended").replace(/[<&]/g, "") + ') · <a id="live-home" href="/">sign in again</a>';
      return;
    }
    // A failed retry keeps the text of the close that started it.
    if (opened) { status.textContent = "closed (" + e.code + ") · reconnecting…"; }
    setTimeout(connect, pause);
    pause = Math.min(pause * 2, 10000);
  };
}
connect();
</script>"#;
    let Html(html) = pages::layout("Live", Some(&viewer), &[], 0, body);
    Html(html).into_response()
}

/// The Origin check comes first, so a cross-origin upgrade is 403 whatever its session;
/// then the session (401 without a logged-in one); only then the upgrade.
async fn socket(
    _: LiveUpgrade,
    OptionalSession(session): OptionalSession,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some((session, user)) = session.and_then(|s| {
        let user = s.principal()?.id().to_owned();
        Some((s, user))
    }) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(live) = session.live() else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let scopes: Vec<String> = session.scopes().into_iter().collect();
    ws.on_upgrade(move |socket| push(socket, live, user, scopes))
}

/// Counts an open socket while alive.
struct Open;

impl Open {
    fn new() -> Self {
        OPEN.fetch_add(1, Ordering::AcqRel);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn push(mut socket: WebSocket, mut live: LiveSession, user: String, mut scopes: Vec<String>) {
    let _open = Open::new();
    let mut shutdown = SHUTDOWN.subscribe();
    // The first tick is immediate: a frame right away, then one a second.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        let frame = tokio::select! {
            _ = tick.tick() => None,
            event = live.next() => match event {
                Some(LiveEvent::Changed { scopes: now, .. }) => {
                    scopes = now.into_iter().collect();
                    None
                }
                Some(LiveEvent::Ended(end)) => Some(close(SESSION_ENDED, end.reason().as_str())),
                Some(_) => continue,
                None => return,
            },
            // Client messages are read only to notice the close: they are not the user's
            // activity here, and the pings axum answers are not either.
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
            _ = shutdown.wait_for(|down| *down) => Some(close(GOING_AWAY, "server shutting down")),
        };
        let message = match frame {
            Some(close) => {
                let _ = socket.send(close).await;
                return;
            }
            None => {
                n += 1;
                let text = json!({ "user": user, "scopes": scopes, "n": n }).to_string();
                Message::Text(text.into())
            }
        };
        if socket.send(message).await.is_err() {
            return;
        }
    }
}
