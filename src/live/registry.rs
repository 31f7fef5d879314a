//! The registry of open live handles a store notifies ([`Registry`]), and what one handle
//! shares with it ([`Slot`]).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::EndReason;
use crate::principal::Principal;
use crate::token::StoreKey;

/// Most delete causes kept for a store that publishes them: one is noted just before its
/// commit and taken by it, so only commits that never reach the store leave one behind.
const MAX_PENDING_HINTS: usize = 4096;
/// How long, and how many, ends heard from elsewhere are remembered for handles not open
/// yet: a request loads its session, the session ends through another instance, and only
/// then does the handler open its handle, after the notice went by.
const RECENT_FOR: Duration = Duration::from_secs(30);
const MAX_RECENT: usize = 4096;

/// What one open handle shares with its store's registry: a few words behind a mutex.
pub(crate) struct Slot {
    pub(super) state: Mutex<SlotState>,
}

pub(super) struct SlotState {
    pub(super) key: StoreKey,
    /// The principal's index key when the handle opened: a commit that files the session
    /// under anyone else ends the handle.
    pub(super) principal: String,
    /// A fingerprint of the scopes the handle last reported (see [`fingerprint`]), so a
    /// re-validation reports a change only when there was one.
    pub(super) scopes: u64,
    pub(super) created: i64,
    pub(super) last_seen: i64,
    pub(super) change: Option<(BTreeSet<String>, bool)>,
    pub(super) end: Option<EndReason>,
    /// The cause the layer knows a delete will have (logout, destroy, ended elsewhere):
    /// stores report only "deleted".
    pub(super) hint: Option<EndReason>,
    /// The idle deadline has passed and the store is being asked whether the session was
    /// used through another instance meanwhile (see [`Watch::recheck`]).
    pub(super) checking: bool,
    pub(super) waker: Option<Waker>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic mid-update leaves nothing a reader could trip on.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slot {
    pub(super) fn new(
        key: StoreKey,
        principal: String,
        scopes: u64,
        created: i64,
        last_seen: i64,
    ) -> Self {
        Self {
            state: Mutex::new(SlotState {
                key,
                principal,
                scopes,
                created,
                last_seen,
                change: None,
                end: None,
                hint: None,
                checking: false,
                waker: None,
            }),
        }
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut SlotState)) {
        let waker = {
            let mut st = lock(&self.state);
            f(&mut st);
            st.waker.take()
        };
        // Woken outside the lock: the handle's task may run at once on another thread.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A fingerprint of a set of scopes (`None`: no principal), eight bytes per handle instead of
/// the set. `DefaultHasher::new` has fixed keys: the same set always gives the same value.
pub(super) fn fingerprint(scopes: Option<&BTreeSet<String>>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    scopes.hash(&mut hasher);
    hasher.finish()
}

/// What a store whose commits reach the registry from elsewhere (another process, through
/// a subscription) does for it. A store that applies its commits itself (`MemoryStore`)
/// needs none.
pub(crate) trait Watch: Send + Sync + 'static {
    /// A handle has registered: start listening, if not yet.
    fn opened(&self, registry: &Arc<Registry>);
    /// A handle of `key` has reached its idle deadline, which a refresh through another
    /// instance may have moved unseen: look the session up once and answer with
    /// [`Registry::rechecked`].
    fn recheck(&self, registry: &Arc<Registry>, key: StoreKey);
}

/// What the store says of a session when asked again (a re-check or a re-validation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Live, with this principal index key (empty: none), last use and, when read, the
    /// principal's scopes (a re-validation reports them: a change may have been missed).
    Live {
        principal: String,
        last_seen: i64,
        scopes: Option<BTreeSet<String>>,
        /// Reached by following a move the handle had not heard of: it rotated.
        moved: bool,
    },
    /// Moved to another key (a cluster move's tombstone names its target).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Moved(StoreKey),
    /// Not live any more; the cause, when the store kept it.
    Gone(Option<EndReason>),
}

/// The open handles of one store's sessions, keyed by store key. Stores call it as they
/// apply commits; with no handle open every call is one atomic load.
#[derive(Default)]
pub(crate) struct Registry {
    open: AtomicUsize,
    slots: Mutex<HashMap<StoreKey, Vec<Arc<Slot>>>>,
    watch: Option<Box<dyn Watch>>,
    /// Delete causes noted for a store that publishes them to other instances, whose
    /// handles have no hint of their own.
    pending: Mutex<HashMap<StoreKey, EndReason>>,
    /// Ends heard from elsewhere lately, oldest first (see [`RECENT_FOR`]).
    recent: Mutex<VecDeque<(Instant, StoreKey, EndReason)>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("open", &self.open.load(Ordering::Relaxed))
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

impl Registry {
    /// A registry fed by `watch` rather than by the store's own commits.
    pub(crate) fn watched(watch: impl Watch) -> Self {
        Self {
            watch: Some(Box::new(watch)),
            ..Self::default()
        }
    }

