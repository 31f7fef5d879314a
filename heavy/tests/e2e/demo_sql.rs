//! The demo as real processes on the SQL stores, driven over HTTP as the README's curl lines
//! do: on `DEMO_STORE=sqlite://<file>` a session outlives a kill and restart of the demo;
//! on `DEMO_STORE=postgres://...` two demo processes on one real PostgreSQL server share
//! their sessions, logout included.
//!
//! The processes come from [`DemoProcess`]: the binary `cargo run --example demo` serves,
//! built once per test run with every store feature.

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::Value;

use crate::demo_process::DemoProcess;
use crate::http::{client, csrf, me, session_cookie};

/// The root crate's PostgreSQL server for tests, shared rather than copied (`live_postgres`
/// uses it too).
#[allow(dead_code)]
#[path = "../../../tests/it/support/postgres.rs"]
pub(crate) mod postgres;

/// The root crate's temporary SQLite file for tests.
#[allow(dead_code)]
#[path = "../../../tests/it/support/sqlite.rs"]
pub(crate) mod sqlite;

/// One demo secret for every process of a test: tokens one process signs, another checks.
const SECRET: &str = "demo-sql-e2e-secret-0123456789abcdef";

/// A running demo process on one store, killed (SIGKILL, no graceful shutdown) on drop.
struct Demo {
    process: DemoProcess,
    base: String,
}

impl Demo {
    /// Starts the demo on `store` (a free port, the test's secret) and waits until it listens.
    async fn start(store: &str) -> Self {
        let process =
            DemoProcess::start(&[("DEMO_STORE", store), ("TESSERA_SECRET", SECRET)]).await;
        let base = format!("http://{}", process.base());
        Self { process, base }
    }

    /// Kills the process (as a crash would) and waits for it to be gone.
    fn kill(self) {
        drop(self.process);
    }

    /// `GET /me` with `cookie`: (authenticated, user).
    async fn me(&self, cookie: &str) -> (bool, Value) {
        let me = me(&client(), &self.base, cookie).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_a_restart_of_the_demo_on_sqlite() {
    let file = sqlite::SqliteFile::new();
    assert!(!file.path().exists(), "the demo creates the file");
    let store = format!("sqlite://{}", file.path().display());
    let demo = Demo::start(&store).await;
    let alice = demo.log_in().await;
    assert_eq!(demo.me(&alice).await, (true, "alice".into()));
    demo.kill();

    let demo = Demo::start(&store).await;
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
    let url = server.url();
    let (a, b) = tokio::join!(Demo::start(&url), Demo::start(&url));

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
