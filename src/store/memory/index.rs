//! The per-principal index of [`MemoryStore`]: which sessions a principal holds and when
//! each joined, the gate that serialises logins under a limit, and making room under it.

use super::*;

impl MemoryStore {
    pub(super) fn unindex(&self, key: StoreKey, principal: Option<&Principal>) {
        let Some(p) = principal else { return };
        let mut index = lock(&self.inner.index);
        if let Some(keys) = index.get_mut(&p.index_key()) {
            keys.remove(&key);
            if keys.is_empty() {
                index.remove(&p.index_key());
            }
        }
    }

    pub(super) fn joined(&self, principal: &str, key: &StoreKey) -> Option<i64> {
        lock(&self.inner.index)
            .get(principal)
            .and_then(|keys| keys.get(key).copied())
    }

    /// Holds the gate when a limit is set: see [`Inner::gate`].
    pub(super) fn gate(&self) -> Option<MutexGuard<'_, ()>> {
        self.inner.options.limit.map(|_| lock(&self.inner.gate))
    }

    /// The live sessions of `principal` with the time each joined, oldest first; drops stale
    /// index entries on the way.
    pub(super) fn live_sessions(&self, principal: &str, now: i64) -> Vec<(i64, StoreKey, Record)> {
        let keys: Vec<(StoreKey, i64)> = lock(&self.inner.index)
            .get(principal)
            .map(|keys| keys.iter().map(|(k, j)| (*k, *j)).collect())
            .unwrap_or_default();
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (key, joined) in keys {
            match self.peek_live(&key, now) {
                Some(r) if r.principal().is_some_and(|p| p.index_key() == principal) => {
                    live.push((joined, key, r));
                }
                _ => stale.push(key),
            }
        }
        if !stale.is_empty() {
            let mut index = lock(&self.inner.index);
            if let Some(keys) = index.get_mut(principal) {
                for key in &stale {
                    keys.remove(key);
                }
                if keys.is_empty() {
                    index.remove(principal);
                }
            }
        }
        live.sort_by_key(|(joined, key, _)| (*joined, *key));
        live
    }

    /// Makes room for one more session of `principal` under the configured limit. The
    /// caller holds the gate.
    pub(super) fn make_room(&self, principal: &str, now: i64) -> Result<(), StoreError> {
        let Some((max, policy)) = self.inner.options.limit else {
            return Ok(());
        };
        let live = self.live_sessions(principal, now);
        let excess = (live.len() + 1).saturating_sub(max);
        if excess == 0 {
            return Ok(());
        }
        match policy {
            LimitPolicy::Reject => Err(StoreError::from_kind(StoreErrorKind::LimitReached)),
            LimitPolicy::EvictOldest => {
                for (_, key, record) in live.into_iter().take(excess) {
                    tracing::debug!(session = %key, "session limit: evicting oldest");
                    self.shard(&key).pop(&key);
                    self.unindex(key, record.principal());
                    self.inner.live.ended(key, EndReason::SessionLimit);
                }
                Ok(())
            }
        }
    }
}
