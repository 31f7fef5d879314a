//! Graceful shutdown of the real demo process with live sockets open: SIGTERM or Ctrl-C
//! (SIGINT) closes every `/live/ws` with 1001 (going away), never 4001, since the session
//! lives on; the process exits 0; and the `/live` page in headless Chromium does not show
//! "signed out" for it but reconnects once the demo is back.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{browser_tools, run_in_browser, PAGE_WAIT};
use crate::demo_process::DemoProcess;
use crate::demo_sql::sqlite::SqliteFile;
use crate::http::client as http;
use crate::live_browser::live_page;
use crate::live_client::{close_of, first_frame, open, sign_in};
use crate::session_api::sign_in as browser_sign_in;

/// The page retries with a pause that doubles up to 10 s; the demo restarts within a few.
const RECONNECT_WAIT: Duration = Duration::from_secs(30);

/// One secret across the restart: the page's cookie stays valid.
const SECRET: &str = "live-shutdown-e2e-secret-0123456789abcdef";

/// RFC 6455 "going away".
const GOING_AWAY: u16 = 1001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_live_sockets_1001_and_exits_0() {
    let demo = DemoProcess::start(&[]).await;
    let base = demo.base().to_owned();
    let http = http();
    let alice = sign_in(&http, &base, "alice").await;
    let admin = sign_in(&http, &base, "admin").await;
    let mut sockets = vec![
        open(&base, &alice).await,
        open(&base, &alice).await,
        open(&base, &admin).await,
    ];
    for ws in &mut sockets {
        first_frame(ws).await;
    }

    demo.signal("TERM");
    for ws in &mut sockets {
        let (code, reason) = close_of(ws, Duration::from_secs(10)).await;
        assert_eq!(code, GOING_AWAY, "closed with {code} {reason:?}");
    }
    let status = demo.exit_status().await;
    assert!(status.success(), "the demo exited with {status}");
}

async fn page_survives_shutdown(client: Client, demo: DemoProcess, store: String) {
    let addr = demo.base().to_owned();
    let base = format!("http://{addr}");
    browser_sign_in(&client, &base).await;
    live_page(&client, &base).await;

    // Ctrl-C, as a developer stops `cargo run --example demo`.
    demo.signal("INT");
    client
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::XPath(
            "//strong[@id='live-status' and contains(., 'closed (1001)') and contains(., 'reconnecting')]",
        ))
        .await
        .expect("the page shows the 1001 close and that it reconnects");
    let status = client
        .find(Locator::Id("live-status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!status.contains("signed out"), "{status:?}");
    assert!(
        client.find(Locator::Id("live-home")).await.is_err(),
        "no sign-in link after a shutdown"
    );
    let exit = demo.exit_status().await;
    assert!(exit.success(), "the demo exited with {exit}");

    // Back on the same address and store: the page's retry finds the session alive.
    let env = [("DEMO_STORE", store.as_str()), ("TESSERA_SECRET", SECRET)];
    let _demo = DemoProcess::start_at(&addr, &env).await;
    client
        .wait()
        .at_most(RECONNECT_WAIT)
        .for_element(Locator::XPath("//strong[@id='live-status' and .='open']"))
        .await
        .expect("the page reconnects to the restarted demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_page_does_not_show_signed_out_on_shutdown_and_reconnects() {
    let Some(tools) = browser_tools() else {
        return;
    };
    // A store that outlives the process, so the session is still there after the restart.
    let file = SqliteFile::new();
    let store = format!("sqlite://{}", file.path().display());
    let demo = DemoProcess::start(&[("DEMO_STORE", &store), ("TESSERA_SECRET", SECRET)]).await;
    run_in_browser(tools, |client| page_survives_shutdown(client, demo, store)).await;
}
