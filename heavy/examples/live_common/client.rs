//! What the cross-instance latency examples (`live_redis`, `live_postgres`) do as a browser
//! would: sign in to the demo, open its live socket, wait for the close frame.

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
