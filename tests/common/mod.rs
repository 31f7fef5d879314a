//! Test helpers shared by the integration tests: a store wrapper that counts and fails calls,
//! and request/response shortcuts.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use axum_tessera::store::{Commit, CommitOutcome, Lookup, MemoryStore, SessionStore};
use axum_tessera::token::StoreKey;
use axum_tessera::{Record, SessionInfo, StoreError, StoreErrorKind};
use http::{header, Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Wraps a MemoryStore, counting calls and failing them on demand.
#[derive(Clone, Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    pub loads: Arc<AtomicUsize>,
    pub commits: Arc<AtomicUsize>,
    pub fail_loads: Arc<AtomicBool>,
    pub fail_commits: Arc<AtomicBool>,
    /// The kind of error a failing call reports.
    pub fail_kind: Arc<std::sync::Mutex<Option<StoreErrorKind>>>,
}

impl CountingStore {
    pub fn new(inner: MemoryStore) -> Self {
        Self {
            inner,
            ..Self::default()
        }
    }
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }
    pub fn calls(&self) -> usize {
        self.loads() + self.commits()
    }
}

impl CountingStore {
    fn down(&self) -> StoreError {
        let kind = self
            .fail_kind
            .lock()
            .unwrap()
            .unwrap_or(StoreErrorKind::Unavailable);
        StoreError::new(kind, "test store is down")
    }
}

impl SessionStore for CountingStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.fail_loads.load(Ordering::SeqCst) {
            return Err(self.down());
        }
        self.inner.load(key).await
    }
    async fn lookup(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.fail_loads.load(Ordering::SeqCst) {
            return Err(self.down());
        }
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
    async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
        self.inner.sessions_of(principal).await
    }
    async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
        self.inner.delete_sessions_of(principal).await
    }
}

pub struct Reply {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The session cookie value set by this response, if any (`Some("")` when cleared).
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
    pub fn set_cookie_line(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res: Response<Body> = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

pub fn post(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}
