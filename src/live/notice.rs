//! The wording of the live-session notices stores send between instances (Redis `PUBLISH`,
//! PostgreSQL `NOTIFY`): one vocabulary, parsed once for every store that sends it.
//!
//! `e <reason> <hex>...`: the sessions under these store keys ended (reason: `d` deleted,
//! `o` logged out, `x` destroyed, `w` ended elsewhere, `a` logged out everywhere, `l`
//! per-principal limit). `m <from> <to> <last seen> r`: the session moved (or was patched
//! in place when `from` = `to`); the receiver reads what it holds now from the store and
//! ignores anything after the keys. Store keys and causes only, never IDs, tokens or
//! principals.

use super::{EndReason, Registry};
use crate::token::StoreKey;

/// The code a delete sends for `reason`.
pub(crate) fn code(reason: Option<EndReason>) -> &'static str {
    match reason {
        Some(EndReason::LoggedOut) => "o",
        Some(EndReason::Destroyed) => "x",
        Some(EndReason::EndedElsewhere) => "w",
        Some(EndReason::LoggedOutEverywhere) => "a",
        Some(EndReason::SessionLimit) => "l",
        _ => "d",
    }
}

/// The reason a delete's `code` stands for; anything unknown is a plain delete.
pub(crate) fn reason_of(code: &str) -> EndReason {
    match code {
        "o" => EndReason::LoggedOut,
        "x" => EndReason::Destroyed,
        "w" => EndReason::EndedElsewhere,
        "a" => EndReason::LoggedOutEverywhere,
        "l" => EndReason::SessionLimit,
        _ => EndReason::Deleted,
    }
}

/// Applies one notice to the registry; anything malformed is ignored. Answers the key the
/// caller must read from the store to finish a move, if handles moved to it, and whether
/// the session rotated to it.
///
/// A notice is a hint, not a source of truth: whoever can publish on the channel (a Redis
/// client allowed `PUBLISH`, any PostgreSQL role, since `NOTIFY` needs no privilege) can
/// send one. An end only ends handles early, which such a sender could cause anyway; but a
/// move's principal, scopes and last use are never taken from the notice: the receiver
/// reads them from the store, so a forged notice can neither grant a handle scopes nor
/// keep it from its idle deadline.
pub(crate) fn apply(registry: &Registry, payload: &[u8]) -> Option<(StoreKey, bool)> {
    let text = std::str::from_utf8(payload).ok()?;
    if let Some(rest) = text.strip_prefix("e ") {
        let mut parts = rest.split(' ');
        let reason = reason_of(parts.next().unwrap_or_default());
        for key in parts.filter_map(StoreKey::from_hex) {
            registry.heard_end(key, reason);
        }
    } else if let Some(rest) = text.strip_prefix("m ") {
        // `<from> <to> <last seen> <mode> [principal]`: only the keys are used (see above).
        let mut parts = rest.splitn(3, ' ');
        let (Some(from), Some(to)) = (
            parts.next().and_then(StoreKey::from_hex),
            parts.next().and_then(StoreKey::from_hex),
        ) else {
            return None;
        };
        if registry.moved(from, to, None, i64::MIN) {
            return Some((to, from != to));
        }
    }
    None
}
