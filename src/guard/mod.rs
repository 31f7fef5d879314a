//! Route guards: the scope guards and CSRF protection, each as an extractor and as a route
//! layer, [`GuardService`], the one middleware both route layers run, and
//! [`safe_return_to`] / [`ReturnTo`] for the `?next=` of the login redirect.
//!
//! The extractors ([`RequireScopes`], [`AnyScope`], [`CsrfProtected`]) guard one handler; the
//! layers ([`ScopeLayer`], [`CsrfLayer`]) guard every route of a router, so refused requests
//! never reach a handler. Both forms apply the same rules and answer with the rejections of
//! [`rejection`](crate::rejection).
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_tessera::guard::{CsrfLayer, RequireScopes};
//! use axum_tessera::{scope, Key, SessionConfig, SessionLayer};
//!
//! scope!(pub Admin = "admin");
//!
//! // The layer added last runs first: the scope check, then the CSRF check.
//! let app: Router = Router::new()
//!     .route("/admin/users", get(|| async { "users" }).post(|| async { "added" }))
//!     .route_layer(CsrfLayer::new())
//!     .route_layer(RequireScopes::<(Admin,)>::layer())
//!     .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
//! ```

mod csrf;
mod return_to;
mod scopes;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::BoxError;
use bytes::Bytes;
use http::request::Parts;
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

pub use crate::scope::ScopeSet;
pub(crate) use csrf::check_upgrade_origin;
pub use csrf::{CsrfLayer, CsrfProtected, CSRF_FIELD, CSRF_HEADER};
pub use return_to::{safe_return_to, ReturnTo};
pub use scopes::{AnyScope, RequireScopes, ScopeLayer};

use crate::error::StoreError;
use crate::load::Load;
use crate::rejection::{Capture, Captures, MissingSessionLayer, SessionUnavailable};
use crate::session::Session;
use crate::store::BoxFuture;

/// The middleware [`CsrfLayer`] produces.
pub type CsrfService<S> = GuardService<S, CsrfLayer>;

/// The middleware [`ScopeLayer`] produces.
pub type ScopeService<S> = GuardService<S, ScopeLayer>;

pub(crate) mod sealed {
    use axum::response::Response;
    use http::request::Parts;

    use crate::session::Session;

    /// What a [`Guard`](super::Guard) does; private, so the set of guards stays ours.
    pub trait Sealed: Clone + Send + 'static {
        /// Whether the request passes without a check, and without loading its session.
        fn exempt(&self, parts: &Parts) -> bool;

        /// The check on the request's loaded session: what to answer with instead of the
        /// inner service, when the request is refused.
        fn refusal(&self, parts: &Parts, session: &Session) -> Option<Response>;
    }
}

/// A check that [`GuardService`] runs before the inner service: [`CsrfLayer`] and
/// [`ScopeLayer`]. Sealed: it cannot be implemented outside this crate.
pub trait Guard: sealed::Sealed {}

/// The middleware of the route guards ([`CsrfService`], [`ScopeService`]): loads the
/// request's session, runs the guard `G` on it, and calls the inner service only when the
/// guard lets the request pass.
///
/// A request without [`SessionLayer`](crate::SessionLayer) above is answered with
/// [`MissingSessionLayer`] (500), one whose session the store cannot load with
/// [`SessionUnavailable`] (503), before the guard sees it.
#[derive(Clone)]
pub struct GuardService<S, G> {
    inner: S,
    guard: G,
}

impl<S, G> GuardService<S, G> {
    pub(crate) fn new(inner: S, guard: G) -> Self {
        Self { inner, guard }
    }
}

