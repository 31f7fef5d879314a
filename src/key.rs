//! Secret keys: [`Key`], the [`KeyRing`] used for rotation, and per-purpose sub-key derivation.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::TryRngCore as _;
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;
use sha2::{compress256, Sha256};

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
        HmacSha256::new_from_slice(&self.subkey(purpose)).expect("HMAC takes any key length")
    }

    /// The MAC of [`Key::derive`] for `purpose`, with `prefix` absorbed, ready for the short
    /// messages of every request.
    pub(crate) fn prepare(&self, purpose: &str, prefix: &[u8]) -> PreparedMac {
        PreparedMac::new(&self.subkey(purpose), prefix)
    }

    fn subkey(&self, purpose: &str) -> [u8; 32] {
        let mut derive =
            HmacSha256::new_from_slice(&self.bytes).expect("HMAC takes any key length");
        derive.update(b"axum-tessera/v1/subkey/");
        derive.update(purpose.as_bytes());
        derive.finalize().into_bytes().into()
    }
}

type Block = GenericArray<u8, U64>;

/// SHA-256's initial hash value (FIPS 180-4, section 5.3.3).
const SHA256_INIT: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Length of the messages a [`PreparedMac`] signs: a token's ID and issue time.
pub(crate) const MESSAGE_LEN: usize = 40;

/// HMAC-SHA256 (RFC 2104) under a 32-byte key of `prefix || message` for a fixed prefix and
/// 40-byte messages: the padded key blocks and the prefix's whole blocks are compressed once,
/// up front, and the final inner block or two (the prefix's rest, the message, SHA-256's
/// padding and length) are laid out once with zeros where the message goes.
///
/// A MAC then costs its SHA-256 compressions and a few copies. The `hmac` crate's prepared
/// state had to be cloned (about 200 bytes) for every token and went through its generic
/// buffering and finalization. The tests hold this to the `hmac` crate for random keys, every
/// prefix length across two blocks, and random messages.
#[derive(Clone)]
pub(crate) struct PreparedMac {
    /// The inner hash after the key XOR ipad block and the prefix's whole blocks.
    inner: [u32; 8],
    /// The outer hash after the key XOR opad block.
    outer: [u32; 8],
    /// The inner hash's last blocks, padded, with zeros at `at..at + MESSAGE_LEN`.
    last: [u8; 128],
    /// Where the message goes in `last`: after the prefix's rest.
    at: usize,
    /// Whether the padding spills into a second block.
    two_blocks: bool,
}

impl PreparedMac {
    fn new(key: &[u8; 32], prefix: &[u8]) -> Self {
        let padded = |byte: u8| {
            let mut block = Block::from([byte; 64]);
            for (b, k) in block.iter_mut().zip(key) {
                *b ^= k;
            }
            block
        };
        let mut inner = SHA256_INIT;
        compress(&mut inner, &padded(0x36));
        let mut outer = SHA256_INIT;
        compress(&mut outer, &padded(0x5c));
        let whole = prefix.len() / 64 * 64;
        for chunk in prefix[..whole].chunks_exact(64) {
            compress(&mut inner, Block::from_slice(chunk));
        }
        // SHA-256 padding: a 1 bit, zeros, and the length in bits (ipad block included) in
        // the last 8 bytes, in a second block when they do not fit after the message.
        let at = prefix.len() - whole;
        let end = at + MESSAGE_LEN;
        let mut last = [0u8; 128];
        last[..at].copy_from_slice(&prefix[whole..]);
        last[end] = 0x80;
        let two_blocks = end + 1 + 8 > 64;
        let len_at = if two_blocks { 120 } else { 56 };
        let bits = (64 + whole + end) as u64 * 8;
        last[len_at..len_at + 8].copy_from_slice(&bits.to_be_bytes());
        Self {
            inner,
            outer,
            last,
            at,
            two_blocks,
        }
    }

