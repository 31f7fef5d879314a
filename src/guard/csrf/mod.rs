//! CSRF protection: the [`CsrfProtected`] extractor (header only, or wrapping a body
//! extractor), its route-layer form [`CsrfLayer`], and the checks both run on the session.
//!
//! The rules that read only the request are in `rules`; the refusals are in
//! [`rejection`](crate::rejection).
//!
//! # Example
//!
//! ```
//! use axum::{routing::post, Form, Json, Router};
//! use axum_tessera::{CsrfProtected, Key, Session, SessionConfig, SessionLayer};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Comment {
//!     text: String,
//! }
//!
//! // A form post: the token comes from the hidden `csrf_token` field (or the header).
//! async fn comment(session: Session, CsrfProtected(Form(c)): CsrfProtected<Form<Comment>>) -> String {
//!     format!("saved {}", c.text)
//! }
//!
//! // A fetch() call without a body the guard needs to read: header only.
//! async fn delete(_: CsrfProtected) -> &'static str {
//!     "deleted"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/comment", post(comment))
//!     .route("/delete", post(delete))
//!     .layer(SessionLayer::new(
//!         SessionConfig::web(Key::generate()).trusted_origins(["https://example.com"]),
//!     ));
//! ```

mod extractor;
mod layer;
mod rules;

pub use extractor::CsrfProtected;
pub use layer::CsrfLayer;
pub use rules::{CSRF_FIELD, CSRF_HEADER};

use http::request::Parts;

use crate::event::EventKind;
use crate::rejection::{
    CsrfHeaderRequired, CsrfRejection, CsrfTokenInvalid, CsrfTokenMissing, OriginNotAllowed,
};
use crate::session::Session;
use rules::{check_origin, header_tokens, is_form, is_safe, Allowed};

/// Counts a refusal and tells the layer's event hooks, naming the missing piece.
fn reported(session: &Session, rejection: CsrfRejection) -> CsrfRejection {
    let why = match &rejection {
        CsrfRejection::TokenMissing(_) | CsrfRejection::HeaderRequired(_) => "token missing",
        CsrfRejection::TokenInvalid(_) => "token invalid",
        CsrfRejection::CrossSite(_) => "cross-site (Sec-Fetch-Site)",
        CsrfRejection::Origin(_) | CsrfRejection::InsecureOrigin(_) => "origin not allowed",
        CsrfRejection::Session(_) => return rejection,
    };
    session.report_now(EventKind::CsrfRejected(why));
    rejection
}

/// Everything but the token: whether the request needs one (`false` when exempt), or why it
/// is refused outright.
fn needs_token(parts: &Parts, session: &Session) -> Result<bool, CsrfRejection> {
    if is_safe(&parts.method) {
        return Ok(false);
    }
    let layer = session.layer();
    let exempt = match session.token_source() {
        Some(source) => !source.is_ambient(),
        None => !layer.sources().iter().any(|s| s.is_ambient()),
    };
    if exempt {
        return Ok(false);
    }
    let allowed = Allowed {
        trusted: layer.trusted_origins(),
        secure: layer.cookie().is_secure(),
        loopback_http: layer.local_development(),
    };
    check_origin(parts, allowed).map_err(|r| reported(session, r))?;
    // Consent mode: a visitor who has not consented holds no session a token could be bound
    // to, so the origin checks above are the whole check, and the browser must have shown
    // its origin (`Sec-Fetch-Site` or `Origin`) for them to mean anything.
    if layer.require_consent() && session.token_source().is_none() {
        let shown = ["sec-fetch-site", "origin"]
            .iter()
            .any(|name| parts.headers.contains_key(*name));
        if !shown {
            return Err(reported(session, OriginNotAllowed::default().into()));
        }
        return Ok(false);
    }
    Ok(true)
}

/// The Origin rule of a WebSocket upgrade ([`LiveUpgrade`](crate::live::LiveUpgrade)): an
/// upgrade not authenticated by a bearer or header token must show an allowed `Origin`.
/// Reads only the request and the verified token, never the store.
pub(crate) fn check_upgrade_origin(parts: &Parts, session: &Session) -> Result<(), CsrfRejection> {
    let upgrade = parts
        .headers
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return Ok(());
    }
    if session.token_source().is_some_and(|s| !s.is_ambient()) {
        return Ok(());
    }
    // Browsers always send Origin with a WebSocket handshake: one without it is not a
    // browser, and a cookie is no credential for a client that is not.
    if !parts.headers.contains_key(http::header::ORIGIN) {
        return Err(reported(session, OriginNotAllowed::default().into()));
    }
    let layer = session.layer();
    let allowed = Allowed {
        trusted: layer.trusted_origins(),
        secure: layer.cookie().is_secure(),
        loopback_http: layer.local_development(),
    };
    check_origin(parts, allowed).map_err(|r| reported(session, r))
}

/// Rule 4: some candidate must verify; `Missing` when there was none at all.
fn check_tokens<'a>(
    session: &Session,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Result<(), CsrfRejection> {
    let mut seen = false;
    for candidate in candidates {
        seen = true;
        if session.verify_csrf_token(candidate) {
            return Ok(());
        }
    }
    let rejection = if seen {
        CsrfTokenInvalid::default().into()
    } else {
        CsrfTokenMissing::default().into()
    };
    Err(reported(session, rejection))
}

/// The header-only check on a loaded session: what [`CsrfLayer`] and `CsrfProtected<()>` run.
fn check_header(parts: &Parts, session: &Session) -> Result<(), CsrfRejection> {
    if !needs_token(parts, session)? {
        return Ok(());
    }
    // A form post probably carries the token in its field, which this check never reads:
    // say what to do instead of asking for the field the client sent.
    if header_tokens(&parts.headers).next().is_none() && is_form(&parts.headers) {
        return Err(reported(session, CsrfHeaderRequired::default().into()));
    }
    check_tokens(session, header_tokens(&parts.headers))
}
