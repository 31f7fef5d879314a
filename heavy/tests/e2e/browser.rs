//! The demo in a real headless Chromium driven through ChromeDriver: sign in through the form,
//! use the counter, check the session cookie is out of JavaScript's reach, survive a forged
//! form post from another origin, sign out and find the old cookie dead.
//!
//! Needs `chromium` and `chromedriver` on `PATH` (Debian: `apt-get install chromium
//! chromium-driver`). Without them the test is skipped locally and fails under `CI=true`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use axum_tessera::store::MemoryStore;
use axum_tessera::{Key, SameSite};
use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::app;
pub(crate) use crate::http::serve;
use crate::session_api::sign_out;

/// How long a page may take to show an expected element before the test gives up: a bound
/// against hanging, not a performance assertion.
pub(crate) const PAGE_WAIT: Duration = Duration::from_secs(20);

pub(crate) fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// ChromeDriver and Chromium from PATH. Missing, the browser tests skip with a message,
/// except under `CI=true`, where they fail: CI must never pass without running them.
pub(crate) fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let found = (
        on_path(&["chromedriver"]),
        on_path(&["chromium", "chromium-browser"]),
    );
    if let (Some(driver), Some(browser)) = found {
        return Some((driver, browser));
    }
    assert!(
        !in_ci(),
        "CI=true but chromium/chromedriver are missing: apt-get install chromium chromium-driver"
    );
    eprintln!("skipping: chromium and chromedriver are not on PATH");
    None
}

pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A running ChromeDriver; killed, with its browser profile removed, on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

pub(crate) async fn start_driver(chromedriver: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile =
        std::env::temp_dir().join(format!("tessera-chromium-{}-{port}", std::process::id()));
    let mut driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile,
    };
    // Readiness, not timing: poll until it accepts connections or exits.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        if let Some(status) = driver.child.try_wait().expect("chromedriver status") {
            panic!("chromedriver exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not listen on port {port}");
}

pub(crate) async fn connect(driver: &Driver, chromium: &Path) -> Client {
    std::fs::create_dir_all(&driver.profile).expect("profile directory");
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        format!("--user-data-dir={}", driver.profile.display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let Value::Object(caps) = caps else {
        unreachable!("a JSON object")
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// Runs `scenario` in a fresh headless Chromium from `tools` ([`browser_tools`]), then closes
/// the browser and its driver whether the scenario passed or not, and re-raises its panic.
pub(crate) async fn run_in_browser<F, Fut>(tools: (PathBuf, PathBuf), scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (chromedriver, chromium) = tools;
    let driver = start_driver(&chromedriver).await;
    let client = connect(&driver, &chromium).await;
    // Apart, in its own task, so a failed assertion still reaches the cleanup below.
    let outcome = tokio::spawn(scenario(client.clone())).await;
    let _ = client.close().await;
    drop(driver);
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// A page on another origin with a form that posts to the demo's counter, carrying a real
/// CSRF token of the attacker's own session.
fn attacker(target: SocketAddr, token: String) -> Router {
    let page = format!(
        r#"<!doctype html><title>Win a prize</title>
<form method="post" action="http://{target}/counter">
<input type="hidden" name="csrf_token" value="{token}">
<button id="go" type="submit">Claim</button>
</form>"#
    );
    Router::new().route("/", get(move || async move { Html(page) }))
}

pub(crate) async fn text_of(client: &Client, id: &str) -> String {
    client
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id} on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until the page shows `#counter` with `value`.
async fn counter_shows(client: &Client, value: u64) {
    let xpath = format!("//span[@id='counter' and text()='{value}']");
    client
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("counter {value}: {e}"));
}

async fn session_cookie(client: &Client) -> Option<Cookie<'static>> {
    client
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "tessera")
}

async fn scenario(client: Client, demo: SocketAddr, evil: SocketAddr) {
    let base = format!("http://{demo}");

    // Sign in through the form.
    client.goto(&format!("{base}/")).await.unwrap();
    client
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    client
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&client, "greeting").await, "Hello, alice!");

    // The counter, through its CSRF-protected form.
    counter_shows(&client, 0).await;
    client
        .find(Locator::Id("increment"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    counter_shows(&client, 1).await;

    // HttpOnly: the browser holds the cookie, scripts cannot read it.
    let cookie = session_cookie(&client).await.expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    let visible = client
        .execute("return document.cookie", Vec::new())
        .await
        .unwrap();
    let visible = visible.as_str().unwrap_or_default();
    assert!(
        !visible.contains("tessera") && !visible.contains(cookie.value()),
        "document.cookie exposes the session: {visible:?}"
    );
    let signed_in = cookie.value().to_owned();

    // A form on another origin posts to the counter. The browser attaches the cookie (the
    // ports differ but the site is the same, so SameSite=Lax lets it through); the guard
    // must refuse. The demo runs under `insecure_local_development()`, which lets plain-http
    // loopback origins on any port past the Origin check (a dev server on another port), so
    // what refuses the post is the token: the attacker's own is not this session's.
    client.goto(&format!("http://{evil}/")).await.unwrap();
    client
        .find(Locator::Id("go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = client
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::XPath(
            "//*[contains(text(), 'CSRF token invalid for this session')]",
        ))
        .await;
    assert!(
        refused.is_ok(),
        "forged post not refused: {}",
        client.source().await.unwrap_or_default()
    );
    client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(text_of(&client, "greeting").await, "Hello, alice!");
    counter_shows(&client, 1).await;

    // Sign out; the page is the sign-in form again, under a new anonymous session.
    sign_out(&client).await;
    let after = session_cookie(&client).await;
    assert_ne!(
        after.as_ref().map(|c| c.value().to_owned()),
        Some(signed_in.clone()),
        "logout replaced the cookie"
    );

    // Put the signed-in cookie back: it must no longer open a session.
    client.delete_all_cookies().await.unwrap();
    let mut old = Cookie::new("tessera", signed_in);
    old.set_path("/");
    old.set_domain(demo.ip().to_string());
    old.set_http_only(true);
    // Unset, fantoccini sends `SameSite=None`, which Chromium refuses without `Secure`.
    old.set_same_site(SameSite::Lax);
    client.add_cookie(old).await.unwrap();
    client.goto(&format!("{base}/")).await.unwrap();
    text_of(&client, "login").await;
    assert!(
        client.find(Locator::Id("greeting")).await.is_err(),
        "the old cookie still signs in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_in_headless_chromium() {
    let Some(tools) = browser_tools() else {
        return;
    };

    let (web, api) = app::dev_configs(Key::generate());
    let store = MemoryStore::new();
    let demo = serve(app::router(web, api, store)).await;

    // The attacker signs up like anyone and embeds their own valid-looking token.
    let own = reqwest::get(format!("http://{demo}/me"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let token = own["csrf_token"].as_str().unwrap().to_owned();
    let evil = serve(attacker(demo, token)).await;

    run_in_browser(tools, |client| scenario(client, demo, evil)).await;
}
