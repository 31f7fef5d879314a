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

/// The `csrf_token` field of a urlencoded form or JSON object body, by `Content-Type`.
pub(super) fn body_token(content_type: Option<&HeaderValue>, body: &[u8]) -> Option<String> {
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
