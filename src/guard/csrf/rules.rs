//! The CSRF rules that read only the request: safe methods, `Origin` and `Sec-Fetch-Site`
//! (rules 2 and 3 of [`CsrfProtected`](super::CsrfProtected)), and where a token may travel.

use http::header::ORIGIN;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

use crate::origin::{request_authority, Origin};
use crate::rejection::{CrossSiteRequest, CsrfRejection, InsecureOrigin, OriginNotAllowed};

/// The request header carrying the CSRF token.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// The form or JSON field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// How many `X-CSRF-Token` values are tried; more is not a browser.
const MAX_HEADER_TOKENS: usize = 4;

/// GET, HEAD, OPTIONS and TRACE: the only methods that pass without a token. `Method`
/// equality is case-sensitive, so `get` is an unknown, checked method.
pub(super) fn is_safe(method: &Method) -> bool {
    [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method)
}

/// Which origins rules 2 and 3 accept.
#[derive(Clone, Copy)]
pub(super) struct Allowed<'a> {
    /// The configured trusted origins; empty means the request's own origin.
    pub(super) trusted: &'a [Origin],
    /// The session cookie is `Secure`: the request's own origin is `https`.
    pub(super) secure: bool,
    /// Insecure local development: plain-http loopback origins pass too, on any port.
    pub(super) loopback_http: bool,
}

/// Rules 2 and 3 of [`CsrfProtected`](super::CsrfProtected): `Sec-Fetch-Site` unless the
/// origin is trusted, then `Origin` against the allowed origins.
pub(super) fn check_origin(parts: &Parts, allowed: Allowed<'_>) -> Result<(), CsrfRejection> {
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
    // A dev server on another loopback port is `same-site`, not `same-origin`: under the
    // local-development switch it counts as trusted, as configured origins do.
    let trusted_origin = origin.as_ref().is_some_and(|o| {
        allowed.trusted.contains(o) || (allowed.loopback_http && o.is_loopback_http())
    });
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
    if trusted_origin {
        return Ok(());
    }
    let own = || {
        let scheme = if allowed.secure { "https" } else { "http" };
        request_authority(&parts.uri, &parts.headers)
            .and_then(|authority| Origin::from_host(scheme, authority))
    };
    let own = if allowed.trusted.is_empty() {
        own()
    } else {
        None
    };
    if own.as_ref() == Some(&origin) {
        return Ok(());
    }
    // The page came over http to a host whose Secure cookie calls for https: say so, since
    // "Origin not allowed" sends a developer looking in the wrong place. Only the host is
    // compared, and nothing of the Origin value is echoed.
    let https_twin = origin.is_http()
        && allowed.secure
        && own
            .iter()
            .chain(allowed.trusted)
            .any(|o| !o.is_http() && o.same_host(&origin));
    if https_twin {
        Err(InsecureOrigin::default().into())
    } else {
        Err(OriginNotAllowed::default().into())
    }
}

/// The `X-CSRF-Token` values, trimmed; at most [`MAX_HEADER_TOKENS`].
pub(super) fn header_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CSRF_HEADER)
        .iter()
        .take(MAX_HEADER_TOKENS)
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
}

#[derive(Deserialize)]
struct JsonField {
    csrf_token: Option<String>,
}

/// What a `Content-Type` says the body is, as far as the `csrf_token` field goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json` or a `+json` type.
    Json,
    /// Anything else, or no `Content-Type`: no field is read.
    Other,
}

impl BodyKind {
    pub(super) fn of(content_type: Option<&HeaderValue>) -> Self {
        let Some(mime) = content_type.and_then(|v| v.to_str().ok()) else {
            return Self::Other;
        };
        let essence = mime.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Self::Form
        } else if essence.eq_ignore_ascii_case("application/json")
            || essence.to_ascii_lowercase().ends_with("+json")
        {
            Self::Json
        } else {
            Self::Other
        }
    }
}

