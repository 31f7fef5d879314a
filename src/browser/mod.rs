//! The browser side of a session: [`session_api`], a router to nest under your
//! [`SessionLayer`](crate::SessionLayer), and the dependency-free JavaScript client it serves
//! (`client.js`: CSRF on `fetch`, an expiry warning, extension on activity, cross-tab sync).
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_tessera::{browser, Key, SessionConfig, SessionLayer};
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "home" }))
//!     .nest("/api/session", browser::session_api())
//!     .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
//! ```
//!
//! and in the page:
//!
//! ```html
//! <script type="module">
//!   import * as session from "/api/session/client.js";
//!   session.install(); // fetch() now sends X-CSRF-Token on same-origin unsafe requests
//!   addEventListener("session-warning", (e) => showBanner(e.detail.remaining_seconds));
//!   addEventListener("session-expired", () => location.assign("/login"));
//!   session.start({ warnBefore: 60 });
//! </script>
//! ```
//!
//! # Routes
//!
//! | route | answer |
//! |---|---|
//! | `GET info` | `{"session": {...}}` (below), or `{"session": null}` without a stored session |
//! | `GET csrf-token` | `{"csrf_token": "..."}`; 403 for `Sec-Fetch-Site` other than `same-origin` / `none` |
//! | `POST extend` | CSRF-checked ([`CsrfProtected`]); resets the idle clock, answers like `info`; 401 without a session |
//! | `POST clear` | CSRF-checked; destroys the session, clears the cookie, `{"cleared": true}` |
//! | `GET client.js` | the client, `text/javascript`, with an `ETag` (304 on `If-None-Match`) |
//!
//! The session object: `id_hash` (a short hash, never the ID or a token), `authenticated`,
//! `user` (the principal ID or `null`), `created_at`, `last_activity`, `expires_at` (RFC 3339),
//! `elapsed_seconds`, `remaining_seconds` (until expiry, idle or absolute, whichever is
//! first), `absolute_remaining_seconds`, `is_active`.
//!
//! Reading `info` or `csrf-token` is not the user's activity: those routes never write a
//! sliding refresh, so a page that polls them does not keep an idle session alive. Only
//! `extend` and the application's own routes do. Every JSON answer carries
//! `Cache-Control: no-store`.
//!
//! # Security
//!
//! The router must run under the application's `SessionLayer` (a missing layer is a 500
//! naming it). `csrf-token` also answers `X-Content-Type-Options: nosniff`, so another site
//! cannot load it as a script; browsers keep its JSON from other origins anyway.

use axum::extract::FromRequestParts;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use std::sync::LazyLock;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::clock::to_datetime;
use crate::guard::CsrfProtected;
use crate::rejection::{CrossSiteRequest, SessionRejection, SessionRequired};
use crate::session::Session;

/// The browser client, served at `client.js`: plain ES module, no build step.
pub const CLIENT_JS: &str = include_str!("client.js");

/// The session API router: `info`, `csrf-token`, `extend`, `clear` and `client.js`, for any
/// router state. Nest it where the page expects it (`.nest("/api/session", session_api())`)
/// inside the routes your [`SessionLayer`](crate::SessionLayer) wraps; see the
/// [module documentation](self) for the routes and their answers.
pub fn session_api<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/info", get(info))
        .route("/csrf-token", get(csrf_token))
        .route("/extend", post(extend))
        .route("/clear", post(clear))
        .route("/client.js", get(client_js))
}

/// The session as the `info` route shows it.
#[derive(Serialize)]
struct View {
    id_hash: String,
    authenticated: bool,
    user: Option<String>,
    created_at: String,
    last_activity: String,
    elapsed_seconds: u64,
    remaining_seconds: u64,
    absolute_remaining_seconds: u64,
    expires_at: String,
    is_active: bool,
}

fn rfc3339(t: OffsetDateTime) -> String {
    // Every date `to_datetime` makes (years 1970 to 9999) formats.
    t.format(&Rfc3339).unwrap_or_default()
}

/// `{"session": ...}` for `session` as of its request.
fn view(session: &Session) -> serde_json::Value {
    let Some(info) = session.info() else {
        return json!({ "session": null });
    };
    let now = to_datetime(session.inner.request.now);
    let absolute = info.absolute_remaining(now).unwrap_or_default();
    let view = View {
        id_hash: info.key().short(),
        authenticated: info.principal().is_some(),
        user: info.principal().map(str::to_owned),
        created_at: rfc3339(info.created()),
        last_activity: rfc3339(info.last_seen()),
        elapsed_seconds: info.elapsed(now).as_secs(),
        remaining_seconds: info.remaining(now).as_secs(),
        absolute_remaining_seconds: absolute.as_secs(),
        expires_at: rfc3339(info.expires()),
        is_active: info.is_active(now),
    };
    json!({ "session": view })
}

/// A JSON answer no cache keeps: it describes one client's session.
fn no_store(body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The session of a request on a route that only reads it: the page asking is not the user
/// being active, so this request writes no sliding refresh.
struct Quiet(Session);

impl<S: Send + Sync> FromRequestParts<S> for Quiet {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = crate::extract::loaded(parts).await?;
        session.suppress_refresh();
        Ok(Quiet(session))
    }
}

async fn info(Quiet(session): Quiet) -> Response {
    no_store(view(&session))
}

/// Whether `Sec-Fetch-Site` says another origin asked (anything but `same-origin` or
/// `none`, as the CSRF rules read it); absent means an old browser or not a browser.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| site != "same-origin" && site != "none")
}

async fn csrf_token(headers: HeaderMap, Quiet(session): Quiet) -> Response {
    if cross_site(&headers) {
        session.report_now(crate::event::EventKind::CsrfRejected(
            "cross-site (Sec-Fetch-Site)",
        ));
        return CrossSiteRequest::default().into_response();
    }
    let mut response = no_store(json!({ "csrf_token": session.csrf_token() }));
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn extend(_: CsrfProtected, session: Session) -> Response {
    if !session.extend() {
        return SessionRequired::default().into_response();
    }
    no_store(view(&session))
}

async fn clear(_: CsrfProtected, session: Session) -> Response {
    session.destroy();
    no_store(json!({ "cleared": true }))
}

/// A strong validator of [`CLIENT_JS`], computed once.
static CLIENT_ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(CLIENT_JS.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex in quotes is a header value")
});

/// Whether `If-None-Match` names `etag` (or `*`); weak comparison, as RFC 9110 asks for it.
fn matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag)
}

/// Serves the client without touching the session: no store call, and a cache may keep it
/// as long as it revalidates (`no-cache`), so a new release reaches pages at once.
async fn client_js(headers: HeaderMap) -> Response {
    let etag = CLIENT_ETAG.clone();
    let cache = (CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if matches(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(ETAG, etag), cache]).into_response();
    }
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (ETAG, etag),
            cache,
        ],
        CLIENT_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let etag = HeaderValue::from_static("\"abc\"");
        for (value, expect) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(IF_NONE_MATCH, HeaderValue::from_static(value));
            assert_eq!(matches(&headers, &etag), expect, "{value}");
        }
    }

    #[test]
    fn client_stays_small_and_dependency_free() {
        assert!(CLIENT_JS.len() <= 6 * 1024, "{} bytes", CLIENT_JS.len());
        assert!(!CLIENT_JS.contains("import "), "the client imports nothing");
    }
}
