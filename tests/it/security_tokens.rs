//! Token integrity attacks, through the HTTP surface: every tampered, truncated, padded,
//! re-encoded, foreign or retired token is an anonymous request that never reaches the store.

use axum::http::{header, HeaderValue};
use axum_tessera::__fuzz::TokenCodec;
use axum_tessera::config::{TokenSource, SESSION_TOKEN_HEADER};
use axum_tessera::{CookieConfig, KeyRing, SessionConfig};

use crate::support::harness::{self, id_of, key, Harness, COOKIE};

/// Sends `value` as the session cookie and answers whether the server saw a live session,
/// asserting that a rejected token made no store call. `None` when `value` cannot be sent in
/// a header at all.
async fn probe(h: &Harness, value: &[u8]) -> Option<bool> {
    let mut raw = format!("{COOKIE}=").into_bytes();
    raw.extend_from_slice(value);
    let cookie = HeaderValue::from_bytes(&raw).ok()?;
    let loads = h.store.loads();
    let reply = h.whoami_raw(cookie).await;
    let live = reply.live();
    if !live {
        assert_eq!(h.store.loads(), loads, "rejected token reached the store");
        assert!(
            reply.set_cookie().is_none(),
            "no cookie for a rejected token"
        );
    }
    Some(live)
}

const SEGMENTS: [&str; 4] = ["version", "id", "issued", "mac"];

/// Index of the segment byte `i` of `token` belongs to (dots count with the segment after).
fn segment_of(token: &str, i: usize) -> usize {
    token[..i].matches('.').count()
}

#[tokio::test]
async fn bit_flip_in_any_segment_is_rejected() {
    let h = Harness::web();
    let token = h.new_session("v").await;
    assert_eq!(probe(&h, token.as_bytes()).await, Some(true), "baseline");
    let mut rejected = [0usize; 4];
    for i in 0..token.len() {
        for bit in 0..8 {
            let mut bytes = token.clone().into_bytes();
            bytes[i] ^= 1 << bit;
            if let Some(live) = probe(&h, &bytes).await {
                assert!(!live, "flip of bit {bit} at {i} accepted");
                rejected[segment_of(&token, i)] += 1;
            }
        }
    }
    for (segment, n) in SEGMENTS.iter().zip(rejected) {
        assert!(n >= 8, "{segment}: only {n} flips were sendable");
    }
}

#[tokio::test]
async fn truncation_by_any_length_is_rejected() {
    let h = Harness::web();
    let token = h.new_session("v").await;
    for cut in 1..=token.len() {
        let short = &token[..token.len() - cut];
        assert_eq!(probe(&h, short.as_bytes()).await, Some(false), "cut {cut}");
    }
}

#[tokio::test]
async fn trailing_junk_is_rejected() {
    let h = Harness::web();
    let token = h.new_session("v").await;
    for junk in ["=", "==", ".", ".x", ".AAAA", "%0A", "\\n", "x", "A"] {
        let value = format!("{token}{junk}");
        assert_eq!(probe(&h, value.as_bytes()).await, Some(false), "{junk:?}");
    }
    // Non-ASCII bytes (obs-text) are legal in a header value but never in a token.
    for junk in ["é", "\u{200b}", "\u{ff0e}"] {
        let value = format!("{token}{junk}");
        assert_eq!(probe(&h, value.as_bytes()).await, Some(false), "{junk:?}");
    }
    let latin1 = [token.as_bytes(), &[0xe9]].concat();
    assert_eq!(probe(&h, &latin1).await, Some(false), "latin-1 byte");
    // Control characters cannot travel in a header; the codec refuses them on its own too.
    let codec = TokenCodec::new(&KeyRing::new(key(1)), &format!("cookie:{COOKIE}"));
    for junk in ["\n", "\r\n", "\0", "\t."] {
        let value = format!("{token}{junk}");
        assert!(
            HeaderValue::from_str(&value).is_err() || value.ends_with('.'),
            "{junk:?} should not be sendable"
        );
        assert!(
            codec.verify(&value, harness::T0, 3600, 60).is_err(),
            "{junk:?}"
        );
    }
}

#[tokio::test]
async fn leading_junk_and_extra_segments_are_rejected() {
    let h = Harness::web();
    let token = h.new_session("v").await;
    let (version, rest) = token.split_at(2);
    for value in [
        format!(".{token}"),
        format!("v{token}"),
        format!("V1{rest}"),
        format!("v2{rest}"),
        format!("{version}.{rest}"),
        format!("{token}.{}", id_of(&token)),
        token.replacen('.', "..", 1),
        format!("\"{token}\""),
    ] {
        assert_eq!(probe(&h, value.as_bytes()).await, Some(false), "{value}");
    }
}

/// Base64url alphabet index of `c`.
fn b64_index(c: u8) -> usize {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ALPHABET.iter().position(|&a| a == c).unwrap()
}

