//! The demo's live page on a real loopback server, with a real WebSocket client: every cause
//! that ends a session closes `/live/ws` with 4001 and its reason, a scope change arrives on
//! the open socket, and the upgrade is refused (401 / 403) without a session or from a
//! foreign origin.

use std::time::Duration;

use axum_tessera::store::MemoryStore;
use axum_tessera::Key;
use futures_util::StreamExt as _;
use reqwest::header::COOKIE;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::app;
use crate::http::{client as http, html, serve, session_cookie};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The demo with an idle timeout of `idle` seconds; answers its base URL.
async fn start(idle: u64) -> String {
    let (web, api) = app::dev_configs(Key::generate());
    let web = web.idle_timeout(Duration::from_secs(idle));
    let addr = serve(app::router(web, api, MemoryStore::new())).await;
    format!("127.0.0.1:{}", addr.port())
}

fn field<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    page.split(&format!("name=\"{name}\" value=\""))
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// Signs in as `user` (password = name) from a fresh browser; answers its cookie.
pub(crate) async fn sign_in(base: &str, user: &str) -> String {
    let http = http();
    let res = http.get(format!("http://{base}/")).send().await.unwrap();
    let anon = session_cookie(&res).unwrap();
    let token = field(&res.text().await.unwrap(), "csrf_token")[0].to_owned();
    relogin(base, &anon, user, &token).await
}

async fn relogin(base: &str, cookie: &str, user: &str, csrf: &str) -> String {
    let res = http()
        .post(format!("http://{base}/login"))
        .header(COOKIE, cookie)
        .form(&[("username", user), ("password", user), ("csrf_token", csrf)])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    session_cookie(&res).expect("login sets the cookie")
}

pub(crate) async fn csrf(base: &str, cookie: &str) -> String {
    crate::http::csrf(&http(), &format!("http://{base}"), cookie).await
}

/// A CSRF-protected form post as `cookie`, with `fields` besides the token.
pub(crate) async fn post(base: &str, cookie: &str, path: &str, fields: &[(&str, &str)]) {
    let token = csrf(base, cookie).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    let res = http()
        .post(format!("http://{base}{path}"))
        .header(COOKIE, cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_redirection() || res.status().is_success(),
        "{path}: {}",
        res.status()
    );
}

async fn connect(base: &str, cookie: Option<&str>, origin: &str) -> Result<Socket, WsError> {
    let mut req = format!("ws://{base}/live/ws")
        .into_client_request()
        .unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    req.headers_mut().insert("origin", origin.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

pub(crate) async fn open(base: &str, cookie: &str) -> Socket {
    connect(base, Some(cookie), &format!("http://{base}"))
        .await
        .expect("the upgrade succeeds")
}

/// The next frame, within `secs` seconds.
async fn frame(ws: &mut Socket, secs: u64) -> Message {
    tokio::time::timeout(Duration::from_secs(secs), ws.next())
        .await
        .expect("a frame in time")
        .expect("the socket is open")
        .expect("a valid frame")
}

pub(crate) async fn json(ws: &mut Socket) -> Value {
    match frame(ws, 3).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Skips data frames until the close frame (within `secs` seconds); answers code and reason.
pub(crate) async fn close_of(ws: &mut Socket, secs: u64) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match frame(ws, left.as_secs().max(1)).await {
            Message::Close(Some(f)) => return (f.code.into(), f.reason.to_string()),
            Message::Close(None) => panic!("a close frame without a code"),
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "no close in {secs} s"
            ),
        }
    }
}

