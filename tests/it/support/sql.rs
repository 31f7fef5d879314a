//! Scenarios both SQL store test modules run against their store: a service on the store,
//! two instances racing on one session, and a row broken behind the store's back.

use std::future::Future;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::__fuzz::SessionId;
use axum_tessera::store::{Commit, CommitOutcome, Record, SessionStore, StoreKey, Update};
use axum_tessera::store::{StoreErrorKind, UpdateOutcome};
use axum_tessera::{Key, Session, SessionConfig, SessionLayer};
use http::StatusCode;
use serde_json::json;

use super::api::call;
use super::{get as get_req, login_alice, post as post_req, send, whoami};

/// A table name for a conformance check's namespace (`name-1a2b3c4d`).
pub fn table_for(namespace: &str) -> String {
    format!("t_{}", namespace.replace('-', "_"))
}

/// Every request of these tests must answer well within this (a hang fails the test).
pub const REQUEST_BOUND: Duration = Duration::from_secs(30);

async fn logout(session: Session) -> &'static str {
    session.logout();
    "bye"
}

async fn set_key(session: Session, Path(key): Path<String>) -> &'static str {
    session.insert(&key, true).expect("a bool serialises");
    "set"
}

async fn keys(session: Session) -> String {
    session.keys().join(",")
}

/// One instance of a small bearer-token service; instances on the same store share sessions.
pub fn api_app<S: SessionStore + Clone>(store: S) -> Router {
    let key = Key::from_bytes(&[9u8; 32]).expect("32 bytes");
    let cfg = SessionConfig::api(key).require_existing(false);
    Router::new()
        .route("/login", post(login_alice))
        .route("/logout", post(logout))
        .route("/me", get(whoami))
        .route("/set/{key}", post(set_key))
        .route("/keys", get(keys))
        .route("/health", get(|| async { "ok" }))
        .layer(SessionLayer::new(cfg).with_store(store))
}

/// `method uri` with `token` through `app`, failing (not hanging) past [`REQUEST_BOUND`].
pub async fn request(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    tokio::time::timeout(REQUEST_BOUND, call(app, method, uri, token))
        .await
        .unwrap_or_else(|_| panic!("{method} {uri} hung"))
}

pub async fn log_in(app: &Router) -> String {
    let (status, token) = request(app, "POST", "/login", None).await;
    assert_eq!(status, StatusCode::OK, "login: {token}");
    token
}

/// Two instances of the service, each on its own store (pool), write `pairs` pairs of
/// different keys of one session at once: every key survives.
pub async fn two_instances_lose_no_key(a: Router, b: Router, pairs: usize) {
    let token = log_in(&a).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pairs {
        for (app, side) in [(a.clone(), "a"), (b.clone(), "b")] {
            let token = token.clone();
            tasks.spawn(async move {
                request(&app, "POST", &format!("/set/{side}{i:03}"), Some(&token)).await
            });
        }
    }
    let mut ok = 0;
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            (StatusCode::OK, _) => ok += 1,
            other => failed.push(other),
        }
    }
    eprintln!(
        "{pairs} pairs of writes: {ok} answered 200, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "failed writes: {failed:?}");
    let mut expect: Vec<String> = (0..pairs)
        .flat_map(|i| [format!("a{i:03}"), format!("b{i:03}")])
        .collect();
    expect.sort();
    let (_, got) = request(&b, "GET", "/keys", Some(&token)).await;
    let got: Vec<&str> = got.split(',').collect();
    assert_eq!(got.len(), 2 * pairs, "keys lost");
    assert_eq!(got, expect);
}

/// `n` concurrent increments of one key, alternating between two stores: all count.
pub async fn increments_all_count<A, B>(a: A, b: B, n: usize)
where
    A: SessionStore + Clone,
    B: SessionStore + Clone,
{
    let key = SessionId::generate().store_key();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let created = a
        .commit(Commit::Create {
            key,
            record: Record::new(now, now + 3600),
        })
        .await
        .expect("create");
    assert_eq!(created, CommitOutcome::Applied);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (a, b) = (a.clone(), b.clone());
        tasks.spawn(async move {
            let by = Update::Increment { by: 1 };
            if i % 2 == 0 {
                a.update(&key, "n", by).await
            } else {
                b.update(&key, "n", by).await
            }
        });
    }
    let (mut applied, mut errors) = (0, Vec::new());
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok(UpdateOutcome::Applied(_)) => applied += 1,
            other => errors.push(format!("{other:?}")),
        }
    }
    eprintln!(
        "{n} concurrent increments: {applied} applied, {} not",
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:?}");
    let record = b.load(&key).await.expect("load").expect("live");
    assert_eq!(record.data().get("n"), Some(&json!(n)), "increments lost");
}

