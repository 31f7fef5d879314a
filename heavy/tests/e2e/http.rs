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

/// One instance of the demo app on `url`'s Redis, with the demo's own Redis settings (as a
/// demo process with `DEMO_STORE=redis://...` and the `TESSERA_SECRET` `key`); answers its
/// address. Each call has its own store: its own connection, subscription and live handles.
#[cfg(feature = "redis")]
pub(crate) async fn demo_on_redis(url: &str, key: &axum_tessera::Key) -> String {
    let (web, api) = crate::app::dev_configs(key.clone());
    let store = axum_tessera::store::RedisStore::connect(url)
        .await
        .expect("a redis URL")
        .command_timeout(std::time::Duration::from_millis(500));
    let (web, api) = crate::app::layers(web, api, store);
    let addr = serve(crate::app::routes(web, api)).await;
    format!("127.0.0.1:{}", addr.port())
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

/// The CSRF token of the session `cookie` names, as the demo's `/me` reports it (the same
/// kind of token its pages embed).
pub(crate) async fn csrf(http: &reqwest::Client, base: &str, cookie: &str) -> String {
    let me: serde_json::Value = http
        .get(format!("{base}/me"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["csrf_token"].as_str().unwrap().to_owned()
}
