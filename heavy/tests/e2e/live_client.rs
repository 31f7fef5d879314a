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

use crate::http::{csrf, session_cookie};

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

/// "Log out everywhere" from the devices page's form, as the session `cookie`.
pub(crate) async fn logout_everywhere(http: &reqwest::Client, base: &str, cookie: &str) {
    let token = csrf(http, &format!("http://{base}"), cookie).await;
    let res = http
        .post(format!("http://{base}/sessions/logout-all"))
        .header(COOKIE, cookie)
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_redirection(),
        "logout-all: {}",
        res.status()
    );
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

/// Raises this process's open-file limit to at least `needed` (up to the hard limit), for a
/// fleet of sockets whose both ends live in this process.
pub(crate) fn raise_open_files(needed: u64) {
    let got = rlimit::increase_nofile_limit(needed).expect("setrlimit(RLIMIT_NOFILE)");
    assert!(
        got >= needed,
        "the open-file limit is {got}, {needed} needed: raise the hard limit (ulimit -Hn)"
    );
}

/// One user's fleet: `sessions` sessions of `user` (each a device that signed in on its
/// own), `per_session` open sockets on each, every socket past its first frame. Opened 32 at
/// a time, which the listener's backlog takes without refusing.
pub(crate) async fn open_fleet(
    base: &str,
    user: &str,
    sessions: usize,
    per_session: usize,
) -> Vec<Socket> {
    let http = crate::http::client();
    let mut cookies = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        cookies.push(sign_in(&http, base, user).await);
    }
    let jobs: Vec<String> = cookies
        .iter()
        .flat_map(|c| std::iter::repeat_n(c.clone(), per_session))
        .collect();
    let mut sockets = Vec::with_capacity(jobs.len());
    for batch in jobs.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for cookie in batch {
            let (base, cookie) = (base.to_owned(), cookie.clone());
            set.spawn(async move {
                let mut ws = open(&base, &cookie).await;
                first_frame(&mut ws).await;
                ws
            });
        }
        while let Some(ws) = set.join_next().await {
            sockets.push(ws.expect("a socket opens"));
        }
    }
    sockets
}
