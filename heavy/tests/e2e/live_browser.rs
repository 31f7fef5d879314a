//! The demo's `/live` page in headless Chromium: one browser session open on `/live` in two
//! tabs, both showing what their socket receives; signing out in one tab through the page's
//! own button makes the other show "signed out" with a link back to `/`.
//!
//! Like `browser`, skipped locally without `chromium` and `chromedriver` on `PATH`, failed
//! under `CI=true`.

use axum_tessera::store::MemoryStore;
use axum_tessera::Key;
use fantoccini::{Client, Locator};

use crate::app;
use crate::browser::{browser_tools, run_in_browser, serve, text_of, PAGE_WAIT};
use crate::session_api::{sign_in, sign_out};

/// Opens `/live` in the current tab and waits until it shows an open socket and a frame of
/// alice's.
pub(crate) async fn live_page(client: &Client, base: &str) {
    client.goto(&format!("{base}/live")).await.unwrap();
    client
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::XPath(
            "//pre[@id='live-log' and contains(., '\"user\":\"alice\"')]",
        ))
        .await
        .expect("the page shows a frame");
    assert_eq!(text_of(client, "live-status").await, "open");
}

async fn scenario(client: Client, base: String) {
    sign_in(&client, &base).await;
    let first = client.window().await.unwrap();
    live_page(&client, &base).await;

    let second = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(second).await.unwrap();
    live_page(&client, &base).await;

    // Sign out in the second tab with the header's button; it lands on the sign-in form.
    sign_out(&client).await;

    // The first tab's socket closed with 4001: the page says so and links to `/`.
    client.switch_to_window(first).await.unwrap();
    let status = client
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::XPath(
            "//strong[@id='live-status' and contains(., 'signed out')]",
        ))
        .await
        .unwrap_or_else(|e| {
            panic!("the other tab does not show \"signed out\": {e}");
        });
    assert_eq!(
        status.text().await.unwrap(),
        "signed out (logged out) · sign in again"
    );
    let home = client.find(Locator::Id("live-home")).await.unwrap();
    assert_eq!(home.attr("href").await.unwrap().as_deref(), Some("/"));
    home.click().await.unwrap();
    text_of(&client, "login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_in_one_tab_signs_the_other_live_tab_out() {
    let Some(tools) = browser_tools() else {
        return;
    };
    let (web, api) = app::dev_configs(Key::generate());
    let demo = serve(app::router(web, api, MemoryStore::new())).await;

    run_in_browser(tools, |client| scenario(client, format!("http://{demo}"))).await;
}
