//! [`MemoryStore`]: the embedded default store, sharded and bounded with LRU eviction.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::error::{StoreError, StoreErrorKind};
use crate::live::{EndReason, Registry};
use crate::principal::Principal;
use crate::record::{Record, SessionInfo};
use crate::session::SharedData;
use crate::store::{
    Commit, CommitOutcome, LimitPolicy, Lookup, SessionStore, Update, UpdateOutcome,
};
use crate::token::StoreKey;

mod index;
mod shard;

use shard::{Entry, Shard};

const DEFAULT_MAX_SESSIONS: usize = 1_000_000;
/// Below this many sessions one shard holds everything, so eviction order is exact LRU.
const SHARDING_THRESHOLD: usize = 1024;
const SHARDS: usize = 16;

/// An in-process session store: the default, with nothing to set up.
///
/// Sharded to keep lock contention low, bounded by [`MemoryStore::max_sessions`] (the least
/// recently used session is evicted first), and an expired record is never returned even
/// before [`MemoryStore::sweep`] removes it. Clones share the same sessions. Sessions do not
/// survive a restart and are not shared between processes: use `RedisStore` for a fleet.
///
/// # Example
///
/// ```
/// use axum_tessera::store::{LimitPolicy, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new()
///     .max_sessions(10_000)
///     .max_sessions_per_principal(5, LimitPolicy::EvictOldest);
/// let _sweeper = store.spawn_sweeper(std::time::Duration::from_secs(60));
/// assert_eq!(store.len(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

/// Principal ID -> (key -> when the key joined the principal, for "evict oldest").
type Index = HashMap<String, HashMap<StoreKey, i64>>;

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    options: Options,
    /// May hold stale keys (evicted, expired, moved, re-owned); readers re-check each record,
    /// so the index never needs to be exact, only complete.
    index: Mutex<Index>,
    /// Serialises the commits that add a session to a principal while a limit is set, so
    /// two concurrent logins cannot both take the last place. Lock order: gate, then one
    /// shard, then the index; never the index while taking a shard.
    gate: Mutex<()>,
    /// The live handles of this store's sessions, told of every end, move and eviction.
    live: Arc<Registry>,
}

#[derive(Clone)]
struct Options {
    max_sessions: usize,
    clock: Arc<dyn Clock>,
    limit: Option<(usize, LimitPolicy)>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("max_sessions", &self.inner.options.max_sessions)
            .field("per_principal", &self.inner.options.limit)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store holding at most 1,000,000 sessions, on the system clock, with no
    /// per-principal limit.
    pub fn new() -> Self {
        Self::build(Options {
            max_sessions: DEFAULT_MAX_SESSIONS,
            clock: Arc::new(SystemClock),
            limit: None,
        })
    }

