//! How axum-tessera's MemoryStore scales: bytes per session (next to tower-sessions'
//! MemoryStore), read-path cost at 1k / 100k / 1M live sessions, and the cost of an expiry
//! sweep against the number of expired records and of all records.
//!
//! `cargo bench -p axum-tessera-e2e --bench scale` (about a minute). Memory is measured in a
//! child process per figure (RSS from `/proc/self/statm` before and after), so one figure's
//! heap does not colour the next. Under `cargo test --all-targets` it runs once on tiny sizes.

use std::process::Command;
use std::time::{Duration, Instant};

use axum_tessera::__fuzz::SessionId;
use axum_tessera::clock::ManualClock;
use axum_tessera::store::{Commit, MemoryStore, Record, SessionStore};
use axum_tessera_e2e::{self as apps, Variant, Workload};
use cpu_time::ThreadTime;
use tower::ServiceExt as _;

const CHILD_ENV: &str = "TESSERA_SCALE_CHILD";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Child process: creates `n` sessions through the router of `variant` (the `new`
/// workload: one small key per session) and prints the RSS growth per session.
fn memory_child(variant: Variant, n: u64) {
    let rt = runtime();
    rt.block_on(async {
        let app = match variant {
            Variant::Tessera => apps::tessera_router(MemoryStore::new().max_sessions(2_000_000)),
            Variant::TowerSessions => {
                apps::tower_sessions_router(tower_sessions::MemoryStore::default())
            }
            Variant::Axum => apps::router(Variant::Axum),
        };
        // Warm the allocator and the runtime so the baseline holds their fixed costs.
        for _ in 0..1000 {
            let _ = app
                .clone()
                .oneshot(apps::request(Workload::Read, None))
                .await;
        }
        let before = rss().expect("/proc/self/statm");
        for _ in 0..n {
            let res = app
                .clone()
                .oneshot(apps::request(Workload::New, None))
                .await
                .expect("infallible");
            assert!(res.status().is_success());
        }
        let after = rss().expect("/proc/self/statm");
        println!("{}", (after.saturating_sub(before)) / n);
        drop(app);
    });
}

fn memory(sizes: &[u64]) {
    println!("\nbytes per session (RSS growth / sessions, one small key each)");
    println!("| sessions | axum-tessera | tower-sessions |");
    println!("| ---: | ---: | ---: |");
    let exe = std::env::current_exe().expect("own path");
    for &n in sizes {
        let figure = |variant: Variant| {
            let out = Command::new(&exe)
                .env(CHILD_ENV, format!("{}:{n}", variant.name()))
                .output()
                .expect("run child");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        println!(
            "| {n} | {} | {} |",
            figure(Variant::Tessera),
            figure(Variant::TowerSessions)
        );
    }
}

/// Files `n` small live records straight into `store`.
async fn fill(store: &MemoryStore, n: u64, now: i64, expires_at: impl Fn(u64) -> i64) {
    for i in 0..n {
        let record = Record::new(now, expires_at(i));
        let key = SessionId::generate().store_key();
        let commit = Commit::Create { key, record };
        store.commit(commit).await.expect("memory store");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ns per `read` request against a store already holding `live` sessions.
fn read_scaling(sizes: &[u64], requests: u64) {
    println!(
        "\nread path vs live sessions (axum-tessera, CPU time, median of 5 runs of {requests})"
    );
    println!("| live sessions | ns/request |");
    println!("| ---: | ---: |");
    let rt = runtime();
    for &live in sizes {
        let ns = rt.block_on(async {
            let store = MemoryStore::new().max_sessions(2_000_000);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            fill(&store, live, now, |_| now + 3600).await;
            let app = apps::tessera_router(store);
            let cookie = apps::session_cookie(&app).await;
            let mut runs = Vec::new();
            for _ in 0..5 {
                // Thread CPU time, as in benches/session.rs: the runtime runs every request
                // on this thread.
                let start = ThreadTime::now();
                for _ in 0..requests {
                    let res = app
                        .clone()
                        .oneshot(apps::request(Workload::Read, cookie.as_ref()))
                        .await
                        .expect("infallible");
                    std::hint::black_box(res);
                }
                runs.push(start.elapsed().as_nanos() as f64 / requests as f64);
            }
            median(runs)
        });
        println!("| {live} | {ns:.0} |");
    }
}

/// Time of one `sweep` over `total` records of which `expired` are dead; median of 3.
fn sweep_once(total: u64, expired: u64) -> Duration {
    let rt = runtime();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryStore::new()
            .max_sessions(2_000_000)
            .with_clock(clock.clone());
        // Spread the dead among the living so no ordering trick finds them for free.
        let every = total / expired.max(1);
        rt.block_on(fill(&store, total, 1_000_000, |i| {
            if i % every == 0 && i / every < expired {
                1_000_010
            } else {
                1_010_000
            }
        }));
        clock.set(1_000_020);
        let start = Instant::now();
        let removed = store.sweep();
        runs.push(start.elapsed());
        assert_eq!(removed as u64, expired);
        drop(store);
    }
    runs.sort();
    runs[1]
}

fn sweeps(cases: &[(u64, u64)]) {
    println!("\nexpiry sweep (median of 3)");
    println!("| records | expired | sweep |");
    println!("| ---: | ---: | ---: |");
    for &(total, expired) in cases {
        let t = sweep_once(total, expired);
        println!("| {total} | {expired} | {:.2} ms |", t.as_secs_f64() * 1e3);
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (variant, n) = spec.split_once(':').expect("variant:n");
        memory_child(
            Variant::parse(variant).expect("variant"),
            n.parse().expect("n"),
        );
        return;
    }
    let bench = std::env::args().any(|a| a == "--bench");
    if bench {
        memory(&[100_000, 1_000_000]);
        read_scaling(&[1_000, 100_000, 1_000_000], 20_000);
        sweeps(&[
            (1_000_000, 1_000),
            (1_000_000, 10_000),
            (1_000_000, 100_000),
            (100_000, 10_000),
        ]);
    } else {
        // `cargo test --all-targets`: prove it runs, quickly.
        memory(&[1_000]);
        read_scaling(&[1_000], 100);
        sweeps(&[(1_000, 10)]);
    }
}
