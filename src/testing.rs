//! Helpers for your own tests (feature `test-util`): credentials of a logged-in session
//! without driving a login form, and a [`Session`] that belongs to no request.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{header, Request, StatusCode}, routing::get, Router};
//! use axum_tessera::{Authenticated, Key, Principal, RequireScopes, SessionConfig, SessionLayer};
//! use tower::ServiceExt as _;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = SessionLayer::new(SessionConfig::web(Key::generate()));
//! let app = Router::new()
//!     .route("/me", get(|g: RequireScopes<(Authenticated,)>| async move { g.principal().id().to_owned() }))
//!     .layer(layer.clone());
//!
//! let alice = layer.test_login(Principal::user("alice")).await.unwrap();
//! let response = app
//!     .oneshot(Request::get("/me").header(header::COOKIE, alice.cookie()).body(Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! # }
//! ```

use std::fmt;

use crate::error::{StoreError, StoreErrorKind};
use crate::layer::SessionLayer;
use crate::principal::Principal;
use crate::record::Record;
use crate::session::{RequestContext, Session};
use crate::store::{Commit, CommitOutcome};
use crate::token::{SessionId, StoreKey};
use crate::transport::Transport;

/// Credentials of a session that [`SessionLayer::test_login`] stored: send them as a user
/// who logged in would.
///
/// `Debug` shows no credential.
#[derive(Clone)]
pub struct TestLogin {
    cookie_name: String,
    cookie_token: String,
    header_token: String,
    csrf_token: String,
    key: StoreKey,
}

impl TestLogin {
    /// The value of a `Cookie` request header that carries the session (`name=token`).
    pub fn cookie(&self) -> String {
        format!("{}={}", self.cookie_name, self.cookie_token)
    }

    /// The value of an `Authorization` request header that carries the session
    /// (`Bearer token`), for layers that read bearer tokens.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.header_token)
    }

    /// The bare token for the `X-Session-Token` header (or your own header source).
    pub fn header_token(&self) -> &str {
        &self.header_token
    }

    /// A CSRF token of this session, for `X-CSRF-Token` or the `csrf_token` form field.
    pub fn csrf_token(&self) -> &str {
        &self.csrf_token
    }

    /// Where the session is stored, as [`Session::sessions_of_principal`] lists it.
    pub fn store_key(&self) -> StoreKey {
        self.key
    }
}

impl fmt::Debug for TestLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestLogin")
            .field("session", &self.key)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Stores a session logged in as `principal` in this layer's store, as a login would,
    /// and answers its credentials.
    ///
    /// # Errors
    ///
    /// The store's error, e.g. [`StoreErrorKind::LimitReached`] under a per-principal limit.
    pub async fn test_login(&self, principal: Principal) -> Result<TestLogin, StoreError> {
        let state = self.state();
        let now = state.now();
        let id = SessionId::generate();
        let key = id.store_key();
        let mut record = Record::new(now, state.timeouts().expires_at(now, now));
        record.set_principal(Some(principal));
        let commit = Commit::Create { key, record };
        match state.store().commit(commit, state.store_time(now)).await? {
            CommitOutcome::Applied => {}
            _ => {
                return Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    "test login collided",
                ))
            }
        }
        Ok(TestLogin {
            cookie_name: state.cookie().cookie_name().to_owned(),
            cookie_token: state.codec(Transport::Cookie).sign(&id, now),
            header_token: state.codec(Transport::Header).sign(&id, now),
            csrf_token: state.csrf().issue(&id),
            key,
        })
    }
}

impl Session {
    /// A fresh anonymous session on `layer`'s configuration that belongs to no request: for
    /// unit tests of code that takes a [`Session`]. Reads and writes work; nothing is ever
    /// committed.
    pub fn detached(layer: &SessionLayer) -> Session {
        let state = layer.state_arc();
        let now = state.now();
        let session = Session::new(
            state,
            RequestContext {
                now,
                incoming: None,
                presented: Default::default(),
                client: Default::default(),
            },
        );
        session
            .inner
            .loaded
            .store(crate::session::LOADED, std::sync::atomic::Ordering::Release);
        session
    }
}
