//! Return-to paths: `guard::safe_return_to` on arbitrary strings. Whatever it answers must be
//! the input or `/`, a valid `Location` value, and, resolved by a browser against the page
//! (WHATWG URL parsing), a URL on the same site, also after any number of percent-decodings.
#![no_main]

use axum_tessera::guard::safe_return_to;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use url::Url;

fn stays_on_site(base: &Url, location: &str) -> bool {
    base.join(location).is_ok_and(|u| {
        u.scheme() == base.scheme() && u.host() == base.host() && u.port() == base.port()
    })
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(next) = std::str::from_utf8(data) else {
        return;
    };
    let out = safe_return_to(next);
    assert!(out == next || out == "/", "{next:?} -> {out:?}");
    assert!(
        HeaderValue::from_str(out).is_ok(),
        "{out:?} is not a header value"
    );
    let base = Url::parse("https://site.example/login").unwrap();
    let mut current = out.as_bytes().to_vec();
    for _ in 0..8 {
        if let Ok(text) = std::str::from_utf8(&current) {
            assert!(
                stays_on_site(&base, text),
                "{out:?} (as {text:?}) leaves the site"
            );
        }
        assert!(!current.windows(2).any(|w| w == b"//"), "{out:?}");
        assert!(
            !current.iter().any(|&b| b == b'\\' || b < 0x20 || b == 0x7f),
            "{out:?}"
        );
        let decoded = percent_decode(&current);
        if decoded == current {
            break;
        }
        current = decoded;
    }
});
