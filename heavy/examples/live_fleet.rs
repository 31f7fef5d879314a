//! `cargo run --release -p axum-tessera-e2e --example live_fleet`: "log out everywhere" for one
//! user with 1,000 open `/live/ws` sockets on the demo (served in this process on 127.0.0.1,
//! MemoryStore): the time from sending the logout-everywhere form to the last 4001 close
//! frame, median and worst over several runs, for 1,000 devices with one socket each and for
//! 10 devices with 100 sockets each.
//!
//! The clock starts when the form post is sent, before the commit, so each figure bounds
//! commit-to-last-close from above. Clients and server share this process and its cores.

use std::time::{Duration, Instant};

use axum_tessera::store::MemoryStore;
use axum_tessera::Key;
use reqwest::header::COOKIE;

/// The demo's application, as the end-to-end tests serve it.
#[path = "../../examples/demo/app.rs"]
mod app;
/// The end-to-end tests' loopback server, client and live-socket client.
#[allow(dead_code)]
#[path = "../tests/e2e/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../tests/e2e/live_client.rs"]
mod live_client;

use live_client::{close_of, open_fleet, raise_open_files, sign_in};

const SOCKETS: usize = 1000;
const RUNS: usize = 7;

/// One run: a fresh demo, `sessions` devices of alice's with `per_session` sockets each, then
/// "log out everywhere" from one more device. Answers (form response, first close, last
/// close), each from the moment the form post was sent.
async fn run(sessions: usize, per_session: usize) -> (Duration, Duration, Duration) {
    let (web, api) = app::dev_configs(Key::generate());
    let addr = http::serve(app::router(web, api, MemoryStore::new())).await;
    let base = format!("127.0.0.1:{}", addr.port());
    let sockets = open_fleet(&base, "alice", sessions, per_session).await;
    assert_eq!(sockets.len(), SOCKETS);
    let mut closes = tokio::task::JoinSet::new();
    for mut ws in sockets {
        closes.spawn(async move {
            let close = close_of(&mut ws, Duration::from_secs(60)).await;
            (close, Instant::now())
        });
    }

    let client = http::client();
    let device = sign_in(&client, &base, "alice").await;
    let token = http::csrf(&client, &format!("http://{base}"), &device).await;
    let post = client
        .post(format!("http://{base}/sessions/logout-all"))
        .header(COOKIE, &device)
        .form(&[("csrf_token", token.as_str())]);
    let start = Instant::now();
    let res = post.send().await.unwrap();
    let answered = start.elapsed();
    assert!(res.status().is_redirection(), "{}", res.status());

    let (mut first, mut last) = (Duration::MAX, Duration::ZERO);
    while let Some(done) = closes.join_next().await {
        let ((code, reason), at) = done.unwrap();
        assert_eq!((code, reason.as_str()), (4001, "logged out everywhere"));
        let after = at.duration_since(start);
        first = first.min(after);
        last = last.max(after);
    }
    (answered, first, last)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    // Both ends of every socket are this process's.
    raise_open_files(2 * SOCKETS as u64 + 256);
    println!("{SOCKETS} sockets of one user, {RUNS} runs each; from the logout-everywhere post:");
    for (sessions, per_session) in [(SOCKETS, 1), (10, SOCKETS / 10)] {
        let mut runs = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            runs.push(run(sessions, per_session).await);
        }
        let lasts: Vec<String> = runs.iter().map(|r| ms(r.2)).collect();
        runs.sort_by_key(|r| r.2);
        let median = runs[RUNS / 2];
        let worst = runs[RUNS - 1];
        println!(
            "{sessions} sessions x {per_session} socket(s): last close median {} / worst {} \
             (first close {}, form response {} in the median run); runs: {}",
            ms(median.2),
            ms(worst.2),
            ms(median.1),
            ms(median.0),
            lasts.join(", ")
        );
    }
}
