//! What the integration tests share: a store wrapper that counts calls and fails them on
//! demand, requests and replies as a client sees them, handlers several apps route to, and a
//! log capture. Submodules: `api`,
//! the bearer-token calls of the store tests; `fleet`, instances of one service for the
//! cross-instance live tests; `harness`, the security tests' app; `redis`, real
//! `redis-server` processes; `postgres`, real PostgreSQL servers; `sqlite`, database files;
//! `sql`, the scenarios both SQL stores run; `statements`, counting the statements sqlx runs
//! for SQLite (PostgreSQL counts its own).

#[cfg(feature = "test-util")]
pub mod api;
#[cfg(all(any(feature = "redis", feature = "postgres"), feature = "test-util"))]
pub mod fleet;
pub mod harness;
#[cfg(all(feature = "postgres", feature = "test-util"))]
pub mod postgres;
#[cfg(all(feature = "redis", feature = "test-util"))]
pub mod redis;
#[cfg(all(any(feature = "sqlite", feature = "postgres"), feature = "test-util"))]
pub mod sql;
#[cfg(all(feature = "sqlite", feature = "test-util"))]
pub mod sqlite;
#[cfg(all(feature = "sqlite", feature = "test-util"))]
pub mod statements;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::{self, any};
use axum::{Form, Json, Router};
use axum_tessera::clock::ManualClock;
use axum_tessera::guard::CsrfLayer;
use axum_tessera::store::{
    Commit, CommitOutcome, Lookup, MemoryStore, Record, SessionStore, StoreErrorKind, StoreKey,
    Update, UpdateOutcome,
};
use axum_tessera::{CsrfProtected, Key, Principal, Session, SessionInfo, StoreError};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// A fixed 32-byte key: `key(1)` and `key(2)` differ.
pub fn key(n: u8) -> Key {
    Key::from_bytes(&[n; 32]).expect("32 bytes is long enough")
}

/// Wraps a [`MemoryStore`], counting every call that reaches it and failing loads or commits
/// on demand.
#[derive(Clone, Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    loads: Arc<AtomicUsize>,
    commits: Arc<AtomicUsize>,
    updates: Arc<AtomicUsize>,
    fail_loads: Arc<AtomicBool>,
    fail_commits: Arc<AtomicBool>,
    /// The kind of error a failing call reports (`Unavailable` unless set).
    fail_kind: Arc<Mutex<Option<StoreErrorKind>>>,
}

impl CountingStore {
    pub fn new(inner: MemoryStore) -> Self {
        Self {
            inner,
            ..Self::default()
        }
    }

    /// A fresh [`MemoryStore`] on `clock`.
    pub fn on(clock: &ManualClock) -> Self {
        Self::new(MemoryStore::new().with_clock(clock.clone()))
    }

    /// Loads (and lookups) so far.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// Commits so far.
    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }

    /// Atomic updates (`Session::increment` / `update`) so far.
    pub fn updates(&self) -> usize {
        self.updates.load(Ordering::SeqCst)
    }

    /// Loads plus commits.
    pub fn calls(&self) -> usize {
        self.loads() + self.commits()
    }

    /// Records held by the wrapped store.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// From now on, loads fail (`true`) or reach the store again (`false`).
    pub fn fail_loads(&self, fail: bool) {
        self.fail_loads.store(fail, Ordering::SeqCst);
    }

    /// From now on, commits fail (`true`) or reach the store again (`false`).
    pub fn fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::SeqCst);
    }

    /// The kind of error failing calls report from now on.
    pub fn fail_with(&self, kind: StoreErrorKind) {
        *self.fail_kind.lock().unwrap() = Some(kind);
    }

    fn down(&self) -> StoreError {
        let kind = self
            .fail_kind
            .lock()
            .unwrap()
            .unwrap_or(StoreErrorKind::Unavailable);
        StoreError::new(kind, "test store is down")
    }

    fn count_load(&self) -> Result<(), StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.fail_loads.load(Ordering::SeqCst) {
            return Err(self.down());
        }
        Ok(())
    }
}

