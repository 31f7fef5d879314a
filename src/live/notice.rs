//! What the stores that notify live handles across instances (Redis `PUBLISH`, PostgreSQL
//! `NOTIFY`) share: the wording of their notices, parsed once; the pace of their listeners;
//! and what an idle re-check's look-up says.
//!
//! `e <reason> <hex>...`: the sessions under these store keys ended (reason: `d` deleted,
//! `o` logged out, `x` destroyed, `w` ended elsewhere, `a` logged out everywhere, `l`
//! per-principal limit). `m <from> <to> <last seen> r`: the session moved (or was patched
//! in place when `from` = `to`); the receiver reads what it holds now from the store and
//! ignores anything after the keys. Store keys and causes only, never IDs, tokens or
//! principals.

use std::time::Duration;

use super::{EndReason, Registry, Seen};
use crate::error::StoreError;
use crate::store::Lookup;
use crate::token::StoreKey;

/// How long a listener may stay silent before it is pinged: a connection that died without
/// closing (a NAT or a partition) must not go unnoticed for long.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(30);

/// The pause before the next attempt to subscribe after `failures` failed ones: doubling
/// from 50 ms, at most a second.
pub(crate) fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << failures.min(10))).min(Duration::from_secs(1))
}

impl Seen {
    /// What an idle re-check's look-up says: live with its principal and last use, or gone.
    /// A failed look-up counts as gone: the handle cannot tell that the session lives on.
    pub(crate) fn looked_up(lookup: Result<Lookup, StoreError>) -> Self {
        match lookup {
            Ok(Lookup::Live(record)) => Seen::Live {
                principal: record
                    .principal()
                    .map(|p| p.index_key().to_owned())
                    .unwrap_or_default(),
                last_seen: record.last_seen(),
                scopes: None,
                moved: false,
            },
            _ => Seen::Gone(None),
        }
    }
}

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
