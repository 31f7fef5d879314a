//! Errors: configuration errors, store errors and why a commit failed. The HTTP rejections
//! that answer requests are in [`rejection`](crate::rejection).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

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
    /// A SQL store's table name is not `[schema.]table` made of ASCII letters, digits and
    /// `_` (starting with a letter or `_`, at most 48 characters each).
    InvalidTableName {
        /// The name as given.
        name: String,
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
            Self::InvalidTableName { name } => write!(
                f,
                "session table name {name:?} is not of the form [schema.]table (ASCII letters, digits, _)"
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
    /// [`MAX_COOKIE_BYTES`](crate::config::MAX_COOKIE_BYTES).
    TooLarge,
}

impl fmt::Display for CookieConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidName => "the cookie name must be a non-empty HTTP token",
            Self::HostPrefixNeedsSecure => {
                "a __Host- cookie must be Secure; for plain-http development on localhost use \
                 SessionConfig::insecure_local_development()"
            }
            Self::HostPrefixWithDomain => "a __Host- cookie must not set Domain",
            Self::HostPrefixNeedsRootPath => "a __Host- cookie must have Path=/",
            Self::SecurePrefixNeedsSecure => {
                "a __Secure- cookie must be Secure; for plain-http development on localhost use \
                 SessionConfig::insecure_local_development()"
            }
            Self::SameSiteNoneNeedsSecure => {
                "SameSite=None requires Secure; keep Secure, or use SameSite::Lax (the default)"
            }
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
}

impl fmt::Display for TimeoutConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BelowOneSecond => "timeouts must be at least one second",
            Self::IdleExceedsAbsolute => {
                "the idle timeout exceeds the absolute timeout; raise absolute_timeout(..) or \
                 lower idle_timeout(..)"
            }
            Self::RefreshOutOfRange => "refresh_after must be between 0 and 1",
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
    /// The store does not offer this operation (an atomic [`Update`](crate::store::Update)
    /// on a store that cannot apply one).
    Unsupported,
    /// The session ended (destroyed, logged out, expired) before the operation reached it.
    SessionGone,
    /// A compare-and-set update kept losing to concurrent writers and gave up.
    Contended,
    /// A value to store does not serialise to JSON.
    InvalidValue,
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
            StoreErrorKind::Unsupported => "session store does not support this operation",
            StoreErrorKind::SessionGone => "session ended before the update reached it",
            StoreErrorKind::Contended => "session value kept changing; update gave up",
            StoreErrorKind::InvalidValue => "session value does not serialise to JSON",
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

/// So a handler can return `Result<_, StoreError>` and use `?` on
/// [`Session::increment`](crate::Session::increment),
/// [`Session::logout_everywhere`](crate::Session::logout_everywhere) and the like: a short
/// plain-text answer whose status says who can act on it. A refused login is 409, a value that
/// kept changing or is not JSON 409 / 500, a session ended by another request 409, anything
/// else (an unreachable or slow store, a corrupt record) 503. The cause is logged, never sent.
impl axum::response::IntoResponse for StoreError {
    fn into_response(self) -> axum::response::Response {
        use http::StatusCode;
        let status = match self.kind {
            StoreErrorKind::LimitReached
            | StoreErrorKind::SessionGone
            | StoreErrorKind::Contended => StatusCode::CONFLICT,
            StoreErrorKind::InvalidValue | StoreErrorKind::Unsupported => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        tracing::debug!(error = ?self, status = status.as_u16(), "store error answered");
        (
            status,
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.to_string(),
        )
            .into_response()
    }
}

/// Why the commit after a handler failed: the cause of
/// [`CommitFailed`](crate::rejection::CommitFailed).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CommitError {
    /// The store failed; the [`StoreError`] is the `source`.
    Store(StoreError),
    /// Another request ended the session (logout, destroy, expiry) before this one committed.
    SessionEnded,
    /// Three fresh session IDs in a row collided with stored ones.
    IdCollisions,
    /// The store panicked mid-commit.
    Aborted,
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Store(_) => "the store failed the session commit",
            Self::SessionEnded => "session ended by another request before commit",
            Self::IdCollisions => "session ID collided three times",
            Self::Aborted => "the session store panicked mid-commit",
        })
    }
}

impl StdError for CommitError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Store(err) => Some(err),
            Self::SessionEnded | Self::IdCollisions | Self::Aborted => None,
        }
    }
}
