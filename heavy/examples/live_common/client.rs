//! What the cross-instance latency examples (`live_redis`, `live_postgres`) do as a browser
//! would: sign in to the demo, open its live socket, wait for the close frame; and the two
//! measurements they share (logout latency across instances, sockets left idle).

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::header::COOKIE;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

use crate::http;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn csrf(http: &reqwest::Client, base: &str, cookie: &str) -> String {
    http::csrf(http, &format!("http://{base}"), cookie).await
}

pub async fn sign_in(http: &reqwest::Client, base: &str) -> String {
    let res = http.get(format!("http://{base}/")).send().await.unwrap();
    let anon = http::session_cookie(&res).unwrap();
    let token = csrf(http, base, &anon).await;
    let res = http
        .post(format!("http://{base}/login"))
        .header(COOKIE, &anon)
        .form(&[
            ("username", "alice"),
            ("password", "alice"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    http::session_cookie(&res).expect("signed in")
}

pub async fn open(base: &str, cookie: &str) -> Socket {
    let mut req = format!("ws://{base}/live/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", format!("http://{base}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // The first push: the socket is up and its handle registered.
    assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
    ws
}

pub async fn close_code(ws: &mut Socket) -> u16 {
    while let Some(frame) = ws.next().await {
        if let Ok(Message::Close(Some(f))) = frame {
            return f.code.into();
        }
    }
    0
}

/// `trials` times: signs in on `a`, opens its live socket, logs out through `b` and times
/// from sending the logout (its commit included) to the 4001 close frame on `a`; prints the
/// median, p90 and worst.
pub async fn logout_latency(http: &reqwest::Client, a: &str, b: &str, trials: usize) {
    let mut took = Vec::with_capacity(trials);
    for _ in 0..trials {
        let cookie = sign_in(http, a).await;
        let mut ws = open(a, &cookie).await;
        let token = csrf(http, b, &cookie).await;
        let start = Instant::now();
        let logout = http
            .post(format!("http://{b}/logout"))
            .header(COOKIE, &cookie)
            .form(&[("csrf_token", token.as_str())])
            .send();
        let (res, code) = tokio::join!(logout, close_code(&mut ws));
        let elapsed = start.elapsed();
        assert!(res.unwrap().status().is_redirection());
        assert_eq!(code, 4001);
        took.push(elapsed);
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "logout through B -> 4001 close frame on A, {trials} trials: median {:.2} ms, p90 {:.2} ms, worst {:.2} ms",
        ms(took[trials / 2]),
        ms(took[trials * 9 / 10]),
        ms(took[trials - 1]),
    );
}

/// Opens `n` signed-in live sockets on `a`, each read by a task as a browser would (so
/// nothing backs up); abort the tasks to close them.
pub async fn idle_sockets(
    http: &reqwest::Client,
    a: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let cookie = sign_in(http, a).await;
        sockets.push(open(a, &cookie).await);
    }
    sockets
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { while ws.next().await.is_some() {} }))
        .collect()
}
