//! Rejection response types: what the session extractors, the guards and the commit step
//! answer with when they refuse a request.
//!
//! Each rejection is a `#[non_exhaustive]` type with a fixed [`status`](SessionRequired::status)
//! and [`body_text`](SessionRequired::body_text), `IntoResponse` (a short plain-text body and a
//! `tracing` debug event), `Display` (the body text) and `Error` (`source` is the cause, if
//! any). Enums such as [`SessionRejection`] gather the rejections one extractor can answer
//! with and delegate all of that to the rejection they hold.
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

use std::error::Error as StdError;
use std::fmt;

use axum::extract::rejection::{BytesRejection, FormRejection, JsonRejection, StringRejection};
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::error::{CommitError, StoreError};

/// Declares a rejection type in the style of axum-core's rejections: a `#[non_exhaustive]`
/// struct with a fixed status and body, `IntoResponse`, `Display`, `Error` and a tracing event.
///
/// Two forms: `pub struct Name;` has no cause (a unit-like struct, `Default`), and
/// `pub struct Name(Cause);` holds a typed cause, built with `Name::from_err(cause)` and returned
/// by `Error::source`. Optional `#[header = (NAME, "value")]` lines add fixed response headers
/// (a 401's `WWW-Authenticate` challenge).
macro_rules! define_rejection {
    (
        #[status = $status:ident]
        $(#[header = ($header:ident, $value:literal)])*
        #[body = $body:literal]
        $(#[$meta:meta])*
        pub struct $name:ident;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        #[non_exhaustive]
        pub struct $name;

        $crate::rejection::define_rejection!(@common $name, $status, $body, $(($header, $value))*);

        impl ::std::error::Error for $name {}
    };
    (
        #[status = $status:ident]
        $(#[header = ($header:ident, $value:literal)])*
        #[body = $body:literal]
        $(#[$meta:meta])*
        pub struct $name:ident($cause:ty);
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub struct $name {
            cause: $cause,
        }

        impl $name {
            /// The rejection, caused by `cause`.
            pub(crate) fn from_err(cause: $cause) -> Self {
                Self { cause }
            }
        }

        $crate::rejection::define_rejection!(@common $name, $status, $body, $(($header, $value))*);

        impl ::std::error::Error for $name {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                Some(&self.cause)
            }
        }
    };
    (@common $name:ident, $status:ident, $body:literal, $(($header:ident, $value:literal))*) => {
        impl $name {
            /// The HTTP status this rejection answers with.
            pub fn status(&self) -> ::http::StatusCode {
                ::http::StatusCode::$status
            }

            /// The plain-text body this rejection answers with.
            pub fn body_text(&self) -> &'static str {
                $body
            }
        }

        impl ::axum::response::IntoResponse for $name {
            fn into_response(self) -> ::axum::response::Response {
                $crate::rejection::respond(
                    stringify!($name),
                    self.status(),
                    self.body_text(),
                    &[$((::http::header::$header, $value)),*],
                    ::std::error::Error::source(&self),
                )
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($body)
            }
        }
    };
}
pub(crate) use define_rejection;

/// Declares a `#[non_exhaustive]` enum gathering rejections, in the style of axum's composite
/// rejections: `status()`, `body_text()`, `IntoResponse`, `Display`, `Error::source` and a
/// `From` impl per variant, all delegating to the variant. `source` is the variant's own
/// `source`, not the variant: its text is already this enum's `Display`.
macro_rules! composite_rejection {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident($inner:ty),
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant($inner),
            )+
        }

        impl $name {
            /// The HTTP status of the inner rejection.
            pub fn status(&self) -> ::http::StatusCode {
                match self {
                    $(Self::$variant(r) => r.status(),)+
                }
            }

            /// The body text of the inner rejection.
            pub fn body_text(&self) -> &'static str {
                match self {
                    $(Self::$variant(r) => r.body_text(),)+
                }
            }
        }

        impl ::axum::response::IntoResponse for $name {
            fn into_response(self) -> ::axum::response::Response {
                match self {
                    $(Self::$variant(r) => r.into_response(),)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.body_text())
            }
        }

        impl ::std::error::Error for $name {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                match self {
                    $(Self::$variant(r) => ::std::error::Error::source(r),)+
                }
            }
        }

        $(
            impl From<$inner> for $name {
                fn from(r: $inner) -> Self {
                    Self::$variant(r)
                }
            }
        )+
    };
}