impl<S, G: fmt::Debug> fmt::Debug for GuardService<S, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardService")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<S, G, ReqBody, ResBody> Service<Request<ReqBody>> for GuardService<S, G>
where
    S: Service<Request<ReqBody>, Response = http::Response<ResBody>> + Clone,
    G: Guard,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = GuardFuture<S::Future, S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // `poll_ready` readied `self.inner`; a fresh clone might not be ready, so call the
        // ready one and keep the clone for the next request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        let state = match verdict(&self.guard, &parts) {
            Verdict::Pass => State::Inner {
                future: inner.call(Request::from_parts(parts, body)),
            },
            Verdict::Refuse(response) => State::Rejected {
                response: Some(response),
            },
            Verdict::Load(session) => {
                // The session must still come from a store that answers asynchronously (its
                // own load allocates too); the memory store and a session loaded by an
                // earlier layer never get here.
                let guard = self.guard.clone();
                State::Checking {
                    check: Box::pin(async move {
                        let loaded = session.load(&parts).await;
                        match refusal(&guard, &parts, &session, loaded) {
                            None => Ok(Request::from_parts(parts, body)),
                            Some(response) => Err(response),
                        }
                    }),
                    inner: Some(inner),
                }
            }
        };
        GuardFuture { state }
    }
}

/// What [`GuardService::call`] can tell before the first poll.
enum Verdict {
    Pass,
    Refuse(Response),
    /// The session still has to be loaded.
    Load(Session),
}

fn verdict<G: Guard>(guard: &G, parts: &Parts) -> Verdict {
    if guard.exempt(parts) {
        return Verdict::Pass;
    }
    let Some(session) = crate::session::of_parts(parts) else {
        return Verdict::Refuse(
            MissingSessionLayer::default()
                .captured(&Capture::of(parts))
                .into_response(),
        );
    };
    let ready = match session.load(parts) {
        Load::Ready(Some(loaded)) => Some(loaded),
        _ => None,
    };
    // Not polled, so nothing started: the boxed check loads again.
    let Some(loaded) = ready else {
        return Verdict::Load(session);
    };
    match refusal(guard, parts, &session, loaded) {
        None => Verdict::Pass,
        Some(response) => Verdict::Refuse(response),
    }
}

/// The guard's refusal, if any, once the session's load finished.
fn refusal<G: Guard>(
    guard: &G,
    parts: &Parts,
    session: &Session,
    loaded: Result<(), StoreError>,
) -> Option<Response> {
    match loaded {
        Ok(()) => guard.refusal(parts, session),
        Err(err) => Some(
            SessionUnavailable::from_err(err)
                .captured(&Capture::of(parts))
                .into_response(),
        ),
    }
}

pin_project! {
    /// Response future of [`GuardService`].
    pub struct GuardFuture<F, S, B> {
        #[pin]
        state: State<F, S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        /// Refused before the inner service was called.
        Rejected { response: Option<Response> },
        /// Waiting for the session; the ready inner service is kept for the request.
        Checking {
            check: BoxFuture<'static, Result<Request<B>, Response>>,
            inner: Option<S>,
        },
        /// Passed: the inner service's response.
        Inner { #[pin] future: F },
    }
}

impl<F, S, B> fmt::Debug for GuardFuture<F, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardFuture").finish_non_exhaustive()
    }
}

