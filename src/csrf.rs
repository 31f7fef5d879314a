//! CSRF token material: the per-session secret and its per-response masking (BREACH).
//!
//! The secret is derived from the session ID under a CSRF sub-key, so it rotates whenever the
//! ID does (login, logout, explicit rotation) and is never written to the store. Each token
//! handed out is `base64url(pad || secret XOR pad)` with a fresh random pad, so no two
//! responses carry the same bytes; checking unmasks and compares in constant time.

// `pub` items here are re-exported to the fuzz targets only (`crate::__fuzz`).
#![cfg_attr(not(feature = "fuzz"), allow(unreachable_pub))]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac as _;
use subtle::ConstantTimeEq as _;

use crate::key::{random_32, HmacSha256, KeyRing};
use crate::token::SessionId;

/// Length of a masked CSRF token: 64 bytes in unpadded base64url.
pub const CSRF_TOKEN_LEN: usize = 86;

/// The CSRF sub-keys of a key ring, newest first.
#[derive(Clone)]
pub(crate) struct CsrfKeys {
    macs: Vec<HmacSha256>,
}

impl CsrfKeys {
    pub(crate) fn new(ring: &KeyRing) -> Self {
        Self {
            macs: ring.keys().iter().map(|k| k.derive("csrf")).collect(),
        }
    }

    fn secret(mac: &HmacSha256, id: &SessionId) -> [u8; 32] {
        let mut mac = mac.clone();
        mac.update(id.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A freshly masked token for the session `id`, under the current key.
    pub(crate) fn issue(&self, id: &SessionId) -> String {
        mask(&Self::secret(&self.macs[0], id))
    }

    /// Whether `token` is a masked form of `id`'s secret under any key of the ring.
    pub(crate) fn verify(&self, id: &SessionId, token: &str) -> bool {
        let Some(candidate) = unmask(token) else {
            return false;
        };
        // Check every key without stopping early, so timing does not tell which key matched.
        self.macs.iter().fold(false, |ok, mac| {
            ok | bool::from(Self::secret(mac, id).ct_eq(&candidate))
        })
    }
}

/// Masks `secret` with a fresh random pad.
pub fn mask(secret: &[u8; 32]) -> String {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&random_32());
    for i in 0..32 {
        buf[32 + i] = secret[i] ^ buf[i];
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// Recovers the secret from a masked token; `None` for anything that is not exactly a
/// canonical 86-character token.
pub fn unmask(token: &str) -> Option<[u8; 32]> {
    if token.len() != CSRF_TOKEN_LEN {
        return None;
    }
    let mut buf = [0u8; 64];
    match URL_SAFE_NO_PAD.decode_slice(token, &mut buf) {
        Ok(64) => {}
        _ => return None,
    }
    let mut secret = [0u8; 32];
    for i in 0..32 {
        secret[i] = buf[i] ^ buf[32 + i];
    }
    Some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    #[test]
    fn masked_tokens_differ_and_verify() {
        let keys = CsrfKeys::new(&KeyRing::new(Key::generate()));
        let id = SessionId::generate();
        let (a, b) = (keys.issue(&id), keys.issue(&id));
        assert_ne!(a, b, "each token is masked afresh");
        assert!(keys.verify(&id, &a) && keys.verify(&id, &b));
        assert!(
            !keys.verify(&SessionId::generate(), &a),
            "bound to the session"
        );
        assert!(!keys.verify(&id, ""));
        assert!(!keys.verify(&id, &a[..85]));
    }
}
