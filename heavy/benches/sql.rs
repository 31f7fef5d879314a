//! The SQL stores' cost side by side with tower-sessions' sqlx store, on the same server:
//! axum-tessera's `PostgresStore` and tower-sessions' `PostgresStore` in two tables of one
//! real PostgreSQL server (started by the bench, as the store tests start theirs), and both
//! `SqliteStore`s in two tables of one SQLite file (WAL). Every round runs each workload
//! against both contenders, alternating in 20 slices per contender (A B, B A, ...) so load
//! on a shared machine lands on both alike, and the ratio is taken within the round; the
//! table reports, per store and workload, the median over rounds of that ratio and its
//! spread.
//!
//! `cargo bench -p axum-tessera-e2e --bench sql` (15 rounds of 2,000 requests per contender,
//! store and workload); `ROUNDS=3 REQS=200` for a smoke run. Without `--bench` (`cargo test
//! --all-targets`) it runs one tiny round.
//!
//! Each request goes through the whole Router (`oneshot`, one at a time, on a current-thread
//! runtime), and the time is wall-clock time per request: a store's cost is mostly the
//! database's work and the round trips to it, which thread CPU time would not see.
//! `read` loads the session (one `SELECT` each); `write` loads it and changes one key
//! (axum-tessera: an `UPDATE` patching that key; tower-sessions: an upsert of the whole
//! record). Both pools are sqlx's defaults but for their size (4), so both pay sqlx's
//! `test_before_acquire` ping alike.

use std::time::{Duration, Instant};

use axum::Router;
use axum_tessera_e2e::stats::{bench_size, quantile, ratios, sorted, spread};
use axum_tessera_e2e::{self as apps, Cell, Workload};
use sqlx::postgres::PgPoolOptions;

#[allow(dead_code)]
#[path = "../../tests/it/support/postgres.rs"]
mod postgres;

#[allow(dead_code)]
#[path = "../../tests/it/support/sqlite.rs"]
mod sqlite;

/// The benchmark Router's routes under tower-sessions 0.14, the version its sqlx store
/// (0.15.0) is built for, with the library's tower-sessions handlers.
mod towers {
    use axum::routing::get;
    use axum::Router;
    use tower_sessions_014::cookie::Key;
    use tower_sessions_014::{SessionManagerLayer, SessionStore};

    axum_tessera_e2e::tower_sessions_handlers!(tower_sessions_014);

    pub(crate) fn router<S: SessionStore + Clone>(store: S) -> Router {
        let layer = SessionManagerLayer::new(store)
            .with_secure(false)
            .with_signed(Key::from(&[7u8; 64]));
        Router::new()
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/new", get(new))
            .layer(layer)
            .with_state(())
    }
}

const WORKLOADS: [Workload; 2] = [Workload::Read, Workload::Write];
const CONTENDERS: [&str; 2] = ["axum-tessera", "tower-sessions"];
/// Slices per contender, store, workload and round.
const SLICES: usize = 20;

async fn cell(app: Router) -> Cell {
    let cookie = apps::session_cookie(&app)
        .await
        .expect("the router sets a session cookie");
    Cell {
        app,
        cookie: Some(cookie),
    }
}

/// Wall-clock time of `n` requests one after another, in ns per request.
async fn time(cell: &Cell, workload: Workload, n: usize) -> f64 {
    let start = Instant::now();
    cell.run(workload, n).await;
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Both contenders on one PostgreSQL server (two tables of one database).
async fn on_postgres(server: &postgres::PgServer) -> [Cell; 2] {
    let pool = || async {
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(server.options())
            .await
            .expect("connect")
    };
    let ours = axum_tessera::store::PostgresStore::new(pool().await);
    ours.migrate().await.expect("migrate");
    let theirs = tower_sessions_sqlx_store::PostgresStore::new(pool().await);
    theirs.migrate().await.expect("migrate");
    [
        cell(apps::tessera_router_on(ours)).await,
        cell(towers::router(theirs)).await,
    ]
}

/// Both contenders on one SQLite file (two tables).
async fn on_sqlite(file: &sqlite::SqliteFile) -> [Cell; 2] {
    let ours = axum_tessera::store::SqliteStore::new(file.pool().await);
    ours.migrate().await.expect("migrate");
    let theirs = tower_sessions_sqlx_store::SqliteStore::new(file.pool().await);
    theirs.migrate().await.expect("migrate");
    [
        cell(apps::tessera_router_on(ours)).await,
        cell(towers::router(theirs)).await,
    ]
}

fn main() {
    let (rounds, reqs) = bench_size(2_000, 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let server = postgres::PgServer::start();
    let file = sqlite::SqliteFile::new();
    let stores = ["PostgreSQL", "SQLite"];
    // ns[store][workload][contender][round]
    let mut ns = vec![vec![vec![Vec::<f64>::new(); 2]; WORKLOADS.len()]; stores.len()];
    rt.block_on(async {
        let cells = [on_postgres(&server).await, on_sqlite(&file).await];
        // Warm-up, not counted: connections, prepared statements, the tables' first pages.
        for pair in &cells {
            for w in WORKLOADS {
                for cell in pair {
                    time(cell, w, reqs.div_ceil(10)).await;
                }
            }
        }
        // A round alternates the contenders in short slices (A B B A ...), so a burst of a
        // neighbour's load lands on both; each contender's figure is its mean over its slices.
        let slice = reqs.div_ceil(SLICES);
        for round in 0..rounds {
            for (si, pair) in cells.iter().enumerate() {
                for (wi, w) in WORKLOADS.into_iter().enumerate() {
                    let mut sum = [0.0; 2];
                    for k in 0..SLICES {
                        for ci in [(round + k) % 2, (round + k + 1) % 2] {
                            sum[ci] += time(&pair[ci], w, slice).await;
                        }
                    }
                    for (ci, total) in sum.into_iter().enumerate() {
                        ns[si][wi][ci].push(total / SLICES as f64);
                    }
                }
            }
            eprintln!("round {}/{rounds} done", round + 1);
        }
    });

    println!();
    println!(
        "sql: {rounds} rounds x {reqs} requests per contender, store and workload; \
         wall-clock time per request"
    );
    println!();
    println!("ratio per round: median (p10-p90, min-max)");
    println!();
    println!(
        "| store | workload | {} us | {} us | {} / {} |",
        CONTENDERS[0], CONTENDERS[1], CONTENDERS[0], CONTENDERS[1]
    );
    println!("| --- | --- | ---: | ---: | --- |");
    for (si, store) in stores.into_iter().enumerate() {
        for (wi, w) in WORKLOADS.into_iter().enumerate() {
            let median = |ci: usize| quantile(&sorted(ns[si][wi][ci].clone()), 0.5) / 1000.0;
            println!(
                "| {store} | {} | {:.0} | {:.0} | {} |",
                w.name(),
                median(0),
                median(1),
                spread(&ratios(&ns[si][wi][0], &ns[si][wi][1])),
            );
        }
    }
}
