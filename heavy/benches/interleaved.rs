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

use axum_tessera_e2e::stats::{bench_size, quantile, sorted, spread};
use axum_tessera_e2e::{self as apps, Cell, Variant, Workload};

async fn cell(variant: Variant, workload: Workload) -> Cell {
    let app = apps::router(variant);
    let cookie = match workload.has_cookie() {
        true => apps::client_cookie(&app, variant).await,
        false => None,
    };
    Cell { app, cookie }
}

fn main() {
    let (rounds, reqs) = bench_size(40_000, 50);
    let workloads = Workload::EVERY;
    let variants = Variant::ALL;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // ns[workload][variant][round]
    let ns = rt.block_on(async {
        let mut cells = Vec::new();
        for w in workloads {
            let mut row = Vec::new();
            for v in variants {
                row.push(cell(v, w).await);
            }
            cells.push(row);
        }
        apps::interleave(&cells, &workloads, rounds, reqs).await
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
