//! Wire tokens: session IDs, their store keys, and the signed `v1.<id>.<issued>.<mac>` form.
//!
//! Everything here is a pure function of its inputs, so it can be fuzzed and property-tested
//! without a runtime. The fuzz targets reach it through the hidden `__fuzz` module:
//!
//! ```
//! # #[cfg(feature = "fuzz")] {
//! use axum_tessera::__fuzz::{SessionId, TokenCodec};
//! use axum_tessera::{Key, KeyRing};
//!
//! let codec = TokenCodec::new(&KeyRing::new(Key::generate()), "cookie:id");
//! let id = SessionId::generate();
//! let token = codec.sign(&id, 1_700_000_000);
//! let verified = codec.verify(&token, 1_700_000_100, 3600, 60).unwrap();
//! assert_eq!(verified.id(), &id);
//! assert!(codec.verify(&token, 1_700_009_999, 3600, 60).is_err()); // too old
//! # }
//! ```

// `pub` items here are re-exported to the fuzz targets only (`crate::__fuzz`).
#![cfg_attr(not(feature = "fuzz"), allow(unreachable_pub))]

use std::fmt;

#[cfg(any(test, feature = "fuzz"))]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
#[cfg(any(test, feature = "fuzz"))]
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::key::{random_32, sha256_32, KeyRing, PreparedMac, MESSAGE_LEN};

/// Length of an encoded session ID: 32 bytes in unpadded base64url.
pub const ID_LEN: usize = 43;
/// Upper bound for a wire token; longer input is rejected before any decoding.
pub const MAX_TOKEN_LEN: usize = 128;
const MAC_LEN: usize = 43;
const VERSION: &str = "v1";

