//! Runs one workload in-process for a fixed number of requests, for profilers: run it under
//! `valgrind --tool=callgrind` with two request counts and divide the difference in
//! instructions by the difference in requests for a noise-free cost per request.
//!
//! `cargo run --release -p axum-tessera-e2e --example bench_profile -- tessera read 10000`

use axum_tessera_e2e::{self as apps, Variant, Workload};
use tower::ServiceExt as _;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_profile <axum|tessera|tower-sessions> <read|write|new|untouched|write2> <requests>";
    let (Some(variant), Some(workload), Some(n)) = (
        args.first().and_then(|a| Variant::parse(a)),
        args.get(1)
            .and_then(|a| Workload::EVERY.into_iter().find(|w| w.name() == a)),
        args.get(2).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let app = apps::router(variant);
        let cookie = match workload.has_cookie() {
            false => None,
            true => apps::client_cookie(&app, variant).await,
        };
        for _ in 0..n {
            let res = app
                .clone()
                .oneshot(apps::request(workload, cookie.as_ref()))
                .await
                .expect("infallible");
            assert!(res.status().is_success());
        }
    });
}
