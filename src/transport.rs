//! Reading a token from request headers in the configured order, and writing a new or
//! cleared token to the response.

// `pub` items here are re-exported to the fuzz targets only (`crate::__fuzz`).
#![cfg_attr(not(feature = "fuzz"), allow(unreachable_pub))]

use std::ops::ControlFlow;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue};

use crate::config::{TokenSource, SESSION_TOKEN_HEADER};
use crate::event::RejectReason;
use crate::state::LayerState;
use crate::token::{TokenError, Verified, MAX_TOKEN_LEN};

/// How new tokens leave the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Cookie,
    Header,
}

/// A verified token as it arrived.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    pub(crate) verified: Verified,
    pub(crate) source: TokenSource,
}

impl Incoming {
    /// How a token for this session goes back to the client: the way it came.
    pub(crate) fn transport(&self) -> Transport {
        match self.source {
            TokenSource::Cookie => Transport::Cookie,
            _ => Transport::Header,
        }
    }
}

/// What the response carries about the session after the commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Emit {
    Nothing,
    /// Send this token; `max_age` in seconds for a persistent cookie, omitted for a
    /// browser-session one (`persistent` false).
    Token {
        token: String,
        transport: Transport,
        max_age: i64,
        persistent: bool,
    },
    /// Tell the client to drop its token.
    Clear {
        transport: Transport,
    },
}

/// How many well-formed candidates one request may have MAC-checked. Browsers send at most a
/// few same-named cookies; without a cap, a header packed with forged tokens would buy an
/// attacker thousands of HMACs per request.
const MAX_SIGNATURE_CHECKS: usize = 8;

/// Which kinds of token candidates a request presented, valid or not: a request that
/// presented none is told to log in, one whose tokens all failed that its token is invalid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Presented {
    /// A session cookie (which a browser attaches by itself and may keep after it expired).
    pub(crate) ambient: bool,
    /// A bearer or custom header token (which a client sends deliberately).
    pub(crate) explicit: bool,
}

impl Presented {
    pub(crate) fn any(self) -> bool {
        self.ambient || self.explicit
    }
}

/// What [`read`] found: the first token that verified, and what was presented at all.
#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) incoming: Option<Incoming>,
    pub(crate) presented: Presented,
}

/// Finds the first token that verifies, trying sources in order. Rejected candidates are
/// reported to `reject` (never with their value) and skipped; none of them is ever an error
/// by itself.
pub(crate) fn read(
    layer: &LayerState,
    headers: &HeaderMap,
    now: i64,
    reject: &mut dyn FnMut(RejectReason),
) -> Read {
    let mut checks = MAX_SIGNATURE_CHECKS;
    let mut presented = Presented::default();
    for source in layer.sources() {
        let found = match source {
            TokenSource::Cookie => {
                let name = CookieName::new(layer.cookie().cookie_name());
                let mut found = None;
                scan_cookies(headers, &name, |value| {
                    presented.ambient |= !value.is_empty();
                    found = verify(layer, source, value, now, reject, &mut checks);
                    match found {
                        Some(_) => ControlFlow::Break(()),
                        None => ControlFlow::Continue(()),
                    }
                });
                found
            }
            TokenSource::Bearer => headers.get_all(AUTHORIZATION).iter().find_map(|v| {
                presented.explicit |= is_bearer(v.as_bytes());
                let value = bearer(v.as_bytes())?;
                verify(layer, source, value.as_bytes(), now, reject, &mut checks)
            }),
            TokenSource::Header(name) => headers.get_all(name).iter().find_map(|v| {
                presented.explicit |= !v.as_bytes().trim_ascii().is_empty();
                let value = v.to_str().ok()?;
                verify(
                    layer,
                    source,
                    value.trim().as_bytes(),
                    now,
                    reject,
                    &mut checks,
                )
            }),
        };
        if found.is_some() {
            return Read {
                incoming: found,
                presented,
            };
        }
    }
    Read {
        incoming: None,
        presented,
    }
}