#[tokio::test]
async fn live_ws_pushes_user_scopes_and_count_right_away() {
    let base = start(1800).await;
    let cookie = sign_in(&base, "admin").await;
    let mut ws = open(&base, &cookie).await;
    let first = json(&mut ws).await;
    assert_eq!(first["user"], "admin");
    assert_eq!(first["scopes"], serde_json::json!(["admin"]));
    assert_eq!(first["n"], 1);
    assert_eq!(json(&mut ws).await["n"], 2, "about once a second");
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn live_ws_closes_4001_with_the_cause_of_each_end() {
    struct Case {
        name: &'static str,
        expect: &'static str,
    }
    let cases = [
        Case {
            name: "logout",
            expect: "logged out",
        },
        Case {
            name: "logout everywhere from another device",
            expect: "logged out everywhere",
        },
        Case {
            name: "ended from another device",
            expect: "ended elsewhere",
        },
        Case {
            name: "login as another user",
            expect: "signed in as another user",
        },
    ];
    let base = start(1800).await;
    for case in cases {
        let cookie = sign_in(&base, "alice").await;
        let mut ws = open(&base, &cookie).await;
        json(&mut ws).await;
        match case.name {
            "logout" => post(&base, &cookie, "/logout", &[]).await,
            "logout everywhere from another device" => {
                let other = sign_in(&base, "alice").await;
                post(&base, &other, "/sessions/logout-all", &[]).await;
            }
            "ended from another device" => {
                let other = sign_in(&base, "alice").await;
                end_other_sessions(&base, &other).await;
            }
            _ => {
                let token = csrf(&base, &cookie).await;
                relogin(&base, &cookie, "admin", &token).await;
            }
        }
        assert_eq!(
            close_of(&mut ws, 2).await,
            (4001, case.expect.to_owned()),
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn live_ws_closes_4001_expired_at_the_idle_timeout() {
    let base = start(2).await;
    let cookie = sign_in(&base, "alice").await;
    let mut ws = open(&base, &cookie).await;
    // The socket's own pushes are no activity: the session expires 2 s after the login.
    assert_eq!(close_of(&mut ws, 5).await, (4001, "expired".to_owned()));
}

#[tokio::test]
async fn live_ws_delivers_a_scope_change_and_stays_open() {
    let base = start(1800).await;
    let cookie = sign_in(&base, "alice").await;
    let mut ws = open(&base, &cookie).await;
    assert_eq!(json(&mut ws).await["scopes"], serde_json::json!([]));
    post(&base, &cookie, "/scopes/beta", &[]).await;
    scope_change(&mut ws).await;
}

/// Waits (at most 5 s) until `ready` says so, polling every 10 ms; `what` names it in the
/// panic.
pub(crate) async fn eventually<F, Fut>(what: &str, ready: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if ready().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not come up");
}

/// Two demo processes `a` and `b` on one shared store: every way of ending a session through
/// one closes the other's socket with 4001 and the cause, and a scope change reaches the other's
/// socket, which stays open. `listening(n)` waits until `n` of the processes listen for the
/// store's notices (a process starts when its first live socket opens).
pub(crate) async fn ends_reach_the_other_instance<F, Fut>(a: &str, b: &str, listening: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Signed in on A, the socket on B: the cookie works on both.
    let cookie = sign_in(a, "alice").await;
    let mut ws = open(b, &cookie).await;
    assert_eq!(json(&mut ws).await["user"], "alice");
    listening(1).await;
    post(a, &cookie, "/logout", &[]).await;
    assert_eq!(close_of(&mut ws, 2).await, (4001, "logged out".to_owned()));

    // "Log out everywhere" on B closes the sockets of every device, on A too.
    let phone = sign_in(a, "alice").await;
    let laptop = sign_in(b, "alice").await;
    let mut on_a = open(a, &phone).await;
    let mut on_b = open(b, &laptop).await;
    json(&mut on_a).await;
    json(&mut on_b).await;
    listening(2).await;
    post(b, &laptop, "/sessions/logout-all", &[]).await;
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(
            close_of(ws, 2).await,
            (4001, "logged out everywhere".to_owned())
        );
    }

    // A session ended from another device's /sessions page on B; the socket is on A.
    let phone = sign_in(a, "alice").await;
    let laptop = sign_in(b, "alice").await;
    let mut ws = open(a, &phone).await;
    json(&mut ws).await;
    end_other_sessions(b, &laptop).await;
    assert_eq!(
        close_of(&mut ws, 2).await,
        (4001, "ended elsewhere".to_owned())
    );

    // A scope change (a rotation) on A reaches B's socket, which stays open.
    let cookie = sign_in(a, "alice").await;
    let mut ws = open(b, &cookie).await;
    assert_eq!(json(&mut ws).await["scopes"], serde_json::json!([]));
    post(a, &cookie, "/scopes/beta", &[]).await;
    scope_change(&mut ws).await;
}

/// Reads pushes until one shows the scope `beta` (within 3 s), then one more: the socket
/// stays open.
pub(crate) async fn scope_change(ws: &mut Socket) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let msg = json(ws).await;
        if msg["scopes"] == serde_json::json!(["beta"]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scope change: {msg}"
        );
    }
    json(ws).await; // still pushing
}

/// Ends, from `cookie`'s /sessions page on `base`, every session of its user but its own.
pub(crate) async fn end_other_sessions(base: &str, cookie: &str) {
    let page = html(&http(), &format!("http://{base}"), "/sessions", cookie).await;
    // Every row but the device's own ("this one").
    for row in page.split("<tr class=\"session\">").skip(1) {
        if !row.contains("(this one)") {
            let key = field(row, "session")[0];
            post(base, cookie, "/sessions/logout", &[("session", key)]).await;
        }
    }
}

#[tokio::test]
async fn live_ws_refuses_without_session_401_and_cross_origin_403() {
    let base = start(1800).await;
    let status = |r: Result<Socket, WsError>| match r {
        Err(WsError::Http(res)) => res.status().as_u16(),
        Err(other) => panic!("{other}"),
        Ok(_) => 101,
    };
    let own = format!("http://{base}");
    assert_eq!(status(connect(&base, None, &own).await), 401, "no session");
    let cookie = sign_in(&base, "alice").await;
    let evil = "http://evil.example";
    assert_eq!(
        status(connect(&base, Some(&cookie), evil).await),
        403,
        "foreign origin"
    );
    assert_eq!(
        status(connect(&base, None, evil).await),
        403,
        "foreign origin, no session"
    );
    assert_eq!(status(connect(&base, Some(&cookie), &own).await), 101);
}
