//! CSRF protection: the [`CsrfProtected`] extractor (header only, or wrapping a body
//! extractor), its route-layer form [`CsrfLayer`], and their rejections.
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

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, ORIGIN};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use tower_layer::Layer;
use tower_service::Service;

use crate::event::EventKind;
use crate::extract::session::loaded;
use crate::origin::Origin;
use crate::rejection::{
    CrossSiteRequest, CsrfBodyRejection, CsrfRejection, CsrfTokenInvalid, CsrfTokenMissing,
    OriginNotAllowed,
};
use crate::session::Session;

/// The request header carrying the CSRF token.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// The form or JSON field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// How many `X-CSRF-Token` values are tried; more is not a browser.
const MAX_HEADER_TOKENS: usize = 4;

/// Proof that the request passed the CSRF check; with `E` it also carries the extracted body.
///
/// `CsrfProtected` (that is, `CsrfProtected<()>`) reads the token from the `X-CSRF-Token`
/// header only and may sit anywhere in the handler's arguments. `CsrfProtected<E>` for
/// `E` = [`Form<T>`], [`Json<T>`], [`Bytes`] or [`String`] must be the last argument: it
/// reads the body once, accepts the token from the header or the body's `csrf_token` field
/// (urlencoded form or JSON object), then hands the body to `E`. GET, HEAD, OPTIONS and TRACE
/// pass without a token.
///
/// # Rules
///
/// For requests whose method is not GET, HEAD, OPTIONS or TRACE (method names are
/// case-sensitive, so `post` and unknown methods are checked too; `X-HTTP-Method-Override`
/// and `_method` are never consulted):
///
/// 1. Requests whose session came from `Authorization: Bearer` or a custom header pass:
///    browsers do not attach those by themselves. So do all requests on a layer without a
///    cookie token source.
/// 2. `Sec-Fetch-Site` other than `same-origin` or `none` is refused, unless `Origin` is one
///    of the configured [trusted origins](crate::SessionConfig::trusted_origins).
/// 3. An `Origin` that is present must equal an allowed origin exactly (scheme, host, port;
///    `null` is refused). Allowed: the configured trusted origins or, when none are
///    configured, the request's own origin: its `Host` with `https` when the session cookie
///    is `Secure` and `http` otherwise (as tower-http's and Go's cross-origin protection
///    compare `Origin` with `Host`).
/// 4. The session's CSRF token ([`Session::csrf_token`]) must arrive in the `X-CSRF-Token`
///    header or, for [`CsrfProtected<E>`] with a body, in a `csrf_token` field of an
///    `application/x-www-form-urlencoded` or JSON body. Query strings and cookies are never
///    read. Tokens are masked per call and bound to the session ID, so they rotate on login
///    and logout.
///
/// Refusals are 403 with a body naming the missing piece, never the expected value.
///
/// # Example
///
/// ```
/// use axum::response::Html;
/// use axum::Form;
/// use axum_tessera::{CsrfProtected, Session};
/// use serde::Deserialize;
///
/// async fn form(session: Session) -> Html<String> {
///     Html(format!(
///         r#"<form method="post"><input type="hidden" name="csrf_token" value="{}">
///            <input name="title"><button>Save</button></form>"#,
///         session.csrf_token() // base64url: safe to put in an attribute as is
///     ))
/// }
///
/// #[derive(Deserialize)]
/// struct Post {
///     title: String,
/// }
///
/// async fn save(CsrfProtected(Form(post)): CsrfProtected<Form<Post>>) -> String {
///     format!("saved {}", post.title)
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CsrfProtected<E = ()>(pub E);

/// GET, HEAD, OPTIONS and TRACE: the only methods that pass without a token. `Method`
/// equality is case-sensitive, so `get` is an unknown, checked method.
fn is_safe(method: &Method) -> bool {
    [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method)
}

/// Counts a refusal and tells the layer's event hooks, naming the missing piece.
fn reported(session: &Session, rejection: CsrfRejection) -> CsrfRejection {
    let why = match &rejection {
        CsrfRejection::TokenMissing(_) => "token missing",
        CsrfRejection::TokenInvalid(_) => "token invalid",
        CsrfRejection::CrossSite(_) => "cross-site (Sec-Fetch-Site)",
        CsrfRejection::Origin(_) => "origin not allowed",
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
        None => !layer.sources.iter().any(|s| s.is_ambient()),
    };
    if exempt {
        return Ok(false);
    }
    check_origin(parts, &layer.trusted_origins, layer.cookie.is_secure())
        .map_err(|r| reported(session, r))?;
    Ok(true)
}