    fn build(options: Options) -> Self {
        let max_sessions = options.max_sessions.max(1);
        let shards = if max_sessions < SHARDING_THRESHOLD {
            1
        } else {
            SHARDS
        };
        Self {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
                per_shard: max_sessions.div_ceil(shards),
                options: Options {
                    max_sessions,
                    ..options
                },
                index: Mutex::new(HashMap::new()),
                gate: Mutex::new(()),
                live: Arc::default(),
            }),
        }
    }

    /// The default store of layers whose key rings sign with the key named by
    /// `fingerprint`, on the system clock: one per key in the process, so a cookie layer and
    /// an API layer built from one key see the same sessions without being wired together.
    /// It lives while a layer holds it.
    pub(crate) fn shared_default(fingerprint: [u8; 32]) -> Self {
        type Registry = Mutex<Vec<([u8; 32], Weak<Inner>)>>;
        static DEFAULTS: LazyLock<Registry> = LazyLock::new(Registry::default);
        let mut defaults = lock(&DEFAULTS);
        defaults.retain(|(_, store)| store.strong_count() > 0);
        if let Some(inner) = defaults
            .iter()
            .find(|(f, _)| *f == fingerprint)
            .and_then(|(_, store)| store.upgrade())
        {
            return Self { inner };
        }
        let store = Self::new();
        defaults.push((fingerprint, Arc::downgrade(&store.inner)));
        store
    }

    /// Caps the number of sessions (default 1,000,000; at least 1). When full, creating a
    /// session evicts the least recently used one (exactly below 1024 sessions; per shard
    /// above). Call before sharing the store: it starts a new, empty store.
    #[must_use]
    pub fn max_sessions(self, max: usize) -> Self {
        Self::build(Options {
            max_sessions: max,
            ..self.inner.options.clone()
        })
    }

    /// Reads time from `clock` (default: the system clock). Give it the same clock as the
    /// layer's [`SessionConfig::clock`](crate::SessionConfig::clock). Starts a new, empty store.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        Self::build(Options {
            clock: Arc::new(clock),
            ..self.inner.options.clone()
        })
    }

    /// Allows each principal at most `max` live sessions (at least 1; default: no limit); a
    /// login beyond it follows `policy`. Starts a new, empty store.
    #[must_use]
    pub fn max_sessions_per_principal(self, max: usize, policy: LimitPolicy) -> Self {
        Self::build(Options {
            limit: Some((max.max(1), policy)),
            ..self.inner.options.clone()
        })
    }

    /// Number of records held, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired record now and answers how many went.
    ///
    /// Records are queued by deadline, so the cost follows the number of records that came
    /// due since the last sweep, not the size of the store.
    pub fn sweep(&self) -> usize {
        let now = self.now();
        let mut removed = Vec::new();
        for shard in self.inner.shards.iter() {
            removed.extend(lock(shard).sweep(now));
        }
        for (key, entry) in &removed {
            self.unindex(*key, entry.principal());
        }
        removed.len()
    }

    /// Runs [`MemoryStore::sweep`] every `period` on the current Tokio runtime until the
    /// store is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn_sweeper(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let removed = MemoryStore { inner }.sweep();
                tracing::debug!(removed, "memory store sweep");
            }
        })
    }

    fn now(&self) -> i64 {
        self.inner.options.clock.now()
    }

    fn shard(&self, key: &StoreKey) -> MutexGuard<'_, Shard> {
        let n = self.inner.shards.len();
        let word = u64::from_le_bytes(key.as_bytes()[8..16].try_into().expect("8 bytes"));
        let i = usize::try_from(word % n as u64).unwrap_or(0);
        lock(&self.inner.shards[i])
    }

    /// A clone of the live record under `key`; drops it if it expired.
    fn peek_live(&self, key: &StoreKey, now: i64) -> Option<Record> {
        let mut shard = self.shard(key);
        match shard.peek(key) {
            Some(e) if !e.is_expired(now) => Some(e.to_record()),
            Some(_) => {
                self.drop_expired(&mut shard, key);
                None
            }
            None => None,
        }
    }

    /// Removes the expired record under `key` (the caller holds its shard) from the shard
    /// and from its principal's index: a record dropped on the way by a read or a write is
    /// gone for the sweeper, so nobody else would unindex it.
    fn drop_expired(&self, shard: &mut Shard, key: &StoreKey) {
        if let Some(entry) = shard.pop(key) {
            self.unindex(*key, entry.principal());
        }
    }

    /// Applies `update` to data key `field` of the live record under `key`, under its
    /// shard's lock.
    fn update_at(&self, key: &StoreKey, field: &str, update: Update, now: i64) -> UpdateOutcome {
        let mut shard = self.shard(key);
        let entry = match shard.peek_mut(key) {
            Some(e) if !e.is_expired(now) => e,
            Some(_) => {
                self.drop_expired(&mut shard, key);
                return UpdateOutcome::Missing;
            }
            None => return UpdateOutcome::Missing,
        };
        let new = match update {
            Update::Increment { by } => {
                let old = entry.value(field).and_then(Value::as_i64).unwrap_or(0);
                Some(Value::from(old.saturating_add(by)))
            }
            Update::CompareAndSet { expected, new } => {
                if entry.value(field) != expected.as_ref() {
                    return UpdateOutcome::Conflict(entry.value(field).cloned());
                }
                new
            }
        };
        entry.set_value(field, new.clone());
        UpdateOutcome::Applied(new)
    }

    /// Reads `key` as a use (LRU order); an expired record is removed and reported.
    fn touch(&self, key: &StoreKey, now: i64) -> Lookup {
        self.touch_with(key, now, |e| Lookup::Live(e.to_record()), |gone| gone)
    }

    /// [`MemoryStore::touch`]: a live entry read by `live` under its shard's lock, or what
    /// was found instead (expired, missing) handed to `gone`.
    fn touch_with<T>(
        &self,
        key: &StoreKey,
        now: i64,
        live: impl FnOnce(&Entry) -> T,
        gone: impl FnOnce(Lookup) -> T,
    ) -> T {
        let expired = {
            let mut shard = self.shard(key);
            match shard.get(key) {
                Some(e) if !e.is_expired(now) => return live(e),
                Some(_) => shard.pop(key),
                None => None,
            }
        };
        gone(match expired {
            Some(entry) => {
                self.unindex(*key, entry.principal());
                Lookup::Expired(entry.to_record())
            }
            None => Lookup::Missing,
        })
    }

    fn is_live(&self, key: &StoreKey, now: i64) -> bool {
        self.shard(key)
            .peek(key)
            .is_some_and(|r| !r.is_expired(now))
    }

    /// Files `record` under `key` (the caller holds that key's shard) and indexes it under
    /// its principal as having joined at `joined`.
    fn insert(&self, shard: &mut Shard, key: StoreKey, record: Entry, joined: i64) {
        let mut evicted = Vec::new();
        if let Some(p) = record.principal() {
            lock(&self.inner.index)
                .entry(p.index_key().to_owned())
                .or_default()
                .insert(key, joined);
        }
        shard.push(key, record);
        while shard.len() > self.inner.per_shard {
            match shard.pop_lru() {
                Some(old) => evicted.push(old),
                None => break,
            }
        }
        for (key, entry) in &evicted {
            self.unindex(*key, entry.principal());
            self.inner.live.ended(*key, EndReason::Evicted);
        }
    }

    fn create(&self, key: StoreKey, entry: Entry, now: i64) -> Result<CommitOutcome, StoreError> {
        let _gate = entry.principal().and_then(|_| self.gate());
        if let Some(p) = entry.principal() {
            // A colliding ID must not cost the principal one of its sessions.
            if self.is_live(&key, now) {
                return Ok(CommitOutcome::Collision);
            }
            self.make_room(&p.index_key(), now)?;
        }
        // An anonymous session's only check is the one under the shard lock below.
        let mut shard = self.shard(&key);
        if shard.peek(&key).is_some_and(|r| !r.is_expired(now)) {
            return Ok(CommitOutcome::Collision);
        }
        self.insert(&mut shard, key, entry, now);
        Ok(CommitOutcome::Applied)
    }

    fn patch(
        &self,
        key: StoreKey,
        patch: &crate::record::Patch,
        now: i64,
    ) -> Result<CommitOutcome, StoreError> {
        let new_owner = patch
            .principal()
            .flatten()
            .map(|p| p.index_key().to_owned());
        let _gate = new_owner.as_ref().and_then(|_| self.gate());
        if let Some(owner) = &new_owner {
            let Some(current) = self.peek_live(&key, now) else {
                return Ok(CommitOutcome::Missing);
            };
            if current.principal().map(|p| p.index_key()).as_deref() != Some(owner.as_str()) {
                self.make_room(owner, now)?;
            }
        }
        let mut shard = self.shard(&key);
        let before = match shard.peek(&key) {
            Some(e) if !e.is_expired(now) => e.principal().map(|p| p.index_key().to_owned()),
            _ => {
                self.drop_expired(&mut shard, &key);
                return Ok(CommitOutcome::Missing);
            }
        };
        shard.patch(key, patch);
        drop(shard);
        self.inner
            .live
            .moved(key, key, patch.principal(), patch.last_seen());
        if let Some(owner) = new_owner.filter(|o| before.as_ref() != Some(o)) {
            lock(&self.inner.index)
                .entry(owner)
                .or_default()
                .insert(key, now);
        }
        Ok(CommitOutcome::Applied)
    }

    fn move_to(
        &self,
        from: StoreKey,
        to: StoreKey,
        patch: &crate::record::Patch,
        now: i64,
    ) -> Result<CommitOutcome, StoreError> {
        let _gate = self.gate();
        let Some(current) = self.peek_live(&from, now) else {
            return Ok(CommitOutcome::Missing);
        };
        if self.is_live(&to, now) {
            return Ok(CommitOutcome::Collision);
        }
        let old_owner = current.principal().map(|p| p.index_key().to_owned());
        let mut preview = current;
        patch.apply(&mut preview);
        let new_owner = preview.principal().map(|p| p.index_key().to_owned());
        if let Some(owner) = new_owner
            .as_ref()
            .filter(|o| old_owner.as_ref() != Some(*o))
        {
            // Checked before anything moves, so a rejected login leaves the old session as
            // it was.
            self.make_room(owner, now)?;
        }

        // Re-read under the lock: a concurrent patch since the preview must not be lost.
        let Some(original) = self.shard(&from).pop(&from) else {
            return Ok(CommitOutcome::Missing);
        };
        if original.is_expired(now) {
            self.unindex(from, original.principal());
            return Ok(CommitOutcome::Missing);
        }
        let mut record = original.clone();
        record.apply(patch);
        let joined = match (&old_owner, record.principal()) {
            (Some(old), Some(p)) if *old == p.index_key() => self.joined(old, &from).unwrap_or(now),
            _ => now,
        };
        let mut shard = self.shard(&to);
        if shard.peek(&to).is_some_and(|r| !r.is_expired(now)) {
            drop(shard);
            // A collision must change nothing: put the original back untouched.
            self.shard(&from).push(from, original);
            return Ok(CommitOutcome::Collision);
        }
        let principal = record.principal().cloned();
        self.insert(&mut shard, to, record, joined);
        drop(shard);
        self.unindex(from, original.principal());
        self.inner
            .live
            .moved(from, to, Some(principal.as_ref()), patch.last_seen());
        Ok(CommitOutcome::Applied)
    }
}