#[tokio::test]
async fn non_canonical_base64_with_unused_low_bits_set_is_rejected() {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let h = Harness::web();
    let token = h.new_session("v").await;
    let parts: Vec<&str> = token.split('.').collect();
    // 32 bytes in 43 characters leave the two low bits of the last character unused: setting
    // them spells the same bytes differently, which must not be a second valid token.
    for segment in [1, 3] {
        let last = *parts[segment].as_bytes().last().unwrap();
        let canonical = b64_index(last);
        assert_eq!(canonical & 3, 0, "canonical form has the low bits clear");
        for low in 1..4 {
            let mut changed = parts.clone();
            let mut seg = parts[segment].as_bytes().to_vec();
            *seg.last_mut().unwrap() = ALPHABET[canonical | low];
            let seg = String::from_utf8(seg).unwrap();
            changed[segment] = &seg;
            let value = changed.join(".");
            assert_eq!(
                probe(&h, value.as_bytes()).await,
                Some(false),
                "{} low bits {low}",
                SEGMENTS[segment]
            );
        }
    }
    // The issue time has one spelling too: no leading zeros.
    let padded = format!("{}.{}.0{}.{}", parts[0], parts[1], parts[2], parts[3]);
    assert_eq!(
        probe(&h, padded.as_bytes()).await,
        Some(false),
        "0-padded time"
    );
    // Standard (not URL-safe) base64 for the same bytes.
    let std = token.replace('-', "+").replace('_', "/");
    if std != token {
        assert_eq!(
            probe(&h, std.as_bytes()).await,
            Some(false),
            "standard alphabet"
        );
    }
}

#[tokio::test]
async fn empty_and_whitespace_values_are_anonymous_without_a_store_call() {
    let h = Harness::web();
    for raw in [
        format!("{COOKIE}="),
        format!("{COOKIE}=   "),
        format!("{COOKIE}=\t"),
        COOKIE.to_owned(),
        format!("{COOKIE} ="),
        ";;;".to_owned(),
        String::new(),
        " ".to_owned(),
        "=".to_owned(),
    ] {
        let reply = h.whoami_raw(HeaderValue::from_str(&raw).unwrap()).await;
        assert!(!reply.live(), "{raw:?}");
        assert!(reply.set_cookie().is_none(), "{raw:?}");
    }
    assert_eq!(h.store.calls(), 0);
}

#[tokio::test]
async fn token_signed_with_another_key_is_rejected() {
    let h = Harness::web();
    let attacker = h.with_config(SessionConfig::web(key(2)));
    let forged = attacker.new_session("v").await;
    assert!(attacker.call("GET", "/whoami", Some(&forged)).await.live());
    assert_eq!(probe(&h, forged.as_bytes()).await, Some(false));
}

