//! One lock's worth of [`MemoryStore`](super::MemoryStore) sessions: the compact [`Entry`]
//! each record is kept as, the LRU order and the expiry queue the sweep reads.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use lru::LruCache;
use serde_json::Value;

use crate::flash::Flash;
use crate::principal::Principal;
use crate::record::{Patch, Record};
use crate::session::{DataKey, SharedData};
use crate::token::StoreKey;

/// Store keys are SHA-256 outputs of random IDs, already uniform: hashing them again buys
/// nothing, so the map uses their first eight bytes as the hash.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A [`Record`] as this store keeps it: the same content in about a third of the bytes.
///
/// A `Record` carries a `BTreeMap`, whose first node alone is some 600 bytes however few
/// keys it holds; here data is a sorted slice and the rarely used fields are boxed, so a
/// session with one small key costs a few hundred bytes in all. The data slice is shared
/// (reference-counted) with the sessions that loaded it, so a read copies none of it; a
/// change copies it only while a reader still holds it.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    created: i64,
    last_seen: i64,
    expires_at: i64,
    /// The deadline this record is filed under in its shard's expiry queue; never later
    /// than `expires_at`.
    queued: i64,
    principal: Option<Box<Principal>>,
    /// Sorted by key; `None` when empty.
    data: Option<SharedData>,
    /// Boxed twice so the common empty case costs one word.
    flash: Option<Box<Box<[Flash]>>>,
    user_agent: Option<Box<str>>,
    /// Boxed: binding is off by default.
    binding: Option<Box<Bound>>,
    /// [`Record::consented_at`], [`NOT_CONSENTED`] for `None`: a word less than an `Option`.
    consented_at: i64,
    /// The login's cookie choice ([`Record::persistent`]).
    persistent: Option<bool>,
}

/// `consented_at` of an entry whose visitor has not consented.
const NOT_CONSENTED: i64 = i64::MIN;

fn shared(data: Vec<(DataKey, Value)>) -> Option<SharedData> {
    (!data.is_empty()).then(|| data.into())
}

fn boxed_flash(flash: Vec<Flash>) -> Option<Box<Box<[Flash]>>> {
    (!flash.is_empty()).then(|| Box::new(flash.into_boxed_slice()))
}

impl Entry {
    pub(super) fn new(mut record: Record) -> Self {
        // BTreeMap iterates in key order, so the slice is born sorted.
        let data = shared(
            std::mem::take(&mut record.data)
                .into_iter()
                .map(|(k, v)| (DataKey::from(k.as_str()), v))
                .collect(),
        );
        Self::with_data(record, data)
    }

    /// An entry of `record` whose data is `data`, sorted by key; `record`'s own data map is
    /// ignored.
    pub(super) fn with_data(record: Record, data: Option<SharedData>) -> Self {
        Self {
            created: record.created,
            last_seen: record.last_seen,
            expires_at: record.expires_at,
            queued: record.expires_at,
            principal: record.principal.map(Box::new),
            data,
            flash: boxed_flash(record.flash),
            user_agent: record.user_agent.map(String::into_boxed_str),
            binding: match (record.bound_user_agent, record.bound_ip) {
                (None, None) => None,
                (ua, ip) => Some(Box::new((ua.map(String::into_boxed_str), ip))),
            },
            persistent: record.persistent,
            consented_at: record.consented_at.unwrap_or(NOT_CONSENTED),
        }
    }

    fn flash(&self) -> &[Flash] {
        self.flash.as_deref().map_or(&[], |f| &**f)
    }

    fn data(&self) -> &[(DataKey, Value)] {
        self.data.as_deref().unwrap_or(&[])
    }

    pub(super) fn to_record(&self) -> Record {
        let mut record = self.to_record_without_data();
        for (k, v) in self.data() {
            record.data.insert(k.as_str().to_owned(), v.clone());
        }
        record.user_agent = self.user_agent.as_deref().map(str::to_owned);
        record
    }

