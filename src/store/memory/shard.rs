//! One lock's worth of [`MemoryStore`](super::MemoryStore) sessions: the compact [`Entry`]
//! each record is kept as, the LRU order and the expiry queue the sweep reads.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use lru::LruCache;
use serde_json::Value;

use crate::flash::Flash;
use crate::principal::Principal;
use crate::record::{Patch, Record};
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
/// keys it holds; here data is a sorted boxed slice and the rarely used fields are boxed, so
/// a session with one small key costs a few hundred bytes in all.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    created: i64,
    last_seen: i64,
    expires_at: i64,
    /// The deadline this record is filed under in its shard's expiry queue; never later
    /// than `expires_at`.
    queued: i64,
    principal: Option<Box<Principal>>,
    /// Sorted by key.
    data: Box<[(Box<str>, Value)]>,
    flash: Box<[Flash]>,
    user_agent: Option<Box<str>>,
    /// Boxed: binding is off by default.
    binding: Option<Box<Bound>>,
    /// The login's cookie choice ([`Record::persistent`]).
    persistent: Option<bool>,
    /// [`Record::consented_at`].
    consented_at: Option<i64>,
}

impl Entry {
    pub(super) fn new(record: Record) -> Self {
        Self {
            created: record.created,
            last_seen: record.last_seen,
            expires_at: record.expires_at,
            queued: record.expires_at,
            principal: record.principal.map(Box::new),
            // BTreeMap iterates in key order, so the slice is born sorted.
            data: record
                .data
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v))
                .collect(),
            flash: record.flash.into_boxed_slice(),
            user_agent: record.user_agent.map(String::into_boxed_str),
            binding: match (record.bound_user_agent, record.bound_ip) {
                (None, None) => None,
                (ua, ip) => Some(Box::new((ua.map(String::into_boxed_str), ip))),
            },
            persistent: record.persistent,
            consented_at: record.consented_at,
        }
    }

    pub(super) fn to_record(&self) -> Record {
        let mut data = BTreeMap::new();
        for (k, v) in self.data.iter() {
            data.insert(String::from(&**k), v.clone());
        }
        Record {
            created: self.created,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
            principal: self.principal.as_deref().cloned(),
            data,
            flash: self.flash.to_vec(),
            user_agent: self.user_agent.as_deref().map(str::to_owned),
            bound_user_agent: self
                .binding
                .as_ref()
                .and_then(|b| b.0.as_deref().map(str::to_owned)),
            bound_ip: self.binding.as_ref().and_then(|b| b.1),
            persistent: self.persistent,
            consented_at: self.consented_at,
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
        self.data
            .binary_search_by(|(k, _)| (**k).cmp(field))
            .ok()
            .map(|i| &self.data[i].1)
    }

    /// Sets (`Some`) or removes (`None`) data key `field`.
    pub(super) fn set_value(&mut self, field: &str, value: Option<Value>) {
        let found = self.data.binary_search_by(|(k, _)| (**k).cmp(field));
        match (found, value) {
            (Ok(i), Some(v)) => self.data[i].1 = v,
            (Ok(i), None) => {
                let mut data = std::mem::take(&mut self.data).into_vec();
                data.remove(i);
                self.data = data.into_boxed_slice();
            }
            (Err(i), Some(v)) => {
                let mut data = std::mem::take(&mut self.data).into_vec();
                data.insert(i, (field.into(), v));
                self.data = data.into_boxed_slice();
            }
            (Err(_), None) => {}
        }
    }

    /// [`Patch::apply`] for this form.
    pub(super) fn apply(&mut self, patch: &Patch) {
        if !patch.removes().is_empty() || !patch.sets().is_empty() {
            let mut data = std::mem::take(&mut self.data).into_vec();
            for key in patch.removes() {
                if let Ok(i) = data.binary_search_by(|(k, _)| (**k).cmp(key.as_str())) {
                    data.remove(i);
                }
            }
            for (key, value) in patch.sets() {
                match data.binary_search_by(|(k, _)| (**k).cmp(key.as_str())) {
                    Ok(i) => data[i].1.clone_from(value),
                    Err(i) => data.insert(i, (key.as_str().into(), value.clone())),
                }
            }
            // Shrinks only when a key came or went; a changed value reallocates nothing.
            self.data = data.into_boxed_slice();
        }
        if let Some(principal) = patch.principal() {
            self.principal = principal.cloned().map(Box::new);
        }
        if let Some(flash) = patch.flash() {
            self.flash = flash.into();
        }
        if let Some(persistent) = patch.persistent() {
            self.persistent = persistent;
        }
        if let Some(at) = patch.consented_at() {
            self.consented_at = Some(at);
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
