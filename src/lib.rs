//! Session layer for Axum and Tower.
//!
//! `axum-tessera` recognises a client from a signed token (a cookie, `Authorization: Bearer`
//! or a custom header), loads its session from a store only when a handler needs it, guards
//! routes by scope and against CSRF, and commits what the handler changed in one store call
//! after the response.
//!
//! # A web app: login form, guarded page, logout
//!
//! The form carries the session's CSRF token; `CsrfProtected<Form<T>>` checks it (and
//! removes the field before `T` sees the body); the admin page sends visitors who are not
//! signed in to the form with `?next=`, and the login goes back there only if it is a local
//! path.
//!
//! ```
//! use axum::{response::{Html, Redirect}, routing::{get, post}, Form, Router};
//! use axum_tessera::guard::safe_return_to;
//! use axum_tessera::{scope, CsrfProtected, Key, Principal, RequireScopes, Session};
//! use axum_tessera::{SessionConfig, SessionLayer};
//!
//! scope!(Admin = "admin");
//!
//! #[derive(serde::Deserialize)]
//! struct Login { username: String, password: String, next: Option<String> }
//!
//! async fn form(session: Session) -> Html<String> {
//!     Html(format!(
//!         r#"<form method="post" action="/login">
//!              <input type="hidden" name="csrf_token" value="{}">
//!              <input name="username"><input name="password" type="password">
//!              <button>Sign in</button></form>"#,
//!         session.csrf_token()
//!     ))
//! }
//!
//! async fn login(session: Session, CsrfProtected(Form(f)): CsrfProtected<Form<Login>>) -> Redirect {
//!     if f.username == "admin" && f.password == "admin" { // check a password hash instead
//!         session.login(Principal::user(f.username).with_scopes(["admin"])); // new ID now
//!     }
//!     Redirect::to(safe_return_to(f.next.as_deref().unwrap_or("/")))
//! }
//!
//! async fn logout(session: Session, _: CsrfProtected<Form<()>>) -> Redirect {
//!     session.logout(); // the record is deleted at commit, the cookie cleared
//!     Redirect::to("/")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "for admins" }))
//!     .route_layer(RequireScopes::<(Admin,)>::layer().redirect_to("/")) // 303 /?next=/admin
//!     .route("/", get(form))
//!     .route("/login", post(login))
//!     .route("/logout", post(logout))
//!     .layer(SessionLayer::new(
//!         SessionConfig::web(Key::generate()).insecure_local_development(), // http://localhost
//!     ));
//! # use axum::{body::Body, http::{header, Request, StatusCode}};
//! # use tower::ServiceExt as _;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! # let call = |method: &str, uri: &str, cookie: &str, form: &str| {
//! #     let req = Request::builder().method(method).uri(uri)
//! #         .header(header::HOST, "localhost:3000").header(header::ACCEPT, "text/html")
//! #         .header(header::COOKIE, cookie)
//! #         .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
//! #     app.clone().oneshot(req.body(Body::from(form.to_owned())).unwrap())
//! # };
//! # let cookie_of = |res: &axum::response::Response| res.headers()[header::SET_COOKIE]
//! #     .to_str().unwrap().split(';').next().unwrap().to_owned();
//! # let res = call("GET", "/admin", "", "").await.unwrap();
//! # assert_eq!(res.status(), StatusCode::SEE_OTHER);
//! # assert_eq!(res.headers()[header::LOCATION], "/?next=%2Fadmin");
//! # let res = call("GET", "/", "", "").await.unwrap();
//! # let cookie = cookie_of(&res);
//! # let html = String::from_utf8(axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap();
//! # let csrf = html.split(r#"name="csrf_token" value=""#).nth(1).unwrap().split('"').next().unwrap();
//! # let form = format!("csrf_token={csrf}&username=admin&password=admin&next=%2Fadmin");
//! # let res = call("POST", "/login", &cookie, &form).await.unwrap();
//! # assert_eq!(res.headers()[header::LOCATION], "/admin");
//! # let cookie = cookie_of(&res);
//! # assert_eq!(call("GET", "/admin", &cookie, "").await.unwrap().status(), StatusCode::OK);
//! # let res = call("POST", "/logout", &cookie, "").await.unwrap();
//! # assert_eq!(res.status(), StatusCode::FORBIDDEN, "no CSRF token, no logout");
//! # });
//! ```
//!
//! `insecure_local_development()` drops `Secure` and the `__Host-` prefix and accepts
//! loopback origins, for `http://localhost` only: the layer refuses any other host while it
//! is on, so remove it for production.
//!
//! # A bearer-token API under one layer
//!
//! ```
//! use axum::{routing::{get, post}, Json, Router};
//! use axum_tessera::{Authenticated, Key, Principal, RequireScopes, Session};
//! use axum_tessera::{SessionConfig, SessionLayer};
//!
//! async fn login(session: Session) -> Json<serde_json::Value> {
//!     session.login(Principal::user("alice")); // after checking the credentials
//!     Json(serde_json::json!({ "token": session.token() }))
//! }
//!
//! async fn me(guard: RequireScopes<(Authenticated,)>) -> String {
//!     guard.principal().id().to_owned()
//! }
//!
//! let app: Router = Router::new()
//!     .route("/me", get(me)) // 401 + WWW-Authenticate without a valid token
//!     .route("/logout", post(|_: RequireScopes<(Authenticated,)>, s: Session| async move { s.logout() }))
//!     .route("/login", post(login)) // no token needed: creates the session
//!     .layer(SessionLayer::new(SessionConfig::api(Key::generate())));
//! # use axum::{body::Body, http::{header, Request, StatusCode}};
//! # use tower::ServiceExt as _;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! # let call = |method: &str, uri: &str, token: Option<&str>| {
//! #     let mut req = Request::builder().method(method).uri(uri);
//! #     if let Some(t) = token { req = req.header(header::AUTHORIZATION, format!("Bearer {t}")); }
//! #     app.clone().oneshot(req.body(Body::empty()).unwrap())
//! # };
//! # let res = call("POST", "/login", None).await.unwrap();
//! # let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
//! # let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! # let token = json["token"].as_str().unwrap().to_owned();
//! # assert_eq!(call("GET", "/me", Some(&token)).await.unwrap().status(), StatusCode::OK);
//! # assert_eq!(call("GET", "/me", None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # assert_eq!(call("POST", "/logout", Some(&token)).await.unwrap().status(), StatusCode::OK);
//! # assert_eq!(call("GET", "/me", Some(&token)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```
//!
//! Clients send `Authorization: Bearer <token>`. A token that does not authenticate
//! (forged, expired or logged out, alike) answers 401 with `error="invalid_token"`.
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
pub mod live;
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
pub use guard::{AnyScope, CsrfProtected, RequireScopes, ReturnTo};
pub use key::{Key, KeyRing};
pub use layer::SessionLayer;
pub use principal::Principal;
pub use record::SessionInfo;
pub use scope::{Authenticated, Scope};
pub use session::Session;

/// Every Rust block of README.md, compiled as a doctest (the store recipes need their features,
/// and CI builds with all of them).
#[cfg(all(
    doctest,
    feature = "redis",
    feature = "postgres",
    feature = "sqlite",
    feature = "test-util"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Internals exposed to the fuzz targets in `fuzz/` only; not part of the API.
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::csrf::{mask, unmask, CSRF_TOKEN_LEN};
    pub use crate::token::{SessionId, TokenCodec, TokenError, ID_LEN, MAX_TOKEN_LEN};
    pub use crate::transport::cookie_values;
}
