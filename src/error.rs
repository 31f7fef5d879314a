//! Errors and rejections: configuration errors, store errors, and the HTTP rejections the
//! extractors and the commit step answer with.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// A configuration the layer refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The secret is shorter than 32 bytes.
    WeakKey {
        /// The length that was given.
        len: usize,
    },
    /// The environment variable holding the secret is unset or not UTF-8.
    MissingKey {
        /// The variable's name.
        var: String,
    },
    /// The cookie settings contradict each other or the cookie rules.
    Cookie(CookieConfigError),
    /// A timeout or fraction is out of range.
    Timeouts(TimeoutConfigError),
    /// No token source is configured.
    NoTokenSource,
    /// A trusted CSRF origin is not of the form `scheme://host[:port]`.
    InvalidOrigin {
        /// The origin as given.
        origin: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WeakKey { len } => write!(
                f,
                "session key is {len} bytes; at least {} are required",
                crate::key::MIN_KEY_LEN
            ),
            Self::MissingKey { var } => {
                write!(f, "session key variable {var} is not set (or is not UTF-8)")
            }
            Self::Cookie(why) => write!(f, "invalid session cookie settings: {why}"),
            Self::Timeouts(why) => write!(f, "invalid session timeouts: {why}"),
            Self::NoTokenSource => f.write_str("no session token source is configured"),
            Self::InvalidOrigin { origin } => write!(
                f,
                "trusted origin {origin:?} is not of the form scheme://host[:port]"
            ),
        }
    }
}

/// `Display` already names the case, so there is no `source`: the chain would repeat it.
impl StdError for ConfigError {}

/// Which cookie rule [`ConfigError::Cookie`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieConfigError {
    /// The cookie name is empty or not an HTTP token.
    InvalidName,
    /// A `__Host-` cookie without `Secure`.
    HostPrefixNeedsSecure,
    /// A `__Host-` cookie with a `Domain`.
    HostPrefixWithDomain,
    /// A `__Host-` cookie with a path other than `/`.
    HostPrefixNeedsRootPath,
    /// A `__Secure-` cookie without `Secure`.
    SecurePrefixNeedsSecure,
    /// `SameSite=None` without `Secure`.
    SameSiteNoneNeedsSecure,
    /// The path does not start with `/`, or holds `;` or spaces.
    InvalidPath,
    /// The domain holds `;`, spaces or control characters.
    InvalidDomain,
    /// Name, longest token and attributes together could exceed
    /// [`MAX_COOKIE_BYTES`](crate::MAX_COOKIE_BYTES).
    TooLarge,
}

impl fmt::Display for CookieConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidName => "the cookie name must be a non-empty HTTP token",
            Self::HostPrefixNeedsSecure => "a __Host- cookie must be Secure",
            Self::HostPrefixWithDomain => "a __Host- cookie must not set Domain",
            Self::HostPrefixNeedsRootPath => "a __Host- cookie must have Path=/",
            Self::SecurePrefixNeedsSecure => "a __Secure- cookie must be Secure",
            Self::SameSiteNoneNeedsSecure => "SameSite=None requires Secure",
            Self::InvalidPath => "the path must start with / and hold no ; or spaces",
            Self::InvalidDomain => "the domain holds invalid characters",
            Self::TooLarge => "the cookie could exceed 4096 bytes",
        })
    }
}

impl StdError for CookieConfigError {}

/// Which timeout rule [`ConfigError::Timeouts`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutConfigError {
    /// The idle or absolute timeout is shorter than one second.
    BelowOneSecond,
    /// The idle timeout is longer than the absolute timeout.
    IdleExceedsAbsolute,
    /// The refresh fraction is outside `0..=1`.
    RefreshOutOfRange,
    /// The allowed clock skew is negative.
    NegativeSkew,
}

impl fmt::Display for TimeoutConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BelowOneSecond => "timeouts must be at least one second",
            Self::IdleExceedsAbsolute => "the idle timeout exceeds the absolute timeout",
            Self::RefreshOutOfRange => "refresh_after must be between 0 and 1",
            Self::NegativeSkew => "clock skew must not be negative",
        })
    }
}

impl StdError for TimeoutConfigError {}

/// What kind of failure a store reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend could not be reached or answered with an error.
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
    /// A stored record could not be decoded.
    Corrupt,
    /// The per-principal session limit refused a new session.
    LimitReached,
}

