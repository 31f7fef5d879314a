//! What the design's floor costs in the interleaved harness: bare axum against layers that do
//! only the work every session layer of this design must do, measured like
//! `benches/interleaved.rs` (built once, `oneshot` on a current-thread runtime, thread CPU
//! time, contenders in a rotating order within each round, ratios taken within the round).
//!
//! - **pass**: a `Router::layer` that does nothing (`call` hands the request on, the inner
//!   future is its future): what axum charges any per-route layer (the route's boxed service
//!   cloned with the layer inside it, the layer's future boxed).
//! - **handle**: pass, plus a reference-counted handle in the request's extensions that lives
//!   until the response (how extractors reach a session): one allocation, the extension's box,
//!   and the growth of axum's extension map, which already holds three entries.
//! - **verify**: handle, plus finding the `id` cookie and verifying it with axum-tessera's own
//!   token codec (fixed-position split, base64url decoding of ID and MAC, one HMAC-SHA-256 from
//!   a prepared key state, the age check): an untouched route's floor.
//! - **lookup**: verify, plus `SHA-256(id)` for the store key, a lookup under a lock in a map of
//!   one record, the handler reading a `u64` through the handle, and `Vary: Cookie`: a read's
//!   floor.
//! - **tessera**: axum-tessera on the same routes (untouched and read).
//!
//! `cargo bench -p axum-tessera-e2e --bench floor` (15 rounds of 40,000 requests);
//! `ROUNDS=3 REQS=2000` for a smoke run. Without `--bench` it runs one tiny round.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::routing::get;
use axum::Router;
use axum_tessera::__fuzz::{SessionId, TokenCodec};
use axum_tessera::{Key, KeyRing};
use axum_tessera_e2e::stats::{bench_size, quantile, ratios, sorted, spread};
use axum_tessera_e2e::{self as apps, Cell, Variant, Workload};
use http::header::{COOKIE, VARY};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};

/// What the floor layers share: the token codec (its MAC states prepared) and the one record.
struct Shared {
    codec: TokenCodec,
    records: Mutex<HashMap<[u8; 32], u64>>,
}

/// The issue time of the floor's token, and "now" for its check: the age never matters.
const ISSUED: i64 = 1_700_000_000;

/// How much of the floor a layer does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    Pass,
    Handle,
    Verify,
    Lookup,
}

#[derive(Clone)]
struct FloorLayer {
    depth: Depth,
    shared: Arc<Shared>,
}

impl<S> Layer<S> for FloorLayer {
    type Service = FloorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FloorService {
            inner,
            depth: self.depth,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
struct FloorService<S> {
    inner: S,
    depth: Depth,
    shared: Arc<Shared>,
}

/// The verified request's handle, shared by the extractor and the response future.
struct Handle {
    id: Option<SessionId>,
    shared: Arc<Shared>,
    value: Mutex<Option<u64>>,
}

#[derive(Clone)]
struct HandleExt(Arc<Handle>);

/// The first value of cookie `name`: pairs found with `memchr`, as fast as a scan gets.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &[u8]) -> Option<&'a [u8]> {
    for line in headers.get_all(COOKIE) {
        let mut rest = line.as_bytes();
        loop {
            let (pair, next) = match memchr::memchr(b';', rest) {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if let Some(eq) = memchr::memchr(b'=', pair) {
                if pair[..eq].trim_ascii() == name {
                    return Some(pair[eq + 1..].trim_ascii());
                }
            }
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
    }
    None
}

impl<S, B> Service<Request<B>> for FloorService<S>
where
    S: Service<Request<B>, Response = Response<axum::body::Body>>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match self.depth {
            Depth::Pass => None,
            Depth::Handle => Some(None),
            Depth::Verify | Depth::Lookup => cookie(req.headers(), b"id")
                .and_then(|token| std::str::from_utf8(token).ok())
                .and_then(|token| self.shared.codec.verify(token, ISSUED, 3600, 60).ok())
                .map(|verified| Some(verified.id().clone())),
        };
        let handle = id.map(|id| {
            let handle = Arc::new(Handle {
                id,
                shared: self.shared.clone(),
                value: Mutex::new(None),
            });
            req.extensions_mut().insert(HandleExt(handle.clone()));
            handle
        });
        FloorFuture {
            inner: self.inner.call(req),
            handle,
            vary: self.depth == Depth::Lookup,
        }
    }
}

struct FloorFuture<F> {
    inner: F,
    handle: Option<Arc<Handle>>,
    vary: bool,
}

impl<F, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<axum::body::Body>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut res = match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(Ok(res)) => res,
            other => return other,
        };
        if self.vary && self.handle.is_some() {
            res.headers_mut()
                .append(VARY, HeaderValue::from_static("Cookie"));
        }
        self.handle = None;
        Poll::Ready(Ok(res))
    }
}

