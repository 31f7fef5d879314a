//! Shared harness of the security tests: an app with the routes an attacker probes, a store that
//! counts what reaches it, a manual clock, and helpers to read what the client was told.
#![allow(dead_code)] // each test file uses a different part

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::store::{Commit, CommitOutcome, MemoryStore, SessionStore};
use axum_tessera::token::StoreKey;
use axum_tessera::{
    Key, ManualClock, Principal, Record, Session, SessionConfig, SessionInfo, SessionLayer,
    StoreError,
};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// Start of every test's clock.
pub const T0: i64 = 1_700_000_000;
/// The web preset's cookie name.
pub const COOKIE: &str = "__Host-tessera";

/// A fixed 32-byte key: `key(1)` and `key(2)` differ.
pub fn key(n: u8) -> Key {
    Key::from_bytes(&[n; 32]).expect("32 bytes is long enough")
}

/// Wraps a [`MemoryStore`] and counts every call that reaches it.
#[derive(Clone)]
pub struct CountingStore {
    pub inner: MemoryStore,
    loads: Arc<AtomicUsize>,
    commits: Arc<Mutex<Vec<&'static str>>>,
}

impl CountingStore {
    pub fn new(clock: &ManualClock) -> Self {
        Self {
            inner: MemoryStore::new().with_clock(clock.clone()),
            loads: Arc::default(),
            commits: Arc::default(),
        }
    }

    /// Loads so far.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// Commit kinds so far (`create`, `patch`, `move`, `delete`).
    pub fn commits(&self) -> Vec<&'static str> {
        self.commits.lock().unwrap().clone()
    }

    /// Loads plus commits.
    pub fn calls(&self) -> usize {
        self.loads() + self.commits().len()
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }
}

impl SessionStore for CountingStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let kind = match &commit {
            Commit::Create { .. } => "create",
            Commit::Patch { .. } => "patch",
            Commit::Move { .. } => "move",
            Commit::Delete { .. } => "delete",
        };
        self.commits.lock().unwrap().push(kind);
        self.inner.commit(commit).await
    }

    async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
        self.inner.sessions_of(principal).await
    }

    async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
        self.inner.delete_sessions_of(principal).await
    }
}

/// `live=<bool> user=<id|-> k=<value|->`: what the server believes about the session.
async fn whoami(session: Session) -> String {
    format!(
        "live={} user={} k={}",
        session.is_live(),
        session
            .principal()
            .map_or("-".into(), |p| p.id().to_owned()),
        session.get::<String>("k").unwrap_or_else(|| "-".into()),
    )
}

