//! `cargo run --release -p axum-tessera-e2e --example live_handles`: the memory cost of open
//! live handles (RSS growth over 10,000 of them) and the in-process logout-to-end latency.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request};
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::live::LiveSession;
use axum_tessera::{Key, Principal, Session, SessionConfig, SessionLayer};
use tokio::sync::mpsc;
use tower::ServiceExt as _;

const HANDLES: usize = 10_000;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>) -> String {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (tx, mut rx) = mpsc::unbounded_channel::<LiveSession>();
    let app = Router::new()
        .route(
            "/login",
            post(|s: Session| async move {
                s.login(Principal::user(format!("u{}", rand_id())));
                s.token()
            }),
        )
        .route(
            "/live",
            get(
                |State(tx): State<mpsc::UnboundedSender<LiveSession>>, s: Session| async move {
                    let _ = tx.send(s.live().expect("a live session"));
                },
            ),
        )
        .route("/logout", post(|s: Session| async move { s.logout() }))
        .with_state(tx)
        .layer(SessionLayer::new(SessionConfig::api(Key::generate())));

    let mut tokens = Vec::with_capacity(HANDLES);
    for _ in 0..HANDLES {
        tokens.push(call(&app, "POST", "/login", None).await);
    }
    let before = rss_kib();
    let mut handles = Vec::with_capacity(HANDLES);
    for t in &tokens {
        call(&app, "GET", "/live", Some(t)).await;
        handles.push(rx.recv().await.unwrap());
    }
    let after = rss_kib();
    println!(
        "{HANDLES} open handles: RSS +{} KiB ({} bytes per handle, request garbage included)",
        after - before,
        (after - before) * 1024 / HANDLES as u64
    );

    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    let rounds = 200;
    for (t, mut live) in tokens.iter().zip(handles.drain(..)).take(rounds) {
        let waiter = tokio::spawn(async move {
            live.ended().await;
            Instant::now()
        });
        tokio::task::yield_now().await; // the waiter is parked on the handle
        let start = Instant::now();
        call(&app, "POST", "/logout", Some(t)).await;
        let took = waiter.await.unwrap() - start;
        worst = worst.max(took);
        total += took;
    }
    println!(
        "logout request to handle end: mean {:?}, worst {:?} over {rounds}",
        total / rounds as u32,
        worst
    );
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