    /// Writes this entry into `record`, an empty one, without its data and user agent (which
    /// a loading session does not read), and hands out the data as shared with this entry:
    /// what a read needs, with nothing of the data copied and no record moved.
    pub(super) fn load_into(&self, record: &mut Record) -> Option<SharedData> {
        record.created = self.created;
        record.last_seen = self.last_seen;
        record.expires_at = self.expires_at;
        record.principal = self.principal.as_deref().cloned();
        if let Some(flash) = &self.flash {
            record.flash = flash.to_vec();
        }
        if let Some(bound) = &self.binding {
            record.bound_user_agent = bound.0.as_deref().map(str::to_owned);
            record.bound_ip = bound.1;
        }
        record.persistent = self.persistent;
        record.consented_at = (self.consented_at != NOT_CONSENTED).then_some(self.consented_at);
        self.data.clone()
    }

    fn to_record_without_data(&self) -> Record {
        Record {
            created: self.created,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
            principal: self.principal.as_deref().cloned(),
            data: BTreeMap::new(),
            flash: self.flash().to_vec(),
            user_agent: None,
            bound_user_agent: self
                .binding
                .as_ref()
                .and_then(|b| b.0.as_deref().map(str::to_owned)),
            bound_ip: self.binding.as_ref().and_then(|b| b.1),
            persistent: self.persistent,
            consented_at: (self.consented_at != NOT_CONSENTED).then_some(self.consented_at),
        }
    }

    pub(super) fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    pub(super) fn principal(&self) -> Option<&Principal> {
        self.principal.as_deref()
    }

    /// The value under data key `field`.
    pub(super) fn value(&self, field: &str) -> Option<&Value> {
        let data = self.data();
        data.binary_search_by(|(k, _)| k.cmp_str(field))
            .ok()
            .map(|i| &data[i].1)
    }

    /// The data to change in place, unless a session holds it (or there is none).
    fn unique_data(&mut self) -> Option<&mut [(DataKey, Value)]> {
        self.data.as_mut().and_then(Arc::get_mut)
    }

    /// The data as a vector to change (a copy when shared), to put back with `set_data`.
    fn take_data(&mut self) -> Vec<(DataKey, Value)> {
        match self.data.take() {
            None => Vec::new(),
            Some(data) => data.iter().cloned().collect(),
        }
    }

    /// Sets (`Some`) or removes (`None`) data key `field`.
    pub(super) fn set_value(&mut self, field: &str, value: Option<Value>) {
        let found = self.data().binary_search_by(|(k, _)| k.cmp_str(field));
        match (found, value) {
            (Ok(i), Some(v)) => match self.unique_data() {
                Some(slice) => slice[i].1 = v,
                None => {
                    let mut data = self.take_data();
                    data[i].1 = v;
                    self.data = shared(data);
                }
            },
            (Ok(i), None) => {
                let mut data = self.take_data();
                data.remove(i);
                self.data = shared(data);
            }
            (Err(i), Some(v)) => {
                let mut data = self.take_data();
                data.insert(i, (field.into(), v));
                self.data = shared(data);
            }
            (Err(_), None) => {}
        }
    }

    /// [`Patch::apply`] for this form.
    pub(super) fn apply(&mut self, patch: &Patch) {
        if !patch.removes().is_empty() || !patch.sets().is_empty() {
            let data = self.data();
            // Changed values of existing keys go in place (no reallocation) when no
            // session holds the slice; a key that comes or goes rebuilds it.
            let reshaped = patch
                .removes()
                .iter()
                .any(|key| data.binary_search_by(|(k, _)| k.cmp_str(key)).is_ok())
                || patch
                    .sets()
                    .iter()
                    .any(|(key, _)| data.binary_search_by(|(k, _)| k.cmp_str(key)).is_err());
            let in_place = match (reshaped, self.unique_data()) {
                (false, Some(slice)) => {
                    for (key, value) in patch.sets() {
                        if let Ok(i) = slice.binary_search_by(|(k, _)| k.cmp_str(key)) {
                            slice[i].1.clone_from(value);
                        }
                    }
                    true
                }
                _ => false,
            };
            if !in_place {
                let mut data = self.take_data();
                for key in patch.removes() {
                    if let Ok(i) = data.binary_search_by(|(k, _)| k.cmp_str(key)) {
                        data.remove(i);
                    }
                }
                for (key, value) in patch.sets() {
                    match data.binary_search_by(|(k, _)| k.cmp_str(key)) {
                        Ok(i) => data[i].1.clone_from(value),
                        Err(i) => data.insert(i, (key.as_str().into(), value.clone())),
                    }
                }
                self.data = shared(data);
            }
        }
        if let Some(principal) = patch.principal() {
            self.principal = principal.cloned().map(Box::new);
        }
        if let Some(flash) = patch.flash() {
            self.flash = boxed_flash(flash.to_vec());
        }
        if let Some(persistent) = patch.persistent() {
            self.persistent = persistent;
        }
        if let Some(at) = patch.consented_at() {
            self.consented_at = at;
        }
        self.last_seen = patch.last_seen();
        self.expires_at = patch.expires_at();
    }
}

