//! Property tests of the pure token and CSRF pieces: round trips, tamper rejection, and no
//! panic on any input.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use axum_tessera::__fuzz::{
    mask, unmask, SessionId, TokenCodec, TokenError, CSRF_TOKEN_LEN, ID_LEN,
};
use axum_tessera::store::StoreKey;
use axum_tessera::{Key, KeyRing, Session, SessionConfig, SessionLayer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::Request;
use proptest::prelude::*;
use tower::ServiceExt as _;

fn codec(key: &[u8], purpose: &str) -> TokenCodec {
    TokenCodec::new(&KeyRing::new(Key::from_bytes(key).unwrap()), purpose)
}

fn id_from(bytes: [u8; 32]) -> SessionId {
    SessionId::parse(&URL_SAFE_NO_PAD.encode(bytes)).expect("canonical encoding parses")
}

/// Strings shaped like tokens, so the fuzzing reaches past the first shape check.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "v1\\.[A-Za-z0-9_-]{40,46}\\.[0-9A-Za-z]{0,13}\\.[A-Za-z0-9_-]{40,46}",
        "v1(\\.[A-Za-z0-9_=+/ -]{0,50}){0,5}",
        proptest::collection::vec(any::<u8>(), 0..140)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sign_then_verify_round_trips(
        key in proptest::collection::vec(any::<u8>(), 32..80),
        purpose in ".{0,40}",
        id in any::<[u8; 32]>(),
        issued in 0i64..=i64::MAX,
        max_age in 0i64..=1_000_000_000,
        age_fraction in 0.0f64..=1.0,
        skew in 0i64..=3600,
    ) {
        let codec = codec(&key, &purpose);
        let id = id_from(id);
        let token = codec.sign(&id, issued);
        let age = (max_age as f64 * age_fraction) as i64;
        let now = issued.saturating_add(age);
        let verified = codec.verify(&token, now, max_age, skew);
        // At the top of the range `now` saturates and the age shrinks, which still verifies.
        let verified = verified.expect("a fresh token verifies");
        prop_assert_eq!(verified.id(), &id);
        prop_assert_eq!(verified.issued_at(), issued);
        prop_assert!(!verified.needs_reissue());
        prop_assert!(token.len() <= axum_tessera::__fuzz::MAX_TOKEN_LEN);
    }

    #[test]
    fn any_single_byte_change_is_rejected(
        id in any::<[u8; 32]>(),
        issued in 0i64..=4_000_000_000,
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let codec = codec(&[9u8; 32], "cookie:__Host-tessera");
        let token = codec.sign(&id_from(id), issued);
        let mut bytes = token.clone().into_bytes();
        let i = position.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        // A change that breaks UTF-8 cannot even reach `verify` (it takes `&str`).
        if let Ok(changed) = String::from_utf8(bytes) {
            prop_assert!(codec.verify(&changed, issued, 10, 10).is_err(), "{changed:?}");
        }
    }

    #[test]
    fn inserted_removed_or_appended_bytes_are_rejected(
        id in any::<[u8; 32]>(),
        position in any::<prop::sample::Index>(),
        extra in "[\\x00-\\x7f]|=|==|\\.|é|\\.[A-Za-z0-9]{1,4}",
        remove in any::<bool>(),
    ) {
        let codec = codec(&[9u8; 32], "p");
        let token = codec.sign(&id_from(id), 1000);
        let i = position.index(token.len() + 1);
        let changed = if remove && i < token.len() {
            format!("{}{}", &token[..i], &token[i + 1..])
        } else {
            format!("{}{}{}", &token[..i], extra, &token[i..])
        };
        prop_assert!(codec.verify(&changed, 1000, 10, 10).is_err(), "{changed:?}");
    }

    #[test]
    fn verify_never_panics_and_accepts_only_canonical_tokens(
        token in token_like(),
        now in any::<i64>(),
        max_age in any::<i64>(),
        skew in any::<i64>(),
    ) {
        let codec = codec(&[9u8; 32], "p");
        if let Ok(v) = codec.verify(&token, now, max_age, skew) {
            prop_assert_eq!(&codec.sign(v.id(), v.issued_at()), &token);
        }
        let _ = SessionId::parse(&token);
        let _ = StoreKey::from_hex(&token);
    }

    #[test]
    fn verify_never_panics_at_extreme_times(
        id in any::<[u8; 32]>(),
        issued in any::<i64>(),
        now in any::<i64>(),
        max_age in any::<i64>(),
        skew in any::<i64>(),
    ) {
        let codec = codec(&[9u8; 32], "p");
        let token = codec.sign(&id_from(id), issued);
        match codec.verify(&token, now, max_age, skew) {
            Ok(v) => {
                prop_assert!(v.issued_at() <= now.saturating_add(skew));
                prop_assert!(now.saturating_sub(v.issued_at()) <= max_age);
            }
            Err(e) => prop_assert!(matches!(e, TokenError::Expired | TokenError::FutureDated)),
        }
    }

    #[test]
    fn session_id_parse_round_trips_and_rejects_other_lengths(
        id in any::<[u8; 32]>(),
        junk in ".{0,60}",
    ) {
        let id = id_from(id);
        let text = id.encode();
        prop_assert_eq!(text.len(), ID_LEN);
        prop_assert_eq!(SessionId::parse(&text), Some(id.clone()));
        if junk.len() != ID_LEN {
            prop_assert_eq!(SessionId::parse(&junk), None);
        }
    }

    #[test]
    fn csrf_mask_unmask_round_trips(secret in any::<[u8; 32]>()) {
        let a = mask(&secret);
        let b = mask(&secret);
        prop_assert_eq!(a.len(), CSRF_TOKEN_LEN);
        prop_assert_ne!(&a, &b, "a fresh pad every time");
        prop_assert_eq!(unmask(&a), Some(secret));
        prop_assert_eq!(unmask(&b), Some(secret));
    }

    #[test]
    fn csrf_unmask_never_panics(text in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=-]{84,88}",
    ]) {
        if let Some(secret) = unmask(&text) {
            prop_assert_eq!(text.len(), CSRF_TOKEN_LEN);
            prop_assert_eq!(unmask(&mask(&secret)), Some(secret));
        }
    }
}