/// The handler's view of a floor session: the store lookup on first use.
struct FloorSession(Arc<Handle>);

impl<S: Send + Sync> FromRequestParts<S> for FloorSession {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        let handle = parts
            .extensions
            .get::<HandleExt>()
            .ok_or(StatusCode::UNAUTHORIZED)?
            .0
            .clone();
        let id = handle.id.as_ref().ok_or(StatusCode::UNAUTHORIZED)?;
        let key = *id.store_key().as_bytes();
        let found = handle.shared.records.lock().unwrap().get(&key).copied();
        *handle.value.lock().unwrap() = found;
        Ok(Self(handle))
    }
}

async fn read(session: FloorSession) -> String {
    let n = session.0.value.lock().unwrap().unwrap_or(0);
    n.to_string()
}

const CONTENDERS: [&str; 6] = ["axum", "pass", "handle", "verify", "lookup", "tessera"];

async fn cells(workload: Workload) -> Vec<Cell> {
    let ring = KeyRing::new(Key::from_bytes(&[7u8; 64]).expect("64 bytes"));
    let codec = TokenCodec::new(&ring, "cookie:id");
    let id = SessionId::generate();
    let token = codec.sign(&id, ISSUED);
    let key = *id.store_key().as_bytes();
    let shared = Arc::new(Shared {
        codec,
        records: Mutex::new(HashMap::from([(key, 41u64)])),
    });
    let floor_cookie = Some(HeaderValue::from_str(&format!("id={token}")).expect("ASCII"));
    let floor = |depth: Depth| {
        // Only the lookup reads the session; the lighter layers answer as an untouched route.
        let routes = match (workload, depth) {
            (Workload::Read, Depth::Lookup) => Router::new().route("/read", get(read)),
            _ => Router::new().route(workload.path(), get(|| async { 0u64.to_string() })),
        };
        routes
            .layer(FloorLayer {
                depth,
                shared: shared.clone(),
            })
            .with_state(())
    };
    let tessera = apps::router(Variant::Tessera);
    let tessera_cookie = apps::client_cookie(&tessera, Variant::Tessera).await;
    vec![
        Cell {
            app: apps::router(Variant::Axum),
            cookie: tessera_cookie.clone(),
        },
        Cell {
            app: floor(Depth::Pass),
            cookie: floor_cookie.clone(),
        },
        Cell {
            app: floor(Depth::Handle),
            cookie: floor_cookie.clone(),
        },
        Cell {
            app: floor(Depth::Verify),
            cookie: floor_cookie.clone(),
        },
        Cell {
            app: floor(Depth::Lookup),
            cookie: floor_cookie,
        },
        Cell {
            app: tessera,
            cookie: tessera_cookie,
        },
    ]
}

fn main() {
    let (rounds, reqs) = bench_size(40_000, 50);
    let workloads = [Workload::Untouched, Workload::Read];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // ns[workload][contender][round]
    let ns = rt.block_on(async {
        let mut all = Vec::new();
        for w in workloads {
            all.push(cells(w).await);
        }
        apps::interleave(&all, &workloads, rounds, reqs).await
    });

    println!();
    println!(
        "floor: {rounds} rounds x {reqs} requests per contender and workload; thread CPU time"
    );
    println!();
    println!("ratio to bare axum per round: median (p10-p90, min-max)");
    println!();
    print!("| workload | axum ns |");
    for c in &CONTENDERS[1..] {
        print!(" {c} / axum |");
    }
    println!();
    println!("| --- | ---: |{}", " --- |".repeat(CONTENDERS.len() - 1));
    for (wi, w) in workloads.into_iter().enumerate() {
        let bare = quantile(&sorted(ns[wi][0].clone()), 0.5);
        print!("| {} | {bare:.0} |", w.name());
        for ci in 1..CONTENDERS.len() {
            print!(" {} |", spread(&ratios(&ns[wi][ci], &ns[wi][0])));
        }
        println!();
    }
}