#[tokio::test]
async fn token_minted_for_header_transport_is_rejected_as_a_cookie() {
    let h = Harness::web();
    let api = h.with_config(
        SessionConfig::web(key(1)).token_sources([TokenSource::Header(SESSION_TOKEN_HEADER)]),
    );
    let reply = api.call("POST", "/write/v", None).await;
    let header_token = reply.headers[SESSION_TOKEN_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    let req = axum::http::Request::builder()
        .uri("/whoami")
        .header(SESSION_TOKEN_HEADER, &header_token)
        .body(axum::body::Body::empty())
        .unwrap();
    assert!(api.send(req).await.live(), "valid as a header token");
    assert_eq!(probe(&h, header_token.as_bytes()).await, Some(false));
}

#[tokio::test]
async fn cookie_token_is_rejected_in_the_header_transport() {
    let h = Harness::web();
    let cookie_token = h.new_session("v").await;
    let api = h.with_config(
        SessionConfig::web(key(1)).token_sources([TokenSource::Header(SESSION_TOKEN_HEADER)]),
    );
    let loads = h.store.loads();
    let req = axum::http::Request::builder()
        .uri("/whoami")
        .header(SESSION_TOKEN_HEADER, &cookie_token)
        .body(axum::body::Body::empty())
        .unwrap();
    assert!(!api.send(req).await.live());
    assert_eq!(h.store.loads(), loads);
}

#[tokio::test]
async fn token_minted_for_another_cookie_name_is_rejected() {
    let h = Harness::web();
    let other = h.with_config(SessionConfig::web(key(1)).cookie(CookieConfig::new("__Host-other")));
    let reply = other.call("POST", "/write/v", None).await;
    let foreign = reply.set_cookie().unwrap().value().to_owned();
    assert_eq!(reply.set_cookie().unwrap().name(), "__Host-other");
    let req = axum::http::Request::builder()
        .uri("/whoami")
        .header(header::COOKIE, format!("__Host-other={foreign}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert!(other.send(req).await.live(), "valid under its own name");
    assert_eq!(probe(&h, foreign.as_bytes()).await, Some(false));
}

#[tokio::test]
async fn token_from_a_key_removed_from_the_ring_is_rejected() {
    let old = Harness::web();
    let token = old.new_session("v").await;
    let rotated = old.with_config(SessionConfig::web(
        KeyRing::new(key(2)).with_fallback(key(1)),
    ));
    assert!(rotated.call("GET", "/whoami", Some(&token)).await.live());
    let retired = old.with_config(SessionConfig::web(key(2)));
    assert_eq!(probe(&retired, token.as_bytes()).await, Some(false));
}

#[tokio::test]
async fn token_from_a_fallback_key_verifies_and_is_reissued_under_the_current_key() {
    let old = Harness::web();
    let token = old.new_session("kept").await;
    let rotated = old.with_config(SessionConfig::web(
        KeyRing::new(key(2)).with_fallback(key(1)),
    ));
    old.clock.advance(time::Duration::minutes(1));

    let reply = rotated.call("GET", "/whoami", Some(&token)).await;
    assert!(reply.live());
    assert!(reply.body.contains("k=kept"));
    let cookie = reply.set_cookie().expect("re-issued");
    let fresh = cookie.value().to_owned();
    assert_ne!(fresh, token);
    assert_eq!(id_of(&fresh), id_of(&token), "same session, new signature");
    assert_eq!(cookie.name(), COOKIE);
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.max_age(),
        Some(time::Duration::hours(12) - time::Duration::minutes(1)),
        "the absolute deadline does not move"
    );

    // The new token needs only the new key, and is not re-issued again.
    let only_new = old.with_config(SessionConfig::web(key(2)));
    let again = only_new.call("GET", "/whoami", Some(&fresh)).await;
    assert!(again.live() && again.body.contains("k=kept"));
    assert!(again.set_cookie().is_none());
    assert_eq!(probe(&only_new, token.as_bytes()).await, Some(false));
}

#[tokio::test]
async fn token_in_the_url_is_ignored() {
    let h = Harness::web();
    let token = h.new_session("v").await;
    for path in [
        format!("/whoami?{COOKIE}={token}"),
        format!("/whoami?token={token}"),
        format!("/whoami?session={token}&sid={token}"),
        format!("/whoami#{token}"),
    ] {
        let reply = h.call("GET", &path, None).await;
        assert!(!reply.live(), "{path}");
    }
    assert_eq!(h.store.loads(), 0);
}

#[tokio::test]
async fn token_is_never_echoed_in_a_body_or_header_unless_asked() {
    let h = Harness::web();
    let token = h.new_session("v").await;
    let reply = h.call("GET", "/whoami", Some(&token)).await;
    assert!(reply.live());
    assert!(!reply.body.contains(&token));
    for (name, value) in &reply.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(id_of(&token)), "{name}: {value}");
    }
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let key_bytes = [0x5au8; 32];
    let k = axum_tessera::Key::from_bytes(&key_bytes).unwrap();
    let cfg = SessionConfig::web(KeyRing::new(k.clone()).with_fallback(key(2)));
    let id = axum_tessera::__fuzz::SessionId::generate();
    let encoded = id.encode();
    let codec = TokenCodec::new(&KeyRing::new(k.clone()), "p");
    let token = codec.sign(&id, 1);
    for (what, text) in [
        ("key", format!("{k:?}")),
        ("config", format!("{cfg:?}")),
        (
            "layer",
            format!("{:?}", axum_tessera::SessionLayer::new(cfg.clone())),
        ),
        ("id", format!("{id:?} {id}")),
        ("codec", format!("{codec:?}")),
        (
            "store key",
            format!("{:?} {}", id.store_key(), id.store_key()),
        ),
    ] {
        assert!(!text.contains(&encoded), "{what}: {text}");
        assert!(!text.contains(&token[3..20]), "{what}: {text}");
        assert!(
            !text.contains("5a5a") && !text.contains("90, 90"),
            "{what}: {text}"
        );
    }
}

/// The token's MAC is HMAC-SHA256 exactly as documented, recomputed here with the `hmac`
/// and `sha2` crates from the key alone: any other algorithm, sub-key derivation or message
/// layout fails this test (a round trip alone would pass with any MAC).
#[tokio::test]
async fn mac_is_hmac_sha256_over_the_documented_message() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    fn base62(text: &str) -> u64 {
        const DIGITS: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        text.chars()
            .fold(0, |n, c| n * 62 + DIGITS.find(c).unwrap() as u64)
    }

    let secret = [1u8; 32]; // `key(1)`
    let h = Harness::web();
    let cookie_token = h.logged_in("alice").await;
    let header = Harness::new(
        SessionConfig::web(key(1)).token_sources([TokenSource::Header(SESSION_TOKEN_HEADER)]),
    );
    let header_token = header
        .call("POST", "/login/alice", None)
        .await
        .headers
        .get(SESSION_TOKEN_HEADER)
        .expect("login sends the token in the header")
        .to_str()
        .unwrap()
        .to_owned();
    let cookie_purpose = format!("cookie:{COOKIE}");
    for (token, purpose) in [
        (&cookie_token, cookie_purpose.as_str()),
        (&header_token, "header"),
    ] {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "v1");
        let id = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let issued = base62(parts[2]);
        let subkey = hmac(&secret, &[b"axum-tessera/v1/subkey/", purpose.as_bytes()]);
        let len = (purpose.len() as u32).to_be_bytes();
        let expected = hmac(
            &subkey,
            &[b"v1", &len, purpose.as_bytes(), &id, &issued.to_be_bytes()],
        );
        assert_eq!(parts[3], URL_SAFE_NO_PAD.encode(expected), "{purpose}");
    }
}
