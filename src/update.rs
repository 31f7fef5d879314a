//! Atomic read-modify-write of one session key: [`Session::increment`] and
//! [`Session::update`], applied by the store itself so that concurrent requests, on one
//! instance or many, never lose an update.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{StoreError, StoreErrorKind};
use crate::session::{Session, State};
use crate::store::{Update, UpdateOutcome};

/// How many times [`Session::update`] re-reads and retries before giving up.
const MAX_ATTEMPTS: usize = 8;

impl Session {
    /// Adds `by` to the integer under `key` and answers the new value.
    ///
    /// Unlike `get` + `insert` (whose commit writes the value this request computed, so of
    /// two concurrent requests one increment is lost), the store applies the addition to
    /// the value it holds, at once and atomically: 400 concurrent increments across any
    /// number of instances end at exactly 400. An absent key, or one that does not hold an
    /// integer, counts as 0.
    ///
    /// # Commit and errors
    ///
    /// For a stored session this is its own store call, made now: it is **not** undone if
    /// the handler later answers with a 5xx. A session not in the store yet (a new visitor)
    /// has no concurrent writer: the value changes here and is stored with the session at
    /// commit, like `insert`. So is a key this request already changed with `insert` or
    /// `remove`, which the commit writes anyway.
    ///
    /// Fails with the store's error, or [`StoreErrorKind::SessionGone`] when another request
    /// ended the session first.
    ///
    /// # Example
    ///
    /// ```
    /// use axum_tessera::Session;
    ///
    /// async fn visit(session: Session) -> Result<String, axum_tessera::StoreError> {
    ///     let n = session.increment("visits", 1).await?;
    ///     Ok(format!("visit {n}"))
    /// }
    /// ```
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, StoreError> {
        match self.apply_update(key, Update::Increment { by }).await? {
            UpdateOutcome::Applied(value) => {
                Ok(value.as_ref().and_then(Value::as_i64).unwrap_or(0))
            }
            _ => Err(StoreError::from_kind(StoreErrorKind::SessionGone)),
        }
    }

    /// Replaces the value under `key` with `f(current)` (`None` when absent or not a `T`)
    /// and answers the value written, without losing a concurrent update: it writes only
    /// if the store still holds what `f` saw (compare-and-set), and otherwise calls `f`
    /// again on the newer value, up to 8 times.
    ///
    /// `f` may run more than once, so it should only compute. Commit semantics and the
    /// errors are those of [`Session::increment`], plus [`StoreErrorKind::Contended`] when
    /// every attempt lost to another writer and [`StoreErrorKind::InvalidValue`] when the
    /// value does not serialise to JSON.
    ///
    /// # Example
    ///
    /// ```
    /// use axum_tessera::Session;
    ///
    /// async fn add_to_cart(session: Session) -> Result<String, axum_tessera::StoreError> {
    ///     let cart: Vec<String> = session
    ///         .update("cart", |cart: Option<Vec<String>>| {
    ///             let mut cart = cart.unwrap_or_default();
    ///             cart.push("tea".into());
    ///             cart
    ///         })
    ///         .await?;
    ///     Ok(format!("{} items", cart.len()))
    /// }
    /// ```
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, StoreError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        let mut current = self.get_value(key);
        for _ in 0..MAX_ATTEMPTS {
            let seen = current.clone().and_then(|v| T::deserialize(v).ok());
            let new = f(seen);
            let value = serde_json::to_value(&new)
                .map_err(|err| StoreError::new(StoreErrorKind::InvalidValue, err))?;
            let update = Update::CompareAndSet {
                expected: current.take(),
                new: Some(value),
            };
            match self.apply_update(key, update).await? {
                UpdateOutcome::Applied(_) => return Ok(new),
                UpdateOutcome::Conflict(now) => current = now,
                _ => return Err(StoreError::from_kind(StoreErrorKind::SessionGone)),
            }
        }
        Err(StoreError::from_kind(StoreErrorKind::Contended))
    }

    /// Applies `update` in the store, or here when the store cannot hold a concurrent value
    /// (see [`Session::increment`]); keeps the session's own view in step either way.
    async fn apply_update(&self, key: &str, update: Update) -> Result<UpdateOutcome, StoreError> {
        let store_key = {
            let mut st = self.lock();
            match st.stored {
                Some(store_key) if !st.changes.data.contains_key(key) => store_key,
                _ => return Ok(apply_here(&mut st, key, update)),
            }
        };
        let outcome = self
            .inner
            .layer
            .store()
            .update(&store_key, key, update)
            .await?;
        if let UpdateOutcome::Applied(value) = &outcome {
            // Already stored: the session's view follows, but the commit must not write it
            // again (it could overwrite a newer concurrent update).
            let mut st = self.lock();
            if st.stored == Some(store_key) && !st.changes.data.contains_key(key) {
                match value {
                    Some(v) => st.data.set(key, v.clone()),
                    None => {
                        st.data.remove(key);
                    }
                }
            }
        }
        Ok(outcome)
    }
}

/// [`Update`] applied to the session's own copy, written at commit like `insert`.
fn apply_here(st: &mut State, key: &str, update: Update) -> UpdateOutcome {
    let current = st.data.get(key);
    let new = match update {
        Update::Increment { by } => Some(Value::from(
            current
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .saturating_add(by),
        )),
        Update::CompareAndSet { expected, new } => {
            if current != expected.as_ref() {
                return UpdateOutcome::Conflict(current.cloned());
            }
            new
        }
    };
    match &new {
        Some(v) => st.set_value(key, v.clone()),
        None => {
            st.remove_value(key);
        }
    }
    UpdateOutcome::Applied(new)
}