/// A session as a handler sees it, taken out of one real request through the layer.
fn live_session() -> Session {
    let slot: Arc<Mutex<Option<Session>>> = Arc::default();
    let out = slot.clone();
    let app = Router::new()
        .route(
            "/",
            get(move |session: Session| {
                let out = out.clone();
                async move {
                    let _ = session.csrf_token();
                    *out.lock().unwrap() = Some(session);
                }
            }),
        )
        .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(app.oneshot(Request::new(Body::empty())))
        .unwrap();
    let session = slot.lock().unwrap().take().unwrap();
    session
}

#[test]
fn masked_csrf_tokens_verify_and_every_single_char_change_fails() {
    let session = live_session();
    let other = live_session();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for _ in 0..8 {
        let token = session.csrf_token();
        assert!(session.verify_csrf_token(&token), "a masked token verifies");
        assert!(!other.verify_csrf_token(&token), "another session's token");
        for i in 0..token.len() {
            for &c in alphabet {
                let mut bytes = token.clone().into_bytes();
                if bytes[i] == c {
                    continue;
                }
                bytes[i] = c;
                let changed = String::from_utf8(bytes).unwrap();
                assert!(!session.verify_csrf_token(&changed), "{i} -> {}", c as char);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn csrf_verification_rejects_arbitrary_strings(text in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{86}",
    ]) {
        thread_local! {
            static SESSION: Session = live_session();
        }
        SESSION.with(|s| {
            prop_assert!(!s.verify_csrf_token(&text));
            Ok(())
        })?;
    }
}