    /// `HMAC-SHA256(key, prefix || message)`.
    pub(crate) fn mac(&self, message: &[u8; MESSAGE_LEN]) -> [u8; 32] {
        let mut state = self.inner;
        let mut last = self.last;
        last[self.at..self.at + MESSAGE_LEN].copy_from_slice(message);
        compress(&mut state, Block::from_slice(&last[..64]));
        if self.two_blocks {
            compress(&mut state, Block::from_slice(&last[64..]));
        }

        // The outer hash: the inner digest after the opad block, padded the same way.
        let mut block = Block::default();
        write_words(&mut block[..32], &state);
        block[32] = 0x80;
        block[56..].copy_from_slice(&((64u64 + 32) * 8).to_be_bytes());
        let mut state = self.outer;
        compress(&mut state, &block);
        let mut out = [0u8; 32];
        write_words(&mut out, &state);
        out
    }
}

/// `SHA-256(bytes)` of 32 bytes: one block, the padding laid out in place, without the
/// `Digest` machinery's buffering and generic finalization (a session's store key, on every
/// load).
pub(crate) fn sha256_32(bytes: &[u8; 32]) -> [u8; 32] {
    let mut block = Block::default();
    block[..32].copy_from_slice(bytes);
    block[32] = 0x80;
    block[56..].copy_from_slice(&(32u64 * 8).to_be_bytes());
    let mut state = SHA256_INIT;
    compress(&mut state, &block);
    let mut out = [0u8; 32];
    write_words(&mut out, &state);
    out
}

fn compress(state: &mut [u32; 8], block: &Block) {
    compress256(state, std::slice::from_ref(block));
}

/// A SHA-256 state as its big-endian digest bytes.
fn write_words(out: &mut [u8], state: &[u32; 8]) {
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
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

    /// The hand-rolled HMAC is the `hmac` crate's, for random keys, prefixes of every length
    /// across three blocks (a token's prefix is 6 bytes plus a purpose of any length, so the
    /// padding lands in the first or a second block) and random messages.
    #[test]
    fn prepared_mac_agrees_with_the_hmac_crate() {
        use rand::Rng as _;
        let mut rng = rand::rng();
        for prefix_len in 0..=200 {
            let key: [u8; 32] = rng.random();
            let prefix: Vec<u8> = (0..prefix_len).map(|_| rng.random()).collect();
            let prepared = PreparedMac::new(&key, &prefix);
            for message in [[0u8; MESSAGE_LEN], [0xff; MESSAGE_LEN]]
                .into_iter()
                .chain((0..20).map(|_| rng.random()))
            {
                let reference = HmacSha256::new_from_slice(&key)
                    .unwrap()
                    .chain_update(&prefix)
                    .chain_update(message)
                    .finalize()
                    .into_bytes();
                assert_eq!(
                    prepared.mac(&message),
                    <[u8; 32]>::from(reference),
                    "prefix {prefix_len}, message {message:?}"
                );
            }
        }
    }

    #[test]
    fn sha256_32_agrees_with_the_sha2_crate() {
        use rand::Rng as _;
        use sha2::Digest as _;
        let mut rng = rand::rng();
        let mut inputs = vec![[0u8; 32], [0xff; 32]];
        inputs.extend((0..1000).map(|_| rng.random::<[u8; 32]>()));
        for bytes in inputs {
            assert_eq!(sha256_32(&bytes), <[u8; 32]>::from(Sha256::digest(bytes)));
        }
    }

    /// A key's prepared MAC for a purpose is the `hmac` crate's under the derived sub-key.
    #[test]
    fn prepare_uses_the_derived_sub_key() {
        use rand::Rng as _;
        let mut rng = rand::rng();
        for purpose_len in 1..=64 {
            let key = Key::from_bytes(&rng.random::<[u8; 48]>()).unwrap();
            let purpose: String = (0..purpose_len)
                .map(|_| char::from(rng.random_range(b'!'..=b'~')))
                .collect();
            let message: [u8; MESSAGE_LEN] = rng.random();
            let reference = key
                .derive(&purpose)
                .chain_update(b"v1")
                .chain_update(message)
                .finalize()
                .into_bytes();
            assert_eq!(
                key.prepare(&purpose, b"v1").mac(&message),
                <[u8; 32]>::from(reference)
            );
        }
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
