//! Rejection response types: what the session extractors, the guards and the commit step
//! answer with when they refuse a request.
//!
//! Each rejection is a `#[non_exhaustive]` type with a fixed [`status`](SessionRequired::status),
//! a stable snake_case [`code`](SessionRequired::code) and a short
//! [`body_text`](SessionRequired::body_text), `IntoResponse`, `Display` (the body text) and
//! `Error` (`source` is the cause, if any). Enums such as [`SessionRejection`] gather the
//! rejections one extractor can answer with and delegate all of that to the rejection they
//! hold.
//!
//! # Responses
//!
//! What a rejection answers with is decided from the request when the extractor or guard
//! builds it (`IntoResponse` never sees the request):
//!
//! * a client whose `Accept` prefers `application/json` gets
//!   `{"error": "<code>", "message": "<body text>"}` as `application/json`; others get the
//!   body text as `text/plain`;
//! * every 401 carries `WWW-Authenticate`: `Bearer realm="session"` (RFC 6750) on layers that
//!   read a bearer or custom header token, `Cookie realm="session"` on cookie-only layers
//!   (there is no registered scheme for cookie logins; browsers do not prompt for it). When
//!   the request presented a token that does not authenticate (forged, expired, revoked,
//!   malformed: alike, so the answer is no oracle) the challenge adds
//!   `error="invalid_token"` and the code is `invalid_token`;
//! * a layer with a [render hook](crate::SessionConfig::render_rejection) answers with
//!   whatever the hook makes of the [`RejectionInfo`].
//!
//! Rejections that come from axum's own extractors (a form that does not deserialise inside
//! [`CsrfProtected<Form<T>>`](crate::CsrfProtected)) keep axum's answer.
//!
//! # Example
//!
//! ```
//! use axum::http::StatusCode;
//! use axum::response::{IntoResponse, Response};
//! use axum_tessera::rejection::SessionRejection;
//! use axum_tessera::Session;
//!
//! // Take the rejection instead of letting axum answer with it.
//! async fn profile(session: Result<Session, SessionRejection>) -> Response {
//!     match session {
//!         Ok(session) => match session.principal() {
//!             Some(p) => format!("hello {}", p.id()).into_response(),
//!             None => "hello stranger".into_response(),
//!         },
//!         Err(SessionRejection::Unavailable(_)) => {
//!             (StatusCode::SERVICE_UNAVAILABLE, "try again in a minute").into_response()
//!         }
//!         Err(other) => other.into_response(),
//!     }
//! }
//! ```

#[macro_use]
mod macros;
mod reply;

use std::error::Error as StdError;
use std::fmt;

use axum::extract::rejection::{BytesRejection, FormRejection, JsonRejection, StringRejection};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::{CommitError, StoreError};

pub(crate) use macros::{define_rejection, with_challenge, Challenged};
pub use reply::RejectionInfo;
pub(crate) use reply::{
    prefers_json, prefers_json_in, Capture, Captures, Challenge, Renderer, Reply, Scheme,
};
use reply::{respond, RejectionParts};

define_rejection! {
    #[status = INTERNAL_SERVER_ERROR]
    #[code = "session_layer_missing"]
    #[body = "session layer missing: was SessionLayer added to this route? For a guard, add .route_layer(guard) before .layer(SessionLayer::new(..)): layers added later run first"]
    /// A session extractor or guard ran on a route without [`SessionLayer`](crate::SessionLayer)
    /// in front of it: not added at all, or a guard added with `.route_layer(..)` after the
    /// session layer's `.layer(..)` (the later one runs first, before there is a session).
    pub struct MissingSessionLayer;
}

define_rejection! {
    #[status = SERVICE_UNAVAILABLE]
    #[code = "session_store_unavailable"]
    #[body = "session store unavailable"]
    /// The store could not load the session; the [`StoreError`] is the `source`.
    pub struct SessionUnavailable(StoreError);
}

define_rejection! {
    #[status = UNAUTHORIZED]
    #[code = "session_required"]
    #[challenge = Cookie]
    #[body = "a valid session is required"]
    /// The layer requires an existing session
    /// ([`require_existing`](crate::SessionConfig::require_existing)) and the request had none.
    pub struct SessionRequired;
}

