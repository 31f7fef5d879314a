//! Secret keys: [`Key`], the [`KeyRing`] used for rotation, and per-purpose sub-key derivation.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::TryRngCore as _;
use sha2::Sha256;

use crate::error::ConfigError;

/// HMAC-SHA256 with its key already absorbed: cloning it skips re-hashing the key pads,
/// which is most of the cost of a short MAC.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Minimum secret length in bytes. A shorter key is a configuration error, never a warning.
pub const MIN_KEY_LEN: usize = 32;

/// A secret signing key of at least 32 bytes.
///
/// `Debug` prints `Key([redacted])`; the bytes never leave this type except through
/// sub-key derivation.
///
/// # Example
///
/// ```
/// use axum_tessera::Key;
///
/// let dev = Key::generate();
/// let fixed = Key::from_bytes(&[7u8; 32]).unwrap();
/// assert!(Key::from_bytes(b"too short").is_err());
/// # let _ = (dev, fixed);
/// ```
#[derive(Clone)]
pub struct Key {
    bytes: Box<[u8]>,
}

impl Key {
    /// Uses `bytes` as the secret.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `bytes` is shorter than [`MIN_KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(ConfigError::WeakKey { len: bytes.len() });
        }
        Ok(Self {
            bytes: bytes.into(),
        })
    }

    /// A fresh random 64-byte key from the OS CSPRNG. For development and tests: sessions
    /// signed with it die with the process.
    ///
    /// # Panics
    ///
    /// When the operating system's random source fails, which leaves nothing safe to do.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 64];
        fill_random(&mut bytes);
        Self {
            bytes: bytes.into(),
        }
    }

    /// Reads the secret from the environment variable `name`.
    ///
    /// The value is taken as base64 (standard or URL-safe, padded or not) when it decodes to
    /// at least 32 bytes, and as raw bytes otherwise.
    ///
    /// # Errors
    ///
    /// [`ConfigError::MissingKey`] when the variable is unset or not UTF-8,
    /// [`ConfigError::WeakKey`] when it holds fewer than 32 bytes.
    pub fn from_env(name: &str) -> Result<Self, ConfigError> {
        let value = std::env::var(name).map_err(|_| ConfigError::MissingKey {
            var: name.to_owned(),
        })?;
        Self::from_text(value.trim())
    }

    /// Parses a secret written as text: base64 when it decodes to at least 32 bytes,
    /// otherwise the raw UTF-8 bytes.
    ///
    /// # Errors
    ///
    /// [`ConfigError::WeakKey`] when the result is shorter than 32 bytes.
    pub fn from_text(value: &str) -> Result<Self, ConfigError> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(value).ok())
            .filter(|bytes| bytes.len() >= MIN_KEY_LEN);
        match decoded {
            Some(bytes) => Self::from_bytes(&bytes),
            None => Self::from_bytes(value.as_bytes()),
        }
    }

    /// Derives the keyed MAC state for one purpose, so that a token signed for one purpose
    /// cannot verify for another even under the same secret (Django's salted HMAC).
    pub(crate) fn derive(&self, purpose: &str) -> HmacSha256 {
        let mut derive =
            HmacSha256::new_from_slice(&self.bytes).expect("HMAC takes any key length");
        derive.update(b"axum-tessera/v1/subkey/");
        derive.update(purpose.as_bytes());
        let subkey = derive.finalize().into_bytes();
        HmacSha256::new_from_slice(&subkey).expect("HMAC takes any key length")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key([redacted])")
    }
}

