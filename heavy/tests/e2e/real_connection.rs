//! Client-IP binding over a real loopback connection: the layer reads the peer address that
//! `axum::serve` records (`ConnectInfo`), and `X-Forwarded-For` from a trusted proxy moves the
//! client. The other binding tests, on `oneshot` requests, are `security_binding` in `tests/it`.

use std::net::SocketAddr;

use axum::http::header;
use axum_tessera::config::IpNet;
use axum_tessera::{SessionConfig, SessionLayer};

use crate::support::harness::{self, COOKIE};
use crate::support::key;

#[tokio::test]
async fn ip_binding_reads_the_peer_of_a_real_connection() {
    let proxies: [IpNet; 1] = ["127.0.0.0/8".parse().unwrap()];
    let layer = SessionLayer::new(
        SessionConfig::web(key(1))
            .bind_client_ip(true)
            .trusted_proxies(proxies),
    );
    let app = harness::routes().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    let token_of = |res: &reqwest::Response| {
        let raw = res.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        cookie::Cookie::parse(raw).unwrap().value().to_owned()
    };
    let live = |body: String| body.contains("live=true");

    // Straight from 127.0.0.1 (a trusted proxy with no header: the client itself).
    let res = client.post(url("/write/v")).send().await.unwrap();
    let local = token_of(&res);
    let cookie = format!("{COOKIE}={local}");
    let get = |extra: Option<&'static str>| {
        let mut req = client
            .get(url("/whoami"))
            .header(header::COOKIE, cookie.clone());
        if let Some(xff) = extra {
            req = req.header("x-forwarded-for", xff);
        }
        req
    };
    assert!(live(get(None).send().await.unwrap().text().await.unwrap()));
    let moved = get(Some("198.51.100.7"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !live(moved),
        "forwarded by a trusted proxy for another client"
    );
    server.abort();
}