define_rejection! {
    #[status = UNAUTHORIZED]
    #[code = "invalid_token"]
    #[challenge = Bearer]
    #[body = "session token invalid or expired"]
    /// [`Session`](crate::Session) refused a request whose bearer or header token does not
    /// authenticate (forged, expired, revoked or malformed: alike), rather than hand it a
    /// fresh anonymous session the client would take for its own. Answers with
    /// `WWW-Authenticate: Bearer realm="session", error="invalid_token"`; the client drops the
    /// token and logs in again. Stale cookies are not refused: a browser recovers by itself.
    pub struct SessionTokenInvalid;
}

define_rejection! {
    #[status = SERVICE_UNAVAILABLE]
    #[code = "session_not_saved"]
    #[body = "session could not be saved; please retry"]
    /// The commit after the handler failed, so the handler's response is replaced: the client
    /// must not believe a change was saved when it was not. The [`CommitError`] is the
    /// `source`.
    pub struct CommitFailed(CommitError);
}

define_rejection! {
    #[status = CONFLICT]
    #[code = "session_limit_reached"]
    #[body = "session limit reached: log out of another session first"]
    /// A login would give the principal more sessions than the store's per-principal limit
    /// allows ([`LimitPolicy::Reject`](crate::store::LimitPolicy)); nothing was saved and the
    /// handler's response is replaced. The store's [`StoreError`] is the `source`.
    pub struct SessionLimitReached(StoreError);
}

define_rejection! {
    #[status = INTERNAL_SERVER_ERROR]
    #[code = "insecure_local_development"]
    #[body = "this session layer is in insecure local-development mode and serves only loopback hosts (localhost, 127.0.0.1, [::1]): remove SessionConfig::insecure_local_development() in production"]
    /// A layer configured with
    /// [`insecure_local_development`](crate::SessionConfig::insecure_local_development) got a
    /// request whose `Host` is not a loopback name: the development switch must never serve
    /// a real site, so every such request is refused.
    pub struct InsecureLocalDevelopment;
}

composite_rejection! {
    /// Why a [`Session`](crate::Session) could not be extracted.
    pub enum SessionRejection {
        /// See [`MissingSessionLayer`].
        MissingLayer(MissingSessionLayer),
        /// See [`SessionUnavailable`].
        Unavailable(SessionUnavailable),
        /// See [`SessionRequired`].
        Required(SessionRequired),
        /// See [`SessionTokenInvalid`].
        TokenInvalid(SessionTokenInvalid),
    }
}

define_rejection! {
    #[status = FORBIDDEN]
    #[code = "csrf_token_missing"]
    #[body = "CSRF token missing: send it in the X-CSRF-Token header or the csrf_token field"]
    /// An unsafe request carried no CSRF token where one is read.
    pub struct CsrfTokenMissing;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[code = "csrf_header_required"]
    #[body = "CSRF token missing: this check reads only the X-CSRF-Token header; send the token there, or take CsrfProtected<Form<T>> to read the csrf_token form field"]
    /// A header-only check (`CsrfProtected` without a body extractor, or
    /// [`CsrfLayer`](crate::guard::CsrfLayer)) found no `X-CSRF-Token` on a form post, which may well
    /// carry the token in its `csrf_token` field: this check does not read bodies.
    pub struct CsrfHeaderRequired;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[code = "csrf_token_invalid"]
    #[body = "CSRF token invalid for this session"]
    /// The CSRF token does not belong to the request's session (another session's, stale
    /// after login or logout, or malformed).
    pub struct CsrfTokenInvalid;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[code = "cross_site_request"]
    #[body = "cross-site request refused (Sec-Fetch-Site)"]
    /// The browser reported the request as coming from another site.
    pub struct CrossSiteRequest;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[code = "origin_not_allowed"]
    #[body = "cross-origin request refused (Origin not allowed)"]
    /// The `Origin` header is `null`, malformed, repeated, or not an allowed origin.
    pub struct OriginNotAllowed;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[code = "insecure_origin"]
    #[body = "cross-origin request refused: the page was loaded over http but the session cookie is Secure; serve the site over https, or for plain-http development on localhost use SessionConfig::insecure_local_development()"]
    /// The `Origin` is the allowed one but with `http` where the `Secure` session cookie
    /// calls for `https`: the usual sign of a site developed over plain http.
    pub struct InsecureOrigin;
}

