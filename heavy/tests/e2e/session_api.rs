//! The browser client (`/api/session/client.js`) in the real demo, in headless Chromium, with
//! a 5 s idle timeout: the expiry warning shows, activity extends the session, the `fetch`
//! wrapper passes the CSRF token on a POST, a logout in one tab reaches another, and an idle
//! session expires and the page learns it.
//!
//! Like `browser`, skipped locally without `chromium` and `chromedriver` on `PATH`, failed
//! under `CI=true`. Every wait is for a condition, bounded by a deadline.

use std::time::Duration;

use axum_tessera::store::MemoryStore;
use axum_tessera::Key;
use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::app;
use crate::browser::{browser_tools, run_in_browser, serve, text_of, PAGE_WAIT};

/// The demo's idle timeout in this test.
const IDLE: i64 = 5;

/// Polls `script` (a function body returning a value) until it returns `true`, for at most
/// `within`; panics with `what` and the page's last answer otherwise.
async fn until(client: &Client, what: &str, within: Duration, script: &str) {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        last = client
            .execute(script, Vec::new())
            .await
            .unwrap_or(Value::Null);
        if last == Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {within:?} (last answer {last})");
}

/// Waits until the page's client has read the session (`start()` resolved with one).
async fn client_started(client: &Client) {
    until(
        client,
        "the client reads the session",
        PAGE_WAIT,
        "return !!window.tessera && !!window.tessera.state()?.session",
    )
    .await;
}

const BANNER_WARNS: &str = "const b = document.getElementById('session-banner');\
     return !b.hidden && /ends in \\d+ s/.test(b.textContent)";
const BANNER_HIDDEN: &str = "return document.getElementById('session-banner').hidden";

/// Signs out with the page header's button and waits for the sign-in form.
pub(crate) async fn sign_out(client: &Client) {
    client
        .find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(client, "login").await;
}

/// Signs alice in through the sign-in form and waits for the page's session client.
pub(crate) async fn sign_in(client: &Client, base: &str) {
    client.goto(&format!("{base}/")).await.unwrap();
    for (id, text) in [("username", "alice"), ("password", "alice")] {
        client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }
    client
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(client, "greeting").await, "Hello, alice!");
    client_started(client).await;
}

/// What the server says about the browser's session, asked from the page.
async fn server_info(client: &Client) -> Value {
    client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch('/api/session/info').then((r) => r.json()).then(done, (e) => done(String(e)));",
            Vec::new(),
        )
        .await
        .unwrap()
}

async fn scenario(client: Client, base: String) {
    // The warning: no activity after sign-in, so it shows warnBefore (2 s) before the end.
    sign_in(&client, &base).await;
    until(&client, "the expiry warning", PAGE_WAIT, BANNER_WARNS).await;

    // "Stay signed in" extends and hides the banner.
    client
        .find(Locator::Id("stay-signed-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &client,
        "the banner hides after extending",
        PAGE_WAIT,
        BANNER_HIDDEN,
    )
    .await;

    // Activity for longer than the idle timeout keeps the session: the client extends on
    // key presses (at most once a second here).
    let body = client.find(Locator::Css("body")).await.unwrap();
    for _ in 0..(IDLE * 3) {
        body.send_keys("a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let info = server_info(&client).await;
    assert_eq!(
        info["session"]["is_active"], true,
        "activity kept it: {info}"
    );
    assert!(
        client.find(Locator::Id("session-ended")).await.is_err(),
        "no expiry while active"
    );

    // The fetch wrapper: a same-origin POST carries X-CSRF-Token; the same POST without the
    // wrapper is refused.
    let statuses = client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             (async () => {\
               const wrapped = await fetch('/counter', { method: 'POST', body: new URLSearchParams() });\
               const native = await new Promise((ok) => {\
                 const x = new XMLHttpRequest(); x.open('POST', '/counter');\
                 x.setRequestHeader('content-type', 'application/x-www-form-urlencoded');\
                 x.onload = () => ok(x.status); x.send('');\
               });\
               return [wrapped.status, native];\
             })().then(done, (e) => done(String(e)));",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        statuses,
        serde_json::json!([200, 403]),
        "wrapped, then bare"
    );
    client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(
        text_of(&client, "counter").await,
        "1",
        "the wrapped POST counted"
    );
    client_started(&client).await;

    // A logout in tab A reaches tab B.
    let tab_a = client.window().await.unwrap();
    let tab_b = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(tab_b.clone()).await.unwrap();
    client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(text_of(&client, "greeting").await, "Hello, alice!");
    client_started(&client).await;
    client.switch_to_window(tab_a.clone()).await.unwrap();
    sign_out(&client).await;
    client.switch_to_window(tab_b.clone()).await.unwrap();
    until(
        &client,
        "tab B learns of tab A's logout",
        PAGE_WAIT,
        "const e = document.getElementById('session-ended');\
         return !!e && /signed out in another tab/.test(e.textContent)",
    )
    .await;

    // No activity: the session expires and the page learns it (from the server, at the
    // deadline the client computed).
    sign_in(&client, &base).await;
    until(
        &client,
        "the idle session expires on the page",
        PAGE_WAIT,
        "const e = document.getElementById('session-ended');\
         return !!e && /session has ended/.test(e.textContent)",
    )
    .await;
    let info = server_info(&client).await;
    assert_eq!(info["session"], Value::Null, "the server agrees: {info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_client_in_headless_chromium() {
    let Some(tools) = browser_tools() else {
        return;
    };

    let (web, api) = app::dev_configs(Key::generate());
    let web = web.idle_timeout(Duration::from_secs(IDLE as u64));
    let demo = serve(app::router(web, api, MemoryStore::new())).await;

    run_in_browser(tools, |client| scenario(client, format!("http://{demo}"))).await;
}
