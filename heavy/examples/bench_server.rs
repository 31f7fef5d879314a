//! The benchmark router as a real server on 127.0.0.1, for `scripts/load.sh`.
//!
//! `cargo run --release -p axum-tessera-e2e --example bench_server --
//! <axum|tessera|tower-sessions>` binds an ephemeral loopback port, creates one session through
//! its own router, then prints `cookie <name=value>` (empty for bare axum) and `listening
//! <addr>` and serves until killed.

use std::io::Write as _;

use axum_tessera_e2e::{self as apps, Variant};

// One worker: with wrk on one thread the pair fits two cores, and each server does the same
// work on the same single thread, so the ratios compare the layers rather than scheduling.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let Some(variant) = std::env::args().nth(1).and_then(|a| Variant::parse(&a)) else {
        eprintln!("usage: bench_server <axum|tessera|tower-sessions>");
        std::process::exit(2);
    };
    let app = apps::router(variant);
    let cookie = apps::client_cookie(&app, variant).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    let cookie = cookie.map(|c| c.to_str().unwrap_or_default().to_owned());
    let mut out = std::io::stdout().lock();
    writeln!(out, "cookie {}", cookie.unwrap_or_default()).expect("stdout");
    writeln!(out, "listening {addr}").expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    axum::serve(listener, app).await.expect("serve");
}