impl<F, S, B, ResBody> Future for GuardFuture<F, S, B>
where
    S: Service<Request<B>, Response = http::Response<ResBody>, Future = F>,
    F: Future<Output = Result<http::Response<ResBody>, S::Error>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("GuardFuture polled after completion");
                    return Poll::Ready(Ok(response));
                }
                StateProj::Checking { check, inner } => match ready!(check.as_mut().poll(cx)) {
                    Ok(req) => {
                        let mut inner = inner.take().expect("GuardFuture polled after completion");
                        state.set(State::Inner {
                            future: inner.call(req),
                        });
                    }
                    Err(response) => {
                        state.set(State::Rejected { response: None });
                        return Poll::Ready(Ok(response));
                    }
                },
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(Body::new)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use axum::routing::post;
    use axum::Router;
    use http::{header, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::store::{Commit, CommitOutcome, MemoryStore, SessionStore};
    use crate::store::{Record, StoreErrorKind};
    use crate::token::StoreKey;
    use crate::{Key, Principal, SessionConfig, SessionInfo, SessionLayer};

    crate::scope!(Admin = "admin");

    /// A memory store behind a yield: every load of an existing session is pending at first,
    /// as with any store that does I/O, so the guards take their asynchronous path.
    #[derive(Clone, Default)]
    struct SlowStore {
        inner: MemoryStore,
        down: Arc<AtomicBool>,
    }

    impl SessionStore for SlowStore {
        async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
            tokio::task::yield_now().await;
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::from_kind(StoreErrorKind::Unavailable));
            }
            self.inner.load(key).await
        }

        async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
            self.inner.commit(commit).await
        }

        async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
            self.inner.sessions_of(principal).await
        }

        async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
            self.inner.delete_sessions_of(principal).await
        }
    }

    /// `/admin` behind the scope layer and `/form` behind the CSRF layer; no session layer.
    fn guarded() -> Router {
        let scoped = Router::new()
            .route("/admin", post(|| async { "admin" }))
            .route_layer(RequireScopes::<(Admin,)>::layer());
        let protected = Router::new()
            .route("/form", post(|| async { "saved" }))
            .route_layer(CsrfLayer::new());
        scoped.merge(protected)
    }

    async fn login(session: Session) -> String {
        session.login(Principal::user("alice").with_scopes(["admin"]));
        session.csrf_token()
    }

    async fn send(app: &Router, path: &str, headers: &[(header::HeaderName, &str)]) -> Response {
        let mut req = Request::post(path);
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        app.clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn route_guards_wait_for_a_store_that_answers_later() {
        struct Case {
            name: &'static str,
            path: &'static str,
            cookie: bool,
            token: bool,
            store_down: bool,
            expect: StatusCode,
        }
        let cases = [
            Case {
                name: "scopes, logged in",
                path: "/admin",
                cookie: true,
                token: false,
                store_down: false,
                expect: StatusCode::OK,
            },
            Case {
                name: "scopes, no session",
                path: "/admin",
                cookie: false,
                token: false,
                store_down: false,
                expect: StatusCode::UNAUTHORIZED,
            },
            Case {
                name: "scopes, store down",
                path: "/admin",
                cookie: true,
                token: false,
                store_down: true,
                expect: StatusCode::SERVICE_UNAVAILABLE,
            },
            Case {
                name: "csrf, token",
                path: "/form",
                cookie: true,
                token: true,
                store_down: false,
                expect: StatusCode::OK,
            },
            Case {
                name: "csrf, no token",
                path: "/form",
                cookie: true,
                token: false,
                store_down: false,
                expect: StatusCode::FORBIDDEN,
            },
            Case {
                name: "csrf, store down",
                path: "/form",
                cookie: true,
                token: true,
                store_down: true,
                expect: StatusCode::SERVICE_UNAVAILABLE,
            },
        ];
        let store = SlowStore::default();
        let app = guarded().route("/login", post(login)).layer(
            SessionLayer::new(SessionConfig::web(Key::generate())).with_store(store.clone()),
        );

        let reply = send(&app, "/login", &[]).await;
        let set_cookie = reply.headers()[header::SET_COOKIE].to_str().unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let body = axum::body::to_bytes(reply.into_body(), usize::MAX)
            .await
            .unwrap();
        let token = String::from_utf8(body.to_vec()).unwrap();

        for case in cases {
            store.down.store(case.store_down, Ordering::SeqCst);
            let mut headers = Vec::new();
            if case.cookie {
                headers.push((header::COOKIE, cookie.as_str()));
            }
            if case.token {
                headers.push((CSRF_HEADER, token.as_str()));
            }
            let reply = send(&app, case.path, &headers).await;
            assert_eq!(reply.status(), case.expect, "{}", case.name);
        }
    }

    #[tokio::test]
    async fn route_guards_without_the_session_layer_answer_500() {
        let app = guarded();
        for path in ["/admin", "/form"] {
            let reply = send(&app, path, &[]).await;
            assert_eq!(reply.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        }
    }
}
