//! Loading a [`Session`] lazily: the first extractor that needs it looks the verified ID up
//! in the store and takes in what it finds (live, expired, unknown, bound elsewhere).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::request::Parts;

use crate::error::{StoreError, StoreErrorKind};
use crate::event::{EventKind, ExpiryReason, RejectReason};
use crate::principal::Principal;
use crate::record::Record;
use crate::session::{Id, Session, SessionData, SharedData, State, FAILED, LOADED, UNLOADED};
use crate::store::{BoxFuture, Found, LayerStore, Lookup};
use crate::token::{SessionId, StoreKey};

/// An event the load found, emitted after the state lock is released.
struct LoadEvent {
    kind: EventKind,
    key: StoreKey,
    principal: Option<String>,
}

/// The future [`Session::load`] returns: ready at once, or the store's load.
pub(crate) enum Load<'a> {
    Ready(Option<Result<(), StoreError>>),
    Pending(BoxFuture<'a, Result<(), StoreError>>),
}

impl Future for Load<'_> {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Load::Ready(result) => {
                Poll::Ready(result.take().expect("Load polled after completion"))
            }
            Load::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl Session {
    /// Loads the record on first use; later calls reuse the result, errors included. The
    /// first call also copies what the session needs of `parts`, under the same lock.
    ///
    /// The default [`MemoryStore`](crate::store::MemoryStore) answers synchronously, so its
    /// load runs right here and the returned future is ready at once: no nested state machine
    /// to build and move on every request. Other stores load behind an async gate, so
    /// concurrent first loads wait for one store call.
    pub(crate) fn load(&self, parts: &Parts) -> Load<'_> {
        let inner = &self.inner;
        if let Some(result) = self.loaded() {
            return Load::Ready(Some(result));
        }
        // Under the state lock, so two first loads on different threads cannot both apply a
        // record (the second could overwrite what a handler wrote between).
        let mut st = self.lock();
        if let Some(result) = self.loaded_in(&st) {
            return Load::Ready(Some(result));
        }
        st.seen.take(parts, inner.layer.events());
        let incoming = match (inner.layer.store(), &inner.request.incoming) {
            (_, None) => return Load::Ready(Some(self.set_loaded(&mut st, Ok(())))),
            // Minted for a session that was never stored: nothing to look up.
            (_, Some(incoming)) if incoming.verified.id().is_unsaved() => {
                if let Id::Unset = st.id {
                    st.id = Id::Adopted(incoming.verified.id().clone());
                }
                return Load::Ready(Some(self.set_loaded(&mut st, Ok(()))));
            }
            (LayerStore::Dyn(_), Some(incoming)) => incoming,
            (LayerStore::Memory(store), Some(incoming)) => {
                let key = incoming.verified.id().store_key();
                let now = inner.layer.store_time(inner.request.now);
                let state = &mut *st;
                let (result, event) = match store.load_into(&key, now, &mut state.record) {
                    Found::Live(data) => (Ok(()), self.take_live(state, key, data)),
                    Found::Expired(record) => {
                        self.take_in(state, key, Ok(Lookup::Expired(*record)))
                    }
                    Found::Missing => self.take_in(state, key, Ok(Lookup::Missing)),
                };
                let result = self.set_loaded(state, result);
                drop(st);
                // Hooks run outside the state lock: a slow hook must not hold it.
                self.emit_load_event(event);
                return Load::Ready(Some(result));
            }
        };
        drop(st);
        Load::Pending(Box::pin(async move {
            let gate = inner
                .load_gate
                .get_or_init(|| Box::new(tokio::sync::Mutex::const_new(())));
            let _gate = gate.lock().await;
            // Outcomes are recorded under this gate too: a load that waited sees the winner's.
            if let Some(result) = self.loaded() {
                return result;
            }
            let key = incoming.verified.id().store_key();
            let found = inner.layer.store().lookup(&key).await;
            let (result, event) = {
                let mut st = self.lock();
                let (result, event) = self.take_in(&mut st, key, found);
                (self.set_loaded(&mut st, result), event)
            };
            self.emit_load_event(event);
            result
        }))
    }

    /// The load's outcome, if it ran.
    fn loaded(&self) -> Option<Result<(), StoreError>> {
        match self.inner.loaded.load(Ordering::Acquire) {
            UNLOADED => None,
            LOADED => Some(Ok(())),
            // A failed load's error is kept in the state.
            _ => self.loaded_in(&self.lock()),
        }
    }

    /// `loaded` for a caller that holds the state lock.
    fn loaded_in(&self, st: &State) -> Option<Result<(), StoreError>> {
        match self.inner.loaded.load(Ordering::Acquire) {
            UNLOADED => None,
            LOADED => Some(Ok(())),
            _ => Some(Err(StoreError::clone(st.load_error.as_deref()?))),
        }
    }

    /// Records the load's outcome, under the state lock (every load that records one holds
    /// it and checked first that none was recorded).
    fn set_loaded(&self, st: &mut State, result: Result<(), StoreError>) -> Result<(), StoreError> {
        let flag = match &result {
            Ok(()) => LOADED,
            Err(err) => {
                st.load_error = Some(Box::new(err.clone()));
                FAILED
            }
        };
        self.inner.loaded.store(flag, Ordering::Release);
        result
    }

    fn emit_load_event(&self, event: Option<LoadEvent>) {
        if let Some(LoadEvent {
            kind,
            key,
            principal,
        }) = event
        {
            self.report(
                kind,
                Some(key),
                principal.as_deref(),
                self.inner.request.now,
            );
        }
    }

    /// Takes in what the store answered for `key`, under the state lock; the event to
    /// report is handed back, to be emitted once the lock is released.
    fn take_in(
        &self,
        st: &mut State,
        key: StoreKey,
        found: Result<Lookup, StoreError>,
    ) -> (Result<(), StoreError>, Option<LoadEvent>) {
        let Some(incoming) = &self.inner.request.incoming else {
            return (Ok(()), None);
        };
        // One match over the result and the lookup: each level of destructuring moved the
        // 256-byte record once more.
        let event = match found {
            // A record changed outside the store must not lock its owner out (every request,
            // logout included, would be a 503 until the TTL ran out): it counts as gone, and
            // ending the session deletes it.
            Err(err) if err.kind() == StoreErrorKind::Corrupt => {
                tracing::warn!(session = %key, error = ?err, "corrupt session record treated as gone");
                st.corrupt = Some(Box::new(key));
                adopt(st, incoming.verified.id());
                return (Ok(()), self.load_event(EventKind::CorruptRecord, key, None));
            }
            Err(err) => {
                let kind = EventKind::StoreError(err.kind());
                return (Err(err), self.load_event(kind, key, None));
            }
            Ok(Lookup::Missing) => {
                adopt(st, incoming.verified.id());
                self.load_event(EventKind::TokenRejected(RejectReason::UnknownId), key, None)
            }
            Ok(Lookup::Expired(r)) if r.is_expired(self.inner.request.now) => {
                adopt(st, incoming.verified.id());
                self.load_event(EventKind::Expired(self.expiry(&r)), key, r.principal())
            }
            Ok(Lookup::Expired(_)) => {
                // The store's clock says expired but ours does not: trust the store.
                adopt(st, incoming.verified.id());
                self.load_event(EventKind::TokenRejected(RejectReason::UnknownId), key, None)
            }
            Ok(Lookup::Live(record)) => {
                *st.record = record;
                self.take_live(st, key, None)
            }
        };
        (Ok(()), event)
    }

    /// Takes in the live record the store wrote into `st.record` for `key` (its data in
    /// `shared`, or else in the record's map), under the state lock; the event to report is
    /// handed back. A record this layer cannot accept (expired by its clock, bound to
    /// another client) leaves the state as it was: empty.
    fn take_live(
        &self,
        st: &mut State,
        key: StoreKey,
        shared: Option<SharedData>,
    ) -> Option<LoadEvent> {
        let incoming = self.inner.request.incoming.as_ref()?;
        let layer = &self.inner.layer;
        let id = incoming.verified.id();
        // The request's own time: a second clock read here would cost more than it tells.
        let now = self.inner.request.now;
        if st.record.is_expired(now) {
            let record = std::mem::replace(&mut *st.record, Record::new(0, 0));
            adopt(st, id);
            return self.load_event(
                EventKind::Expired(self.expiry(&record)),
                key,
                record.principal(),
            );
        }
        if let Some(reason) = layer
            .binding()
            .mismatch(&st.record, &self.inner.request.client)
        {
            tracing::debug!(session = %key, reason, "session binding mismatch");
            let record = std::mem::replace(&mut *st.record, Record::new(0, 0));
            return self.load_event(EventKind::BindingMismatch, key, record.principal());
        }
        let loaded = self.load_event(EventKind::Loaded, key, st.record.principal());
        st.changes.renewal.refresh =
            now.saturating_sub(st.record.last_seen()) >= layer.timeouts().refresh_after;
        st.changes.renewal.reissue = incoming.verified.needs_reissue();
        st.id = Id::Presented(id.clone());
        st.stored = Some(key);
        st.live = true;
        st.data = match shared {
            Some(data) => SessionData::Shared(data),
            None => SessionData::from_map(std::mem::take(st.record.data_mut())),
        };
        loaded
    }

    /// Which timeout ended `record`, dead at the request's time.
    fn expiry(&self, record: &Record) -> ExpiryReason {
        let absolute = self.inner.layer.timeouts().absolute;
        if self.inner.request.now >= record.created().saturating_add(absolute) {
            ExpiryReason::Absolute
        } else {
            ExpiryReason::Idle
        }
    }

    /// The load's event, to emit once the state lock is released; when nobody listens it is
    /// only counted, right here (an atomic add needs no release of the lock), and nothing of
    /// it is built.
    fn load_event(
        &self,
        kind: EventKind,
        key: StoreKey,
        principal: Option<&Principal>,
    ) -> Option<LoadEvent> {
        let events = self.inner.layer.events();
        if !events.listening() {
            events.count(&kind);
            return None;
        }
        Some(LoadEvent {
            kind,
            key,
            principal: principal.map(|p| p.id().to_owned()),
        })
    }

    /// Whether a handler or extractor loaded the session, so the response may depend on it.
    pub(crate) fn accessed(&self) -> bool {
        self.inner.loaded.load(Ordering::Acquire) != UNLOADED
    }
}

/// The MAC proves this layer minted a verified ID, so it is no one else's; keeping one that
/// has no live record lets the CSRF tokens of an unsaved anonymous session (a login form)
/// verify on the next request without storing a record per visitor. Login and every other
/// privilege change still move to a fresh ID, so adopting never fixates a session.
fn adopt(st: &mut State, id: &SessionId) {
    st.id = Id::Adopted(id.clone());
}