    fn idle(&self) -> bool {
        self.open.load(Ordering::Acquire) == 0
    }

    /// Whether an idle deadline is re-checked with the store before it ends a handle.
    pub(super) fn rechecks(&self) -> bool {
        self.watch.is_some()
    }

    pub(super) fn recheck(self: &Arc<Self>, key: StoreKey) {
        if let Some(watch) = &self.watch {
            watch.recheck(self, key);
        }
    }

    pub(super) fn register(self: &Arc<Self>, slot: &Arc<Slot>) {
        let key = lock(&slot.state).key;
        lock(&self.slots).entry(key).or_default().push(slot.clone());
        self.open.fetch_add(1, Ordering::AcqRel);
        if let Some(watch) = &self.watch {
            // A key never comes back once deleted, so an end heard before the handle
            // registered is its session's end.
            let now = Instant::now();
            let heard = {
                let mut recent = lock(&self.recent);
                // Aged out here too, so a quiet fleet's old ends are not kept (or scanned).
                while recent
                    .front()
                    .is_some_and(|(at, _, _)| now.duration_since(*at) > RECENT_FOR)
                {
                    recent.pop_front();
                }
                recent
                    .iter()
                    .find(|(_, k, _)| *k == key)
                    .map(|(_, _, reason)| *reason)
            };
            if let Some(reason) = heard {
                self.ended(key, reason);
            }
            watch.opened(self);
        }
    }

    /// An end published by another instance (or this one) reached the subscription.
    pub(crate) fn heard_end(&self, key: StoreKey, reason: EndReason) {
        {
            let now = Instant::now();
            let mut recent = lock(&self.recent);
            while recent.front().is_some_and(|(at, _, _)| {
                recent.len() >= MAX_RECENT || now.duration_since(*at) > RECENT_FOR
            }) {
                recent.pop_front();
            }
            recent.push_back((now, key, reason));
        }
        self.ended(key, reason);
    }

    pub(super) fn unregister(&self, slot: &Arc<Slot>) {
        let mut slots = lock(&self.slots);
        // Under the registry lock, so a concurrent move cannot re-file it in between.
        let key = lock(&slot.state).key;
        if let Some(list) = slots.get_mut(&key) {
            if let Some(i) = list.iter().position(|s| Arc::ptr_eq(s, slot)) {
                list.swap_remove(i);
                self.open.fetch_sub(1, Ordering::AcqRel);
            }
            if list.is_empty() {
                slots.remove(&key);
            }
        }
    }

    /// The keys of every open handle, for a re-validation.
    pub(crate) fn keys(&self) -> Vec<StoreKey> {
        if self.idle() {
            return Vec::new();
        }
        lock(&self.slots).keys().copied().collect()
    }

    /// Notes the cause of a delete the layer is about to commit for `key`.
    pub(crate) fn hint(&self, key: StoreKey, reason: EndReason) {
        if self.watch.is_some() {
            let mut pending = lock(&self.pending);
            if pending.len() >= MAX_PENDING_HINTS {
                pending.clear();
            }
            pending.insert(key, reason);
        }
        if self.idle() {
            return;
        }
        if let Some(list) = lock(&self.slots).get(&key) {
            for slot in list {
                lock(&slot.state).hint = Some(reason);
            }
        }
    }

    /// The cause noted for the delete of `key` now being committed, to publish with it.
    pub(crate) fn take_hint(&self, key: &StoreKey) -> Option<EndReason> {
        // Filled only when watched: a store that applies its own commits never calls this.
        lock(&self.pending).remove(key)
    }

    /// The session under `key` is gone: its handles end (with their hint, if any).
    pub(crate) fn ended(&self, key: StoreKey, reason: EndReason) {
        if self.idle() {
            return;
        }
        let Some(list) = lock(&self.slots).remove(&key) else {
            return;
        };
        self.open.fetch_sub(list.len(), Ordering::AcqRel);
        for slot in list {
            slot.update(|st| {
                st.end.get_or_insert(st.hint.unwrap_or(reason));
            });
        }
    }