/// The `csrf_token` field of a urlencoded form or JSON object body, by `Content-Type`.
pub(super) fn body_token(content_type: Option<&HeaderValue>, body: &[u8]) -> Option<String> {
    match BodyKind::of(content_type) {
        BodyKind::Form => form_urlencoded::parse(body)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned()),
        // A derived struct also deserialises from an array, positionally: objects only.
        BodyKind::Json if is_json_object(body) => {
            serde_json::from_slice::<JsonField>(body).ok()?.csrf_token
        }
        BodyKind::Json | BodyKind::Other => None,
    }
}

fn is_json_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The body without its `csrf_token` field, so the inner extractor sees only the
/// application's fields (`#[serde(deny_unknown_fields)]` and `Form<()>` work); `None` when
/// there is none to remove. Every other byte is kept as sent: form pairs are dropped whole,
/// JSON values are copied verbatim (no number is re-encoded).
pub(super) fn without_token_field(kind: BodyKind, body: &[u8]) -> Option<Vec<u8>> {
    match kind {
        BodyKind::Form => without_form_field(body),
        BodyKind::Json if is_json_object(body) => without_json_field(body),
        BodyKind::Json | BodyKind::Other => None,
    }
}

fn without_form_field(body: &[u8]) -> Option<Vec<u8>> {
    let mut found = false;
    let kept: Vec<&[u8]> = body
        .split(|&b| b == b'&')
        .filter(|pair| {
            let token = form_urlencoded::parse(pair)
                .next()
                .is_some_and(|(name, _)| name == CSRF_FIELD);
            found |= token;
            !token
        })
        .collect();
    found.then(|| kept.join(&b'&'))
}

fn without_json_field(body: &[u8]) -> Option<Vec<u8>> {
    use serde_json::value::RawValue;

    /// A JSON object's members in order, values as the raw text they were sent as.
    struct Members<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut members = Vec::new();
                    while let Some(member) = map.next_entry()? {
                        members.push(member);
                    }
                    Ok(Members(members))
                }
            }
            d.deserialize_map(Visit)
        }
    }

    // A body that is not valid JSON is left for the inner extractor to reject as usual.
    let Members(members) = serde_json::from_slice(body).ok()?;
    if !members.iter().any(|(name, _)| name == CSRF_FIELD) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    out.push(b'{');
    for (name, value) in members.iter().filter(|(name, _)| name != CSRF_FIELD) {
        if out.len() > 1 {
            out.push(b',');
        }
        // Serialising a string cannot fail.
        serde_json::to_writer(&mut out, name).ok()?;
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    Some(out)
}