fn verify(
    layer: &LayerState,
    source: &TokenSource,
    value: &[u8],
    now: i64,
    reject: &mut dyn FnMut(RejectReason),
    checks: &mut usize,
) -> Option<Incoming> {
    let (transport, other) = match source {
        TokenSource::Cookie => (Transport::Cookie, Transport::Header),
        _ => (Transport::Header, Transport::Cookie),
    };
    if *checks == 0 {
        tracing::debug!(source = ?source, "too many session token candidates; rest ignored");
        return None;
    }
    let verify = |t: Transport| {
        layer
            .codec(t)
            .verify_bytes(value, now, layer.timeouts().absolute, layer.skew())
    };
    let result = verify(transport);
    if !matches!(result, Err(TokenError::Malformed | TokenError::Oversized)) {
        *checks -= 1;
    }
    match result {
        Ok(verified) => Some(Incoming {
            verified,
            source: source.clone(),
        }),
        // Only a failed token pays for the second check, which tells an operator that a
        // client mixes up transports rather than forging.
        Err(TokenError::BadSignature) if verify(other).is_ok() => {
            reject(RejectReason::WrongPurpose);
            None
        }
        Err(err) => {
            reject(err.into());
            None
        }
    }
}

/// Every value of cookie `name` across all `Cookie` headers, in order, with surrounding
/// whitespace removed. Duplicates are all returned so the first one that verifies wins,
/// whatever else a client (or an attacker able to plant a cookie) sent.
///
/// Lines are split as bytes: a cookie with non-ASCII bytes elsewhere in the header (which
/// another application on the same site may set) must not hide this one. Values that are not
/// UTF-8 are skipped. The fuzz targets' way into `scan_cookies`, the scan the layer runs.
#[cfg(any(test, feature = "fuzz"))]
pub fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    let mut values = Vec::new();
    scan_cookies(headers, &CookieName::new(name), |value| {
        values.push(value);
        ControlFlow::Continue(())
    });
    values
        .into_iter()
        .filter_map(|value| std::str::from_utf8(value).ok())
}

/// Hands `found` every value of cookie `name` (see [`cookie_values`]) until it breaks.
/// Plain loops with the caller's closure inlined: iterator adaptors over the pairs cost more
/// than the scan itself.
fn scan_cookies<'a>(
    headers: &'a HeaderMap,
    name: &CookieName<'_>,
    mut found: impl FnMut(&'a [u8]) -> ControlFlow<()>,
) {
    for line in headers.get_all(COOKIE) {
        for pair in CookiePairs::of(line) {
            let Some(value) = name.value_in(pair) else {
                continue;
            };
            // Values that are not UTF-8 are skipped, without running `from_utf8` over every
            // token: an ASCII value (every token) is UTF-8.
            if !all_ascii(value) && std::str::from_utf8(value).is_err() {
                continue;
            }
            if found(value).is_break() {
                return;
            }
        }
    }
}

/// Finds the value of one cookie name in a `name=value` pair.
#[derive(Clone, Copy)]
struct CookieName<'a> {
    name: &'a [u8],
    /// Whether the name has no `=` and no surrounding whitespace (every valid cookie name).
    plain: bool,
}

impl<'a> CookieName<'a> {
    fn new(name: &'a str) -> Self {
        let name = name.as_bytes();
        Self {
            name,
            plain: !name.contains(&b'=') && name.trim_ascii().len() == name.len(),
        }
    }

    /// The value, trimmed, when `pair` is this cookie's.
    ///
    /// A pair is `name=value` when the part before its first `=`, trimmed, is the name. For a
    /// plain name that is "the pair, trimmed at the start, begins with the name, then
    /// optional whitespace and `=`": a test of the first bytes, where the search for `=` ran
    /// a second `memchr` over every pair. Any other name takes the search.
    fn value_in<'p>(&self, pair: &'p [u8]) -> Option<&'p [u8]> {
        let value = if self.plain {
            strip_name(pair.trim_ascii_start(), self.name)?
                .trim_ascii_start()
                .strip_prefix(b"=")?
        } else {
            let eq = memchr::memchr(b'=', pair)?;
            let (n, v) = pair.split_at(eq);
            if n.trim_ascii() != self.name {
                return None;
            }
            &v[1..]
        };
        Some(value.trim_ascii())
    }
}

/// `pair` after `name`, if it starts with it. Compared byte by byte in place: a cookie name
/// is a few bytes, and `strip_prefix` called `memcmp` for them on every pair.
fn strip_name<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = pair.split_at_checked(name.len())?;
    head.iter().zip(name).all(|(a, b)| a == b).then_some(rest)
}

/// Whether every byte is ASCII: one OR over the bytes, which the compiler turns into a few
/// vector instructions for a token, where `<[u8]>::is_ascii` took about 300 instructions
/// for one (callgrind) and `from_utf8` about 190.
fn all_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |acc, &b| acc | b) < 0x80
}

