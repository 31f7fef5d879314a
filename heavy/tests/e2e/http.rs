//! What the end-to-end modules share to talk to a real server: a loopback server for a
//! router, an HTTP client that shows redirects instead of following them, and the demo's
//! session cookie as a client sends it back.

use std::net::SocketAddr;

use axum::Router;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::redirect::Policy;

/// Serves `router` on a free loopback port until the test ends; answers the address.
pub(crate) async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A client that does not follow redirects, so a test sees each 303.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The demo's session cookie set by `res` (`tessera=<token>`), if any.
pub(crate) fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let pair = v.to_str().ok()?.split(';').next()?;
        pair.starts_with("tessera=").then(|| pair.to_owned())
    })
}

/// The demo's `/me` JSON for the session `cookie` names (`authenticated`, `user`,
/// `csrf_token`, ...).
pub(crate) async fn me(http: &reqwest::Client, base: &str, cookie: &str) -> serde_json::Value {
    http.get(format!("{base}/me"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The HTML of the demo's page at `path` for the session `cookie` names.
pub(crate) async fn html(http: &reqwest::Client, base: &str, path: &str, cookie: &str) -> String {
    http.get(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The CSRF token of the session `cookie` names, as the demo's `/me` reports it (the same
/// kind of token its pages embed).
pub(crate) async fn csrf(http: &reqwest::Client, base: &str, cookie: &str) -> String {
    me(http, base, cookie).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned()
}