/// Whether the request is an urlencoded form post, which may carry the token in a field.
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    BodyKind::of(headers.get(http::header::CONTENT_TYPE)) == BodyKind::Form
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
    fn the_token_field_is_removed_and_nothing_else_changes() {
        struct Case {
            name: &'static str,
            kind: BodyKind,
            body: &'static str,
            expect: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "form, middle",
                kind: BodyKind::Form,
                body: "a=1&csrf_token=t%2B&b=x+y%20z",
                expect: Some("a=1&b=x+y%20z"),
            },
            Case {
                name: "form, only the token",
                kind: BodyKind::Form,
                body: "csrf_token=t",
                expect: Some(""),
            },
            Case {
                name: "form, encoded name, twice",
                kind: BodyKind::Form,
                body: "csrf%5Ftoken=t&a=1&csrf_token=u",
                expect: Some("a=1"),
            },
            Case {
                name: "form, similar names stay",
                kind: BodyKind::Form,
                body: "csrf_token2=t&xcsrf_token=u",
                expect: None,
            },
            Case {
                name: "json, numbers verbatim",
                kind: BodyKind::Json,
                body: r#"{"big":123456789012345678901234567890,"csrf_token":"t","f":1.50,"s":"é"}"#,
                expect: Some(r#"{"big":123456789012345678901234567890,"f":1.50,"s":"é"}"#),
            },
            Case {
                name: "json, non-string token removed too",
                kind: BodyKind::Json,
                body: r#" { "csrf_token" : 5 } "#,
                expect: Some("{}"),
            },
            Case {
                name: "json, nested field stays",
                kind: BodyKind::Json,
                body: r#"{"a":{"csrf_token":"t"}}"#,
                expect: None,
            },
            Case {
                name: "json, invalid is left alone",
                kind: BodyKind::Json,
                body: r#"{"csrf_token":"t","#,
                expect: None,
            },
            Case {
                name: "json array",
                kind: BodyKind::Json,
                body: r#"["csrf_token"]"#,
                expect: None,
            },
            Case {
                name: "other types are never rewritten",
                kind: BodyKind::Other,
                body: "csrf_token=t",
                expect: None,
            },
        ];
        for case in cases {
            let got = without_token_field(case.kind, case.body.as_bytes());
            let got = got.as_deref().map(|b| std::str::from_utf8(b).unwrap());
            assert_eq!(got, case.expect, "{}", case.name);
        }
    }

    #[test]
    fn check_origin_follows_fetch_metadata_then_origin() {
        struct Case {
            name: &'static str,
            uri: &'static str,
            headers: &'static [(&'static str, &'static str)],
            trusted: &'static [&'static str],
            secure: bool,
            local: bool,
            expect: &'static str,
        }
        const HOST_HEADER: (&str, &str) = ("host", "example.com");
        let cases = [
            Case {
                name: "no origin, no fetch metadata: the token decides",
                uri: "/",
                headers: &[HOST_HEADER],
                trusted: &[],
                secure: true,
                local: false,
                expect: "pass",
            },
            Case {
                name: "own origin from Host",
                uri: "/",
                headers: &[HOST_HEADER, ("origin", "https://example.com")],
                trusted: &[],
                secure: true,
                local: false,
                expect: "pass",
            },
            Case {
                name: "own origin over http when the cookie is not Secure",
                uri: "/",
                headers: &[
                    ("host", "localhost:3000"),
                    ("origin", "http://localhost:3000"),
                ],
                trusted: &[],
                secure: false,
                local: false,
                expect: "pass",
            },
            Case {
                name: "scheme differs from the cookie's: said so",
                uri: "/",
                headers: &[HOST_HEADER, ("origin", "http://example.com")],
                trusted: &[],
                secure: true,
                local: false,
                expect: "insecure",
            },
            Case {
                name: "another origin",
                uri: "/",
                headers: &[HOST_HEADER, ("origin", "https://evil.example")],
                trusted: &[],
                secure: true,
                local: false,
                expect: "origin",
            },
            Case {
                name: "null origin",
                uri: "/",
                headers: &[HOST_HEADER, ("origin", "null")],
                trusted: &[],
                secure: true,
                local: false,
                expect: "origin",
            },
            Case {
                name: "two origins",
                uri: "/",
                headers: &[
                    HOST_HEADER,
                    ("origin", "https://example.com"),
                    ("origin", "https://example.com"),
                ],
                trusted: &[],
                secure: true,
                local: false,
                expect: "origin",
            },
            Case {
                name: "absolute-form target wins over Host",
                uri: "https://example.com/x",
                headers: &[("host", "evil.example"), ("origin", "https://example.com")],
                trusted: &[],
                secure: true,
                local: false,
                expect: "pass",
            },
            Case {
                name: "cross-site fetch metadata",
                uri: "/",
                headers: &[HOST_HEADER, ("sec-fetch-site", "cross-site")],
                trusted: &[],
                secure: true,
                local: false,
                expect: "cross-site",
            },
            Case {
                name: "same-site is not same-origin",
                uri: "/",
                headers: &[
                    HOST_HEADER,
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://example.com"),
                ],
                trusted: &[],
                secure: true,
                local: false,
                expect: "cross-site",
            },
            Case {
                name: "user-initiated navigation",
                uri: "/",
                headers: &[HOST_HEADER, ("sec-fetch-site", "none")],
                trusted: &[],
                secure: true,
                local: false,
                expect: "pass",
            },
            Case {
                name: "trusted origin passes cross-site metadata",
                uri: "/",
                headers: &[
                    HOST_HEADER,
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://app.example"),
                ],
                trusted: &["https://app.example"],
                secure: true,
                local: false,
                expect: "pass",
            },
            Case {
                name: "trusted origins replace the request's own",
                uri: "/",
                headers: &[HOST_HEADER, ("origin", "https://example.com")],
                trusted: &["https://app.example"],
                secure: true,
                local: false,
                expect: "origin",
            },
            Case {
                name: "http twin of a trusted https origin",
                uri: "/",
                headers: &[HOST_HEADER, ("origin", "http://app.example")],
                trusted: &["https://app.example"],
                secure: true,
                local: false,
                expect: "insecure",
            },
            Case {
                name: "http from another host is just not allowed",
                uri: "/",
                headers: &[HOST_HEADER, ("origin", "http://evil.example")],
                trusted: &[],
                secure: true,
                local: false,
                expect: "origin",
            },
            Case {
                name: "local development: a dev server on another loopback port",
                uri: "/",
                headers: &[
                    ("host", "localhost:3000"),
                    ("sec-fetch-site", "same-site"),
                    ("origin", "http://localhost:5173"),
                ],
                trusted: &[],
                secure: false,
                local: true,
                expect: "pass",
            },
            Case {
                name: "local development: 127.0.0.1 and [::1] on any port",
                uri: "/",
                headers: &[("host", "localhost:3000"), ("origin", "http://[::1]:8080")],
                trusted: &[],
                secure: false,
                local: true,
                expect: "pass",
            },
            Case {
                name: "local development: https loopback is not widened",
                uri: "/",
                headers: &[
                    ("host", "localhost:3000"),
                    ("origin", "https://localhost:5173"),
                ],
                trusted: &[],
                secure: false,
                local: true,
                expect: "origin",
            },
            Case {
                name: "local development: other hosts stay refused",
                uri: "/",
                headers: &[
                    ("host", "localhost:3000"),
                    ("origin", "http://evil.example"),
                ],
                trusted: &[],
                secure: false,
                local: true,
                expect: "origin",
            },
            Case {
                name: "without the switch a loopback dev server is another origin",
                uri: "/",
                headers: &[
                    ("host", "localhost:3000"),
                    ("origin", "http://localhost:5173"),
                ],
                trusted: &[],
                secure: false,
                local: false,
                expect: "origin",
            },
        ];
        for case in cases {
            let mut request = http::Request::builder().method("POST").uri(case.uri);
            for (name, value) in case.headers {
                request = request.header(*name, *value);
            }
            let (parts, ()) = request.body(()).unwrap().into_parts();
            let trusted: Vec<Origin> = case
                .trusted
                .iter()
                .map(|o| Origin::parse(o).unwrap())
                .collect();
            let allowed = Allowed {
                trusted: &trusted,
                secure: case.secure,
                loopback_http: case.local,
            };
            let verdict = match check_origin(&parts, allowed) {
                Ok(()) => "pass",
                Err(CsrfRejection::CrossSite(_)) => "cross-site",
                Err(CsrfRejection::Origin(_)) => "origin",
                Err(CsrfRejection::InsecureOrigin(_)) => "insecure",
                Err(other) => panic!("{}: {other:?}", case.name),
            };
            assert_eq!(verdict, case.expect, "{}", case.name);
        }
    }

    #[test]
    fn header_tokens_reads_at_most_four_trimmed_values() {
        struct Case {
            name: &'static str,
            values: &'static [&'static str],
            expect: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "none",
                values: &[],
                expect: &[],
            },
            Case {
                name: "trimmed",
                values: &[" a ", "b"],
                expect: &["a", "b"],
            },
            Case {
                name: "capped",
                values: &["1", "2", "3", "4", "5"],
                expect: &["1", "2", "3", "4"],
            },
        ];
        for case in cases {
            let mut headers = HeaderMap::new();
            for value in case.values {
                headers.append(CSRF_HEADER, HeaderValue::from_static(value));
            }
            let tokens: Vec<&str> = header_tokens(&headers).collect();
            assert_eq!(tokens, case.expect, "{}", case.name);
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
