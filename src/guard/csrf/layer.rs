//! [`CsrfLayer`]: the header-only CSRF check as a route layer.

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use tower_layer::Layer;

use super::check_header;
use super::rules::is_safe;
use crate::guard::{sealed, CsrfService, Guard, GuardService};
use crate::rejection::{Capture, Captures};
use crate::session::Session;

/// The header-only CSRF check as a route layer, for routes whose handlers take no
/// [`CsrfProtected`](super::CsrfProtected) argument (JSON APIs called with `fetch` and an `X-CSRF-Token` header).
///
/// # Example
///
/// ```
/// use axum::{routing::{delete, post}, Router};
/// use axum_tessera::guard::CsrfLayer;
/// use axum_tessera::{Key, SessionConfig, SessionLayer};
///
/// let app: Router = Router::new()
///     .route("/items/{id}", delete(|| async { "gone" }))
///     .route("/items", post(|| async { "added" }))
///     .route_layer(CsrfLayer::new())
///     .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[must_use]
pub struct CsrfLayer {
    _private: (),
}

impl CsrfLayer {
    /// The layer; its rules are those of [`CsrfProtected`](super::CsrfProtected), with the token read from the
    /// `X-CSRF-Token` header only.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService::new(inner, *self)
    }
}

impl sealed::Sealed for CsrfLayer {
    fn exempt(&self, parts: &Parts) -> bool {
        is_safe(&parts.method)
    }

    fn refusal(&self, parts: &Parts, session: &Session) -> Option<Response> {
        check_header(parts, session)
            .err()
            .map(|r| r.captured(&Capture::of(parts)).into_response())
    }
}

impl Guard for CsrfLayer {}