/// Rules 2 and 3 of the module documentation.
fn check_origin(parts: &Parts, trusted: &[Origin], secure: bool) -> Result<(), CsrfRejection> {
    let headers = &parts.headers;
    let mut values = headers.get_all(ORIGIN).iter();
    let origin = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(value), None) => Some(
            value
                .to_str()
                .ok()
                .and_then(Origin::parse)
                .ok_or_else(OriginNotAllowed::default)?,
        ),
        (Some(_), Some(_)) => return Err(OriginNotAllowed::default().into()),
    };
    let trusted_origin = origin.as_ref().is_some_and(|o| trusted.contains(o));
    if !trusted_origin {
        if let Some(site) = headers.get(SEC_FETCH_SITE) {
            if site != "same-origin" && site != "none" {
                return Err(CrossSiteRequest::default().into());
            }
        }
    }
    let Some(origin) = origin else {
        // No Origin: a non-browser client or an old browser; the token decides.
        return Ok(());
    };
    let allowed = if trusted.is_empty() {
        let scheme = if secure { "https" } else { "http" };
        request_authority(parts)
            .and_then(|authority| Origin::from_host(scheme, authority))
            .is_some_and(|own| own == origin)
    } else {
        trusted_origin
    };
    if allowed {
        Ok(())
    } else {
        Err(OriginNotAllowed::default().into())
    }
}

/// The authority the request was sent to: the request-target's (HTTP/2, absolute form), else
/// `Host`.
fn request_authority(parts: &Parts) -> Option<&str> {
    match parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => parts.headers.get(HOST)?.to_str().ok(),
    }
}

fn header_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CSRF_HEADER)
        .iter()
        .take(MAX_HEADER_TOKENS)
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
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

#[derive(Deserialize)]
struct JsonField {
    csrf_token: Option<String>,
}

/// The `csrf_token` field of a urlencoded form or JSON object body, by `Content-Type`.
fn body_token(content_type: Option<&HeaderValue>, body: &[u8]) -> Option<String> {
    let mime = content_type?.to_str().ok()?;
    let essence = mime.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        form_urlencoded::parse(body)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned())
    } else if essence.eq_ignore_ascii_case("application/json")
        || essence.to_ascii_lowercase().ends_with("+json")
    {
        // A derived struct also deserialises from an array, positionally: objects only.
        let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        is_object
            .then(|| serde_json::from_slice::<JsonField>(body).ok())
            .flatten()?
            .csrf_token
    } else {
        None
    }
}

/// The header-only check on request parts.
async fn check_parts(parts: &Parts) -> Result<(), CsrfRejection> {
    if is_safe(&parts.method) {
        return Ok(());
    }
    let session = loaded(parts).await?;
    if needs_token(parts, &session)? {
        check_tokens(&session, header_tokens(&parts.headers))?;
    }
    Ok(())
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfProtected {
    type Rejection = CsrfRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        check_parts(parts).await.map(|()| CsrfProtected(()))
    }
}

/// The check for body extractors: read the body only when the header did not settle it.
async fn check_body<E, S>(req: Request, state: &S) -> Result<E, CsrfBodyRejection<E::Rejection>>
where
    E: FromRequest<S>,
    S: Send + Sync,
{
    if is_safe(req.method()) {
        return E::from_request(req, state)
            .await
            .map_err(CsrfBodyRejection::Inner);
    }
    let (parts, body) = req.into_parts();
    let session = loaded(&parts)
        .await
        .map_err(|r| CsrfBodyRejection::Csrf(r.into()))?;
    let needs = needs_token(&parts, &session).map_err(CsrfBodyRejection::Csrf)?;
    let header_ok = needs && session_accepts_header(&session, &parts.headers);
    let req = if !needs || header_ok {
        Request::from_parts(parts, body)
    } else {
        // `Bytes` honours `DefaultBodyLimit`; the clone keeps that limit for `E` as well.
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(CsrfBodyRejection::Body)?;
        let field = body_token(parts.headers.get(CONTENT_TYPE), &bytes);
        check_tokens(
            &session,
            header_tokens(&parts.headers).chain(field.as_deref()),
        )
        .map_err(CsrfBodyRejection::Csrf)?;
        Request::from_parts(parts, Body::from(bytes))
    };
    E::from_request(req, state)
        .await
        .map_err(CsrfBodyRejection::Inner)
}

