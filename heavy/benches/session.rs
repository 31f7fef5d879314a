//! In-process cost per request of one axum Router under no session layer, axum-tessera and
//! tower-sessions, on three workloads (read, write, new). Driven with `oneshot` on a
//! current-thread Tokio runtime; after criterion, prints the medians and their ratios.
//!
//! `cargo bench -p axum-tessera-e2e --bench session` (about two minutes); with `-- read` it
//! runs one workload.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): the runtime runs
//! every request on that thread, and on a shared machine wall time also counts the time
//! slices other processes took. `BENCH_CLOCK=wall` measures wall time instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum_tessera_e2e::{self as apps, Variant, Workload};
use cpu_time::ThreadTime;
use criterion::{BenchmarkId, Criterion};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Times `iters` requests of `workload` against a router of `variant`.
///
/// The router is built per sample, outside the timing: `new` adds a session per request
/// and tower-sessions' store is unbounded, so a shared store would grow through the whole
/// run and the last samples would time a bigger map than the first.
fn run(rt: &Runtime, variant: Variant, workload: Workload, iters: u64, wall: bool) -> Duration {
    rt.block_on(async {
        let app = apps::router(variant);
        let cookie = match workload {
            Workload::New => None,
            _ => apps::client_cookie(&app, variant).await,
        };
        let cpu = ThreadTime::now();
        let start = Instant::now();
        for _ in 0..iters {
            let res = app
                .clone()
                .oneshot(apps::request(workload, cookie.as_ref()))
                .await
                .expect("infallible");
            debug_assert!(res.status().is_success());
            std::hint::black_box(res);
        }
        if wall {
            start.elapsed()
        } else {
            cpu.elapsed()
        }
    })
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let wall = std::env::var("BENCH_CLOCK").is_ok_and(|c| c == "wall");
    for workload in Workload::ALL {
        let mut group = c.benchmark_group(workload.name());
        for variant in Variant::ALL {
            group.bench_function(BenchmarkId::from_parameter(variant.name()), |b| {
                b.iter_custom(|iters| run(&rt, variant, workload, iters, wall));
            });
        }
        group.finish();
    }
}

/// Where criterion writes its estimates: `$CRITERION_HOME`, else `<target>/criterion` next
/// to this executable (`<target>/release/deps/session-*`).
fn output_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let exe = std::env::current_exe().expect("own path");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("criterion")
}

/// The median per-request time of one benchmark from its `estimates.json`, in ns.
fn median_ns(dir: &Path, workload: Workload, variant: Variant) -> Option<f64> {
    let path = dir
        .join(workload.name())
        .join(variant.name())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn summary(dir: &Path) {
    println!();
    println!("median ns/request (ratio to bare axum)");
    println!("| workload | axum | axum-tessera | tower-sessions | tessera vs tower-sessions |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for workload in Workload::ALL {
        let m = Variant::ALL.map(|v| median_ns(dir, workload, v));
        let Some(bare) = m[0] else { continue };
        let cell = |x: Option<f64>| match x {
            Some(x) => format!("{x:.0} ({:.2}x)", x / bare),
            None => "-".to_owned(),
        };
        let versus = match (m[1], m[2]) {
            (Some(t), Some(s)) => format!("{:.2}x faster", s / t),
            _ => "-".to_owned(),
        };
        println!(
            "| {} | {bare:.0} | {} | {} | {versus} |",
            workload.name(),
            cell(m[1]),
            cell(m[2]),
        );
    }
}

fn main() {
    let dir = output_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50)
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
    // `cargo test --all-targets` runs this binary without `--bench`: criterion then runs each
    // benchmark once as a smoke test and there are no estimates to summarise.
    if std::env::args().any(|a| a == "--bench") {
        summary(&dir);
    }
}
