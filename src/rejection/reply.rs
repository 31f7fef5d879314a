//! How a rejection answers: what it captured of the request when it was built ([`Reply`]:
//! whether the client prefers JSON, the layer's render hook, the 401 challenge), and the one
//! function every rejection's `IntoResponse` ends in ([`respond`]).
//!
//! `IntoResponse::into_response` never sees the request, so everything the answer depends on
//! is captured where the rejection is made, in an extractor or a guard.

use std::fmt;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::session::SessionHandle;

/// What a rejection tells the render hook of
/// [`SessionConfig::render_rejection`](crate::SessionConfig::render_rejection).
///
/// # Example
///
/// ```
/// use axum::response::{Html, IntoResponse};
/// use axum_tessera::rejection::RejectionInfo;
/// use axum_tessera::{Key, SessionConfig};
///
/// let cfg = SessionConfig::web(Key::generate()).render_rejection(|info: &RejectionInfo| {
///     if info.wants_json() {
///         return info.default_response(); // `{"error": .., "message": ..}`
///     }
///     let page = format!("<h1>{}</h1><p>{}</p>", info.status(), info.message());
///     (info.status(), Html(page)).into_response()
/// });
/// # let _ = cfg;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RejectionInfo {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    wants_json: bool,
    challenge: Option<Challenge>,
}

impl RejectionInfo {
    /// The HTTP status the rejection answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A stable snake_case code naming the refusal (`invalid_token`, `csrf_token_missing`,
    /// `insufficient_scope`...), for clients to branch on; the `error` field of the JSON body.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The short human-readable text: the plain-text body, and the `message` of the JSON one.
    /// It never holds a token, a session ID or a value sent by the client.
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// Whether the client's `Accept` header prefers `application/json` (or a `+json` type) to
    /// text: listed with a non-zero quality at least as high as any `text/*` type.
    pub fn wants_json(&self) -> bool {
        self.wants_json
    }

    /// The `WWW-Authenticate` challenge of a 401 (`Bearer realm="session"`, with
    /// `error="invalid_token"` when the request presented a token that does not
    /// authenticate); `None` for other statuses. Added to the hook's response unless it sets
    /// one itself.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        self.challenge.map(Challenge::header_value)
    }

    /// The response the layer gives without a hook: `{"error": code, "message": message}` as
    /// `application/json` when the client [wants JSON](Self::wants_json), else the message
    /// as `text/plain`; a 401 carries its `WWW-Authenticate` challenge.
    pub fn default_response(&self) -> Response {
        let mut response = if self.wants_json {
            let body = serde_json::json!({ "error": self.code, "message": self.message });
            (
                self.status,
                [(CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        } else {
            plain_response(self.status, self.message)
        };
        if let Some(value) = self.www_authenticate() {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The render hook of a layer.
pub(crate) type Renderer = Arc<dyn Fn(&RejectionInfo) -> Response + Send + Sync>;

/// Which `WWW-Authenticate` scheme a 401 names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// RFC 6750, for layers that read a bearer or custom header token.
    Bearer,
    /// For cookie-only layers, which have no registered scheme: `Cookie`, after the
    /// expired draft-broyer-http-cookie-auth. Browsers do not prompt for it, and it tells a
    /// script that logging in again sets a cookie.
    Cookie,
}

/// The challenge of a 401: the scheme, and whether the request presented a token that does
/// not authenticate (RFC 6750's `error="invalid_token"`; forged, expired, revoked and
/// malformed tokens alike, so the answer is no oracle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) scheme: Scheme,
    pub(crate) invalid_token: bool,
}

impl Challenge {
    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match (self.scheme, self.invalid_token) {
            (Scheme::Bearer, false) => r#"Bearer realm="session""#,
            (Scheme::Bearer, true) => r#"Bearer realm="session", error="invalid_token""#,
            (Scheme::Cookie, false) => r#"Cookie realm="session""#,
            (Scheme::Cookie, true) => r#"Cookie realm="session", error="invalid_token""#,
        })
    }
}

/// What a rejection knows of how to answer, captured when it is built.
#[derive(Clone, Default)]
pub(crate) struct Reply {
    wants_json: bool,
    render: Option<Renderer>,
    challenge: Option<Challenge>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("wants_json", &self.wants_json)
            .field("render", &self.render.is_some())
            .field("challenge", &self.challenge)
            .finish()
    }
}

impl Reply {
    pub(crate) fn with_challenge(challenge: Option<Challenge>) -> Self {
        Self {
            challenge,
            ..Self::default()
        }
    }

    pub(crate) fn set_challenge(&mut self, challenge: Challenge) {
        self.challenge = Some(challenge);
    }

    pub(crate) fn invalid_token(&self) -> bool {
        self.challenge.is_some_and(|c| c.invalid_token)
    }

