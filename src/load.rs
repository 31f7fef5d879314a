//! Loading a [`Session`] lazily: the first extractor that needs it looks the verified ID up
//! in the store and takes in what it finds (live, expired, unknown, bound elsewhere).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::StoreError;
use crate::event::{EventKind, ExpiryReason, RejectReason};
use crate::principal::Principal;
use crate::session::{Id, Session, State};
use crate::store::{BoxFuture, LayerStore, Lookup};
use crate::token::StoreKey;

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
    /// Loads the record on first use; later calls reuse the result, errors included.
    ///
    /// The default [`MemoryStore`](crate::store::MemoryStore) answers synchronously, so its
    /// load runs right here and the returned future is ready at once: no nested state machine
    /// to build and move on every request. Other stores load through the `OnceCell`.
    pub(crate) fn load(&self) -> Load<'_> {
        let inner = &self.inner;
        if let Some(result) = inner.loaded.get() {
            return Load::Ready(Some(result.clone()));
        }
        let ready = match (inner.layer.store(), &inner.request.incoming) {
            (_, None) => Some(Ok(())),
            (LayerStore::Memory(store), Some(incoming)) => {
                // Under the state lock, so two first loads on different threads cannot both
                // apply a record (the second could overwrite what a handler wrote between).
                let mut st = self.lock();
                if let Some(result) = inner.loaded.get() {
                    return Load::Ready(Some(result.clone()));
                }
                let key = incoming.verified.id().store_key();
                let now = inner.request.now;
                let found = match inner.layer.store_time(now) {
                    Some(now) => store.lookup_at(&key, now),
                    None => store.lookup_now(&key),
                };
                let result = self.take_in(&mut st, key, Ok(found));
                if inner.loaded.set(result.clone()).is_ok() {
                    return Load::Ready(Some(result));
                }
                None
            }
            (LayerStore::Dyn(_), Some(_)) => None,
        };
        if let Some(result) = ready {
            if inner.loaded.set(result.clone()).is_ok() {
                return Load::Ready(Some(result));
            }
        }
        Load::Pending(Box::pin(async move {
            inner
                .loaded
                .get_or_init(|| self.load_from_store())
                .await
                .clone()
        }))
    }

    async fn load_from_store(&self) -> Result<(), StoreError> {
        let Some(incoming) = &self.inner.request.incoming else {
            return Ok(());
        };
        let key = incoming.verified.id().store_key();
        let found = self.inner.layer.store().lookup(&key).await;
        self.take_in(&mut self.lock(), key, found)
    }

    /// Takes in what the store answered for `key`.
    fn take_in(
        &self,
        st: &mut State,
        key: StoreKey,
        found: Result<Lookup, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(incoming) = &self.inner.request.incoming else {
            return Ok(());
        };
        let layer = &self.inner.layer;
        let id = incoming.verified.id();
        // The request's own time: a second clock read here would cost more than it tells.
        let now = self.inner.request.now;
        let found = found.inspect_err(|err| {
            self.report(EventKind::StoreError(err.kind()), Some(key), None, now);
        })?;
        // The MAC proves this layer minted a verified ID, so it is no one else's; keeping one
        // that has no live record lets the CSRF tokens of an unsaved anonymous session (a
        // login form) verify on the next request without storing a record per visitor.
        // Login and every other privilege change still move to a fresh ID, so adopting never
        // fixates a session.
        let adopt = |st: &mut State| st.id = Id::Adopted(id.clone());
        match found {
            Lookup::Missing => {
                self.report(
                    EventKind::TokenRejected(RejectReason::UnknownId),
                    Some(key),
                    None,
                    now,
                );
                adopt(st);
            }
            Lookup::Expired(r) | Lookup::Live(r) if r.is_expired(now) => {
                let reason = if now >= r.created().saturating_add(layer.timeouts().absolute) {
                    ExpiryReason::Absolute
                } else {
                    ExpiryReason::Idle
                };
                let principal = r.principal().map(Principal::id);
                self.report(EventKind::Expired(reason), Some(key), principal, now);
                adopt(st);
            }
            Lookup::Expired(_) => {
                // The store's clock says expired but ours does not: trust the store.
                self.report(
                    EventKind::TokenRejected(RejectReason::UnknownId),
                    Some(key),
                    None,
                    now,
                );
                adopt(st);
            }
            Lookup::Live(record) => {
                if let Some(reason) = layer
                    .binding()
                    .mismatch(&record, &self.inner.request.client)
                {
                    tracing::debug!(session = %key, reason, "session binding mismatch");
                    let principal = record.principal().map(Principal::id);
                    self.report(EventKind::BindingMismatch, Some(key), principal, now);
                    return Ok(());
                }
                self.report(
                    EventKind::Loaded,
                    Some(key),
                    record.principal().map(Principal::id),
                    now,
                );
                st.changes.renewal.refresh =
                    now.saturating_sub(record.last_seen()) >= layer.timeouts().refresh_after;
                st.changes.renewal.reissue = incoming.verified.needs_reissue();
                st.id = Id::Presented(id.clone());
                st.stored = Some(key);
                st.live = true;
                st.record = record;
            }
        }
        Ok(())
    }

    /// Whether a handler or extractor loaded the session, so the response may depend on it.
    pub(crate) fn accessed(&self) -> bool {
        self.inner.loaded.get().is_some()
    }
}