/// What [`MemoryStore::load_into`] found.
pub(crate) enum Found {
    /// A live record, now in the caller's record; its data, shared with the store.
    Live(Option<SharedData>),
    /// An expired record (removed), data included: boxed, as a session ends once, so the
    /// common answer stays a few words.
    Expired(Box<Record>),
    Missing,
}

/// A poisoned lock only means another thread panicked mid-update of plain data; the map is
/// still structurally sound, so keep serving rather than failing every request after.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryStore {
    /// [`SessionStore::lookup`] without the future: the layer calls the default store
    /// directly.
    pub(crate) fn lookup_now(&self, key: &StoreKey) -> Lookup {
        self.touch(key, self.now())
    }

    /// The layer's load at `now` (`None`: this store's own clock): a live record is written
    /// into `record` (an empty one), in place rather than moved out through a [`Lookup`],
    /// without its data, which is handed out shared with the store instead of copied, and
    /// without its user agent, which a session does not read.
    pub(crate) fn load_into(&self, key: &StoreKey, now: Option<i64>, record: &mut Record) -> Found {
        let now = now.unwrap_or_else(|| self.now());
        self.touch_with(
            key,
            now,
            |e| Found::Live(e.load_into(record)),
            |gone| match gone {
                Lookup::Expired(expired) => Found::Expired(Box::new(expired)),
                _ => Found::Missing,
            },
        )
    }

    /// The registry of the live handles of this store's sessions.
    pub(crate) fn live_registry(&self) -> &Arc<Registry> {
        &self.inner.live
    }

    /// Whether `key` holds a live record now, without counting as a use.
    pub(crate) fn is_live_now(&self, key: &StoreKey) -> bool {
        self.is_live(key, self.now())
    }

    /// [`SessionStore::update`] without the future.
    pub(crate) fn update_now(&self, key: &StoreKey, field: &str, update: Update) -> UpdateOutcome {
        self.update_at(key, field, update, self.now())
    }

    /// [`SessionStore::commit`] without the future.
    pub(crate) fn commit_now(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        self.commit_at(commit, self.now())
    }

    /// The layer's commit at `now` (`None`: this store's own clock) of a new session whose
    /// data comes in the form an entry keeps: a [`Commit::Create`]'s record map is ignored
    /// for `data`. Other commits are applied as they are.
    pub(crate) fn create_shared(
        &self,
        commit: Commit,
        data: Option<SharedData>,
        now: Option<i64>,
    ) -> Result<CommitOutcome, StoreError> {
        let now = now.unwrap_or_else(|| self.now());
        match commit {
            Commit::Create { key, record } => self.create(key, Entry::with_data(record, data), now),
            other => self.commit_at(other, now),
        }
    }

    /// [`MemoryStore::commit_now`] at `now`, for a caller that already read this store's clock.
    pub(crate) fn commit_at(&self, commit: Commit, now: i64) -> Result<CommitOutcome, StoreError> {
        match commit {
            Commit::Create { key, record } => self.create(key, Entry::new(record), now),
            Commit::Patch { key, patch } => self.patch(key, &patch, now),
            Commit::Move { from, to, patch } => self.move_to(from, to, &patch, now),
            Commit::Delete { key } => {
                let removed = self.shard(&key).pop(&key);
                if let Some(entry) = removed {
                    self.unindex(key, entry.principal());
                }
                self.inner.live.ended(key, EndReason::Deleted);
                Ok(CommitOutcome::Applied)
            }
        }
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(match self.touch(key, self.now()) {
            Lookup::Live(record) => Some(record),
            _ => None,
        })
    }

    async fn lookup(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        Ok(self.touch(key, self.now()))
    }

    fn session_count(&self) -> Option<usize> {
        Some(self.len())
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        self.commit_now(commit)
    }

    async fn update(
        &self,
        key: &StoreKey,
        field: &str,
        update: Update,
    ) -> Result<UpdateOutcome, StoreError> {
        Ok(self.update_now(key, field, update))
    }

    async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let now = self.now();
        let mut out: Vec<SessionInfo> = self
            .live_sessions(principal, now)
            .into_iter()
            .map(|(_, key, record)| record.info(key))
            .collect();
        out.sort_by_key(|info| std::cmp::Reverse(info.last_seen()));
        Ok(out)
    }

    async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
        let now = self.now();
        let keys = lock(&self.inner.index)
            .remove(principal)
            .unwrap_or_default();
        let mut deleted = 0;
        for key in keys.into_keys() {
            let mut shard = self.shard(&key);
            let owned = shard
                .peek(&key)
                .is_some_and(|r| r.principal().is_some_and(|p| p.index_key() == principal));
            if owned && shard.pop(&key).is_some_and(|r| !r.is_expired(now)) {
                deleted += 1;
            }
            drop(shard);
            if owned {
                self.inner.live.ended(key, EndReason::LoggedOutEverywhere);
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::token::SessionId;
    use serde_json::json;

    use crate::record::Patch;

    const T0: i64 = 1_000_000;

    fn store(clock: &ManualClock) -> MemoryStore {
        MemoryStore::new().with_clock(clock.clone())
    }

    async fn create(store: &MemoryStore, expires_at: i64) -> StoreKey {
        let key = SessionId::generate().store_key();
        let outcome = store
            .commit(Commit::Create {
                key,
                record: Record::new(T0, expires_at),
            })
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Applied);
        key
    }

    fn patch(last_seen: i64, expires_at: i64) -> Patch {
        Patch::new(last_seen, expires_at)
    }

    #[test]
    fn entry_keeps_every_field_of_a_record() {
        let mut record = Record::new(T0, T0 + 50);
        record.data.insert("b".into(), json!([1, 2]));
        record.data.insert("a".into(), json!("x"));
        record.set_principal(Some(Principal::user("u").with_scopes(["s"])));
        record.flash.push("hi".into());
        record.set_user_agent(Some("agent"));
        assert_eq!(Entry::new(record.clone()).to_record(), record);
        record.bound_user_agent = Some("0f".repeat(32));
        record.bound_ip = Some(std::net::IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            Entry::new(record.clone()).to_record(),
            record,
            "with binding"
        );
    }

    #[test]
    fn entry_applies_patches_like_a_record() {
        let mut record = Record::new(T0, T0 + 50);
        record.data.insert("keep".into(), json!(1));
        record.data.insert("drop".into(), json!(2));
        record.data.insert("change".into(), json!(3));
        let mut entry = Entry::new(record.clone());
        let mut p = patch(T0 + 5, T0 + 60);
        p.set("change".into(), json!("new"));
        p.set("add".into(), json!({"k": true}));
        p.remove("drop".into());
        p.remove("absent".into());
        p.replace_principal(Some(Principal::user("v")));
        p.replace_flash(vec!["f".into()]);
        p.apply(&mut record);
        entry.apply(&p);
        assert_eq!(entry.to_record(), record);
    }

    #[tokio::test]
    async fn a_write_never_changes_the_data_a_loaded_session_holds() {
        let clock = ManualClock::new(T0);
        let store = store(&clock);
        let key = SessionId::generate().store_key();
        let mut record = Record::new(T0, T0 + 100);
        record.data.insert("n".into(), json!(1));
        store.commit(Commit::Create { key, record }).await.unwrap();
        let mut loaded = Record::new(0, 0);
        let Found::Live(Some(held)) = store.load_into(&key, Some(T0), &mut loaded) else {
            panic!("the record is live and has data");
        };
        for (name, value) in [("n", json!(2)), ("m", json!(3))] {
            let mut p = patch(T0 + 1, T0 + 100);
            p.set(name.into(), value);
            store.commit(Commit::Patch { key, patch: p }).await.unwrap();
        }
        assert_eq!(&*held, &[("n".into(), json!(1))][..], "the reader's copy");
        let now = store.load(&key).await.unwrap().unwrap();
        assert_eq!(now.data.get("n"), Some(&json!(2)));
        assert_eq!(now.data.get("m"), Some(&json!(3)));
        drop(held);
        // Nobody holds it now: changed in place.
        let mut p = patch(T0 + 2, T0 + 100);
        p.set("n".into(), json!(4));
        store.commit(Commit::Patch { key, patch: p }).await.unwrap();
        let now = store.load(&key).await.unwrap().unwrap();
        assert_eq!(now.data.get("n"), Some(&json!(4)));
    }

    #[tokio::test]
    async fn sweep_removes_exactly_the_expired_records() {
        struct Case {
            name: &'static str,
            /// Deadline at creation, and the patch deadline applied after (if any).
            created: i64,
            patched: Option<i64>,
            sweep_at: i64,
            expect_removed: bool,
        }
        let cases = [
            Case {
                name: "due",
                created: T0 + 10,
                patched: None,
                sweep_at: T0 + 10,
                expect_removed: true,
            },
            Case {
                name: "not yet due",
                created: T0 + 10,
                patched: None,
                sweep_at: T0 + 9,
                expect_removed: false,
            },
            Case {
                name: "extended past its queued time",
                created: T0 + 10,
                patched: Some(T0 + 100),
                sweep_at: T0 + 50,
                expect_removed: false,
            },
            Case {
                name: "extended, then due at the new time",
                created: T0 + 10,
                patched: Some(T0 + 100),
                sweep_at: T0 + 100,
                expect_removed: true,
            },
            Case {
                name: "shortened below its queued time",
                created: T0 + 100,
                patched: Some(T0 + 10),
                sweep_at: T0 + 20,
                expect_removed: true,
            },
        ];
        for case in cases {
            let clock = ManualClock::new(T0);
            let store = store(&clock);
            let key = create(&store, case.created).await;
            if let Some(at) = case.patched {
                let outcome = store
                    .commit(Commit::Patch {
                        key,
                        patch: patch(T0, at),
                    })
                    .await
                    .unwrap();
                assert_eq!(outcome, CommitOutcome::Applied, "{}", case.name);
            }
            if case.patched.is_some() {
                // A sweep at the first deadline re-files an extended record; it must not
                // lose it.
                clock.set(T0 + 10);
                store.sweep();
            }
            clock.set(case.sweep_at);
            store.sweep();
            assert_eq!(store.is_empty(), case.expect_removed, "{}", case.name);
        }
    }

    #[tokio::test]
    async fn sweep_pops_only_what_came_due() {
        let clock = ManualClock::new(T0);
        let store = store(&clock);
        for i in 0..100 {
            create(&store, T0 + 10 + i).await;
        }
        clock.set(T0 + 10 + 9);
        assert_eq!(store.sweep(), 10);
        let queued: usize = store
            .inner
            .shards
            .iter()
            .map(|s| lock(s).expiry.len())
            .sum();
        assert_eq!(queued, 90, "the records not due stay queued, untouched");
        assert_eq!(store.len(), 90);
    }

    #[tokio::test]
    async fn expiry_queue_stays_bounded_under_eviction() {
        let clock = ManualClock::new(T0);
        let store = MemoryStore::new()
            .max_sessions(100)
            .with_clock(clock.clone());
        for _ in 0..10_000 {
            create(&store, T0 + 1_000).await;
        }
        assert_eq!(store.len(), 100);
        let queued = lock(&store.inner.shards[0]).expiry.len();
        assert!(
            queued <= 2 * 100 + 64,
            "{queued} queued items for 100 records"
        );
        clock.set(T0 + 1_000);
        assert_eq!(store.sweep(), 100);
    }

    #[tokio::test]
    async fn a_move_that_collides_leaves_the_original_untouched() {
        let clock = ManualClock::new(T0);
        let store = store(&clock);
        let from = create(&store, T0 + 100).await;
        let to = create(&store, T0 + 100).await;
        let mut p = patch(T0 + 1, T0 + 200);
        p.set("k".into(), json!(1));
        let outcome = store
            .commit(Commit::Move { from, to, patch: p })
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Collision);
        let original = store.load(&from).await.unwrap().unwrap();
        assert_eq!(original, Record::new(T0, T0 + 100));
    }
}
