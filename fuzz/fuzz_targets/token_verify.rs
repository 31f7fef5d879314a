//! Token decoding: `TokenCodec::verify` on arbitrary input, and on arbitrary edits of a valid
//! token (which must all be rejected).
#![no_main]

use std::sync::LazyLock;

use axum_tessera::__fuzz::{SessionId, TokenCodec};
use axum_tessera::{Key, KeyRing};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_700_000_000;

struct Fixture {
    codec: TokenCodec,
    valid: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ring = KeyRing::new(Key::from_bytes(&[7u8; 32]).unwrap())
        .with_fallback(Key::from_bytes(&[8u8; 32]).unwrap());
    let codec = TokenCodec::new(&ring, "cookie:__Host-tessera");
    let id = SessionId::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
    let valid = codec.sign(&id, NOW);
    Fixture { codec, valid }
});

fn i64_at(data: &[u8], at: usize) -> i64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&data[at..at + 8]);
    i64::from_le_bytes(word)
}

fuzz_target!(|data: &[u8]| {
    let fx = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // Arbitrary text at arbitrary times: must never panic, and anything accepted must be
        // the one canonical spelling of its contents.
        if rest.len() < 24 {
            return;
        }
        let (now, max_age, skew) = (i64_at(rest, 0), i64_at(rest, 8), i64_at(rest, 16));
        let Ok(token) = std::str::from_utf8(&rest[24..]) else {
            return;
        };
        if let Ok(v) = fx.codec.verify(token, now, max_age, skew) {
            assert_eq!(fx.codec.sign(v.id(), v.issued_at()), token);
        }
        // The hand-written decoder accepts only the canonical spelling.
        if let Some(id) = SessionId::parse(token) {
            assert_eq!(id.encode(), token);
        }
    } else {
        // Edits of a valid token: (position, xor) pairs, then an optional suffix. Any edit that
        // changes the text must be rejected.
        let mut bytes = fx.valid.clone().into_bytes();
        let mut i = 0;
        while i + 1 < rest.len() && rest[i] != 0xff {
            let pos = usize::from(rest[i]) % bytes.len();
            bytes[pos] ^= rest[i + 1];
            i += 2;
        }
        if i < rest.len() {
            bytes.extend_from_slice(&rest[i + 1..]);
        }
        let Ok(token) = String::from_utf8(bytes) else {
            return;
        };
        let result = fx.codec.verify(&token, NOW, 3600, 60);
        assert_eq!(result.is_ok(), token == fx.valid, "{token:?}");
    }
});