/// What every rejection's `into_response` does: a debug event naming the rejection and its
/// cause, then a short plain-text response with the fixed `headers`.
pub(crate) fn respond(
    rejection: &'static str,
    status: StatusCode,
    body: &'static str,
    headers: &[(HeaderName, &'static str)],
    cause: Option<&(dyn StdError + 'static)>,
) -> Response {
    tracing::debug!(
        rejection,
        status = status.as_u16(),
        error = cause.map(tracing::field::debug),
        "session rejection"
    );
    let mut response = plain_response(status, body);
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

/// A short plain-text response.
fn plain_response(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

define_rejection! {
    #[status = INTERNAL_SERVER_ERROR]
    #[body = "session layer missing: was SessionLayer added to this route?"]
    /// A session extractor ran on a route without [`SessionLayer`](crate::SessionLayer).
    pub struct MissingSessionLayer;
}

define_rejection! {
    #[status = SERVICE_UNAVAILABLE]
    #[body = "session store unavailable"]
    /// The store could not load the session; the [`StoreError`] is the `source`.
    pub struct SessionUnavailable(StoreError);
}

define_rejection! {
    #[status = UNAUTHORIZED]
    #[body = "a valid session is required"]
    /// The layer requires an existing session (`require_existing`) and the request had none.
    pub struct SessionRequired;
}

define_rejection! {
    #[status = SERVICE_UNAVAILABLE]
    #[body = "session could not be saved; please retry"]
    /// The commit after the handler failed, so the handler's response is replaced: the client
    /// must not believe a change was saved when it was not. The [`CommitError`] is the
    /// `source`.
    pub struct CommitFailed(CommitError);
}

define_rejection! {
    #[status = CONFLICT]
    #[body = "session limit reached: log out of another session first"]
    /// A login would give the principal more sessions than the store's per-principal limit
    /// allows ([`LimitPolicy::Reject`](crate::store::LimitPolicy)); nothing was saved and the
    /// handler's response is replaced. The store's [`StoreError`] is the `source`.
    pub struct SessionLimitReached(StoreError);
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
    }
}

define_rejection! {
    #[status = FORBIDDEN]
    #[body = "CSRF token missing: send it in the X-CSRF-Token header or the csrf_token field"]
    /// An unsafe request carried no CSRF token where one is read.
    pub struct CsrfTokenMissing;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[body = "CSRF token invalid for this session"]
    /// The CSRF token does not belong to the request's session (another session's, stale
    /// after login or logout, or malformed).
    pub struct CsrfTokenInvalid;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[body = "cross-site request refused (Sec-Fetch-Site)"]
    /// The browser reported the request as coming from another site.
    pub struct CrossSiteRequest;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[body = "cross-origin request refused (Origin not allowed)"]
    /// The `Origin` header is `null`, malformed, repeated, or not an allowed origin.
    pub struct OriginNotAllowed;
}

composite_rejection! {
    /// Why [`CsrfProtected`](crate::CsrfProtected) or [`CsrfLayer`](crate::guard::CsrfLayer) refused a
    /// request.
    pub enum CsrfRejection {
        /// The session could not be loaded (or the layer is missing).
        Session(SessionRejection),
        /// See [`CsrfTokenMissing`].
        TokenMissing(CsrfTokenMissing),
        /// See [`CsrfTokenInvalid`].
        TokenInvalid(CsrfTokenInvalid),
        /// See [`CrossSiteRequest`].
        CrossSite(CrossSiteRequest),
        /// See [`OriginNotAllowed`].
        Origin(OriginNotAllowed),
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
    #[body = "authentication required"]
    /// A scope guard ran for a request without a logged-in principal, on a layer whose tokens
    /// travel in cookies.
    pub struct Unauthenticated;
}

define_rejection! {
    #[status = UNAUTHORIZED]
    #[header = (WWW_AUTHENTICATE, "Bearer")]
    #[body = "authentication required"]
    /// A scope guard ran for a request without a logged-in principal, on a layer whose first
    /// token source is a bearer or custom header: answers with `WWW-Authenticate: Bearer`.
    pub struct BearerRequired;
}

define_rejection! {
    #[status = FORBIDDEN]
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
/// refused a request: answers with that status and its canonical reason instead of the
/// 401 / 403 of the [`ScopeRejection`] it stands for, which is the `source`.
#[derive(Debug)]
#[non_exhaustive]
pub struct StatusRefusal {
    status: StatusCode,
    rejection: ScopeRejection,
}

impl StatusRefusal {
    /// `rejection`, answered with `status`.
    pub(crate) fn new(status: StatusCode, rejection: ScopeRejection) -> Self {
        Self { status, rejection }
    }

    /// The HTTP status this refusal answers with: the layer's.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The plain-text body this refusal answers with: the status's canonical reason.
    pub fn body_text(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("refused")
    }
}

impl IntoResponse for StatusRefusal {
    fn into_response(self) -> Response {
        tracing::debug!(
            rejection = %self.rejection,
            status = self.status.as_u16(),
            "scope guard refusal"
        );
        plain_response(self.status, self.body_text())
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
                Some("Bearer"),
            ),
            case(
                "cookie login",
                StatusCode::UNAUTHORIZED,
                ScopeRejection::from(Unauthenticated::default()),
                None,
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