/// The keys a layer signs and verifies with: the newest signs, every key verifies.
///
/// Add the new secret with [`KeyRing::new`] and keep the old one as a fallback for as long as
/// tokens signed with it may be alive; a token that verifies only under a fallback is re-issued
/// under the current key on its next use.
///
/// # Example
///
/// ```
/// use axum_tessera::{Key, KeyRing};
///
/// let old = Key::from_bytes(&[1u8; 32]).unwrap();
/// let new = Key::from_bytes(&[2u8; 32]).unwrap();
/// let ring = KeyRing::new(new).with_fallback(old);
/// assert_eq!(ring.len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// A ring that signs and verifies with `current`.
    pub fn new(current: Key) -> Self {
        Self {
            keys: vec![current],
        }
    }

    /// Adds an older key that still verifies but no longer signs.
    #[must_use]
    pub fn with_fallback(mut self, key: Key) -> Self {
        self.keys.push(key);
        self
    }

    /// How many keys the ring holds (always at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a ring holds its current key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A non-secret name of the signing key: layers whose rings sign with the same key share
    /// their default store (see [`SessionLayer::new`](crate::SessionLayer::new)).
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut mac = self.keys[0].derive("default-store");
        mac.update(b"fingerprint");
        mac.finalize().into_bytes().into()
    }

    pub(crate) fn keys(&self) -> &[Key] {
        &self.keys
    }
}

impl From<Key> for KeyRing {
    fn from(key: Key) -> Self {
        Self::new(key)
    }
}

/// Fills `buf` from the OS CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .expect("the operating system's random source failed");
}

/// 32 bytes from the OS CSPRNG, for session IDs and CSRF masks.
///
/// A `getrandom` call costs about as much as the rest of creating a session, so each thread
/// draws 16 values' worth at once and hands them out in order, wiping each as it goes: bytes
/// already handed out never stay in memory here. Like any user-space randomness (`ThreadRng`
/// included) a process that `fork`s without `exec` would share the unused rest with its
/// child; servers on an async runtime do not fork.
pub(crate) fn random_32() -> [u8; 32] {
    const VALUES: usize = 16;
    thread_local! {
        static POOL: std::cell::RefCell<([u8; 32 * VALUES], usize)> =
            const { std::cell::RefCell::new(([0; 32 * VALUES], 32 * VALUES)) };
    }
    POOL.with_borrow_mut(|(bytes, used)| {
        if *used == bytes.len() {
            fill_random(bytes);
            *used = 0;
        }
        let chunk = &mut bytes[*used..*used + 32];
        let mut out = [0u8; 32];
        out.copy_from_slice(chunk);
        chunk.fill(0);
        *used += 32;
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_random_values_are_distinct_across_refills() {
        let values: std::collections::HashSet<[u8; 32]> = (0..100).map(|_| random_32()).collect();
        assert_eq!(values.len(), 100);
        assert!(!values.contains(&[0u8; 32]), "a wiped chunk was handed out");
    }

    #[test]
    fn short_keys_are_rejected_with_their_length() {
        let err = Key::from_bytes(&[0u8; 31]).unwrap_err();
        assert!(matches!(err, ConfigError::WeakKey { len: 31 }));
        assert!(Key::from_bytes(&[0u8; 32]).is_ok());
    }

    #[test]
    fn text_keys_accept_base64_or_raw() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let k = Key::from_text(&b64).unwrap();
        assert_eq!(&*k.bytes, &[9u8; 32]);
        let raw = "a-raw-secret-that-is-long-enough-to-use";
        assert_eq!(&*Key::from_text(raw).unwrap().bytes, raw.as_bytes());
        assert!(Key::from_text("short").is_err());
    }

    #[test]
    fn missing_env_var_names_the_variable() {
        let err = Key::from_env("TESSERA_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(err.to_string().contains("TESSERA_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn debug_never_shows_bytes() {
        let k = Key::from_bytes(&[0x41u8; 32]).unwrap();
        assert_eq!(format!("{k:?}"), "Key([redacted])");
    }

    #[test]
    fn sub_keys_differ_by_purpose() {
        let k = Key::from_bytes(&[3u8; 32]).unwrap();
        let a = k
            .derive("cookie:id")
            .chain_update(b"x")
            .finalize()
            .into_bytes();
        let b = k
            .derive("header")
            .chain_update(b"x")
            .finalize()
            .into_bytes();
        assert_ne!(a, b);
    }
}
