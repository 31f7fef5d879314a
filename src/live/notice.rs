//! The wording of the live-session notices stores send between instances (Redis `PUBLISH`,
//! PostgreSQL `NOTIFY`): one vocabulary, parsed once for every store that sends it.
//!
//! `e <reason> <hex>...`: the sessions under these store keys ended (reason: `d` deleted,
//! `o` logged out, `x` destroyed, `w` ended elsewhere, `a` logged out everywhere, `l`
//! per-principal limit). `m <from> <to> <last seen> <mode> [principal JSON]`: the session
//! moved (or was patched in place when `from` = `to`) and kept (`k`), set (`s`, with the
//! JSON) or cleared (`c`) its principal; `r`: it set a principal too large to carry, which
//! the receiver reads from the store. Store keys and causes only, never IDs or tokens.

use super::{EndReason, Registry};
use crate::principal::Principal;
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
/// caller must read from the store to finish it (an `r` move), if any, and whether the
/// session rotated to it.
pub(crate) fn apply(registry: &Registry, payload: &[u8]) -> Option<(StoreKey, bool)> {
    let text = std::str::from_utf8(payload).ok()?;
    if let Some(rest) = text.strip_prefix("e ") {
        let mut parts = rest.split(' ');
        let reason = reason_of(parts.next().unwrap_or_default());
        for key in parts.filter_map(StoreKey::from_hex) {
            registry.heard_end(key, reason);
        }
    } else if let Some(rest) = text.strip_prefix("m ") {
        let mut parts = rest.splitn(5, ' ');
        let (Some(from), Some(to), Some(last_seen), Some(mode)) = (
            parts.next().and_then(StoreKey::from_hex),
            parts.next().and_then(StoreKey::from_hex),
            parts.next().and_then(|l| l.parse::<i64>().ok()),
            parts.next(),
        ) else {
            return None;
        };
        let principal = match mode {
            "s" => Some(
                parts
                    .next()
                    .and_then(|json| serde_json::from_str::<Principal>(json).ok()),
            ),
            "c" => Some(None),
            _ => None,
        };
        registry.moved(from, to, principal.as_ref().map(Option::as_ref), last_seen);
        if mode == "r" {
            return Some((to, from != to));
        }
    }
    None
}
