//! A client of the demo's live socket as a browser would be one: sign in through the sign-in
//! form, open `/live/ws` with the page's own `Origin`, read frames, wait for the close frame.
//! Shared by the shutdown and fleet tests and the `live_fleet` benchmark.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::header::COOKIE;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::http::session_cookie;

/// An open `/live/ws`.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Signs `user` in (password = name) at `base` (`127.0.0.1:<port>`) from a fresh browser:
/// the sign-in page's token, then its form. Answers the session cookie.
pub(crate) async fn sign_in(http: &reqwest::Client, base: &str, user: &str) -> String {
    let page = http.get(format!("http://{base}/")).send().await.unwrap();
    let anon = session_cookie(&page).expect("the sign-in page starts a session");
    let html = page.text().await.unwrap();
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the sign-in form carries a CSRF token");
    let res = http
        .post(format!("http://{base}/login"))
        .header(COOKIE, &anon)
        .form(&[
            ("username", user),
            ("password", user),
            ("csrf_token", token),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "login: {}", res.status());
    session_cookie(&res).expect("login sets the cookie")
}

/// Opens `/live/ws` as the session `cookie`, from the demo's own origin.
pub(crate) async fn open(base: &str, cookie: &str) -> Socket {
    let mut req = format!("ws://{base}/live/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("a header value"));
    req.headers_mut().insert(
        "origin",
        format!("http://{base}").parse().expect("a header value"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the upgrade succeeds");
    ws
}

/// Waits for the socket's first frame (the demo sends one right away): the upgrade went
/// through and the server's push loop runs.
pub(crate) async fn first_frame(ws: &mut Socket) -> String {
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Skips data frames until the close frame, for at most `within` (a bound against hanging,
/// not a timing assertion); answers its code and reason.
pub(crate) async fn close_of(ws: &mut Socket, within: Duration) -> (u16, String) {
    let wait = async {
        while let Some(msg) = ws.next().await {
            match msg.expect("a valid frame") {
                Message::Close(Some(f)) => return (f.code.into(), f.reason.to_string()),
                Message::Close(None) => panic!("a close frame without a code"),
                _ => {}
            }
        }
        panic!("the socket ended without a close frame")
    };
    tokio::time::timeout(within, wait)
        .await
        .expect("a close frame in time")
}