    /// The same, answering in text whatever the client asked for.
    pub(crate) fn plain(&self) -> Self {
        Self {
            wants_json: false,
            ..self.clone()
        }
    }

    /// Takes in what the request says about the answer; the challenge stays.
    pub(crate) fn capture(&mut self, capture: &Capture) {
        self.wants_json = capture.wants_json;
        self.render.clone_from(&capture.render);
    }
}

/// What the request says about how to answer it: its `Accept` preference and the render
/// hook of the layer it passed through (none when there is no layer).
#[derive(Clone, Default)]
pub(crate) struct Capture {
    pub(crate) wants_json: bool,
    pub(crate) render: Option<Renderer>,
}

impl Capture {
    /// From request parts, in an extractor or guard.
    pub(crate) fn of(parts: &Parts) -> Self {
        let render = parts
            .extensions
            .get::<SessionHandle>()
            .and_then(|handle| handle.0.layer().renderer().cloned());
        Self {
            wants_json: prefers_json(&parts.headers),
            render,
        }
    }
}

/// Rejections (and the composites gathering them) take in the request's [`Capture`].
pub(crate) trait Captures: Sized {
    fn capture_mut(&mut self, capture: &Capture);

    fn captured(mut self, capture: &Capture) -> Self {
        self.capture_mut(capture);
        self
    }
}

/// Whether `Accept` prefers JSON: the best quality given to `application/json` or a `+json`
/// type is above zero and not below the best given to a `text/*` type. Wildcards count for
/// neither, so `*/*` (curl) and browsers' navigation headers keep the plain-text answer.
pub(crate) fn prefers_json(headers: &HeaderMap) -> bool {
    prefers_json_in(headers.get_all(ACCEPT).iter())
}

pub(crate) fn prefers_json_in<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> bool {
    let (mut json, mut text) = (0.0_f32, 0.0_f32);
    for range in values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut params = range.split(';');
        let media = params
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let q = params
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse().ok())?
            })
            .next()
            .unwrap_or(1.0_f32);
        if media == "application/json"
            || (media.starts_with("application/") && media.ends_with("+json"))
        {
            json = json.max(q);
        } else if media.starts_with("text/") {
            text = text.max(q);
        }
    }
    json > 0.0 && json >= text
}

/// What every rejection's `into_response` does: a debug event naming the rejection and its
/// cause, then the hook's response or the default one, with the 401 challenge.
pub(crate) fn respond(
    rejection: &'static str,
    info: RejectionParts,
    reply: &Reply,
    cause: Option<&(dyn std::error::Error + 'static)>,
) -> Response {
    tracing::debug!(
        rejection,
        status = info.status.as_u16(),
        code = info.code,
        error = cause.map(tracing::field::debug),
        "session rejection"
    );
    let info = RejectionInfo {
        status: info.status,
        code: info.code,
        message: info.message,
        wants_json: reply.wants_json,
        challenge: reply.challenge,
    };
    match &reply.render {
        None => info.default_response(),
        Some(render) => {
            let mut response = render(&info);
            // A 401 without a challenge breaks RFC 9110 and leaves API clients guessing.
            if let Some(value) = info.www_authenticate() {
                if !response.headers().contains_key(WWW_AUTHENTICATE) {
                    response.headers_mut().insert(WWW_AUTHENTICATE, value);
                }
            }
            response
        }
    }
}

/// The fixed facts of a rejection, as [`respond`] takes them.
pub(crate) struct RejectionParts {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: &'static str,
}

/// A short plain-text response.
pub(crate) fn plain_response(status: StatusCode, body: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_json_reads_qualities() {
        struct Case {
            name: &'static str,
            accept: &'static [&'static str],
            expect: bool,
        }
        let cases = [
            Case {
                name: "absent",
                accept: &[],
                expect: false,
            },
            Case {
                name: "json",
                accept: &["application/json"],
                expect: true,
            },
            Case {
                name: "problem+json, any case",
                accept: &["Application/Problem+JSON"],
                expect: true,
            },
            Case {
                name: "axios default",
                accept: &["application/json, text/plain, */*"],
                expect: true,
            },
            Case {
                name: "browser navigation",
                accept: &["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
                expect: false,
            },
            Case {
                name: "curl",
                accept: &["*/*"],
                expect: false,
            },
            Case {
                name: "html preferred",
                accept: &["application/json;q=0.5, text/html"],
                expect: false,
            },
            Case {
                name: "json preferred",
                accept: &["text/html;q=0.5", "application/json"],
                expect: true,
            },
            Case {
                name: "json refused",
                accept: &["application/json;q=0"],
                expect: false,
            },
        ];
        for case in cases {
            let values: Vec<HeaderValue> = case
                .accept
                .iter()
                .map(|v| HeaderValue::from_static(v))
                .collect();
            assert_eq!(prefers_json_in(values.iter()), case.expect, "{}", case.name);
        }
    }
}