    /// A commit moved `from` to `to` (or patched it in place when they are equal), leaving
    /// `principal` on it, seen at `last_seen`. Answers whether handles now wait on `to`.
    pub(crate) fn moved(
        &self,
        from: StoreKey,
        to: StoreKey,
        principal: Option<Option<&Principal>>,
        last_seen: i64,
    ) -> bool {
        if self.idle() {
            return false;
        }
        let mut slots = lock(&self.slots);
        let Some(list) = slots.remove(&from) else {
            return false;
        };
        let mut kept = Vec::with_capacity(list.len());
        for slot in list {
            let mut gone = false;
            slot.update(|st| {
                st.last_seen = st.last_seen.max(last_seen);
                let rotated = from != to;
                st.key = to;
                match principal {
                    Some(Some(p)) if p.index_key() == st.principal => {
                        st.scopes = fingerprint(Some(p.scopes()));
                        st.change = Some((p.scopes().clone(), rotated));
                    }
                    Some(_) => {
                        st.end.get_or_insert(EndReason::PrincipalChanged);
                        gone = true;
                    }
                    None if rotated => {
                        let scopes = st.change.take().map(|(s, _)| s);
                        st.change = scopes.map(|s| (s, true));
                    }
                    None => {}
                }
            });
            if gone {
                self.open.fetch_sub(1, Ordering::AcqRel);
            } else {
                kept.push(slot);
            }
        }
        let any = !kept.is_empty();
        if any {
            slots.entry(to).or_default().extend(kept);
        }
        any
    }

    /// What the store said of `key` when asked again: on a re-check (`recheck`: the handles
    /// waiting on one at their idle deadline) or a re-validation after the subscription was
    /// lost (every handle of `key`). A handle ends unless the session is live, still its
    /// principal's and, on a re-check, used since the handle last knew.
    pub(crate) fn rechecked(&self, key: StoreKey, seen: Seen, recheck: bool) {
        if self.idle() {
            return;
        }
        // A re-check reads through moves (a load follows them), so only a re-validation
        // sees one; it follows the session to its new key.
        if let (Seen::Moved(to), false) = (&seen, recheck) {
            self.moved(key, *to, None, i64::MIN);
            return;
        }
        let mut slots = lock(&self.slots);
        let Some(list) = slots.get_mut(&key) else {
            return;
        };
        list.retain(|slot| {
            if recheck && !lock(&slot.state).checking {
                return true;
            }
            let mut gone = false;
            slot.update(|st| {
                st.checking = false;
                let end = match &seen {
                    Seen::Live { principal, .. } if *principal != st.principal => {
                        Some(EndReason::PrincipalChanged)
                    }
                    Seen::Live {
                        last_seen,
                        scopes,
                        moved,
                        ..
                    } if !recheck || *last_seen > st.last_seen => {
                        st.last_seen = st.last_seen.max(*last_seen);
                        let pending = st.change.as_ref().is_some_and(|(_, r)| *r);
                        match scopes {
                            Some(scopes) if !recheck && st.scopes != fingerprint(Some(scopes)) => {
                                st.scopes = fingerprint(Some(scopes));
                                st.change = Some((scopes.clone(), *moved || pending));
                            }
                            // The same scopes under a new ID: a rotation only.
                            Some(scopes) if *moved && !pending => {
                                st.change = Some((scopes.clone(), true));
                            }
                            _ => {}
                        }
                        None
                    }
                    Seen::Live { .. } => Some(EndReason::IdleTimeout),
                    _ if recheck => Some(EndReason::IdleTimeout),
                    Seen::Gone(cause) => Some(st.hint.or(*cause).unwrap_or(EndReason::Deleted)),
                    Seen::Moved(_) => Some(EndReason::Deleted),
                };
                if let Some(reason) = end {
                    st.end.get_or_insert(reason);
                    gone = true;
                }
            });
            if gone {
                self.open.fetch_sub(1, Ordering::AcqRel);
            }
            !gone
        });
        if list.is_empty() {
            slots.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;

    impl Watch for Quiet {
        fn opened(&self, _: &Arc<Registry>) {}
        fn recheck(&self, _: &Arc<Registry>, _: StoreKey) {}
    }

    fn key(byte: &str) -> StoreKey {
        StoreKey::from_hex(&byte.repeat(32)).expect("64 hex digits")
    }

    /// The race a request's handler runs: its session loaded, then ended through another
    /// instance, whose notice arrives before the handler opens the handle.
    #[test]
    fn an_end_heard_before_the_handle_opened_ends_it_and_no_other() {
        let registry = Arc::new(Registry::watched(Quiet));
        registry.heard_end(key("ab"), EndReason::LoggedOut);
        let ended = Arc::new(Slot::new(key("ab"), String::new(), 0, 0, 0));
        let other = Arc::new(Slot::new(key("cd"), String::new(), 0, 0, 0));
        registry.register(&ended);
        registry.register(&other);
        assert_eq!(lock(&ended.state).end, Some(EndReason::LoggedOut));
        assert_eq!(lock(&other.state).end, None);
    }
}