composite_rejection! {
    /// Why [`CsrfProtected`](crate::CsrfProtected) or [`CsrfLayer`](crate::guard::CsrfLayer) refused a
    /// request.
    pub enum CsrfRejection {
        /// The session could not be loaded (or the layer is missing).
        Session(SessionRejection),
        /// See [`CsrfTokenMissing`].
        TokenMissing(CsrfTokenMissing),
        /// See [`CsrfHeaderRequired`].
        HeaderRequired(CsrfHeaderRequired),
        /// See [`CsrfTokenInvalid`].
        TokenInvalid(CsrfTokenInvalid),
        /// See [`CrossSiteRequest`].
        CrossSite(CrossSiteRequest),
        /// See [`OriginNotAllowed`].
        Origin(OriginNotAllowed),
        /// See [`InsecureOrigin`].
        InsecureOrigin(InsecureOrigin),
    }
}

/// Why [`CsrfProtected<E>`](crate::CsrfProtected) with a body extractor `E` refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum CsrfBodyRejection<R> {
    /// The CSRF check failed.
    Csrf(CsrfRejection),
    /// The body could not be read to look for the `csrf_token` field (too large, say).
    Body(BytesRejection),
    /// The CSRF check passed and `E` rejected the request.
    Inner(R),
}

/// Only the CSRF refusals are ours to render; axum's keep axum's answer.
impl<R> Captures for CsrfBodyRejection<R> {
    fn capture_mut(&mut self, capture: &Capture) {
        if let Self::Csrf(r) = self {
            r.capture_mut(capture);
        }
    }
}

/// `status()` and `body_text()` for the rejection of each body extractor that
/// [`CsrfProtected<E>`](crate::CsrfProtected) accepts; `body_text` is a `String` as in axum.
macro_rules! body_rejection_parts {
    ($($inner:ty),+ $(,)?) => {
        $(
            impl CsrfBodyRejection<$inner> {
                /// The HTTP status of the inner rejection.
                pub fn status(&self) -> StatusCode {
                    match self {
                        Self::Csrf(r) => r.status(),
                        Self::Body(r) => r.status(),
                        Self::Inner(r) => r.status(),
                    }
                }

                /// The body text of the inner rejection.
                pub fn body_text(&self) -> String {
                    match self {
                        Self::Csrf(r) => r.body_text().to_owned(),
                        Self::Body(r) => r.body_text(),
                        Self::Inner(r) => r.body_text(),
                    }
                }
            }
        )+
    };
}

body_rejection_parts!(
    FormRejection,
    JsonRejection,
    BytesRejection,
    StringRejection
);

impl<R: IntoResponse> IntoResponse for CsrfBodyRejection<R> {
    fn into_response(self) -> Response {
        match self {
            Self::Csrf(r) => r.into_response(),
            Self::Body(r) => r.into_response(),
            Self::Inner(r) => r.into_response(),
        }
    }
}

impl<R: fmt::Display> fmt::Display for CsrfBodyRejection<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Csrf(r) => r.fmt(f),
            Self::Body(r) => r.fmt(f),
            Self::Inner(r) => r.fmt(f),
        }
    }
}

/// As for the composite enums: `source` is the inner rejection's, whose text is already this
/// one's `Display`.
impl<R: StdError + 'static> StdError for CsrfBodyRejection<R> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Csrf(r) => r.source(),
            Self::Body(r) => r.source(),
            Self::Inner(r) => r.source(),
        }
    }
}

define_rejection! {
    #[status = UNAUTHORIZED]
    #[code = "authentication_required"]
    #[challenge = Cookie]
    #[body = "authentication required"]
    /// A scope guard ran for a request without a logged-in principal, on a layer whose tokens
    /// travel in cookies only: answers with `WWW-Authenticate: Cookie realm="session"`.
    pub struct Unauthenticated;
}

