//! The benchmarks' and end-to-end tests' crate of the `axum-tessera` workspace: everything that
//! needs the heavy dev-dependencies (criterion, tower-sessions, a WebDriver client, an HTTP
//! client), kept out of the root crate so `cargo run --example demo` stays light. Not
//! published.
//!
//! The library is the one Router every benchmark drives, in three variants: bare axum (the
//! ceiling), axum-tessera, and tower-sessions. `benches/` and `examples/bench_server.rs` both
//! use it, so the in-process and the loopback figures measure the same app.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request};
use tower::ServiceExt as _;

pub mod stats;

/// Which session layer wraps the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Axum,
    Tessera,
    TowerSessions,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Axum, Variant::Tessera, Variant::TowerSessions];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Axum => "axum",
            Variant::Tessera => "tessera",
            Variant::TowerSessions => "tower-sessions",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == text)
    }
}

/// What a request does with its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Valid cookie, the handler reads one key.
    Read,
    /// Valid cookie, the handler increments a counter.
    Write,
    /// No cookie, the handler inserts a key (a new session per request).
    New,
    /// Valid cookie, the handler never touches the session.
    Untouched,
    /// Valid cookie, the handler changes two keys.
    Write2,
}

impl Workload {
    /// The workloads of `benches/session.rs` (criterion).
    pub const ALL: [Workload; 3] = [Workload::Read, Workload::Write, Workload::New];
    /// Every workload: `benches/interleaved.rs` and `examples/bench_profile.rs`.
    pub const EVERY: [Workload; 5] = [
        Workload::Read,
        Workload::Write,
        Workload::New,
        Workload::Untouched,
        Workload::Write2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Read => "read",
            Workload::Write => "write",
            Workload::New => "new",
            Workload::Untouched => "untouched",
            Workload::Write2 => "write2",
        }
    }

    /// Whether the request carries a valid session cookie.
    pub fn has_cookie(self) -> bool {
        self != Workload::New
    }

    pub fn path(self) -> &'static str {
        match self {
            Workload::Read => "/read",
            Workload::Write => "/write",
            Workload::New => "/new",
            Workload::Untouched => "/untouched",
            Workload::Write2 => "/write2",
        }
    }
}

/// A fixed 64-byte key, so servers and benches behave the same on every run.
const SECRET: [u8; 64] = [7u8; 64];

/// The router for `variant`; tessera and tower-sessions each get a fresh MemoryStore.
pub fn router(variant: Variant) -> Router {
    let router = match variant {
        Variant::Axum => bare::router(),
        Variant::Tessera => tessera::router(None),
        Variant::TowerSessions => towers::router(),
    };
    serving(router)
}

/// A router on a given tessera store (for the scaling and memory figures).
pub fn tessera_router(store: axum_tessera::store::MemoryStore) -> Router {
    serving(tessera::router(Some(store)))
}

/// The axum-tessera router on any store (the SQL stores' benchmark).
pub fn tessera_router_on<S>(store: S) -> Router
where
    S: axum_tessera::store::SessionStore + Clone,
{
    serving(tessera::routes().layer(tessera::layer().with_store(store)))
}

/// A tower-sessions router on a given store.
pub fn tower_sessions_router(store: tower_sessions::MemoryStore) -> Router {
    serving(towers::router_on(store))
}

/// What `axum::serve` does before the first request: `with_state(())` turns every handler
/// into a route once. Without it a Router driven by `oneshot` rebuilds (and re-layers) the
/// matched route on every request, a cost no server pays.
fn serving(router: Router) -> Router {
    router.with_state(())
}

mod bare {
    use super::*;

    pub(super) fn router() -> Router {
        Router::new()
            .route("/read", get(|| async { 0u64.to_string() }))
            .route("/write", get(|| async { 1u64.to_string() }))
            .route("/new", get(|| async { 0u64.to_string() }))
            .route("/untouched", get(|| async { 0u64.to_string() }))
            .route("/write2", get(|| async { 1u64.to_string() }))
    }
}

mod tessera {
    use super::*;
    use axum_tessera::{CookieConfig, Key, Session, SessionConfig, SessionLayer};

    async fn read(session: Session) -> String {
        session.get::<u64>("n").unwrap_or(0).to_string()
    }

    async fn write(session: Session) -> String {
        let n = session.get::<u64>("n").unwrap_or(0) + 1;
        session.insert("n", n).expect("a u64 serialises");
        n.to_string()
    }

    async fn new(session: Session) -> String {
        session.insert("n", 0u64).expect("a u64 serialises");
        0u64.to_string()
    }

    async fn write2(session: Session) -> String {
        let n = session.get::<u64>("n").unwrap_or(0) + 1;
        session.insert("n", n).expect("a u64 serialises");
        session.insert("m", n).expect("a u64 serialises");
        n.to_string()
    }

    /// `None`: the layer's default MemoryStore, as most applications use it.
    pub(super) fn router(store: Option<axum_tessera::store::MemoryStore>) -> Router {
        let layer = match store {
            Some(store) => layer().with_store(store),
            None => layer(),
        };
        routes().layer(layer)
    }

    pub(super) fn layer() -> SessionLayer {
        let key = Key::from_bytes(&SECRET).expect("64 bytes");
        // A plain `id` cookie like tower-sessions' default, so both send the same shape.
        SessionLayer::new(SessionConfig::web(key).cookie(CookieConfig::new("id").secure(false)))
    }

    pub(super) fn routes() -> Router {
        Router::new()
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/new", get(new))
            .route("/untouched", get(|| async { 0u64.to_string() }))
            .route("/write2", get(write2))
    }
}

