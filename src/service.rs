//! [`SessionService`]: reads and verifies the token, puts a lazily loading [`Session`] into the
//! request, and hands the response to [`ResponseFuture`] for the commit.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use crate::event::{EventKind, Subject};
use crate::future::ResponseFuture;
use crate::origin::{is_loopback_request, request_authority};
use crate::rejection::{prefers_json, Capture, Captures, InsecureLocalDevelopment};
use crate::session::{RequestContext, Session, SessionHandle};
use crate::state::LayerState;
use crate::transport;

/// The middleware [`SessionLayer`](crate::SessionLayer) produces.
///
/// Per request it costs one HMAC when a token is present and nothing else until a handler
/// or extractor touches the session: routes that never do make no store call.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    state: Arc<LayerState>,
}

impl<S> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, state: Arc<LayerState>) -> Self {
        Self { inner, state }
    }
}

impl<S> SessionService<S> {
    /// The answer of a layer in insecure local-development mode to a request for a host that
    /// is not loopback: such a request means the switch reached a real deployment.
    fn refuse_non_loopback<B, F>(&self, req: &Request<B>) -> ResponseFuture<F> {
        tracing::error!(
            host = ?request_authority(req.uri(), req.headers()),
            "SessionLayer in insecure local-development mode refused a request for a host \
             that is not loopback; remove SessionConfig::insecure_local_development()"
        );
        let capture = Capture {
            wants_json: prefers_json(req.headers()),
            render: self.state.renderer().cloned(),
        };
        let response = InsecureLocalDevelopment::default()
            .captured(&capture)
            .into_response();
        ResponseFuture::refused(response)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if self.state.local_development() && !is_loopback_request(req.uri(), req.headers()) {
            return self.refuse_non_loopback(&req);
        }
        let now = self.state.now();
        let state = &self.state;
        let read = transport::read(state, req.headers(), now, &mut |reason| {
            state.events().emit(
                EventKind::TokenRejected(reason),
                Subject {
                    method: req.method(),
                    path: req.uri().path(),
                    session: None,
                    principal: None,
                    now,
                },
            );
        });
        // Nothing else is copied off the request until an extractor asks for the session.
        let client = self.state.binding().client(&req);
        let session = Session::new(
            self.state.clone(),
            RequestContext {
                now,
                incoming: read.incoming,
                presented: read.presented,
                client,
            },
        );
        req.extensions_mut().insert(SessionHandle(session.clone()));

        // Everything the handler and the commit log for this request carries the session's
        // short hash; computing it costs a SHA-256, so only when someone listens. Without a
        // subscriber at DEBUG, not even the disabled span is built: with tracing's `log`
        // feature on (axum's default `tower-log` turns it on) a disabled span still formats
        // its fields for `log` on every request.
        let span = if tracing::level_enabled!(tracing::Level::DEBUG) {
            let span = tracing::debug_span!(
                "session",
                method = %req.method(),
                path = req.uri().path(),
                session = tracing::field::Empty,
            );
            if !span.is_disabled() {
                if let Some(id) = session.incoming_id() {
                    span.record("session", tracing::field::display(id.store_key()));
                }
            }
            span
        } else {
            tracing::Span::none()
        };

        // `poll_ready` readied `self.inner` and the call happens right here, before this
        // returns: no clone is needed to keep the readiness contract (a clone would cost an
        // allocation per request for axum's boxed routes).
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture::new(future, session, span)
    }
}
