//! CSRF token checking: `csrf::unmask` and a real session's `verify_csrf_token` on arbitrary
//! input, and the mask/unmask round trip on arbitrary secrets.
#![no_main]

use std::sync::LazyLock;

use axum_tessera::__fuzz::{mask, unmask, CSRF_TOKEN_LEN};
use axum_tessera::{Key, Session, SessionConfig, SessionLayer};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    session: Session,
    token: String,
}

/// A session as a handler sees it, on a real layer's configuration (test-util's
/// `Session::detached`).
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let layer = SessionLayer::new(SessionConfig::web(Key::from_bytes(&[7u8; 32]).unwrap()));
    let session = Session::detached(&layer);
    let token = session.csrf_token();
    Fixture { session, token }
});

fuzz_target!(|data: &[u8]| {
    let fx = &*FIXTURE;
    if let Ok(text) = std::str::from_utf8(data) {
        let unmasked = unmask(text);
        let ok = fx.session.verify_csrf_token(text);
        if ok {
            assert!(unmasked.is_some());
            assert_eq!(
                unmasked,
                unmask(&fx.token),
                "only this session's secret verifies"
            );
        }
        if let Some(secret) = unmasked {
            assert_eq!(text.len(), CSRF_TOKEN_LEN);
            assert_eq!(unmask(&mask(&secret)), Some(secret));
        }
    }
    // Edits of a valid token: any change must fail.
    let mut bytes = fx.token.clone().into_bytes();
    for pair in data.chunks_exact(2).take(4) {
        let pos = usize::from(pair[0]) % bytes.len();
        bytes[pos] ^= pair[1];
    }
    if let Ok(edited) = String::from_utf8(bytes) {
        assert_eq!(fx.session.verify_csrf_token(&edited), edited == fx.token);
    }
});