/// The tower-sessions handlers of the benchmark Router over the `Session` of the
/// tower-sessions crate named `$ts`, so each tower-sessions version benchmarked (0.15 here,
/// 0.14 under its sqlx store in `benches/sql.rs`) runs the same code.
#[doc(hidden)]
#[macro_export]
macro_rules! tower_sessions_handlers {
    ($ts:ident) => {
        async fn read(session: $ts::Session) -> String {
            let n: u64 = session.get("n").await.ok().flatten().unwrap_or(0);
            n.to_string()
        }

        async fn write(session: $ts::Session) -> String {
            let n: u64 = session.get("n").await.ok().flatten().unwrap_or(0) + 1;
            session.insert("n", n).await.expect("the store answers");
            n.to_string()
        }

        async fn new(session: $ts::Session) -> String {
            session.insert("n", 0u64).await.expect("the store answers");
            0u64.to_string()
        }

        #[allow(dead_code)]
        async fn write2(session: $ts::Session) -> String {
            let n: u64 = session.get("n").await.ok().flatten().unwrap_or(0) + 1;
            session.insert("n", n).await.expect("the store answers");
            session.insert("m", n).await.expect("the store answers");
            n.to_string()
        }
    };
}

mod towers {
    use super::*;
    use tower_sessions::cookie::Key;
    use tower_sessions::{MemoryStore, SessionManagerLayer};

    crate::tower_sessions_handlers!(tower_sessions);

    pub(super) fn router() -> Router {
        router_on(MemoryStore::default())
    }

    pub(super) fn router_on(store: MemoryStore) -> Router {
        let layer = SessionManagerLayer::new(store)
            .with_secure(false)
            .with_signed(Key::from(&SECRET));
        Router::new()
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/new", get(new))
            .route("/untouched", get(|| async { 0u64.to_string() }))
            .route("/write2", get(write2))
            .layer(layer)
    }
}

/// One contender of an interleaved benchmark on one workload: its router and the cookie its
/// client sends.
pub struct Cell {
    pub app: Router,
    pub cookie: Option<HeaderValue>,
}

impl Cell {
    /// Sends `n` requests of `workload` one after another, as `axum::serve` would hand them to
    /// the router. Panics on a response that is not a success, so a broken contender cannot
    /// pass for a fast one.
    pub async fn run(&self, workload: Workload, n: usize) {
        for _ in 0..n {
            let res = self
                .app
                .clone()
                .oneshot(request(workload, self.cookie.as_ref()))
                .await
                .expect("infallible");
            assert!(res.status().is_success(), "{:?}", res.status());
            std::hint::black_box(res);
        }
    }
}

/// Thread CPU time per request of every contender on every workload, interleaved: after a
/// warm-up of a tenth of `reqs` each (allocator, caches, the stores' first growth), each round
/// runs every workload's contenders in a rotating order, so a neighbour's burst of load lands
/// on all of them alike. `cells[w][c]` is contender `c` on `workloads[w]`; the answer is
/// `ns[w][c][round]`.
pub async fn interleave(
    cells: &[Vec<Cell>],
    workloads: &[Workload],
    rounds: usize,
    reqs: usize,
) -> Vec<Vec<Vec<f64>>> {
    let mut ns: Vec<Vec<Vec<f64>>> = cells
        .iter()
        .map(|row| vec![Vec::with_capacity(rounds); row.len()])
        .collect();
    for (row, &w) in cells.iter().zip(workloads) {
        for cell in row {
            cpu_ns(cell, w, reqs.div_ceil(10)).await;
        }
    }
    for round in 0..rounds {
        for (wi, (row, &w)) in cells.iter().zip(workloads).enumerate() {
            for k in 0..row.len() {
                let ci = (round + k) % row.len();
                let t = cpu_ns(&row[ci], w, reqs).await;
                ns[wi][ci].push(t);
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    ns
}

/// Thread CPU time of `n` requests, in ns per request.
async fn cpu_ns(cell: &Cell, workload: Workload, n: usize) -> f64 {
    let cpu = cpu_time::ThreadTime::now();
    cell.run(workload, n).await;
    cpu.elapsed().as_nanos() as f64 / n as f64
}

/// A request for `workload`, carrying `cookie` when given.
pub fn request(workload: Workload, cookie: Option<&HeaderValue>) -> Request<Body> {
    let mut req = Request::get(workload.path());
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie.clone());
    }
    req.body(Body::empty()).expect("a valid request")
}

/// Creates a session through `app` itself and returns the `name=value` pair of its
/// `Set-Cookie`, ready to send back in a `Cookie` header. `None` for bare axum.
pub async fn session_cookie(app: &Router) -> Option<HeaderValue> {
    let res = app
        .clone()
        .oneshot(request(Workload::New, None))
        .await
        .expect("infallible");
    assert!(res.status().is_success(), "creating a session failed");
    let set = res
        .headers()
        .get(SET_COOKIE)?
        .to_str()
        .expect("ASCII cookie");
    let pair = set.split(';').next().expect("split yields one item");
    Some(HeaderValue::from_str(pair).expect("valid header"))
}

/// The cookie a client of `app`, a router of `variant`, sends on the workloads with a valid
/// session. Bare axum gets an axum-tessera cookie, so every variant's request has the same size.
pub async fn client_cookie(app: &Router, variant: Variant) -> Option<HeaderValue> {
    match variant {
        Variant::Axum => session_cookie(&router(Variant::Tessera)).await,
        _ => session_cookie(app).await,
    }
}
