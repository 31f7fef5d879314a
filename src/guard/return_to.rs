//! Where to send a user after login: [`safe_return_to`] and the [`ReturnTo`] extractor, for the
//! `?next=` parameter that [`ScopeLayer::redirect_to`](crate::ScopeLayer::redirect_to) adds.
//!
//! A login handler that redirects to `next` as given is an open redirect: `//evil.example`,
//! `/\evil.example` and their encoded or control-character variants (`/%09/evil.example`)
//! are read by browsers as another site. These helpers answer `next` only when it is a
//! path on this site, and `/` otherwise.
//!
//! # Example
//!
//! ```
//! use axum::response::Redirect;
//! use axum_tessera::guard::ReturnTo;
//! use axum_tessera::{Principal, Session};
//!
//! async fn login(session: Session, next: ReturnTo) -> Redirect {
//!     // after checking the password:
//!     session.login(Principal::user("alice"));
//!     Redirect::to(next.as_str()) // `/admin`, never `//evil.example`
//! }
//! ```

use std::convert::Infallible;
use std::fmt;

use axum::extract::FromRequestParts;
use http::request::Parts;

/// How many layers of percent-encoding are looked through: `%2f` is `/` once decoded,
/// `%252f` twice. A value still changing after this many rounds is refused.
const MAX_DECODINGS: usize = 4;

/// `next` if it is a path on this site, else `"/"`.
///
/// A local path starts with exactly one `/` and holds no `//`, no backslash and no control
/// character (tab, CR, LF, NUL, DEL...), neither as sent nor after percent-decoding it
/// (`%2f%2f`, `%5c`, `%09`, `%0a`, `%0d`, `%00`..`%1f`, `%7f`, and double encodings such as
/// `%252f`), since a browser or a framework on the way may decode it again. Everything else
/// (absolute URLs, `//host`, `/\host`, `javascript:`, the empty string) answers `"/"`. The
/// result is always a valid `Location` header value.
///
/// # Example
///
/// ```
/// use axum_tessera::guard::safe_return_to;
///
/// assert_eq!(safe_return_to("/admin?tab=users"), "/admin?tab=users");
/// assert_eq!(safe_return_to("//evil.example"), "/");
/// assert_eq!(safe_return_to("/%09/evil.example/"), "/");
/// assert_eq!(safe_return_to("https://evil.example"), "/");
/// ```
pub fn safe_return_to(next: &str) -> &str {
    if is_local_path(next) {
        next
    } else {
        "/"
    }
}

fn is_local_path(next: &str) -> bool {
    let bytes = next.as_bytes();
    // `char::is_control` also covers the C1 controls, which arrive as two UTF-8 bytes.
    if bytes.first() != Some(&b'/') || next.chars().any(char::is_control) {
        return false;
    }
    let mut current = bytes.to_vec();
    for _ in 0..=MAX_DECODINGS {
        if unsafe_bytes(&current) {
            return false;
        }
        match percent_decode(&current) {
            Some(decoded) => current = decoded,
            None => return true,
        }
    }
    // Still encoded after that many rounds: no honest path looks like that.
    false
}

/// `//`, a backslash, or an ASCII control byte anywhere.
fn unsafe_bytes(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"//")
        || bytes.iter().any(|&b| b == b'\\' || b < 0x20 || b == 0x7f)
}

/// One round of percent-decoding; `None` when there is nothing to decode.
fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                // Two hex digits: at most 255.
                out.push((hi * 16 + lo) as u8);
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// The `next` query parameter as a safe return-to path: [`safe_return_to`] applied to it, or
/// `/` when it is missing. Never rejects.
///
/// # Example
///
/// ```
/// use axum::response::Redirect;
/// use axum_tessera::guard::ReturnTo;
///
/// // GET /login?next=%2Fadmin -> "/admin"; ?next=%2F%2Fevil.example -> "/"
/// async fn after_login(next: ReturnTo) -> Redirect {
///     Redirect::to(next.as_str())
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ReturnTo(String);

impl ReturnTo {
    /// The query parameter it is read from.
    pub const PARAM: &'static str = "next";

    /// `next` made safe by [`safe_return_to`].
    pub fn new(next: &str) -> Self {
        Self(safe_return_to(next).to_owned())
    }

    /// The path to redirect to.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path to redirect to, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Default for ReturnTo {
    /// `/`.
    fn default() -> Self {
        Self("/".to_owned())
    }
}

impl fmt::Debug for ReturnTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReturnTo").field(&self.0).finish()
    }
}

impl fmt::Display for ReturnTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReturnTo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == Self::PARAM)
            .map_or_else(Self::default, |(_, next)| Self::new(&next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_come_back() {
        struct Case {
            name: &'static str,
            next: &'static str,
            expect: &'static str,
        }
        let ok = |name, next| Case {
            name,
            next,
            expect: next,
        };
        let refused = |name, next| Case {
            name,
            next,
            expect: "/",
        };
        let cases = [
            ok("root", "/"),
            ok("path", "/admin"),
            ok("path and query", "/admin/users?page=2&q=a%20b"),
            ok("fragment", "/docs#intro"),
            ok("encoded single slash", "/a%2Fb"),
            ok("dot segments", "/a/../b"),
            ok("non-ASCII", "/caf\u{e9}"),
            ok("lone percent", "/100%"),
            // Conservative: `//` is refused in the query too, encoded or not.
            refused(
                "query holding an encoded URL",
                "/go?to=https:%2F%2Fevil.example",
            ),
            refused("empty", ""),
            refused("relative", "admin"),
            refused("absolute URL", "https://evil.example/"),
            refused("javascript", "javascript:alert(1)"),
            refused("scheme-relative", "//evil.example"),
            refused("triple slash", "///evil.example"),
            refused("backslash", "/\\evil.example"),
            refused("backslash later", "/a\\b"),
            refused("double slash later", "/a//b"),
            refused("tab", "/\t/evil.example/"),
            refused("CR LF", "/\r\nSet-Cookie: x=y"),
            refused("NUL", "/\0"),
            refused("DEL", "/\u{7f}"),
            refused("C1 control", "/\u{85}"),
            refused("encoded slashes", "/%2f%2fevil.example"),
            refused("encoded slashes, upper case", "/%2F%2Fevil.example"),
            refused("one encoded slash after a slash", "/%2fevil.example"),
            refused("encoded backslash", "/%5cevil.example"),
            refused("encoded tab", "/%09/evil.example/"),
            refused("encoded LF", "/%0a"),
            refused("encoded CR", "/%0D"),
            refused("encoded NUL", "/%00"),
            refused("encoded unit separator", "/%1f"),
            refused("encoded DEL", "/%7f"),
            refused("double-encoded slashes", "/%252f%252fevil.example"),
            refused("double-encoded tab", "/%2509/evil.example"),
            refused("triple-encoded backslash", "/%25255c"),
            refused("encoded too deep", "/%2525252525252f"),
        ];
        for case in cases {
            assert_eq!(safe_return_to(case.next), case.expect, "{}", case.name);
        }
    }

    #[test]
    fn percent_decoding_takes_only_two_hex_digits() {
        assert_eq!(percent_decode(b"%2f%41"), Some(b"/A".to_vec()));
        assert_eq!(percent_decode(b"%2"), None);
        assert_eq!(percent_decode(b"%zz%"), None);
        assert_eq!(percent_decode(b"a%2"), None);
        assert_eq!(percent_decode(b"%%41"), Some(b"%A".to_vec()));
    }
}