fn session_accepts_header(session: &Session, headers: &HeaderMap) -> bool {
    header_tokens(headers).any(|t| session.verify_csrf_token(t))
}

macro_rules! body_extractor {
    ($([$($generics:tt)*] $ty:ty),+ $(,)?) => {
        $(
            impl<S, $($generics)*> FromRequest<S> for CsrfProtected<$ty>
            where
                $ty: FromRequest<S>,
                S: Send + Sync,
            {
                type Rejection = CsrfBodyRejection<<$ty as FromRequest<S>>::Rejection>;

                async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
                    check_body::<$ty, S>(req, state).await.map(CsrfProtected)
                }
            }
        )+
    };
}

body_extractor!([T] Form<T>, [T] Json<T>, [] Bytes, [] String);

/// The header-only CSRF check as a route layer, for routes whose handlers take no
/// [`CsrfProtected`] argument (JSON APIs called with `fetch` and an `X-CSRF-Token` header).
///
/// # Example
///
/// ```
/// use axum::{routing::{delete, post}, Router};
/// use axum_tessera::{CsrfLayer, Key, SessionConfig, SessionLayer};
///
/// let app: Router = Router::new()
///     .route("/items/{id}", delete(|| async { "gone" }))
///     .route("/items", post(|| async { "added" }))
///     .route_layer(CsrfLayer::new())
///     .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[must_use]
pub struct CsrfLayer {
    _private: (),
}

impl CsrfLayer {
    /// The layer; its rules are those of [`CsrfProtected`], with the token read from the
    /// `X-CSRF-Token` header only.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<Svc> Layer<Svc> for CsrfLayer {
    type Service = CsrfService<Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        CsrfService { inner }
    }
}

/// The middleware [`CsrfLayer`] produces.
#[derive(Clone, Debug)]
pub struct CsrfService<Svc> {
    inner: Svc,
}

impl<Svc, ReqBody, ResBody> Service<http::Request<ReqBody>> for CsrfService<Svc>
where
    Svc: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    Svc::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Svc::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Svc::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // `poll_ready` readied `self.inner`; a fresh clone might not be ready, so call the
        // ready one and keep the clone for the next request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            if let Err(rejection) = check_parts(&parts).await {
                return Ok(rejection.into_response());
            }
            let response = inner.call(http::Request::from_parts(parts, body)).await?;
            Ok(response.map(Body::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_token_reads_form_and_json_fields_only() {
        struct Case {
            name: &'static str,
            content_type: Option<&'static str>,
            body: &'static str,
            expect: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "form",
                content_type: Some("application/x-www-form-urlencoded"),
                body: "a=1&csrf_token=tok%2Ben&b=2",
                expect: Some("tok+en"),
            },
            Case {
                name: "form with charset",
                content_type: Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
                body: "csrf_token=t",
                expect: Some("t"),
            },
            Case {
                name: "json",
                content_type: Some("application/json"),
                body: r#"{"x":[1,2],"csrf_token":"t"}"#,
                expect: Some("t"),
            },
            Case {
                name: "json suffix",
                content_type: Some("application/merge-patch+json"),
                body: r#"{"csrf_token":"t"}"#,
                expect: Some("t"),
            },
            Case {
                name: "json non-string",
                content_type: Some("application/json"),
                body: r#"{"csrf_token":5}"#,
                expect: None,
            },
            Case {
                name: "json array",
                content_type: Some("application/json"),
                body: r#"["csrf_token"]"#,
                expect: None,
            },
            Case {
                name: "text",
                content_type: Some("text/plain"),
                body: "csrf_token=t",
                expect: None,
            },
            Case {
                name: "no content type",
                content_type: None,
                body: "csrf_token=t",
                expect: None,
            },
        ];
        for case in cases {
            let ct = case.content_type.map(HeaderValue::from_static);
            assert_eq!(
                body_token(ct.as_ref(), case.body.as_bytes()).as_deref(),
                case.expect,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn only_the_four_safe_methods_are_safe() {
        for (method, safe) in [
            ("GET", true),
            ("HEAD", true),
            ("OPTIONS", true),
            ("TRACE", true),
            ("POST", false),
            ("get", false),
            ("PATCH", false),
            ("PURGE", false),
        ] {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(is_safe(&m), safe, "{method}");
        }
    }
}
