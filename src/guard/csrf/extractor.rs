//! [`CsrfProtected`]: the CSRF check as an extractor, header only or wrapping a body extractor.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::{Form, Json};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use super::rules::{body_token, header_tokens, is_safe, without_token_field, BodyKind};
use super::{check_header, check_tokens, needs_token};
use crate::extract::loaded;
use crate::rejection::{Capture, Captures, CsrfBodyRejection, CsrfRejection};
use crate::session::Session;

/// Proof that the request passed the CSRF check; with `E` it also carries the extracted body.
///
/// `CsrfProtected` (that is, `CsrfProtected<()>`) reads the token from the `X-CSRF-Token`
/// header only and may sit anywhere in the handler's arguments. `CsrfProtected<E>` for
/// `E` = [`Form<T>`], [`Json<T>`], [`Bytes`] or [`String`] must be the last argument: it
/// reads the body once, accepts the token from the header or the body's `csrf_token` field
/// (urlencoded form or JSON object), then hands the body to `E`. GET, HEAD, OPTIONS and TRACE
/// pass without a token.
///
/// For [`Form<T>`] and [`Json<T>`] the `csrf_token` field is removed before `E` sees the
/// body, so `T` needs no such field and `#[serde(deny_unknown_fields)]` works; every other
/// byte is handed on as sent. A form that carries nothing but its token is
/// `CsrfProtected<Form<()>>`. A [`Form<T>`] post without a body (the token in the header,
/// as `fetch` or `curl -X POST` send it, usually without `Content-Type`) is an empty form,
/// so it works whenever `T` deserialises from one. [`Bytes`] and [`String`] get the body
/// untouched, token included.
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
/// #[serde(deny_unknown_fields)] // the csrf_token field never reaches `Post`
/// struct Post {
///     title: String,
/// }
///
/// async fn save(CsrfProtected(Form(post)): CsrfProtected<Form<Post>>) -> String {
///     format!("saved {}", post.title)
/// }
///
/// // A button that posts nothing but the token: no dummy type needed.
/// async fn delete(_: CsrfProtected<Form<()>>) -> &'static str {
///     "deleted"
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CsrfProtected<E = ()>(pub E);

impl<S: Send + Sync> FromRequestParts<S> for CsrfProtected {
    type Rejection = CsrfRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_safe(&parts.method) {
            let checked = match loaded(parts).await {
                Ok(session) => check_header(parts, &session),
                Err(rejection) => Err(rejection.into()),
            };
            checked.map_err(|r: CsrfRejection| r.captured(&Capture::of(parts)))?;
        }
        Ok(CsrfProtected(()))
    }
}

/// What `CsrfProtected<E>` does with the body it reads, by `E`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// [`Form<T>`]: the `csrf_token` field is removed; an empty body is an empty form.
    Form,
    /// [`Json<T>`]: the `csrf_token` member is removed.
    Json,
    /// [`Bytes`], [`String`]: handed on as sent.
    Raw,
}

/// The check for body extractors. The body is read when the header did not settle the check,
/// and always for forms and JSON, so the token field never reaches `E`.
async fn check_body<E, S>(
    req: Request,
    state: &S,
    reads: Reads,
) -> Result<E, CsrfBodyRejection<E::Rejection>>
where
    E: FromRequest<S>,
    S: Send + Sync,
{
    if is_safe(req.method()) {
        return E::from_request(req, state)
            .await
            .map_err(CsrfBodyRejection::Inner);
    }
    let (mut parts, body) = req.into_parts();
    let capture = Capture::of(&parts);
    let refuse = |r: CsrfRejection| CsrfBodyRejection::Csrf(r.captured(&capture));
    let session = loaded(&parts).await.map_err(|r| refuse(r.into()))?;
    let needs = needs_token(&parts, &session).map_err(refuse)?;
    let header_ok = needs && session_accepts_header(&session, &parts.headers);
    if reads == Reads::Raw && (!needs || header_ok) {
        return E::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(CsrfBodyRejection::Inner);
    }
    // `Bytes` honours `DefaultBodyLimit`; the clone keeps that limit for `E` as well.
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
        .await
        .map_err(CsrfBodyRejection::Body)?;
    if needs && !header_ok {
        let field = body_token(parts.headers.get(CONTENT_TYPE), &bytes);
        check_tokens(
            &session,
            header_tokens(&parts.headers).chain(field.as_deref()),
        )
        .map_err(refuse)?;
    }
    let bytes = match reads {
        Reads::Raw => bytes,
        // A header-token post (`fetch` with `X-CSRF-Token`, `curl -X POST`) has no body and
        // usually no Content-Type; `Form` would answer 415. No body is an empty form.
        Reads::Form if bytes.is_empty() => {
            parts.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            bytes
        }
        Reads::Form | Reads::Json => {
            let kind = BodyKind::of(parts.headers.get(CONTENT_TYPE));
            match without_token_field(kind, &bytes) {
                Some(rest) => {
                    parts
                        .headers
                        .insert(CONTENT_LENGTH, HeaderValue::from(rest.len()));
                    Bytes::from(rest)
                }
                None => bytes,
            }
        }
    };
    E::from_request(Request::from_parts(parts, Body::from(bytes)), state)
        .await
        .map_err(CsrfBodyRejection::Inner)
}

fn session_accepts_header(session: &Session, headers: &HeaderMap) -> bool {
    header_tokens(headers).any(|t| session.verify_csrf_token(t))
}

macro_rules! body_extractor {
    ($([$($generics:tt)*] $ty:ty => $reads:ident),+ $(,)?) => {
        $(
            impl<S, $($generics)*> FromRequest<S> for CsrfProtected<$ty>
            where
                $ty: FromRequest<S>,
                S: Send + Sync,
            {
                type Rejection = CsrfBodyRejection<<$ty as FromRequest<S>>::Rejection>;

                async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
                    check_body::<$ty, S>(req, state, Reads::$reads)
                        .await
                        .map(CsrfProtected)
                }
            }
        )+
    };
}

body_extractor!(
    [T] Form<T> => Form,
    [T] Json<T> => Json,
    [] Bytes => Raw,
    [] String => Raw,
);
