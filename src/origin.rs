//! Web origins (`scheme://host[:port]`) as the CSRF defence-in-depth checks compare them.

use http::header::HOST;
use http::uri::Authority;
use http::{HeaderMap, Uri};

/// The authority a request was sent to: the request-target's (HTTP/2 `:authority`, absolute
/// form), else `Host`.
pub(crate) fn request_authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => headers.get(HOST)?.to_str().ok(),
    }
}

/// Whether a request was sent to a loopback host (`localhost`, `127.0.0.1`, `[::1]`, any
/// port), by its [`request_authority`].
pub(crate) fn is_loopback_request(uri: &Uri, headers: &HeaderMap) -> bool {
    request_authority(uri, headers)
        .and_then(|authority| Origin::from_host("http", authority))
        .is_some_and(|origin| origin.is_loopback())
}

/// A parsed origin: lowercase scheme and host, and the port with the scheme's default filled
/// in, so `https://Example.com:443` and `https://example.com` are the same origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// Parses a serialised origin as browsers send it in the `Origin` header: a scheme, `://`,
    /// a host and an optional port, nothing else. `None` for `null`, paths, user info and
    /// anything malformed.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (scheme, authority) = text.split_once("://")?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return None;
        }
        Self::with_authority(scheme.to_ascii_lowercase(), authority)
    }

    /// The origin of a request addressed to `authority` (a `Host` header value) under `scheme`.
    pub(crate) fn from_host(scheme: &str, authority: &str) -> Option<Self> {
        Self::with_authority(scheme.to_owned(), authority)
    }

    /// Whether the host is a loopback name: `localhost`, `127.0.0.1` or `[::1]`. Only these
    /// exact spellings, so `localhost.evil.example` or `127.0.0.1.nip.io` never count.
    pub(crate) fn is_loopback(&self) -> bool {
        matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
    }

    /// A plain-http origin on a loopback host, any port: what a local dev server sends.
    pub(crate) fn is_loopback_http(&self) -> bool {
        self.scheme == "http" && self.is_loopback()
    }

    pub(crate) fn is_http(&self) -> bool {
        self.scheme == "http"
    }

    pub(crate) fn same_host(&self, other: &Origin) -> bool {
        self.host == other.host
    }

    fn with_authority(scheme: String, authority: &str) -> Option<Self> {
        // `Authority` accepts user info; an origin never carries it, nor a path.
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let authority: Authority = authority.parse().ok()?;
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let default_port = match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let rest = &authority.as_str()[authority.host().len()..];
        let port = match rest.strip_prefix(':') {
            None if rest.is_empty() => default_port,
            Some("") => default_port,
            // Digits only: `u16::from_str` alone (and so `Authority::port_u16`) takes `+443`.
            // Out of range is `None`.
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                Some(digits.parse().ok()?)
            }
            _ => return None,
        };
        Some(Self { scheme, host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_plain_origins() {
        struct Case {
            name: &'static str,
            input: &'static str,
            expect: Option<(&'static str, &'static str, Option<u16>)>,
        }
        let cases = [
            Case {
                name: "https default port",
                input: "https://example.com",
                expect: Some(("https", "example.com", Some(443))),
            },
            Case {
                name: "explicit port",
                input: "http://127.0.0.1:8080",
                expect: Some(("http", "127.0.0.1", Some(8080))),
            },
            Case {
                name: "case folded",
                input: "HTTPS://Example.COM:443",
                expect: Some(("https", "example.com", Some(443))),
            },
            Case {
                name: "ipv6",
                input: "http://[::1]:3000",
                expect: Some(("http", "[::1]", Some(3000))),
            },
            Case {
                name: "null",
                input: "null",
                expect: None,
            },
            Case {
                name: "path",
                input: "https://example.com/",
                expect: None,
            },
            Case {
                name: "user info",
                input: "https://user@example.com",
                expect: None,
            },
            Case {
                name: "bad port",
                input: "https://example.com:99999",
                expect: None,
            },
            Case {
                name: "signed port",
                input: "https://example.com:+443",
                expect: None,
            },
            Case {
                name: "no host",
                input: "https://",
                expect: None,
            },
            Case {
                name: "no scheme",
                input: "example.com",
                expect: None,
            },
            Case {
                name: "bad scheme",
                input: "1x://example.com",
                expect: None,
            },
        ];
        for case in cases {
            let got = Origin::parse(case.input);
            let expect = case.expect.map(|(scheme, host, port)| Origin {
                scheme: scheme.into(),
                host: host.into(),
                port,
            });
            assert_eq!(got, expect, "{}", case.name);
        }
    }

    #[test]
    fn loopback_means_exactly_the_three_names() {
        for (host, expect) in [
            ("localhost", true),
            ("LocalHost:3000", true),
            ("127.0.0.1:8080", true),
            ("[::1]:5173", true),
            ("[::1]", true),
            ("localhost.evil.example", false),
            ("127.0.0.1.nip.io", false),
            ("127.0.0.2", false),
            ("example.com", false),
            ("user@localhost", false),
            ("localhost:port", false),
        ] {
            let loopback = Origin::from_host("http", host).is_some_and(|o| o.is_loopback());
            assert_eq!(loopback, expect, "{host}");
        }
    }

    #[test]
    fn host_header_origin_matches_browser_origin() {
        assert_eq!(
            Origin::from_host("http", "localhost:3000"),
            Origin::parse("http://localhost:3000")
        );
        assert_ne!(
            Origin::from_host("https", "localhost:3000"),
            Origin::parse("http://localhost:3000")
        );
        assert_eq!(Origin::from_host("https", "a.example/"), None);
    }
}
