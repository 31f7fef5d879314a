//! Session layer for Axum and Tower.
//!
//! `axum-tessera` recognises a client from a signed token (a cookie, `Authorization: Bearer`
//! or a custom header), loads its session from a store only when a handler needs it, and
//! commits what the handler changed in one store call after the response.
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! use axum_tessera::{Key, Principal, Session, SessionConfig, SessionLayer};
//! use time::Duration;
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
//!     .idle_timeout(Duration::minutes(30))
//!     .absolute_timeout(Duration::hours(12));
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
#![cfg_attr(docsrs, feature(doc_cfg))]

mod binding;
pub mod browser;
pub mod clock;
mod commit;
pub mod config;
mod csrf;
pub mod error;
pub mod event;
mod extract;
mod flash;
pub mod future;
pub mod guard;
pub mod key;
mod layer;
mod load;
mod origin;
mod principal;
mod record;
pub mod rejection;
mod scope;
pub mod service;
mod session;
mod state;
pub mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod token;
mod transport;
mod update;

// The crate root names what a handler or `main` writes; everything else lives in its
// module (`store`, `rejection`, `event`, `guard`, `config`, ...).
pub use config::{CookieConfig, SessionConfig};
pub use cookie::SameSite;
pub use error::{ConfigError, StoreError};
pub use event::{EventKind, SessionEvent, Stats};
pub use extract::OptionalSession;
pub use flash::{Flash, FlashLevel};
pub use guard::{AnyScope, CsrfProtected, RequireScopes};
pub use key::{Key, KeyRing};
pub use layer::SessionLayer;
pub use principal::Principal;
pub use record::SessionInfo;
pub use scope::{Authenticated, Scope};
pub use session::Session;

/// Internals exposed to the fuzz targets in `fuzz/` only; not part of the API.
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::csrf::{mask, unmask, CSRF_TOKEN_LEN};
    pub use crate::token::{SessionId, TokenCodec, TokenError, ID_LEN, MAX_TOKEN_LEN};
    pub use crate::transport::cookie_values;
}
