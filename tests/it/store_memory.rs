//! `MemoryStore` against the store conformance suite, and the per-principal limit as a
//! client sees it through the layer.

use axum::routing::{get, post};
use axum::Router;
use axum_tessera::store::conformance::Setup;
use axum_tessera::store::{LimitPolicy, MemoryStore};
use axum_tessera::{Key, SessionConfig, SessionLayer};
use http::StatusCode;

use crate::support::api::call;
use crate::support::{login_alice, whoami};

/// What `Session` answers a bearer token that no longer authenticates: a 401, not a
/// fresh anonymous session.
const DEAD_TOKEN: &str = "session token invalid or expired";

fn memory(setup: Setup) -> MemoryStore {
    let store = MemoryStore::new().with_clock(setup.clock());
    match setup.limit() {
        Some((max, policy)) => store.max_sessions_per_principal(max, policy),
        None => store,
    }
}

axum_tessera::store_conformance_tests!(|setup: Setup| async move { memory(setup) });

/// A store small enough that LRU eviction and sharding both matter must still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_a_tight_bound() {
    axum_tessera::store::conformance::run_all(&|setup: Setup| async move {
        memory(setup).max_sessions(5_000)
    })
    .await;
}

fn app(store: MemoryStore) -> Router {
    let cfg = SessionConfig::api(Key::generate()).require_existing(false);
    Router::new()
        .route("/login", post(login_alice))
        .route("/me", get(whoami))
        .layer(SessionLayer::new(cfg).with_store(store))
}

async fn log_in(app: &Router) -> (StatusCode, String) {
    call(app, "POST", "/login", None).await
}

async fn me(app: &Router, token: &str) -> String {
    call(app, "GET", "/me", Some(token)).await.1
}

#[tokio::test]
async fn login_past_a_reject_limit_is_a_409_and_saves_nothing() {
    let store = MemoryStore::new().max_sessions_per_principal(2, LimitPolicy::Reject);
    let app = app(store.clone());
    let (s1, first) = log_in(&app).await;
    let (s2, _) = log_in(&app).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));

    let (status, body) = log_in(&app).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        "session limit reached: log out of another session first"
    );
    assert_eq!(store.len(), 2, "the refused login stored nothing");
    assert_eq!(me(&app, &first).await, "alice", "earlier logins unaffected");
}

#[tokio::test]
async fn login_past_an_evict_limit_logs_out_the_oldest() {
    let store = MemoryStore::new().max_sessions_per_principal(1, LimitPolicy::EvictOldest);
    let app = app(store);
    let (_, first) = log_in(&app).await;
    assert_eq!(me(&app, &first).await, "alice");
    let (status, second) = log_in(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me(&app, &second).await, "alice");
    assert_eq!(me(&app, &first).await, DEAD_TOKEN, "oldest evicted");
}