/// The `;`-separated pairs of one `Cookie` line, as `split(|&b| b == b';')` yields them
/// (empty ones included), found with `memchr`: a session token is the longest value in the
/// header, and a byte-by-byte split ran a closure over every one of its characters.
struct CookiePairs<'a> {
    /// `None` once the last pair was yielded.
    rest: Option<&'a [u8]>,
}

impl<'a> CookiePairs<'a> {
    fn of(line: &'a HeaderValue) -> Self {
        Self {
            rest: Some(line.as_bytes()),
        }
    }
}

impl<'a> Iterator for CookiePairs<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(b';', rest) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Whether an `Authorization` value uses the `Bearer` scheme, whatever follows (even
/// nothing, or far too much): such a request presented a bearer token.
fn is_bearer(value: &[u8]) -> bool {
    value.len() >= 6
        && value[..6].eq_ignore_ascii_case(b"bearer")
        && value.get(6).is_none_or(|&b| b == b' ' || b == b'\t')
}

/// The credentials of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&str> {
    if value.len() > MAX_TOKEN_LEN + 16 || value.len() < 7 {
        return None;
    }
    let (scheme, rest) = value.split_at(7);
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    std::str::from_utf8(rest).ok().map(str::trim)
}

/// Writes what the commit decided onto the response headers. Only a session a handler
/// loaded has anything to write, and the response of such a session already varies on every
/// token source ([`vary_on_sources`]), `Cookie` included when a cookie can be sent.
pub(crate) fn write(layer: &LayerState, emit: Emit, headers: &mut HeaderMap) {
    let value = match emit {
        Emit::Nothing => return,
        Emit::Token {
            token,
            transport: Transport::Header,
            ..
        } => {
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(token)) {
                headers.insert(SESSION_TOKEN_HEADER, v);
            }
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return;
        }
        Emit::Clear {
            transport: Transport::Header,
        } => return,
        Emit::Token {
            token,
            max_age,
            persistent,
            ..
        } => set_cookie(layer, &token, Some(max_age).filter(|_| persistent)),
        Emit::Clear { .. } => set_cookie(layer, "", Some(0)),
    };
    // Hands the string's buffer to the header as is: no copy.
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.append(SET_COOKIE, v);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Marks a response whose content may depend on the session (the handler loaded it) as
/// varying on every header a token can arrive in, so a shared cache never serves one client's
/// page to another.
pub(crate) fn vary_on_sources(layer: &LayerState, headers: &mut HeaderMap) {
    for source in layer.sources() {
        match source {
            TokenSource::Cookie => add_vary(headers, HeaderValue::from_static("Cookie")),
            TokenSource::Bearer => add_vary(headers, HeaderValue::from_static("Authorization")),
            // From a HeaderName: shares its bytes, no copy.
            TokenSource::Header(name) => add_vary(headers, HeaderValue::from(name.clone())),
        }
    }
}

/// Appends `name` to `Vary` unless it (or `*`) is already listed. Runs on every response
/// that loaded a session, so it takes a ready value: building one from a `&str` copied it
/// into a fresh allocation each time.
fn add_vary(headers: &mut HeaderMap, name: HeaderValue) {
    let listed = headers
        .get_all(VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|v| v == b"*" || v.eq_ignore_ascii_case(name.as_bytes()));
    if !listed {
        headers.append(VARY, name);
    }
}

