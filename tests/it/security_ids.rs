//! Session ID attacks: guessable or colliding IDs, and crafted IDs (unknown, malformed,
//! path- or glob-like) that must not reach or grow the store.

use std::collections::HashSet;

use axum::http::HeaderValue;
use axum_tessera::__fuzz::{SessionId, TokenCodec, ID_LEN};
use axum_tessera::{KeyRing, SessionConfig};

use crate::support::harness::{id_of, key, Harness, COOKIE, T0};

fn url_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

#[test]
fn generated_ids_are_unique_full_length_and_url_safe() {
    const N: usize = 100_000;
    let mut seen = HashSet::with_capacity(N);
    for _ in 0..N {
        let id = SessionId::generate().encode();
        assert_eq!(id.len(), ID_LEN, "{id}");
        assert!(id.chars().all(url_safe), "{id}");
        assert!(seen.insert(id), "duplicate ID");
    }
    // 256 random bits: every one of the 64 symbols turns up in each leading position.
    let first: HashSet<char> = seen.iter().filter_map(|id| id.chars().next()).collect();
    assert_eq!(first.len(), 64);
}

#[tokio::test]
async fn ids_issued_over_http_are_unique_and_never_reused() {
    let h = Harness::web();
    let mut seen = HashSet::new();
    for _ in 0..300 {
        let token = h.new_session("v").await;
        assert_eq!(id_of(&token).len(), ID_LEN);
        assert!(seen.insert(id_of(&token).to_owned()));
    }
    // Login rotates to yet another fresh ID.
    let token = h.new_session("v").await;
    let reply = h.call("POST", "/login/u", Some(&token)).await;
    assert!(seen.insert(id_of(&reply.token().unwrap()).to_owned()));
}

#[tokio::test]
async fn crafted_ids_never_reach_the_store() {
    let h = Harness::web();
    let good = h.new_session("v").await;
    let parts: Vec<&str> = good.split('.').collect();
    let (issued, mac) = (parts[2], parts[3]);
    let calls = h.store.calls();
    let a43 = "A".repeat(43);
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("short", "abc".into()),
        ("one short", a43[1..].into()),
        ("overlong", format!("{a43}A")),
        ("very long", "A".repeat(4000)),
        ("colon", format!("{}:{}", &a43[..20], &a43[..22])),
        ("glob", "*".repeat(43)),
        ("glob suffix", format!("{}*", &a43[..42])),
        ("slash", format!("{}/{}", &a43[..20], &a43[..22])),
        ("dot dot", format!("..{}", &a43[..41])),
        ("dot dot slash", format!("../../{}", &a43[..37])),
        ("percent", format!("%2e%2e{}", &a43[..37])),
        ("space", format!("{} {}", &a43[..21], &a43[..21])),
        ("plus", "+".repeat(43)),
        ("padding", format!("{}=", &a43[..42])),
        ("store key hex", "0".repeat(64)),
    ];
    for (name, id) in &cases {
        for value in [format!("v1.{id}.{issued}.{mac}"), id.clone()] {
            let cookie = HeaderValue::from_str(&format!("{COOKIE}={value}")).unwrap();
            let reply = h.whoami_raw(cookie).await;
            assert!(!reply.live(), "{name}");
            assert!(reply.set_cookie().is_none(), "{name}");
        }
    }
    // CR/LF cannot be carried in a header at all; the codec refuses them before any crypto.
    let codec = TokenCodec::new(&KeyRing::new(key(1)), &format!("cookie:{COOKIE}"));
    for id in [format!("{}\r\n", &a43[..41]), format!("{}\n", &a43[..42])] {
        let value = format!("v1.{id}.{issued}.{mac}");
        assert!(HeaderValue::from_str(&value).is_err());
        assert!(codec.verify(&value, T0, 3600, 60).is_err());
    }
    assert_eq!(h.store.calls(), calls, "no store call for any crafted ID");
}

/// A correctly signed token for an ID the store has never seen (as from a stolen key, a
/// restored backup or another deployment sharing the key).
async fn unknown_but_signed(h: &Harness) -> String {
    let elsewhere = Harness::new(SessionConfig::web(key(1)));
    let token = elsewhere.new_session("elsewhere").await;
    assert_eq!(h.store.len(), 0);
    token
}

#[tokio::test]
async fn unknown_id_creates_no_record() {
    let h = Harness::web();
    let token = unknown_but_signed(&h).await;
    let reply = h.call("GET", "/whoami", Some(&token)).await;
    assert!(!reply.live());
    assert!(reply.set_cookie().is_none());
    assert_eq!(h.store.loads(), 1, "one lookup to learn it is unknown");
    assert_eq!(h.store.commits(), 0);
    assert_eq!(h.store.len(), 0);
}

#[tokio::test]
async fn unknown_id_is_not_adopted_when_the_handler_writes() {
    // Session adoption: a server that stores data under a client-chosen ID lets an attacker
    // fix the victim's ID in advance.
    let h = Harness::web();
    let planted = unknown_but_signed(&h).await;
    let reply = h.call("POST", "/write/mine", Some(&planted)).await;
    let fresh = reply.token().expect("a new session");
    assert_ne!(id_of(&fresh), id_of(&planted));
    assert_eq!(h.store.len(), 1);
    assert!(!h.call("GET", "/whoami", Some(&planted)).await.live());
    assert!(h.call("GET", "/whoami", Some(&fresh)).await.live());
}

/// What a store dump shows of a logged-in session: it is filed under SHA-256 of its ID, and
/// neither the ID nor the token appears in the key or the record, so a dump yields nothing
/// that a client could present.
#[tokio::test]
async fn a_store_dump_holds_only_sha256_of_the_id() {
    use axum_tessera::store::{SessionStore, StoreKey};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};

    let h = Harness::web();
    let token = h.logged_in("alice").await;
    let id_text = id_of(&token);
    let id = URL_SAFE_NO_PAD
        .decode(id_text)
        .expect("the ID is base64url");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();

    let hashed = StoreKey::from_hex(&hex(&Sha256::digest(&id))).unwrap();
    let record = h.store.inner.load(&hashed).await.unwrap();
    let record = record.expect("the record is filed under SHA-256(id)");
    let raw = StoreKey::from_hex(&hex(&id)).unwrap();
    assert_eq!(
        h.store.inner.load(&raw).await.unwrap(),
        None,
        "never under the raw ID"
    );
    assert_eq!(h.store.len(), 1, "and nowhere else");

    let dumped = serde_json::to_string(&record).unwrap();
    for secret in [id_text, token.as_str(), hex(&id).as_str()] {
        assert!(!dumped.contains(secret), "the record holds no ID or token");
    }
}
