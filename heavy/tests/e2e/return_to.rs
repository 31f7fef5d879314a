//! Property tests of `guard::safe_return_to` against a real URL parser (the `url` crate, the
//! WHATWG algorithm browsers use) as the oracle: here rather than in `tests/it` because the
//! parser's dependencies would double what `cargo run --example demo` builds.

use axum_tessera::guard::safe_return_to;
use proptest::prelude::*;

/// `text` percent-decoded until nothing changes (at most 8 rounds), as bytes.
fn fully_decoded(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..8 {
        let next: Vec<u8> = form_decode(&bytes);
        if next == bytes {
            break;
        }
        bytes = next;
    }
    bytes
}

/// Percent-decoding only (no `+`), independent of the crate's own.
fn form_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            ) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// What a browser does with a `Location`: resolve it against the page's URL.
fn stays_on_site(location: &str) -> bool {
    let base = url::Url::parse("https://site.example/login").unwrap();
    base.join(location).is_ok_and(|u| {
        u.scheme() == "https" && u.host_str() == Some("site.example") && u.port().is_none()
    })
}

/// Pieces an attacker combines: slashes, backslashes, encodings of them and of controls.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/",
        "//",
        "\\",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "%25",
        "%252f",
        "%09",
        "%0a",
        "%0d",
        "%00",
        "%1f",
        "%7f",
        "\t",
        "\n",
        "\r",
        "\u{0}",
        "\u{85}",
        " ",
        ".",
        "..",
        ":",
        "@",
        "?",
        "#",
        "evil.example",
        "https:",
        "javascript:",
        "a",
        "é",
        "%",
        "%2",
        "2f",
    ]);
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn return_to_is_the_input_or_root(next in hostile()) {
        let out = safe_return_to(&next);
        prop_assert!(out == next || out == "/");
    }

    #[test]
    fn return_to_never_leaves_the_site(next in hostile()) {
        let out = safe_return_to(&next);
        prop_assert!(stays_on_site(out), "{out:?}");
        prop_assert!(out.starts_with('/'));
        prop_assert!(axum::http::HeaderValue::from_str(out).is_ok(), "{out:?}");
        let decoded = fully_decoded(out);
        prop_assert!(!decoded.windows(2).any(|w| w == b"//"), "{out:?}");
        prop_assert!(!decoded.iter().any(|&b| b == b'\\' || b < 0x20 || b == 0x7f), "{out:?}");
        // Whatever decodes it again still gets a path on this site.
        if let Ok(once) = std::str::from_utf8(&decoded) {
            prop_assert!(stays_on_site(once), "{out:?} decodes to {once:?}");
        }
    }

    #[test]
    fn return_to_keeps_plain_local_paths(
        segments in prop::collection::vec("[a-zA-Z0-9._~-]{1,8}", 0..6),
        query in prop::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"),
    ) {
        let mut path = format!("/{}", segments.join("/"));
        if let Some(q) = query {
            path = format!("{path}?{q}");
        }
        prop_assert_eq!(safe_return_to(&path), path.as_str());
    }

    #[test]
    fn return_to_survives_any_string(next in any::<String>()) {
        let out = safe_return_to(&next);
        prop_assert!(out == next || out == "/");
        prop_assert!(stays_on_site(out), "{out:?}");
        prop_assert!(axum::http::HeaderValue::from_str(out).is_ok(), "{out:?}");
    }
}
