//! [`SessionData`]: a session's data as the request sees it, shared with the default store
//! until the request changes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// A session's data as this request sees it.
pub(crate) enum SessionData {
    Owned(BTreeMap<String, Value>),
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
        Self::Owned(BTreeMap::new())
    }
}

impl SessionData {
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Owned(map) => map.get(key),
            Self::Shared(data) => data
                .binary_search_by(|(k, _)| k.cmp_str(key))
                .ok()
                .map(|i| &data[i].1),
        }
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        match self {
            Self::Owned(map) => map.keys().cloned().collect(),
            Self::Shared(data) => data.iter().map(|(k, _)| k.as_str().to_owned()).collect(),
        }
    }

    /// The data to change, copied out of the store's entry first if it is shared.
    pub(crate) fn to_mut(&mut self) -> &mut BTreeMap<String, Value> {
        if let Self::Shared(data) = self {
            let map = data
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect();
            *self = Self::Owned(map);
        }
        match self {
            Self::Owned(map) => map,
            Self::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// A copy of the data as a record carries it.
    pub(crate) fn to_map(&self) -> BTreeMap<String, Value> {
        match self {
            Self::Owned(map) => map.clone(),
            Self::Shared(data) => data
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect(),
        }
    }
}