impl SessionStore for CountingStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.count_load()?;
        self.inner.load(key).await
    }

    async fn lookup(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        self.count_load()?;
        self.inner.lookup(key).await
    }

    fn session_count(&self) -> Option<usize> {
        self.inner.session_count()
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(self.down());
        }
        self.inner.commit(commit).await
    }

    async fn update(
        &self,
        key: &StoreKey,
        field: &str,
        update: Update,
    ) -> Result<UpdateOutcome, StoreError> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(self.down());
        }
        self.inner.update(key, field, update).await
    }

    async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
        self.inner.sessions_of(principal).await
    }

    async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
        self.inner.delete_sessions_of(principal).await
    }
}

/// A response as the client sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The value of cookie `name` set by this response, if any (`Some("")` when cleared).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .find_map(|v| {
                let v = v.to_str().ok()?;
                let (pair, _) = v.split_once(';').unwrap_or((v, ""));
                let (n, value) = pair.split_once('=')?;
                (n == name).then(|| value.to_owned())
            })
    }

    /// Cookie `name` as the client sends it back (`name=value`), if this response set it.
    pub fn cookie_pair(&self, name: &str) -> Option<String> {
        self.cookie(name).map(|value| format!("{name}={value}"))
    }

    /// The first `Set-Cookie` line, as sent.
    pub fn set_cookie_line(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Every `Set-Cookie` of the response, parsed.
    pub fn set_cookies(&self) -> Vec<cookie::Cookie<'static>> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
            .collect()
    }

    /// The one session `Set-Cookie`, if any.
    pub fn set_cookie(&self) -> Option<cookie::Cookie<'static>> {
        let mut all = self.set_cookies();
        assert!(all.len() <= 1, "at most one Set-Cookie: {all:?}");
        all.pop()
    }

    /// The new token, if the response set a non-empty session cookie.
    pub fn token(&self) -> Option<String> {
        self.set_cookie()
            .filter(|c| !c.value().is_empty())
            .map(|c| c.value().to_owned())
    }

    /// Whether the response tells the client to drop its cookie.
    pub fn clears_cookie(&self) -> bool {
        self.set_cookie()
            .is_some_and(|c| c.value().is_empty() && c.max_age() == Some(time::Duration::ZERO))
    }
}

/// Sends `req` through `app` and reads the whole response.
pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `method uri` with a raw `Cookie` header value, if any.
fn with_cookie(method: &str, uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

/// `GET uri` with a raw `Cookie` header value, if any.
pub fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    with_cookie("GET", uri, cookie)
}

/// `POST uri` with a raw `Cookie` header value, if any.
pub fn post(uri: &str, cookie: Option<&str>) -> Request<Body> {
    with_cookie("POST", uri, cookie)
}

/// A handler that logs in `alice` and answers with the new token.
pub async fn login_alice(session: Session) -> String {
    session.login(Principal::user("alice"));
    session.token()
}

/// A handler that answers with the principal's ID, or `anonymous`.
pub async fn whoami(session: Session) -> String {
    session
        .principal()
        .map(|p| p.id().to_owned())
        .unwrap_or_else(|| "anonymous".into())
}

#[derive(serde::Deserialize)]
struct Msg {
    text: String,
}

/// CSRF-guarded routes that read a body: `POST /form`, `/json` (the `text` field back) and
/// `/bytes` (the length) under `CsrfProtected`, and `/layer` under `CsrfLayer`.
pub fn csrf_body_routes() -> Router {
    Router::new()
        .route(
            "/form",
            routing::post(|CsrfProtected(Form(m)): CsrfProtected<Form<Msg>>| async move { m.text }),
        )
        .route(
            "/json",
            routing::post(|CsrfProtected(Json(m)): CsrfProtected<Json<Msg>>| async move { m.text }),
        )
        .route(
            "/bytes",
            routing::post(
                |CsrfProtected(b): CsrfProtected<Bytes>| async move { b.len().to_string() },
            ),
        )
        .merge(
            Router::new()
                .route("/layer", any(|| async { "ok" }))
                .route_layer(CsrfLayer::new()),
        )
}

/// Collects what a tracing subscriber writes to it, for tests that read the logs.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("tracing writes UTF-8")
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