define_rejection! {
    #[status = UNAUTHORIZED]
    #[code = "authentication_required"]
    #[challenge = Bearer]
    #[body = "authentication required"]
    /// A scope guard ran for a request without a logged-in principal, on a layer that reads a
    /// bearer or custom header token: answers with `WWW-Authenticate: Bearer realm="session"`
    /// (RFC 6750).
    pub struct BearerRequired;
}

challenged!(
    SessionRequired,
    SessionTokenInvalid,
    Unauthenticated,
    BearerRequired
);

/// A [`StatusRefusal`] set to answer 401 is a 401 like any other: it carries the challenge.
impl Challenged for StatusRefusal {
    fn reply_mut(&mut self) -> &mut Reply {
        &mut self.reply
    }
}

define_rejection! {
    #[status = FORBIDDEN]
    #[code = "insufficient_scope"]
    #[body = "missing required scope"]
    /// The principal is logged in but lacks a scope the guard requires.
    pub struct MissingScope;
}

composite_rejection! {
    /// Why a [`RequireScopes`](crate::RequireScopes) or [`AnyScope`](crate::AnyScope) guard
    /// refused a request.
    pub enum ScopeRejection {
        /// The session could not be loaded (or the layer is missing).
        Session(SessionRejection),
        /// See [`Unauthenticated`].
        Unauthenticated(Unauthenticated),
        /// See [`BearerRequired`].
        BearerRequired(BearerRequired),
        /// See [`MissingScope`].
        MissingScope(MissingScope),
    }
}

/// A [`ScopeLayer`](crate::guard::ScopeLayer) set up with [`status`](crate::guard::ScopeLayer::status)
/// refused a request: answers with that status and its canonical reason as plain text (also
/// to JSON clients: it stands in for a generic answer) instead of the 401 / 403 of the
/// [`ScopeRejection`] it stands for, which is the `source`.
#[derive(Debug)]
#[non_exhaustive]
pub struct StatusRefusal {
    status: StatusCode,
    rejection: ScopeRejection,
    reply: Reply,
}

impl StatusRefusal {
    /// `rejection`, answered with `status`.
    pub(crate) fn new(status: StatusCode, rejection: ScopeRejection) -> Self {
        Self {
            status,
            rejection,
            reply: Reply::default(),
        }
    }

    /// The HTTP status this refusal answers with: the layer's.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code this refusal answers with: the status's reason in snake_case
    /// (`not_found`), so the body tells no more than the status does.
    pub fn code(&self) -> &'static str {
        match self.status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::GONE => "gone",
            _ => "refused",
        }
    }

    /// The plain-text body this refusal answers with: the status's canonical reason.
    pub fn body_text(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("refused")
    }
}

impl Captures for StatusRefusal {
    fn capture_mut(&mut self, capture: &Capture) {
        self.reply.capture(capture);
        self.rejection.capture_mut(capture);
    }
}

impl IntoResponse for StatusRefusal {
    fn into_response(self) -> Response {
        tracing::debug!(
            rejection = %self.rejection,
            status = self.status.as_u16(),
            "scope guard refusal"
        );
        respond(
            "StatusRefusal",
            RejectionParts {
                status: self.status,
                code: self.code(),
                message: self.body_text(),
            },
            // The status stands in for a generic answer (a 404 hides the route), so the body
            // is the plain reason even for JSON clients; the render hook still applies.
            &self.reply.plain(),
            None,
        )
    }
}

impl fmt::Display for StatusRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.body_text())
    }
}