/// `n` tasks, alternating between two stores, each add 1 to one counter by
/// compare-and-set, retrying with the value a conflict reports: none is lost.
pub async fn compare_and_set_loses_no_update<A, B>(a: A, b: B, n: usize)
where
    A: SessionStore + Clone,
    B: SessionStore + Clone,
{
    let key = SessionId::generate().store_key();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let created = a
        .commit(Commit::Create {
            key,
            record: Record::new(now, now + 3600),
        })
        .await
        .expect("create");
    assert_eq!(created, CommitOutcome::Applied);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (a, b) = (a.clone(), b.clone());
        tasks.spawn(async move {
            let mut expected: Option<serde_json::Value> = None;
            for conflicts in 0..10_000 {
                let next = expected.as_ref().and_then(|v| v.as_i64()).unwrap_or(0) + 1;
                let cas = Update::CompareAndSet {
                    expected: expected.clone(),
                    new: Some(json!(next)),
                };
                let outcome = if i % 2 == 0 {
                    a.update(&key, "n", cas).await
                } else {
                    b.update(&key, "n", cas).await
                };
                match outcome {
                    Ok(UpdateOutcome::Applied(_)) => return Ok(conflicts),
                    Ok(UpdateOutcome::Conflict(current)) => expected = current,
                    other => return Err(format!("{other:?}")),
                }
            }
            Err("never applied".to_owned())
        });
    }
    let (mut applied, mut conflicts, mut errors) = (0, 0, Vec::new());
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok(c) => {
                applied += 1;
                conflicts += c;
            }
            Err(e) => errors.push(e),
        }
    }
    eprintln!("{n} compare-and-set writers: {applied} applied after {conflicts} conflicts");
    assert!(errors.is_empty(), "{errors:?}");
    let record = b.load(&key).await.expect("load").expect("live");
    assert_eq!(record.data().get("n"), Some(&json!(n)), "updates lost");
}

/// The one session of `alice` in `store`.
pub async fn alice_key<S: SessionStore>(store: &S) -> StoreKey {
    let sessions = store
        .sessions_of(&axum_tessera::Principal::user("alice").index_key())
        .await
        .expect("sessions_of");
    assert_eq!(sessions.len(), 1, "one session of alice");
    sessions[0].key()
}

/// A logged-in session whose row `break_row` damages (by raw SQL) loads as `Corrupt`
/// from the store, and through a cookie service as an anonymous visitor, not a 503; the
/// visitor can log out (which deletes the row) and log in again.
pub async fn corrupt_row_counts_as_gone<S, F, Fut>(store: S, break_row: F)
where
    S: SessionStore + Clone,
    F: FnOnce(StoreKey) -> Fut,
    Fut: Future<Output = ()>,
{
    const COOKIE: &str = "__Host-tessera";
    let layer = SessionLayer::new(SessionConfig::web(Key::generate())).with_store(store.clone());
    let app = Router::new()
        .route("/login", post(login_alice))
        .route("/logout", post(logout))
        .route("/me", get(whoami))
        .layer(layer.clone());
    let login = send(&app, post_req("/login", None)).await;
    assert_eq!(login.status, StatusCode::OK);
    let cookie = login.cookie_pair(COOKIE).expect("session cookie");
    assert_eq!(
        send(&app, get_req("/me", Some(&cookie))).await.body,
        "alice"
    );

    let key = alice_key(&store).await;
    break_row(key).await;
    let err = store
        .load(&key)
        .await
        .expect_err("a broken row does not load");
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err:?}");

    let me = send(&app, get_req("/me", Some(&cookie))).await;
    assert_eq!(
        (me.status, me.body.as_str()),
        (StatusCode::OK, "anonymous"),
        "a corrupt row is not an outage"
    );
    assert_eq!(layer.stats().corrupt_records, 1);
    let out = send(&app, post_req("/logout", Some(&cookie))).await;
    assert_eq!(out.status, StatusCode::OK, "logout works");
    assert!(out.clears_cookie(), "and drops the cookie");
    assert!(
        matches!(store.load(&key).await, Ok(None)),
        "the broken row is deleted"
    );
    let again = send(&app, post_req("/login", Some(&cookie))).await;
    assert_eq!(again.status, StatusCode::OK, "the next login works");
    let fresh = again.cookie_pair(COOKIE).expect("new cookie");
    assert_eq!(send(&app, get_req("/me", Some(&fresh))).await.body, "alice");
}