/// A store operation failed. Cheap to clone: the cause is shared.
#[derive(Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// An error of `kind` caused by `source`.
    pub fn new(kind: StoreErrorKind, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            kind,
            source: Some(Arc::from(source.into())),
        }
    }

    /// An error of `kind` with no underlying cause.
    pub fn from_kind(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            StoreErrorKind::Unavailable => "session store unavailable",
            StoreErrorKind::Timeout => "session store timed out",
            StoreErrorKind::Corrupt => "session record could not be decoded",
            StoreErrorKind::LimitReached => "session limit for this principal reached",
        })
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Declares a rejection type in the style of axum-core's rejections: a `#[non_exhaustive]`
/// struct with a stable status and body, `IntoResponse`, `Display`, `Error` and a tracing event.
/// Optional `#[header = (NAME, "value")]` lines add fixed response headers (a 401's
/// `WWW-Authenticate` challenge).
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
        pub struct $name {
            source: Option<$crate::error::StoreError>,
        }

        impl $name {
            #[allow(dead_code)]
            pub(crate) fn with_source(source: $crate::error::StoreError) -> Self {
                Self { source: Some(source) }
            }

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
                ::tracing::debug!(
                    rejection = stringify!($name),
                    status = self.status().as_u16(),
                    error = ?self.source,
                    "session rejection"
                );
                #[allow(unused_mut)]
                let mut response = $crate::error::plain_response(self.status(), self.body_text());
                $(
                    response.headers_mut().insert(
                        ::http::header::$header,
                        ::http::HeaderValue::from_static($value),
                    );
                )*
                response
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($body)
            }
        }

        impl ::std::error::Error for $name {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                self.source.as_ref().map(|e| e as &(dyn ::std::error::Error + 'static))
            }
        }
    };
}
pub(crate) use define_rejection;

/// Declares a `#[non_exhaustive]` enum gathering rejections, in the style of axum's composite
/// rejections: `status()`, `body_text()`, `IntoResponse`, `Display`, `Error::source` and a
/// `From` impl per variant, all delegating to the variant.
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
                    $(Self::$variant(r) => Some(r),)+
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
pub(crate) use composite_rejection;

/// A short plain-text response: what every rejection of this crate answers with.
pub(crate) fn plain_response(status: StatusCode, body: &'static str) -> Response {
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
    /// The store could not load the session.
    pub struct SessionUnavailable;
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
    /// must not believe a change was saved when it was not.
    pub struct CommitFailed;
}

define_rejection! {
    #[status = CONFLICT]
    #[body = "session limit reached: log out of another session first"]
    /// A login would give the principal more sessions than the store's per-principal limit
    /// allows ([`LimitPolicy::Reject`](crate::store::LimitPolicy)); nothing was saved and the
    /// handler's response is replaced.
    pub struct SessionLimitReached;
}

/// Why a [`Session`](crate::Session) could not be extracted.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// See [`MissingSessionLayer`].
    MissingLayer(MissingSessionLayer),
    /// See [`SessionUnavailable`].
    Unavailable(SessionUnavailable),
    /// See [`SessionRequired`].
    Required(SessionRequired),
}

impl SessionRejection {
    /// The HTTP status of the inner rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingLayer(r) => r.status(),
            Self::Unavailable(r) => r.status(),
            Self::Required(r) => r.status(),
        }
    }

    /// The body text of the inner rejection.
    pub fn body_text(&self) -> &'static str {
        match self {
            Self::MissingLayer(r) => r.body_text(),
            Self::Unavailable(r) => r.body_text(),
            Self::Required(r) => r.body_text(),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingLayer(r) => r.into_response(),
            Self::Unavailable(r) => r.into_response(),
            Self::Required(r) => r.into_response(),
        }
    }
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.body_text())
    }
}

impl StdError for SessionRejection {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::MissingLayer(r) => Some(r),
            Self::Unavailable(r) => Some(r),
            Self::Required(r) => Some(r),
        }
    }
}

impl From<MissingSessionLayer> for SessionRejection {
    fn from(r: MissingSessionLayer) -> Self {
        Self::MissingLayer(r)
    }
}

impl From<SessionUnavailable> for SessionRejection {
    fn from(r: SessionUnavailable) -> Self {
        Self::Unavailable(r)
    }
}

impl From<SessionRequired> for SessionRejection {
    fn from(r: SessionRequired) -> Self {
        Self::Required(r)
    }
}