/// The routes every security test probes.
pub fn routes() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/untouched", get(|| async { "ok" }))
        .route(
            "/write/{value}",
            post(|session: Session, Path(v): Path<String>| async move {
                session.insert("k", v).unwrap();
                "written"
            }),
        )
        .route(
            "/login/{user}",
            post(|session: Session, Path(user): Path<String>| async move {
                session.login(Principal::user(user));
                session.token()
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.logout();
                "bye"
            }),
        )
        .route(
            "/logout-everywhere",
            post(|session: Session| async move {
                session.logout_everywhere().await.unwrap().to_string()
            }),
        )
        .route(
            "/fail",
            post(|session: Session| async move {
                session.insert("k", "lost").unwrap();
                (StatusCode::INTERNAL_SERVER_ERROR, "boom")
            }),
        )
        .route(
            "/sessions",
            get(|session: Session| async move {
                let list = session.sessions_of_principal().await.unwrap();
                list.iter()
                    .map(|s| s.key().short())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        )
        .route(
            "/logout-session/{key}",
            post(|session: Session, Path(key): Path<String>| async move {
                let key = StoreKey::from_hex(&key).unwrap();
                session.logout_session(key).await.unwrap().to_string()
            }),
        )
        .route(
            "/csrf",
            get(|session: Session| async move { session.csrf_token() }),
        )
}

/// An app on a manual clock with a counting store.
#[derive(Clone)]
pub struct Harness {
    pub app: Router,
    pub store: CountingStore,
    pub clock: ManualClock,
}

impl Harness {
    /// The web preset with `key(1)`.
    pub fn web() -> Self {
        Self::new(SessionConfig::web(key(1)))
    }

    /// `cfg` on a fresh clock at [`T0`] and a fresh store.
    pub fn new(cfg: SessionConfig) -> Self {
        let clock = ManualClock::new(T0);
        let store = CountingStore::new(&clock);
        Self::sharing(cfg, store, clock)
    }

    /// `cfg` on an existing store and clock (several layers over one store).
    pub fn sharing(cfg: SessionConfig, store: CountingStore, clock: ManualClock) -> Self {
        Self::build(Router::new(), cfg, store, clock)
    }

    /// `cfg` with `extra` routes besides the common ones, on a fresh clock and store.
    pub fn with_routes(cfg: SessionConfig, extra: Router) -> Self {
        let clock = ManualClock::new(T0);
        let store = CountingStore::new(&clock);
        Self::build(extra, cfg, store, clock)
    }

    fn build(extra: Router, cfg: SessionConfig, store: CountingStore, clock: ManualClock) -> Self {
        let layer = SessionLayer::new(cfg.clock(clock.clone())).with_store(store.clone());
        Self {
            app: routes().merge(extra).layer(layer),
            store,
            clock,
        }
    }

    /// Same store and clock, another configuration.
    pub fn with_config(&self, cfg: SessionConfig) -> Self {
        Self::sharing(cfg, self.store.clone(), self.clock.clone())
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `method path` carrying `token` as the session cookie.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::COOKIE, format!("{COOKIE}={t}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// `GET /whoami` with a raw `Cookie` header value.
    pub async fn whoami_raw(&self, cookie: HeaderValue) -> Reply {
        let req = Request::builder()
            .uri("/whoami")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    /// A stored session with `k=value`; returns its token.
    pub async fn new_session(&self, value: &str) -> String {
        let reply = self.call("POST", &format!("/write/{value}"), None).await;
        reply.token().expect("a written session sends a cookie")
    }

    /// A stored session logged in as `user`; returns its token.
    pub async fn logged_in(&self, user: &str) -> String {
        let reply = self.call("POST", &format!("/login/{user}"), None).await;
        reply.token().expect("login sends a cookie")
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

    /// Whether the server treated the request as carrying a live session.
    pub fn live(&self) -> bool {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body.contains("live=true")
    }

    /// The user the server saw (`-` for none).
    pub fn user(&self) -> &str {
        self.body
            .split(' ')
            .find_map(|part| part.strip_prefix("user="))
            .unwrap_or("-")
    }
}

/// The ID segment of a token.
pub fn id_of(token: &str) -> &str {
    token.split('.').nth(1).expect("a token has an ID segment")
}

/// A store that forgets to check expiry: it returns whatever it holds. The layer must still
/// refuse dead sessions (defence in depth against a buggy or lagging store).
#[derive(Clone, Default)]
pub struct ForgetfulStore {
    records: Arc<Mutex<std::collections::HashMap<StoreKey, Record>>>,
}

impl SessionStore for ForgetfulStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(self.records.lock().unwrap().get(key).cloned())
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let mut records = self.records.lock().unwrap();
        Ok(match commit {
            Commit::Create { key, record } => {
                records.insert(key, record);
                CommitOutcome::Applied
            }
            Commit::Patch { key, patch } => match records.get_mut(&key) {
                Some(r) => {
                    patch.apply(r);
                    CommitOutcome::Applied
                }
                None => CommitOutcome::Missing,
            },
            Commit::Move { from, to, patch } => match records.remove(&from) {
                Some(mut r) => {
                    patch.apply(&mut r);
                    records.insert(to, r);
                    CommitOutcome::Applied
                }
                None => CommitOutcome::Missing,
            },
            Commit::Delete { key } => {
                records.remove(&key);
                CommitOutcome::Applied
            }
        })
    }

    async fn sessions_of(&self, _: &str) -> Result<Vec<SessionInfo>, StoreError> {
        Ok(Vec::new())
    }

    async fn delete_sessions_of(&self, _: &str) -> Result<u64, StoreError> {
        Ok(0)
    }
}
