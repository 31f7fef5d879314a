//! The demo as real processes on the SQL stores, driven over HTTP as the README's curl lines
//! do: on `DEMO_STORE=sqlite://<file>` a session outlives a kill and restart of the demo;
//! on `DEMO_STORE=postgres://...` two demo processes on one real PostgreSQL server share
//! their sessions, logout included.
//!
//! The demo binary is built once per test run by `cargo build --example demo --features
//! sqlite,postgres` (the same target directory as this test), so it is exactly what
//! `cargo run --example demo` serves.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::Value;

use crate::http::{client, csrf, session_cookie};

/// The root crate's PostgreSQL server for tests, shared rather than copied.
#[allow(dead_code)]
#[path = "../../../tests/it/support/postgres.rs"]
mod postgres;

/// The root crate's temporary SQLite file for tests.
#[allow(dead_code)]
#[path = "../../../tests/it/support/sqlite.rs"]
mod sqlite;

/// One demo secret for every process of a test: tokens one process signs, another checks.
const SECRET: &str = "demo-sql-e2e-secret-0123456789abcdef";

/// The demo executable, built once (with both SQL stores).
fn demo_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--example",
                "demo",
                "--features",
                "sqlite,postgres",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build for the demo");
        assert!(out.status.success(), "the demo does not build");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|msg| msg["target"]["name"] == "demo")
            .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the demo executable")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running demo process, killed (SIGKILL, no graceful shutdown) on drop.
struct Demo {
    child: Child,
    base: String,
}

impl Demo {
    /// Starts the demo on `store` and `port`, and waits until it answers.
    async fn start(store: &str, port: u16) -> Self {
        let child = Command::new(demo_binary())
            .env("DEMO_STORE", store)
            .env("DEMO_ADDR", format!("127.0.0.1:{port}"))
            .env("TESSERA_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the demo");
        let mut demo = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = client();
        for _ in 0..600 {
            if let Some(status) = demo.child.try_wait().unwrap() {
                panic!("the demo on {store} exited at start: {status}");
            }
            if http.get(format!("{}/me", demo.base)).send().await.is_ok() {
                return demo;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the demo on {store} did not answer within 30 s");
    }

    /// Kills the process (as a crash would) and waits for it to be gone.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// `GET /me` with `cookie`: (authenticated, user).
    async fn me(&self, cookie: &str) -> (bool, Value) {
        let me: Value = client()
            .get(format!("{}/me", self.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (me["authenticated"] == true, me["user"].clone())
    }

    /// Signs in as alice the README's way (a CSRF token for a fresh cookie session, then
    /// the form with the token in `X-CSRF-Token`); answers the signed-in session cookie.
    async fn log_in(&self) -> String {
        let http = client();
        let res = http
            .get(format!("{}/api/session/csrf-token", self.base))
            .send()
            .await
            .unwrap();
        let anon = session_cookie(&res).expect("a cookie session for the CSRF token");
        let body: Value = res.json().await.unwrap();
        let token = body["csrf_token"].as_str().expect("csrf_token").to_owned();
        let res = http
            .post(format!("{}/login", self.base))
            .header(COOKIE, &anon)
            .header("x-csrf-token", token)
            .form(&[("username", "alice"), ("password", "alice")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "login");
        session_cookie(&res).expect("login rotates the session")
    }

    /// Signs `cookie` out through the logout form.
    async fn log_out(&self, cookie: &str) {
        let http = client();
        let token = csrf(&http, &self.base, cookie).await;
        let res = http
            .post(format!("{}/logout", self.base))
            .header(COOKIE, cookie)
            .form(&[("csrf_token", &token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "logout");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_a_restart_of_the_demo_on_sqlite() {
    let file = sqlite::SqliteFile::new();
    assert!(!file.path().exists(), "the demo creates the file");
    let store = format!("sqlite://{}", file.path().display());
    let port = free_port();

    let demo = Demo::start(&store, port).await;
    let alice = demo.log_in().await;
    assert_eq!(demo.me(&alice).await, (true, "alice".into()));
    demo.kill();

    let demo = Demo::start(&store, port).await;
    assert_eq!(
        demo.me(&alice).await,
        (true, "alice".into()),
        "the same cookie is still signed in after the restart"
    );
    demo.log_out(&alice).await;
    assert_eq!(demo.me(&alice).await, (false, Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demos_on_one_postgres_share_sessions() {
    let server = postgres::PgServer::start();
    let port_a = free_port();
    let port_b = std::iter::repeat_with(free_port)
        .find(|p| *p != port_a)
        .unwrap();
    let url = server.url();
    let (a, b) = tokio::join!(Demo::start(&url, port_a), Demo::start(&url, port_b));

    let alice = a.log_in().await;
    assert_eq!(a.me(&alice).await, (true, "alice".into()));
    assert_eq!(
        b.me(&alice).await,
        (true, "alice".into()),
        "signed in on A, signed in on B"
    );
    b.log_out(&alice).await;
    assert_eq!(
        a.me(&alice).await,
        (false, Value::Null),
        "signed out on B, signed out on A"
    );
}
