//! The session layers' cost as a ratio to bare axum, measured interleaved: every round runs
//! each workload against each contender (bare axum, axum-tessera, tower-sessions) in a
//! rotating order, so a neighbour's burst of load on a shared machine lands on all three
//! alike, and the ratio is taken within the round. Reports, per workload, the median over
//! rounds of that ratio and its spread.
//!
//! `cargo bench -p axum-tessera-e2e --bench interleaved` (15 rounds of 40,000 requests per
//! contender and workload, about a minute); `ROUNDS=3 REQS=2000` for a smoke run. Without
//! `--bench` (`cargo test --all-targets`) it runs one tiny round.
//!
//! Every router is built once (`with_state(())`, as `axum::serve` does) and driven with
//! `oneshot` on a current-thread Tokio runtime; the time is the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), which does not count the slices other processes took.

use axum::Router;
use axum_tessera_e2e::stats::{env_or, quantile, sorted, spread};
use axum_tessera_e2e::{self as apps, Variant, Workload};
use cpu_time::ThreadTime;
use http::HeaderValue;
use tower::ServiceExt as _;

/// One contender on one workload: its router and the cookie its client sends.
struct Cell {
    app: Router,
    cookie: Option<HeaderValue>,
}

async fn cell(variant: Variant, workload: Workload) -> Cell {
    let app = apps::router(variant);
    let cookie = match workload.has_cookie() {
        true => apps::client_cookie(&app, variant).await,
        false => None,
    };
    Cell { app, cookie }
}

/// Thread CPU time of `n` requests, in ns per request.
async fn time(cell: &Cell, workload: Workload, n: usize) -> f64 {
    let cpu = ThreadTime::now();
    for _ in 0..n {
        let res = cell
            .app
            .clone()
            .oneshot(apps::request(workload, cell.cookie.as_ref()))
            .await
            .expect("infallible");
        debug_assert!(res.status().is_success());
        std::hint::black_box(res);
    }
    cpu.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (rounds, reqs) = if bench {
        (env_or("ROUNDS", 15), env_or("REQS", 40_000))
    } else {
        (1, 50)
    };
    let workloads = Workload::EVERY;
    let variants = Variant::ALL;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // ns[workload][variant][round]
    let mut ns = vec![vec![Vec::with_capacity(rounds); variants.len()]; workloads.len()];
    rt.block_on(async {
        let mut cells = Vec::new();
        for w in workloads {
            let mut row = Vec::new();
            for v in variants {
                row.push(cell(v, w).await);
            }
            cells.push(row);
        }
        // Warm-up, not counted: allocator, caches, the stores' first growth.
        for (wi, w) in workloads.into_iter().enumerate() {
            for cell in &cells[wi] {
                time(cell, w, reqs.div_ceil(10)).await;
            }
        }
        for round in 0..rounds {
            for (wi, w) in workloads.into_iter().enumerate() {
                for k in 0..variants.len() {
                    let vi = (round + k) % variants.len();
                    let t = time(&cells[wi][vi], w, reqs).await;
                    ns[wi][vi].push(t);
                }
            }
            eprintln!("round {}/{rounds} done", round + 1);
        }
    });

    println!();
    println!(
        "interleaved: {rounds} rounds x {reqs} requests per contender and workload; \
         thread CPU time"
    );
    println!();
    println!("ratio to bare axum per round: median (p10-p90, min-max)");
    println!();
    println!(
        "| workload | axum ns | axum-tessera ns | tessera / axum | tower-sessions ns | \
         tower-sessions / axum | tower-sessions / tessera |"
    );
    println!("| --- | ---: | ---: | --- | ---: | --- | --- |");
    for (wi, w) in workloads.into_iter().enumerate() {
        let per_round = |a: usize, b: usize| {
            sorted(
                (0..rounds)
                    .map(|r| ns[wi][a][r] / ns[wi][b][r])
                    .collect::<Vec<_>>(),
            )
        };
        let median = |vi: usize| quantile(&sorted(ns[wi][vi].clone()), 0.5);
        println!(
            "| {} | {:.0} | {:.0} | {} | {:.0} | {} | {} |",
            w.name(),
            median(0),
            median(1),
            spread(&per_round(1, 0)),
            median(2),
            spread(&per_round(2, 0)),
            spread(&per_round(2, 1)),
        );
    }
}
