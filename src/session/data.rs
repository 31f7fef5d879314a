//! [`SessionData`]: a session's data as the request sees it, shared with the default store
//! until the request changes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// A session's data as this request sees it.
pub(crate) enum SessionData {
    /// Sorted by key; keys as the default store keeps them, so a short key costs no
    /// allocation and a new session's data moves into its entry as it is.
    Owned(Vec<(DataKey, Value)>),
    /// The default store's entry, shared until the first change: a read copies nothing.
    /// Sorted by key.
    Shared(SharedData),
}

/// The data of a [`MemoryStore`](crate::store::MemoryStore) entry, sorted by key.
pub(crate) type SharedData = Arc<[(DataKey, Value)]>;

/// Longest key kept inline: what fits beside the tag in the space of a boxed one.
const INLINE: usize = 22;

/// A data key as the default store keeps it: inline when short, as most keys are
/// (`cart`, `user_id`), which saves the smallest heap chunk (32 bytes) per key and session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DataKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl DataKey {
    /// The key's bytes, which order keys as `str` does.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(key) => key.as_bytes(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Cut from a `str` at its end: always UTF-8.
            Self::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Self::Heap(key) => key,
        }
    }

    /// Orders this key against `key` (for binary search in a sorted slice).
    pub(crate) fn cmp_str(&self, key: &str) -> std::cmp::Ordering {
        self.as_bytes().cmp(key.as_bytes())
    }
}

impl From<&str> for DataKey {
    fn from(key: &str) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..key.len()].copy_from_slice(key.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(key.into()),
        }
    }
}

impl Default for SessionData {
    fn default() -> Self {
        Self::Owned(Vec::new())
    }
}

impl SessionData {
    /// The data of a record loaded from another store.
    pub(crate) fn from_map(map: BTreeMap<String, Value>) -> Self {
        // A BTreeMap iterates in key order: the vector is born sorted.
        Self::Owned(
            map.into_iter()
                .map(|(k, v)| (DataKey::from(k.as_str()), v))
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Owned(data) => data
                .binary_search_by(|(k, _)| k.cmp_str(key))
                .ok()
                .map(|i| &data[i].1),
            Self::Shared(data) => data
                .binary_search_by(|(k, _)| k.cmp_str(key))
                .ok()
                .map(|i| &data[i].1),
        }
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        match self {
            Self::Owned(data) => data.iter().map(|(k, _)| k.as_str().to_owned()).collect(),
            Self::Shared(data) => data.iter().map(|(k, _)| k.as_str().to_owned()).collect(),
        }
    }

    /// Sets `key`, allocating it only when it is new.
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        let data = self.to_mut(1);
        match data.binary_search_by(|(k, _)| k.cmp_str(key)) {
            Ok(i) => data[i].1 = value,
            Err(i) => data.insert(i, (DataKey::from(key), value)),
        }
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<Value> {
        self.get(key)?;
        let data = self.to_mut(0);
        let i = data.binary_search_by(|(k, _)| k.cmp_str(key)).ok()?;
        Some(data.remove(i).1)
    }

    /// The data to change (sorted by key, room for `extra` more), copied out of the store's
    /// entry first if it is shared. A sorted vector rather than a map: a session holds a few
    /// keys, and a map's first node alone is some 600 bytes to allocate and free.
    fn to_mut(&mut self, extra: usize) -> &mut Vec<(DataKey, Value)> {
        if let Self::Shared(data) = self {
            let mut copy = Vec::with_capacity(data.len() + extra);
            copy.extend(data.iter().cloned());
            *self = Self::Owned(copy);
        }
        match self {
            Self::Owned(data) => data,
            Self::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// The data as the default store's entry keeps it, for a new session's create: no map
    /// built only to be turned back into a slice, and nothing copied: the data moves into
    /// the shared slice, which this session then reads too. `None` when there is none.
    pub(crate) fn share(&mut self) -> Option<SharedData> {
        match self {
            Self::Owned(data) if data.is_empty() => None,
            Self::Owned(data) => {
                let shared = SharedData::from(std::mem::take(data));
                *self = Self::Shared(shared.clone());
                Some(shared)
            }
            Self::Shared(data) if data.is_empty() => None,
            Self::Shared(data) => Some(data.clone()),
        }
    }

    /// A copy of the data as a record carries it.
    pub(crate) fn to_map(&self) -> BTreeMap<String, Value> {
        // Inserted one by one: `collect` would gather and sort a vector first, which costs
        // more than the map itself for a session's few keys.
        let mut map = BTreeMap::new();
        match self {
            Self::Owned(data) => {
                for (k, v) in data {
                    map.insert(k.as_str().to_owned(), v.clone());
                }
            }
            Self::Shared(data) => {
                for (k, v) in data.iter() {
                    map.insert(k.as_str().to_owned(), v.clone());
                }
            }
        }
        map
    }
}

/// The data keys a request touched on a stored session (`Some` set, `None` removed), sorted
/// by key, for the commit's patch. A vector, for the same reason as [`SessionData`].
#[derive(Clone, Debug, Default)]
pub(crate) struct ChangeLog(Vec<(String, Option<Value>)>);

impl ChangeLog {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// Records `key`'s new value, allocating the key only when it is new.
    pub(crate) fn set(&mut self, key: &str, value: Option<Value>) {
        match self.find(key) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key.to_owned(), value)),
        }
    }

    pub(crate) fn insert(&mut self, key: String, value: Option<Value>) {
        match self.find(&key) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }
}

impl Extend<(String, Option<Value>)> for ChangeLog {
    fn extend<I: IntoIterator<Item = (String, Option<Value>)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}

impl IntoIterator for ChangeLog {
    type Item = (String, Option<Value>);
    type IntoIter = std::vec::IntoIter<(String, Option<Value>)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
