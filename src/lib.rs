//! Session layer for Axum and Tower.
//!
//! `axum-tessera` recognises a client from a signed token (a cookie, `Authorization: Bearer`
//! or a custom header), loads its session from a store only when a handler needs it, and
//! commits what the handler changed in one store call after the response.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::{get, post}, Router};
//! use axum_tessera::{Key, Principal, Session, SessionConfig, SessionLayer};
//!
//! async fn login(session: Session) -> &'static str {
//!     // verify the password elsewhere, then:
//!     session.login(Principal::user("alice"));
//!     "welcome"
//! }
//!
//! async fn whoami(session: Session) -> String {
//!     session.principal().map(|p| p.id().to_owned()).unwrap_or_default()
//! }
//!
//! let cfg = SessionConfig::web(Key::generate())
//!     .idle_timeout(Duration::from_secs(30 * 60))
//!     .absolute_timeout(Duration::from_secs(12 * 60 * 60));
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/me", get(whoami))
//!     .layer(SessionLayer::new(cfg));
//! ```
//!
//! # Security defaults
//!
//! * 256-bit IDs from the OS CSPRNG; stores key records by `SHA-256(id)`.
//! * Tokens are HMAC-SHA256 signed, bound to their purpose (cookie name or header transport)
//!   and issue time, compared in constant time; keys shorter than 32 bytes are refused.
//! * Cookies default to `__Host-` prefixed, `Secure`, `HttpOnly`, `SameSite=Lax`, `Path=/`.
//! * Login, logout and scope changes rotate the session ID; the old ID dies at commit.
//! * Idle and absolute timeouts are enforced server-side.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
#![warn(missing_debug_implementations)]

mod binding;
mod clock;
mod commit;
mod config;
pub mod csrf;
mod error;
mod event;
mod extract;
mod future;
pub mod guard;
mod key;
mod layer;
mod load;
mod origin;
mod principal;
mod record;
pub mod rejection;
mod scope;
mod service;
mod session;
mod state;
pub mod store;
pub mod token;
pub mod transport;
mod update;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    CookieConfig, SessionConfig, TokenSource, MAX_COOKIE_BYTES, SESSION_TOKEN_HEADER,
};
pub use cookie::SameSite;
pub use error::{
    CommitError, ConfigError, CookieConfigError, StoreError, StoreErrorKind, TimeoutConfigError,
};
pub use event::{EventKind, ExpiryReason, RejectReason, RotateReason, SessionEvent, Stats};
pub use extract::OptionalSession;
pub use future::ResponseFuture;
pub use guard::{
    safe_return_to, AnyScope, CsrfLayer, CsrfProtected, CsrfService, RequireScopes, ReturnTo,
    ScopeLayer, ScopeService, CSRF_FIELD, CSRF_HEADER,
};
/// Networks accepted by [`SessionConfig::trusted_proxies`].
pub use ipnet::IpNet;
pub use key::{Key, KeyRing, MIN_KEY_LEN};
pub use layer::SessionLayer;
pub use principal::Principal;
pub use record::{Patch, Record, SessionInfo};
pub use rejection::{
    BearerRequired, CommitFailed, CrossSiteRequest, CsrfBodyRejection, CsrfHeaderRequired,
    CsrfRejection, CsrfTokenInvalid, CsrfTokenMissing, InsecureLocalDevelopment, InsecureOrigin,
    MissingScope, MissingSessionLayer, OriginNotAllowed, RejectionInfo, ScopeRejection,
    SessionLimitReached, SessionRejection, SessionRequired, SessionTokenInvalid,
    SessionUnavailable, Unauthenticated,
};
pub use scope::{Authenticated, Scope, ScopeSet};
pub use service::SessionService;
pub use session::Session;
