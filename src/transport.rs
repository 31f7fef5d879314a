//! Reading a token from request headers in the configured order, and writing a new or
//! cleared token to the response.

use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue};

use crate::config::{TokenSource, SESSION_TOKEN_HEADER};
use crate::event::RejectReason;
use crate::layer::{LayerState, Transport};
use crate::session::{Emit, Incoming};
use crate::token::{TokenError, MAX_TOKEN_LEN};

/// Finds the first token that verifies, trying sources in order. Rejected candidates are
/// reported to `reject` (never with their value) and skipped; none of them is ever an error
/// by itself.
pub(crate) fn read(
    layer: &LayerState,
    headers: &HeaderMap,
    now: i64,
    reject: &mut dyn FnMut(RejectReason),
) -> Option<Incoming> {
    for source in &layer.sources {
        let found = match source {
            TokenSource::Cookie => {
                let name = layer.cookie.cookie_name();
                cookie_values(headers, name)
                    .find_map(|value| verify(layer, source, value, now, reject))
            }
            TokenSource::Bearer => headers
                .get_all(AUTHORIZATION)
                .iter()
                .filter_map(|v| bearer(v.as_bytes()))
                .find_map(|value| verify(layer, source, value, now, reject)),
            TokenSource::Header(name) => headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|value| verify(layer, source, value.trim(), now, reject)),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn verify(
    layer: &LayerState,
    source: &TokenSource,
    value: &str,
    now: i64,
    reject: &mut dyn FnMut(RejectReason),
) -> Option<Incoming> {
    let (transport, other) = match source {
        TokenSource::Cookie => (Transport::Cookie, Transport::Header),
        _ => (Transport::Header, Transport::Cookie),
    };
    let verify = |t: Transport| {
        layer
            .codec(t)
            .verify(value, now, layer.absolute, layer.skew)
    };
    match verify(transport) {
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

/// Every value of cookie `name` across all `Cookie` headers, in order. Duplicates are all
/// returned so the first one that verifies wins, whatever else a client (or an attacker
/// able to plant a cookie) sent.
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n.trim() == name).then_some(v.trim())
        })
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

/// Writes what the commit decided onto the response headers.
pub(crate) fn write(layer: &LayerState, emit: Emit, headers: &mut HeaderMap) {
    let value = match emit {
        Emit::Nothing => return,
        Emit::Token {
            token,
            transport: Transport::Header,
            ..
        } => {
            if let Ok(v) = HeaderValue::from_str(&token) {
                headers.insert(SESSION_TOKEN_HEADER, v);
            }
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return;
        }
        Emit::Clear {
            transport: Transport::Header,
        } => return,
        Emit::Token { token, max_age, .. } => set_cookie(layer, &token, Some(max_age)),
        Emit::Clear { .. } => set_cookie(layer, "", None),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.append(SET_COOKIE, v);
        headers.append(VARY, HeaderValue::from_static("Cookie"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// `max_age`: `Some(seconds)` for a live token, `None` to clear the cookie.
fn set_cookie(layer: &LayerState, value: &str, max_age: Option<i64>) -> String {
    let cfg = &layer.cookie;
    let mut builder = cookie::Cookie::build((cfg.cookie_name(), value))
        .path(cfg.path_value())
        .secure(cfg.is_secure())
        .http_only(cfg.is_http_only())
        .same_site(cfg.same_site_value());
    if let Some(domain) = cfg.domain_value() {
        builder = builder.domain(domain);
    }
    match max_age {
        None => builder = builder.max_age(time::Duration::ZERO),
        Some(secs) if cfg.is_persistent() => {
            builder = builder.max_age(time::Duration::seconds(secs));
        }
        Some(_) => {}
    }
    builder.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_finds_every_duplicate_in_order() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; sid=first; b=2"));
        h.append(COOKIE, HeaderValue::from_static("sid=second"));
        let got: Vec<_> = cookie_values(&h, "sid").collect();
        assert_eq!(got, ["first", "second"]);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bEaReR abc"), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
    }
}