/// A record's binding: `(bound_user_agent, bound_ip)`.
pub(super) type Bound = (Option<Box<str>>, Option<IpAddr>);

/// One lock's worth of sessions.
pub(super) struct Shard {
    lru: LruCache<StoreKey, Entry, BuildHasherDefault<KeyHasher>>,
    /// Min-queue of (deadline, key). A record has exactly one live item, at its `queued`
    /// time; items of removed records, or older items of a record whose deadline moved
    /// earlier, are stale and dropped when they come up. A deadline that moves later leaves
    /// the item where it is: the sweep re-files it when its old time comes. So a sweep pops
    /// only what is due, and its cost follows the expired records, not all records.
    pub(super) expiry: BinaryHeap<Reverse<(i64, StoreKey)>>,
}

impl Shard {
    pub(super) fn new() -> Self {
        Self {
            lru: LruCache::unbounded_with_hasher(Default::default()),
            expiry: BinaryHeap::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lru.len()
    }

    pub(super) fn peek(&self, key: &StoreKey) -> Option<&Entry> {
        self.lru.peek(key)
    }

    /// Reads `key` as a use (LRU order).
    pub(super) fn get(&mut self, key: &StoreKey) -> Option<&Entry> {
        self.lru.get(key)
    }

    pub(super) fn peek_mut(&mut self, key: &StoreKey) -> Option<&mut Entry> {
        self.lru.peek_mut(key)
    }

    pub(super) fn pop(&mut self, key: &StoreKey) -> Option<Entry> {
        self.lru.pop(key)
    }

    pub(super) fn pop_lru(&mut self) -> Option<(StoreKey, Entry)> {
        self.lru.pop_lru()
    }

    /// Files `entry` under `key` (callers checked it is free or dead) and queues its deadline.
    pub(super) fn push(&mut self, key: StoreKey, mut entry: Entry) {
        entry.queued = entry.expires_at;
        self.expiry.push(Reverse((entry.expires_at, key)));
        self.lru.push(key, entry);
        // Evicted and deleted records leave stale items behind; rebuild before they
        // outnumber the living, so the queue stays bounded by the store's size.
        if self.expiry.len() > 2 * self.lru.len() + 64 {
            self.expiry = self
                .lru
                .iter()
                .map(|(k, e)| Reverse((e.queued, *k)))
                .collect();
        }
    }

    /// Applies `patch` to the record under `key` (a use, in LRU order).
    pub(super) fn patch(&mut self, key: StoreKey, patch: &Patch) {
        let Some(entry) = self.lru.get_mut(&key) else {
            return;
        };
        entry.apply(patch);
        // A later deadline waits for the sweep to re-file it; an earlier one must be
        // queued now or the sweep would come too late.
        if entry.expires_at < entry.queued {
            entry.queued = entry.expires_at;
            self.expiry.push(Reverse((entry.expires_at, key)));
        }
    }

    /// Removes and returns every record dead at `now`.
    pub(super) fn sweep(&mut self, now: i64) -> Vec<(StoreKey, Entry)> {
        let mut removed = Vec::new();
        while let Some(&Reverse((at, key))) = self.expiry.peek() {
            if at > now {
                break;
            }
            self.expiry.pop();
            let Some(entry) = self.lru.peek_mut(&key) else {
                continue;
            };
            if entry.queued != at {
                continue;
            }
            if entry.is_expired(now) {
                if let Some(entry) = self.lru.pop(&key) {
                    removed.push((key, entry));
                }
            } else {
                entry.queued = entry.expires_at;
                self.expiry.push(Reverse((entry.expires_at, key)));
            }
        }
        removed
    }
}