/// Unlike a composite's, the `source` is the rejection itself: its text is not this one's.
impl StdError for StatusRefusal {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.rejection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreErrorKind;
    use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};

    /// Every `Display` in the `source` chain of `err`, outermost first.
    fn chain(err: &(dyn StdError + 'static)) -> Vec<String> {
        let mut texts = Vec::new();
        let mut next = Some(err);
        while let Some(err) = next {
            texts.push(err.to_string());
            next = err.source();
        }
        texts
    }

    #[test]
    fn source_chains_name_each_cause_once() {
        struct Case {
            name: &'static str,
            rejection: Box<dyn StdError>,
            expect: &'static [&'static str],
        }
        let timeout =
            || SessionUnavailable::from_err(StoreError::from_kind(StoreErrorKind::Timeout));
        let cases = [
            Case {
                name: "session, with a cause",
                rejection: Box::new(SessionRejection::from(timeout())),
                expect: &["session store unavailable", "session store timed out"],
            },
            Case {
                name: "nested composite",
                rejection: Box::new(CsrfRejection::from(SessionRejection::from(timeout()))),
                expect: &["session store unavailable", "session store timed out"],
            },
            Case {
                name: "commit, store failed",
                rejection: Box::new(CommitFailed::from_err(CommitError::Store(
                    StoreError::from_kind(StoreErrorKind::Unavailable),
                ))),
                expect: &[
                    "session could not be saved; please retry",
                    "the store failed the session commit",
                    "session store unavailable",
                ],
            },
            Case {
                name: "commit, session ended",
                rejection: Box::new(CommitFailed::from_err(CommitError::SessionEnded)),
                expect: &[
                    "session could not be saved; please retry",
                    "session ended by another request before commit",
                ],
            },
            Case {
                name: "no cause",
                rejection: Box::new(ScopeRejection::from(MissingScope::default())),
                expect: &["missing required scope"],
            },
            Case {
                name: "status refusal",
                rejection: Box::new(StatusRefusal::new(
                    StatusCode::NOT_FOUND,
                    MissingScope::default().into(),
                )),
                expect: &["Not Found", "missing required scope"],
            },
            Case {
                name: "body composite",
                rejection: Box::new(CsrfBodyRejection::<BytesRejection>::Csrf(
                    CsrfTokenInvalid::default().into(),
                )),
                expect: &["CSRF token invalid for this session"],
            },
        ];
        for case in cases {
            assert_eq!(chain(case.rejection.as_ref()), case.expect, "{}", case.name);
        }
    }

    #[test]
    fn responses_carry_status_content_type_and_fixed_headers() {
        struct Case {
            name: &'static str,
            status: StatusCode,
            response: Response,
            www_authenticate: Option<&'static str>,
        }
        fn case<R: IntoResponse>(
            name: &'static str,
            status: StatusCode,
            rejection: R,
            www_authenticate: Option<&'static str>,
        ) -> Case {
            Case {
                name,
                status,
                response: rejection.into_response(),
                www_authenticate,
            }
        }
        let cases = [
            case(
                "missing layer",
                StatusCode::INTERNAL_SERVER_ERROR,
                MissingSessionLayer::default(),
                None,
            ),
            case(
                "bearer",
                StatusCode::UNAUTHORIZED,
                BearerRequired::default(),
                Some(r#"Bearer realm="session""#),
            ),
            case(
                "bearer, a token was presented",
                StatusCode::UNAUTHORIZED,
                with_challenge(
                    SessionTokenInvalid::default(),
                    Challenge {
                        scheme: Scheme::Bearer,
                        invalid_token: true,
                    },
                ),
                Some(r#"Bearer realm="session", error="invalid_token""#),
            ),
            case(
                "cookie login",
                StatusCode::UNAUTHORIZED,
                ScopeRejection::from(Unauthenticated::default()),
                Some(r#"Cookie realm="session""#),
            ),
            case(
                "status refusal",
                StatusCode::NOT_FOUND,
                StatusRefusal::new(StatusCode::NOT_FOUND, Unauthenticated::default().into()),
                None,
            ),
            case(
                "limit",
                StatusCode::CONFLICT,
                SessionLimitReached::from_err(StoreError::from_kind(StoreErrorKind::LimitReached)),
                None,
            ),
        ];
        for case in cases {
            let r = &case.response;
            assert_eq!(r.status(), case.status, "{}", case.name);
            assert_eq!(
                r.headers()[CONTENT_TYPE],
                "text/plain; charset=utf-8",
                "{}",
                case.name
            );
            assert_eq!(
                r.headers()
                    .get(WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                case.www_authenticate,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn body_rejection_reports_the_inner_status() {
        let csrf = CsrfBodyRejection::<FormRejection>::Csrf(CrossSiteRequest::default().into());
        assert_eq!(csrf.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            csrf.body_text(),
            "cross-site request refused (Sec-Fetch-Site)"
        );
    }
}