/// `max_age`: `Some(seconds)` for a persistent cookie (`Some(0)` clears it), `None` for a
/// browser-session cookie.
fn set_cookie(layer: &LayerState, value: &str, max_age: Option<i64>) -> String {
    let name = layer.cookie().cookie_name();
    let attributes = layer.cookie_attributes();
    let mut out = String::with_capacity(name.len() + value.len() + attributes.len() + 32);
    out.push_str(name);
    out.push('=');
    out.push_str(value);
    out.push_str(attributes);
    if let Some(secs) = max_age {
        // `itoa`, not `write!`: the formatting machinery cost more than the rest of the line.
        out.push_str("; Max-Age=");
        out.push_str(itoa::Buffer::new().format(secs));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_finds_every_duplicate_in_order() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; sid=first; b=2"));
        h.append(COOKIE, HeaderValue::from_static("sid=second"));
        h.append(
            COOKIE,
            HeaderValue::from_static("\t sid \t= third\t ;sidx=no; xsid=no"),
        );
        let got: Vec<_> = cookie_values(&h, "sid").collect();
        assert_eq!(got, ["first", "second", "third"]);
    }

    /// What `set_cookie` wrote before the attributes were pre-rendered: the cookie crate's
    /// own output, which the fast path must reproduce byte for byte.
    use crate::config::CookieConfig;

    fn via_cookie_crate(cfg: &CookieConfig, value: &str, max_age: Option<i64>) -> String {
        let mut builder = cookie::Cookie::build((cfg.cookie_name(), value))
            .path(cfg.path_value())
            .secure(cfg.is_secure())
            .http_only(cfg.is_http_only())
            .same_site(cfg.same_site_value());
        if let Some(domain) = cfg.domain_value() {
            builder = builder.domain(domain);
        }
        if let Some(secs) = max_age {
            builder = builder.max_age(time::Duration::seconds(secs));
        }
        builder.build().to_string()
    }

    #[test]
    fn set_cookie_matches_the_cookie_crate() {
        use crate::{Key, SessionConfig, SessionLayer};
        struct Case {
            name: &'static str,
            cookie: CookieConfig,
        }
        let cases = [
            Case {
                name: "defaults",
                cookie: CookieConfig::default(),
            },
            Case {
                name: "plain http, strict, domain",
                cookie: CookieConfig::new("sid")
                    .secure(false)
                    .same_site(cookie::SameSite::Strict)
                    .domain("example.test")
                    .path("/app"),
            },
            Case {
                name: "browser session, not http-only",
                cookie: CookieConfig::new("s").http_only(false).persistent(false),
            },
        ];
        for case in cases {
            let layer = SessionLayer::new(
                SessionConfig::web(Key::from_bytes(&[1; 32]).unwrap()).cookie(case.cookie.clone()),
            );
            let state = layer.state();
            for (value, max_age) in [("v1.abc", Some(43_200)), ("", Some(0)), ("x", None)] {
                assert_eq!(
                    set_cookie(state, value, max_age),
                    via_cookie_crate(&case.cookie, value, max_age),
                    "{}",
                    case.name
                );
            }
        }
    }

    /// The `memchr` scan and the name's prefix test find what the plain byte split they
    /// replaced found, on lines built from the pieces that matter: separators, whitespace,
    /// `=`, the name and its look-alikes, for valid names and names with `=` or whitespace in them.
    #[test]
    fn cookie_values_matches_a_plain_split() {
        use rand::Rng as _;
        fn reference<'a>(headers: &'a HeaderMap, name: &'a str) -> Vec<&'a str> {
            headers
                .get_all(COOKIE)
                .iter()
                .flat_map(|line| line.as_bytes().split(|&b| b == b';'))
                .filter_map(|pair| {
                    let eq = pair.iter().position(|&b| b == b'=')?;
                    let (n, v) = pair.split_at(eq);
                    if n.trim_ascii() != name.as_bytes() {
                        return None;
                    }
                    std::str::from_utf8(v[1..].trim_ascii()).ok()
                })
                .collect()
        }
        let pieces: [&[u8]; 12] = [
            b";",
            b" ",
            b"\t",
            b"=",
            b"sid",
            b"sidx",
            b"s",
            b"d",
            b"v1.abc",
            b"a=b",
            b"\xc3\xa9",
            b"",
        ];
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let mut h = HeaderMap::new();
            for _ in 0..rng.random_range(1..3) {
                let line: Vec<u8> = (0..rng.random_range(0..12))
                    .flat_map(|_| pieces[rng.random_range(0..pieces.len())].iter().copied())
                    .collect();
                if let Ok(v) = HeaderValue::from_bytes(&line) {
                    h.append(COOKIE, v);
                }
            }
            // Valid names take the prefix test, the others the search for `=`.
            for name in ["sid", "", "s=d", "=", " sid", "sid ", "s d", "\tsid"] {
                let got: Vec<_> = cookie_values(&h, name).collect();
                assert_eq!(got, reference(&h, name), "{name:?} in {h:?}");
            }
        }
    }

    #[test]
    fn cookie_values_survives_non_ascii_neighbours() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_bytes("pref=caf\u{e9}; sid=mine; x=\u{fc}".as_bytes()).unwrap(),
        );
        let got: Vec<_> = cookie_values(&h, "sid").collect();
        assert_eq!(got, ["mine"]);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bEaReR abc"), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert!(is_bearer(b"Bearer") && is_bearer(b"bearer x") && !is_bearer(b"Bearerx"));
        assert!(!is_bearer(b"Basic abc"));
    }
}
