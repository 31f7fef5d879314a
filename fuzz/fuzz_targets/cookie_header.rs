//! Cookie header reading: `transport::cookie_values` on arbitrary `Cookie` headers, each value
//! found then verified as a token, as the layer does.
#![no_main]

use std::sync::LazyLock;

use axum_tessera::__fuzz::{cookie_values, TokenCodec};
use axum_tessera::{Key, KeyRing};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "__Host-tessera";

static CODEC: LazyLock<TokenCodec> = LazyLock::new(|| {
    TokenCodec::new(
        &KeyRing::new(Key::from_bytes(&[7u8; 32]).unwrap()),
        "cookie:__Host-tessera",
    )
});

fuzz_target!(|data: &[u8]| {
    // Newlines separate header lines (HTTP/2 sends one `Cookie` header per cookie).
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, value);
        }
    }
    let name = std::str::from_utf8(data.get(..4).unwrap_or_default()).unwrap_or(NAME);
    for n in [NAME, name] {
        // The memchr scan must find what a plain byte split finds.
        let reference: Vec<&str> = headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|line| line.as_bytes().split(|&b| b == b';'))
            .filter_map(|pair| {
                let eq = pair.iter().position(|&b| b == b'=')?;
                let (k, v) = pair.split_at(eq);
                (k.trim_ascii() == n.as_bytes()).then_some(())?;
                std::str::from_utf8(v[1..].trim_ascii()).ok()
            })
            .collect();
        assert_eq!(cookie_values(&headers, n).collect::<Vec<_>>(), reference);
        for value in cookie_values(&headers, n) {
            assert!(!value.contains(';'), "a value never spans two pairs");
            assert_eq!(value, value.trim_ascii(), "values are trimmed");
            let _ = CODEC.verify(value, 1_700_000_000, 3600, 60);
        }
    }
});