/// A 256-bit session identifier from the OS CSPRNG.
///
/// `Debug` and `Display` show only [`SessionId::short`]: a short hash that identifies the
/// session in logs without letting anyone use it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh random ID.
    ///
    /// # Panics
    ///
    /// When the operating system's random source fails.
    pub fn generate() -> Self {
        Self(random_32())
    }

    /// A fresh random ID for a session that is not stored (an anonymous visitor's, which
    /// only backs CSRF tokens): 24 random bytes and an 8-byte tag derived from them.
    ///
    /// The tag lets a later request skip the store lookup for such an ID (nothing can be
    /// stored under it: the first write moves the session to an ordinary ID). It sits under
    /// the token's MAC like the rest of the ID, and a release that does not know it sees an
    /// ordinary random ID, so tokens stay valid across a rolling deploy either way. An
    /// ordinary ID carries a valid tag by chance once in 2^64.
    pub(crate) fn generate_unsaved() -> Self {
        let mut bytes = random_32();
        let tag = unsaved_tag(bytes[..24].try_into().expect("24 bytes"));
        bytes[24..].copy_from_slice(&tag);
        Self(bytes)
    }

    /// Whether this ID was made by [`SessionId::generate_unsaved`].
    pub(crate) fn is_unsaved(&self) -> bool {
        unsaved_tag(self.0[..24].try_into().expect("24 bytes")) == self.0[24..]
    }

    #[cfg(any(test, feature = "fuzz"))]
    /// Parses the 43-character base64url form. Non-canonical encodings are rejected.
    pub fn parse(text: &str) -> Option<Self> {
        decode_32(text.as_bytes()).map(Self)
    }

    #[cfg(any(test, feature = "fuzz"))]
    /// The 43-character base64url form that appears inside tokens.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The key a store files this session under: `SHA-256(id)`, so a store dump yields no
    /// usable session.
    pub fn store_key(&self) -> StoreKey {
        StoreKey(sha256_32(&self.0))
    }

    /// A short, non-secret label for logs and events (the first 8 hex digits of the store key).
    pub fn short(&self) -> String {
        self.store_key().short()
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn unsaved_tag(random: &[u8; 24]) -> [u8; 8] {
    // Any fixed function of the random part will do: an ordinary ID's last 8 bytes are
    // random and independent of the first 24, so they match the tag once in 2^64 whatever
    // the function, and nobody can choose an ID (it sits under the token's MAC). So no
    // SHA-256 block on every load of a verified ID, only a few multiplications; each step
    // is a bijection of the running state, so every bit of the random part moves the tag.
    let mut h: u64 = 0x7465_7373_6572_6131; // "tessera1"
    for word in random.chunks_exact(8) {
        let word = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        h = (h ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h ^ (h >> 32)).to_le_bytes()
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.short())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// The name a store files a session under: `SHA-256` of its ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// The 64-digit lowercase hex form, for stores that key by string.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the 64-digit lowercase hex form.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = HEX.iter().position(|&c| c == pair[0])?;
            let lo = HEX.iter().position(|&c| c == pair[1])?;
            out[i] = u8::try_from(hi << 4 | lo).ok()?;
        }
        Some(Self(out))
    }

    /// The first 8 hex digits: enough to tell sessions apart in logs, useless to an attacker.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({})", self.short())
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Why a token did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`]; rejected before decoding.
    Oversized,
    /// Not of the `v1.<id>.<issued>.<mac>` shape, or not canonically encoded.
    Malformed,
    /// The MAC does not match under any key of the ring for this purpose.
    BadSignature,
    /// Issued longer ago than the token's maximum age.
    Expired,
    /// Issued further in the future than the allowed clock skew.
    FutureDated,
}

impl TokenError {
    /// A stable lowercase label, for events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::FutureDated => "future_dated",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Oversized => "session token is too long",
            Self::Malformed => "session token is malformed",
            Self::BadSignature => "session token signature does not verify",
            Self::Expired => "session token has expired",
            Self::FutureDated => "session token is dated in the future",
        })
    }
}

impl std::error::Error for TokenError {}

/// A token that verified: its ID, issue time and which key of the ring signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    id: SessionId,
    issued_at: i64,
    key_index: usize,
}

impl Verified {
    /// The session ID the token carries.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    #[cfg(any(test, feature = "fuzz"))]
    /// Issue time in Unix seconds.
    pub fn issued_at(&self) -> i64 {
        self.issued_at
    }

    /// `true` when a fallback key signed it, so it should be re-issued under the current key.
    pub fn needs_reissue(&self) -> bool {
        self.key_index != 0
    }
}

/// Signs and verifies wire tokens for one purpose (a cookie name or a header transport).
///
/// The MAC covers the version, the length-prefixed purpose, the ID and the issue time, under a
/// sub-key derived for that purpose, so a token minted for one purpose never verifies for
/// another.
#[derive(Clone)]
pub struct TokenCodec {
    /// One prepared MAC per key, newest first, with the version and purpose absorbed.
    macs: Vec<PreparedMac>,
}

impl fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCodec")
            .field("keys", &self.macs.len())
            .finish_non_exhaustive()
    }
}

impl TokenCodec {
    /// Prepares the MAC states for `purpose` under every key of `ring`.
    pub fn new(ring: &KeyRing, purpose: &str) -> Self {
        let len = u32::try_from(purpose.len()).unwrap_or(u32::MAX);
        let mut prefix = Vec::with_capacity(VERSION.len() + 4 + purpose.len());
        prefix.extend_from_slice(VERSION.as_bytes());
        prefix.extend_from_slice(&len.to_be_bytes());
        prefix.extend_from_slice(purpose.as_bytes());
        let macs = ring
            .keys()
            .iter()
            .map(|key| key.prepare(purpose, &prefix))
            .collect();
        Self { macs }
    }

    /// Mints `v1.<id>.<issued_at base62>.<mac>` with the current key.
    pub fn sign(&self, id: &SessionId, issued_at: i64) -> String {
        let issued = u64::try_from(issued_at).unwrap_or(0);
        let tag = self.macs[0].mac(&signed_message(id.as_bytes(), issued));

        let mut out = String::with_capacity(MAX_TOKEN_LEN);
        out.push_str(VERSION);
        out.push('.');
        push_base64_32(&mut out, id.as_bytes());
        out.push('.');
        push_base62(&mut out, issued);
        out.push('.');
        push_base64_32(&mut out, &tag);
        out
    }

    /// Verifies `token` at time `now` (Unix seconds): the MAC in constant time under each
    /// key, then the age (at most `max_age` seconds old, at most `skew` seconds in the future).
    ///
    /// # Errors
    ///
    /// The first [`TokenError`] that applies; size and shape are checked before any crypto.
    #[cfg(any(test, feature = "fuzz"))]
    pub fn verify(
        &self,
        token: &str,
        now: i64,
        max_age: i64,
        skew: i64,
    ) -> Result<Verified, TokenError> {
        self.verify_bytes(token.as_bytes(), now, max_age, skew)
    }

    /// [`TokenCodec::verify`] on the raw bytes of a header value: only ASCII can verify, so
    /// the caller need not prove the value is UTF-8 first.
    pub(crate) fn verify_bytes(
        &self,
        token: &[u8],
        now: i64,
        max_age: i64,
        skew: i64,
    ) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Oversized);
        }
        let (id, issued, tag) = split(token).ok_or(TokenError::Malformed)?;
        let id = decode_32(id).ok_or(TokenError::Malformed)?;
        let tag = decode_32(tag).ok_or(TokenError::Malformed)?;
        let issued = parse_base62(issued).ok_or(TokenError::Malformed)?;

        let message = signed_message(&id, issued);
        let key_index = self
            .macs
            .iter()
            .position(|mac| ct_eq_32(&mac.mac(&message), &tag))
            .ok_or(TokenError::BadSignature)?;

        let issued_at = i64::try_from(issued).map_err(|_| TokenError::FutureDated)?;
        if issued_at > now.saturating_add(skew) {
            return Err(TokenError::FutureDated);
        }
        if now.saturating_sub(issued_at) > max_age {
            return Err(TokenError::Expired);
        }
        Ok(Verified {
            id: SessionId(id),
            issued_at,
            key_index,
        })
    }
}

/// What the MAC covers after the prefix: the ID and the issue time.
fn signed_message(id: &[u8; 32], issued: u64) -> [u8; MESSAGE_LEN] {
    let mut message = [0u8; MESSAGE_LEN];
    message[..32].copy_from_slice(id);
    message[32..].copy_from_slice(&issued.to_be_bytes());
    message
}

/// Cuts `v1.<id>.<issued>.<mac>` at the fixed positions the lengths of the ID and the MAC
/// give, without scanning for dots. A stray `.` (or any byte outside the segments' alphabets,
/// non-ASCII included) can only land inside a segment, where the base64 or base62 decoding
/// that follows rejects it.
fn split(token: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let rest = token.strip_prefix(b"v1.")?;
    let tag_start = rest.len().checked_sub(MAC_LEN)?;
    // At least one issued digit between the two dots.
    if tag_start < ID_LEN + 3 || rest[ID_LEN] != b'.' || rest[tag_start - 1] != b'.' {
        return None;
    }
    Some((
        &rest[..ID_LEN],
        &rest[ID_LEN + 1..tag_start - 1],
        &rest[tag_start..],
    ))
}

/// Decodes exactly 32 bytes of canonical unpadded base64url: 43 characters of the URL-safe
/// alphabet, no padding, and the 2 bits the last character carries beyond the 256 must be
/// zero, so every value has exactly one accepted spelling (what the `base64` crate's
/// `URL_SAFE_NO_PAD` accepts; the tests below hold the two to each other).
///
/// Written out for the one length a token has: the generic engine's chunking, suffix
/// handling and length arithmetic cost more than the decoding itself on every request. Each
/// of 4 tables holds a character's 6 bits already in place for its position in a group of 4,
/// so a group is 4 look-ups OR-ed into the 24 bits of 3 output bytes; an invalid character
/// is all ones in every table, which sets the top 8 bits, so one test of the OR-ed groups
/// finds any of them.
fn decode_32(text: &[u8]) -> Option<[u8; 32]> {
    let text: &[u8; ID_LEN] = text.try_into().ok()?;
    let at = |i: usize| DECODE_AT[i % 4][usize::from(text[i])];
    let mut out = [0u8; 32];
    let mut bad = 0u32;
    for group in 0..10 {
        let i = group * 4;
        let n = at(i) | at(i + 1) | at(i + 2) | at(i + 3);
        bad |= n;
        // 4 bytes, the last zero: the next group (or the final 2 bytes) overwrites it.
        out[group * 3..group * 3 + 4].copy_from_slice(&(n << 8).to_be_bytes());
    }
    // 3 characters, 18 bits: the last 2 bytes, then 2 bits that must be zero.
    let n = at(40) | at(41) | at(42);
    if (bad | n) >> 24 != 0 || n & 0xc0 != 0 {
        return None;
    }
    out[30..].copy_from_slice(&n.to_be_bytes()[1..3]);
    Some(out)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Appends the 43 characters of unpadded base64url for 32 bytes: what `URL_SAFE_NO_PAD`
/// writes (the test below holds the two to each other), without the generic engine's
/// chunking on every new token.
fn push_base64_32(out: &mut String, bytes: &[u8; 32]) {
    let char_at = |n: u32, shift: u32| ALPHABET[((n >> shift) & 0x3f) as usize];
    let mut text = [0u8; ID_LEN];
    for group in 0..10 {
        let at = group * 3;
        let n =
            u32::from(bytes[at]) << 16 | u32::from(bytes[at + 1]) << 8 | u32::from(bytes[at + 2]);
        text[group * 4..group * 4 + 4].copy_from_slice(&[
            char_at(n, 18),
            char_at(n, 12),
            char_at(n, 6),
            char_at(n, 0),
        ]);
    }
    // The last 2 bytes: 16 bits in 3 characters, the last one's low 2 bits zero.
    let n = (u32::from(bytes[30]) << 8 | u32::from(bytes[31])) << 2;
    text[40..].copy_from_slice(&[char_at(n, 12), char_at(n, 6), char_at(n, 0)]);
    // Every byte is from the ASCII alphabet.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// base64url character -> its 6-bit value shifted to its place in a group of 4 characters
/// (18, 12, 6, 0 bits), one table per place; all ones for every byte outside the alphabet.
static DECODE_AT: [[u32; 256]; 4] = {
    let mut tables = [[u32::MAX; 256]; 4];
    let mut place = 0;
    while place < 4 {
        let mut i = 0;
        while i < 64 {
            tables[place][ALPHABET[i] as usize] = (i as u32) << (18 - 6 * place);
            i += 1;
        }
        place += 1;
    }
    tables
};

/// Whether `a` and `b` are equal, in constant time: four word XORs folded into one word, and
/// one `subtle` comparison of that word (instead of a barrier per byte).
fn ct_eq_32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let word = |x: &[u8; 32], i: usize| {
        u64::from_ne_bytes(x[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
    };
    let diff = (0..4).fold(0u64, |acc, i| acc | (word(a, i) ^ word(b, i)));
    bool::from(diff.ct_eq(&0))
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn push_base62(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 11];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = BASE62[(n % 62) as usize];
        n /= 62;
        if n == 0 {
            break;
        }
    }
    for &c in &buf[i..] {
        out.push(char::from(c));
    }
}

/// Parses canonical base62: 1 to 11 digits, no leading zero, no overflow.
///
/// Ten digits are below 62^10 < 2^60, so only an eleventh needs overflow checks; the digits
/// come from a table whose invalid entry sets bit 7, OR-ed together and tested once.
fn parse_base62(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 11 || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    let (head, last) = bytes.split_at(bytes.len().min(10));
    let mut bad = 0u8;
    let mut n = 0u64;
    for &c in head {
        let digit = BASE62_DECODE[usize::from(c)];
        bad |= digit;
        n = n * 62 + u64::from(digit & 0x3f);
    }
    for &c in last {
        let digit = BASE62_DECODE[usize::from(c)];
        bad |= digit;
        n = n.checked_mul(62)?.checked_add(u64::from(digit & 0x3f))?;
    }
    (bad & 0x80 == 0).then_some(n)
}

/// base62 digit -> its value; 0x80 for every byte outside the alphabet.
static BASE62_DECODE: [u8; 256] = {
    let mut table = [0x80u8; 256];
    let mut i = 0;
    while i < 62 {
        table[BASE62[i] as usize] = i as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsaved_ids_carry_their_tag_and_ordinary_ones_do_not() {
        for _ in 0..1000 {
            assert!(SessionId::generate_unsaved().is_unsaved());
            assert!(!SessionId::generate().is_unsaved());
        }
        let id = SessionId::generate_unsaved();
        for bit in 0..24 * 8 {
            let mut flipped = id.clone();
            flipped.0[bit / 8] ^= 1 << (bit % 8);
            assert!(!flipped.is_unsaved(), "the tag covers random bit {bit}");
        }
    }
    use crate::key::Key;

    fn codec(purpose: &str) -> TokenCodec {
        TokenCodec::new(&KeyRing::new(Key::from_bytes(&[5u8; 32]).unwrap()), purpose)
    }

    #[test]
    fn base62_round_trips_and_is_canonical() {
        for n in [0u64, 1, 61, 62, 1_700_000_000, u64::MAX] {
            let mut s = String::new();
            push_base62(&mut s, n);
            assert_eq!(parse_base62(s.as_bytes()), Some(n), "{n}");
        }
        assert_eq!(parse_base62(b"01"), None);
        assert_eq!(parse_base62(b""), None);
        assert_eq!(parse_base62(b"zzzzzzzzzzz"), None, "overflow");
        assert_eq!(parse_base62(b"a-"), None);
    }

    /// The parser before the table: each digit classified by range, checked arithmetic.
    fn reference_base62(bytes: &[u8]) -> Option<u64> {
        if bytes.is_empty() || bytes.len() > 11 || (bytes.len() > 1 && bytes[0] == b'0') {
            return None;
        }
        bytes.iter().try_fold(0u64, |acc, &c| {
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'A'..=b'Z' => c - b'A' + 10,
                b'a'..=b'z' => c - b'a' + 36,
                _ => return None,
            };
            acc.checked_mul(62)?.checked_add(u64::from(digit))
        })
    }

    proptest::proptest! {
        /// The table parser agrees with the range-by-range one on random strings of 0 to 13
        /// bytes, mostly digits (leading zeros and 11-digit overflows included).
        #[test]
        fn parse_base62_agrees_with_the_plain_parser(
            text in proptest::collection::vec(
                proptest::prop_oneof![
                    10 => proptest::sample::select(BASE62.to_vec()),
                    1 => proptest::num::u8::ANY,
                ],
                0..=13,
            ),
        ) {
            proptest::prop_assert_eq!(parse_base62(&text), reference_base62(&text));
        }
    }

    #[test]
    fn parse_base62_agrees_with_the_plain_parser_around_u64_max() {
        // Every edit of each digit of u64::MAX, where an eleventh digit may overflow.
        let mut max = String::new();
        push_base62(&mut max, u64::MAX);
        for pos in 0..max.len() {
            for c in 0..=u8::MAX {
                let mut edit = max.clone().into_bytes();
                edit[pos] = c;
                assert_eq!(parse_base62(&edit), reference_base62(&edit), "{edit:?}");
            }
        }
    }

    fn issued_1000() -> String {
        let mut s = String::new();
        push_base62(&mut s, 1000);
        s
    }

    #[test]
    fn table_of_rejections() {
        struct Case {
            name: &'static str,
            token: String,
            expect: TokenError,
        }
        let c = codec("cookie:id");
        let id = SessionId([1u8; 32]);
        let good = c.sign(&id, 1000);
        let cases = [
            Case {
                name: "empty",
                token: String::new(),
                expect: TokenError::Malformed,
            },
            Case {
                name: "oversized",
                token: "v".repeat(MAX_TOKEN_LEN + 1),
                expect: TokenError::Oversized,
            },
            Case {
                name: "no version",
                token: good[3..].to_owned(),
                expect: TokenError::Malformed,
            },
            Case {
                name: "extra segment",
                token: format!("{good}.x"),
                expect: TokenError::Malformed,
            },
            Case {
                name: "trailing pad",
                token: format!("{good}="),
                expect: TokenError::Malformed,
            },
            Case {
                name: "empty issued time",
                token: format!(
                    "v1.{}..{}",
                    &good[3..3 + ID_LEN],
                    &good[good.len() - MAC_LEN..]
                ),
                expect: TokenError::Malformed,
            },
            Case {
                name: "dot inside the issued time",
                token: good.replacen(&format!(".{}.", issued_1000()), ".G.8.", 1),
                expect: TokenError::Malformed,
            },
            Case {
                name: "non-ASCII where a dot belongs",
                token: format!("v1.{}é{}", &good[3..3 + ID_LEN], &good[3 + ID_LEN + 1..]),
                expect: TokenError::Malformed,
            },
            Case {
                name: "truncated",
                token: good[..good.len() - 1].to_owned(),
                expect: TokenError::Malformed,
            },
            Case {
                name: "other purpose",
                token: codec("header").sign(&id, 1000),
                expect: TokenError::BadSignature,
            },
            Case {
                name: "future",
                token: c.sign(&id, 2000),
                expect: TokenError::FutureDated,
            },
            Case {
                name: "expired",
                token: c.sign(&id, 100),
                expect: TokenError::Expired,
            },
        ];
        for case in cases {
            assert_eq!(
                c.verify(&case.token, 1010, 500, 60).unwrap_err(),
                case.expect,
                "{}",
                case.name
            );
        }
        assert_eq!(c.verify(&good, 1010, 500, 60).unwrap().id(), &id);
    }

    #[test]
    fn non_canonical_trailing_bits_are_rejected() {
        let c = codec("cookie:id");
        let id = SessionId([0u8; 32]);
        let good = c.sign(&id, 1000);
        // 32 bytes leave 2 unused bits in the last id character: 'A' (0) -> 'B' (1) sets one.
        let mut bad = good.clone().into_bytes();
        assert_eq!(bad[3 + ID_LEN - 1], b'A');
        bad[3 + ID_LEN - 1] = b'B';
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(c.verify(&bad, 1000, 10, 0), Err(TokenError::Malformed));
    }

    /// What the `base64` crate's canonical `URL_SAFE_NO_PAD` decodes a 43-byte field to.
    fn reference_decode(text: &[u8]) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
            Ok(32) if text.len() == ID_LEN => Some(out),
            _ => None,
        }
    }

    /// The hand-written decoder accepts exactly what the `base64` crate's canonical
    /// `URL_SAFE_NO_PAD` accepts, with the same bytes: random IDs and every edit of one of
    /// their bytes to each of the 256 values (the last character's 64 spellings included),
    /// random pairs of edits, and every other length.
    #[test]
    fn decode_32_agrees_with_the_base64_crate() {
        use rand::Rng as _;
        let mut rng = rand::rng();
        for _ in 0..40 {
            let id = SessionId(rng.random());
            let text = id.encode().into_bytes();
            assert_eq!(decode_32(&text), Some(id.0));
            for pos in 0..ID_LEN {
                for c in 0..=u8::MAX {
                    let mut edit = text.clone();
                    edit[pos] = c;
                    assert_eq!(decode_32(&edit), reference_decode(&edit), "{edit:?}");
                }
            }
            for _ in 0..2000 {
                let mut edit = text.clone();
                for _ in 0..2 {
                    edit[rng.random_range(0..ID_LEN)] = rng.random();
                }
                assert_eq!(decode_32(&edit), reference_decode(&edit), "{edit:?}");
            }
            for len in (0..=2 * ID_LEN).filter(|&len| len != ID_LEN) {
                let text: Vec<u8> = text.iter().copied().cycle().take(len).collect();
                assert_eq!(decode_32(&text), None, "length {len}");
            }
        }
    }

    proptest::proptest! {
        /// Random 43-byte fields, mostly from the alphabet with a few bytes from anywhere,
        /// decode as the `base64` crate decodes them.
        #[test]
        fn decode_32_agrees_with_the_base64_crate_on_random_fields(
            text in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => proptest::sample::select(ALPHABET.to_vec()),
                    1 => proptest::num::u8::ANY,
                ],
                ID_LEN,
            ),
        ) {
            proptest::prop_assert_eq!(decode_32(&text), reference_decode(&text));
        }
    }

    #[test]
    fn push_base64_32_agrees_with_the_base64_crate() {
        use rand::Rng as _;
        let mut rng = rand::rng();
        let mut inputs = vec![[0u8; 32], [0xffu8; 32]];
        inputs.extend((0..2000).map(|_| rng.random::<[u8; 32]>()));
        for bytes in inputs {
            let mut out = String::from("v1.");
            push_base64_32(&mut out, &bytes);
            assert_eq!(out[3..], URL_SAFE_NO_PAD.encode(bytes), "{bytes:?}");
            assert_eq!(decode_32(&out.as_bytes()[3..]), Some(bytes));
        }
    }

    #[test]
    fn ct_eq_32_tells_every_byte() {
        let a = [9u8; 32];
        assert!(ct_eq_32(&a, &a));
        for i in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!ct_eq_32(&a, &b), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn fallback_key_verifies_and_asks_for_reissue() {
        let old = Key::from_bytes(&[1u8; 32]).unwrap();
        let new = Key::from_bytes(&[2u8; 32]).unwrap();
        let old_codec = TokenCodec::new(&KeyRing::new(old.clone()), "p");
        let ring = TokenCodec::new(&KeyRing::new(new).with_fallback(old), "p");
        let token = old_codec.sign(&SessionId([3u8; 32]), 10);
        let v = ring.verify(&token, 10, 10, 0).unwrap();
        assert!(v.needs_reissue());
        assert!(!ring
            .verify(&ring.sign(v.id(), 10), 10, 10, 0)
            .unwrap()
            .needs_reissue());
    }

    #[test]
    fn store_key_hex_round_trips_and_debug_is_short() {
        let id = SessionId::generate();
        let key = id.store_key();
        assert_eq!(StoreKey::from_hex(&key.to_hex()), Some(key));
        assert!(!format!("{id:?}").contains(&id.encode()));
        assert_eq!(id.short().len(), 8);
    }
}
