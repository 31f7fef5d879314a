//! [`Session`]: the per-request handle handlers read and change, and the change set it turns
//! into one store commit after the response.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::binding::Client;
use crate::config::TokenSource;
use crate::error::{StoreError, StoreErrorKind};
use crate::event::{EventKind, ExpiryReason, RejectReason, RotateReason, Subject};
use crate::layer::{LayerState, Transport};
use crate::principal::Principal;
use crate::record::{Patch, Record, SessionInfo};
use crate::store::{BoxFuture, Commit, CommitOutcome, LayerStore, Lookup};
use crate::token::{SessionId, StoreKey, Verified};

/// A verified token as it arrived.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    pub(crate) verified: Verified,
    pub(crate) source: TokenSource,
}

/// What the layer puts into request extensions. Private, so the only way to a [`Session`] is
/// through the extractors, which load it first: a handle reached before loading would read
/// as empty and drop its writes.
#[derive(Clone)]
pub(crate) struct SessionHandle(pub(crate) Session);

/// The session of the current request.
///
/// Cheap to clone (clones share state). Extract it in a handler; reads and writes are
/// synchronous and recorded as a change set that the layer commits in one store call after
/// the handler returns. Nothing is written, and no cookie is sent, when nothing changed.
///
/// A client without a valid session gets a fresh anonymous one that is stored only once
/// something is written to it.
///
/// # Example
///
/// ```
/// use axum_tessera::{Principal, Session};
///
/// async fn login(session: Session) -> String {
///     // after checking the password:
///     session.login(Principal::user("alice").with_scopes(["admin"]));
///     session.token() // already the new token: the pre-login ID dies at commit
/// }
///
/// async fn cart(session: Session) -> String {
///     let mut items: Vec<String> = session.get("cart").unwrap_or_default();
///     items.push("tea".into());
///     session.insert("cart", &items).expect("strings serialise");
///     format!("{} items", items.len())
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Handle>,
}

struct Handle {
    layer: Arc<LayerState>,
    /// When the request arrived (Unix seconds).
    now: i64,
    incoming: Option<Incoming>,
    user_agent: Option<HeaderValue>,
    /// What the request looks like to the optional binding (empty when binding is off).
    client: Client,
    method: Method,
    uri: Uri,
    loaded: OnceCell<Result<(), StoreError>>,
    state: Mutex<State>,
}

struct State {
    /// Current ID; `None` for an anonymous session that has not needed one yet.
    id: Option<SessionId>,
    /// Where the loaded record lives in the store, if it came from there.
    stored: Option<StoreKey>,
    live: bool,
    record: Record,
    changes: Changes,
    /// The token for the current ID, once minted, so `token()` and the emitted token agree.
    issued: Option<String>,
    /// `id` is a verified ID the store did not know, kept only to check CSRF tokens.
    adopted: bool,
}

#[derive(Default)]
struct Changes {
    /// Data keys touched: `Some` set, `None` removed. Kept only for a stored session,
    /// whose commit is a patch; a new session is created whole.
    data: BTreeMap<String, Option<Value>>,
    /// Data of a session not in the store changed.
    unsaved_data: bool,
    principal: bool,
    flash: bool,
    /// A new ID was assigned that the client does not hold yet: send its token even if
    /// nothing is stored (an anonymous session's ID backs its CSRF tokens without a record).
    announce: bool,
    /// `destroy` / `logout` ran: tell a client that sent a token to drop it.
    ended: bool,
    /// A credential for this session was handed to the handler (`token()`): store the
    /// session so the token names a real one.
    persist: bool,
    /// The ID changed after loading a stored record.
    rotated: bool,
    refresh: bool,
    reissue: bool,
    /// A stored record to delete (destroy / logout).
    delete: Option<StoreKey>,
    /// The first reason the ID changed in this request.
    rotation: Option<RotateReason>,
    /// The record is deleted by `logout` rather than `destroy` (they report differently).
    logout: bool,
}

impl Changes {
    fn dirty(&self) -> bool {
        !self.data.is_empty() || self.unsaved_data || self.principal || self.flash
    }
}

/// What the response needs after the commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Emit {
    Nothing,
    /// Send this token; `max_age` in seconds for persistent cookies.
    Token {
        token: String,
        transport: Transport,
        max_age: i64,
    },
    /// Tell the client to drop its token.
    Clear {
        transport: Transport,
    },
}

/// Why the commit did not happen.
#[derive(Debug)]
pub(crate) enum CommitFailure {
    Store(StoreError),
    /// The record vanished (destroyed or expired by another request) before the patch.
    Missing,
    Collisions,
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

pub(crate) enum Finish {
    Done(Emit),
    Store(BoxFuture<'static, Result<Emit, CommitFailure>>),
}

/// `map[key] = value`, allocating the key only when it is new.
fn set<V>(map: &mut BTreeMap<String, V>, key: &str, value: V) {
    match map.get_mut(key) {
        Some(slot) => *slot = value,
        None => {
            map.insert(key.to_owned(), value);
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A handler that panicked mid-change leaves plain data; the response is a 5xx anyway, and
    // 5xx responses are never committed.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Session {
    pub(crate) fn new(
        layer: Arc<LayerState>,
        now: i64,
        incoming: Option<Incoming>,
        user_agent: Option<HeaderValue>,
        client: Client,
        method: Method,
        uri: Uri,
    ) -> Self {
        Self {
            inner: Arc::new(Handle {
                layer,
                now,
                incoming,
                user_agent,
                client,
                method,
                uri,
                loaded: OnceCell::new(),
                state: Mutex::new(State {
                    id: None,
                    stored: None,
                    live: false,
                    record: Record::new(0, 0),
                    changes: Changes::default(),
                    issued: None,
                    adopted: false,
                }),
            }),
        }
    }

    /// Loads the record on first use; later calls reuse the result, errors included.
    ///
    /// The default [`MemoryStore`](crate::store::MemoryStore) answers synchronously, so its
    /// load runs right here and the returned future is ready at once: no nested state machine
    /// to build and move on every request. Other stores load through the `OnceCell`.
    pub(crate) fn load(&self) -> Load<'_> {
        if let Some(result) = self.inner.loaded.get() {
            return Load::Ready(Some(result.clone()));
        }
        let ready = match (&self.inner.layer.store, &self.inner.incoming) {
            (_, None) => Some(Ok(())),
            (LayerStore::Memory(store), Some(incoming)) => {
                // Under the state lock, so two first loads on different threads cannot both
                // apply a record (the second could overwrite what a handler wrote between).
                let mut st = lock(&self.inner.state);
                if let Some(result) = self.inner.loaded.get() {
                    return Load::Ready(Some(result.clone()));
                }
                let key = incoming.verified.id().store_key();
                let found = if self.inner.layer.store_on_layer_clock {
                    store.lookup_at(&key, self.inner.now)
                } else {
                    store.lookup_now(&key)
                };
                let result = self.take_in(&mut st, key, Ok(found));
                if self.inner.loaded.set(result.clone()).is_ok() {
                    return Load::Ready(Some(result));
                }
                None
            }
            (LayerStore::Dyn(_), Some(_)) => None,
        };
        if let Some(result) = ready {
            if self.inner.loaded.set(result.clone()).is_ok() {
                return Load::Ready(Some(result));
            }
        }
        Load::Pending(Box::pin(async move {
            self.inner
                .loaded
                .get_or_init(|| self.load_from_store())
                .await
                .clone()
        }))
    }

    async fn load_from_store(&self) -> Result<(), StoreError> {
        let Some(incoming) = &self.inner.incoming else {
            return Ok(());
        };
        let key = incoming.verified.id().store_key();
        let found = self.inner.layer.store.lookup(&key).await;
        self.take_in(&mut lock(&self.inner.state), key, found)
    }

    /// Takes in what the store answered for `key`.
    fn take_in(
        &self,
        st: &mut State,
        key: StoreKey,
        found: Result<Lookup, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(incoming) = &self.inner.incoming else {
            return Ok(());
        };
        let layer = &self.inner.layer;
        let id = incoming.verified.id();
        // The request's own time: a second clock read here would cost more than it tells.
        let now = self.inner.now;
        let found = found.inspect_err(|err| {
            self.report(EventKind::StoreError(err.kind()), Some(key), None, now);
        })?;
        match found {
            Lookup::Missing => {
                self.report(
                    EventKind::TokenRejected(RejectReason::UnknownId),
                    Some(key),
                    None,
                    now,
                );
                Self::adopt(st, id);
            }
            Lookup::Expired(r) | Lookup::Live(r) if r.is_expired(now) => {
                let reason = if now >= r.created().saturating_add(layer.absolute) {
                    ExpiryReason::Absolute
                } else {
                    ExpiryReason::Idle
                };
                let principal = r.principal().map(Principal::id);
                self.report(EventKind::Expired(reason), Some(key), principal, now);
                Self::adopt(st, id);
            }
            Lookup::Expired(_) => {
                // The store's clock says expired but ours does not: trust the store.
                self.report(
                    EventKind::TokenRejected(RejectReason::UnknownId),
                    Some(key),
                    None,
                    now,
                );
                Self::adopt(st, id);
            }
            Lookup::Live(record) => {
                if let Some(reason) = layer.binding.mismatch(&record, &self.inner.client) {
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
                st.changes.refresh = now.saturating_sub(record.last_seen()) >= layer.refresh_after;
                st.changes.reissue = incoming.verified.needs_reissue();
                st.id = Some(id.clone());
                st.stored = Some(key);
                st.live = true;
                st.record = record;
            }
        }
        Ok(())
    }

    /// Keeps a verified ID that has no live record as this anonymous session's ID.
    ///
    /// The MAC proves this layer minted it, so it is no one else's; keeping it lets the
    /// CSRF tokens of an unsaved anonymous session (a login form) verify on the next request
    /// without storing a record per visitor. Login and every other privilege change still
    /// move to a fresh ID, so adopting never fixates a session.
    fn adopt(st: &mut State, id: &SessionId) {
        st.id = Some(id.clone());
        st.adopted = true;
    }

    /// Replaces an adopted ID before anything is stored under it or handed out as a
    /// credential: a client-presented ID that the store did not know may have been planted
    /// by someone else, who must not see what this client writes.
    fn own_id(st: &mut State) {
        if st.adopted {
            st.adopted = false;
            st.id = Some(SessionId::generate());
            st.issued = None;
            st.changes.announce = true;
        }
    }

    /// Emits an event about this request's session.
    pub(crate) fn report(
        &self,
        kind: EventKind,
        session: Option<StoreKey>,
        principal: Option<&str>,
        now: i64,
    ) {
        self.inner.layer.events.emit(
            kind,
            Subject {
                method: &self.inner.method,
                path: self.inner.uri.path(),
                session,
                principal,
                now,
            },
        );
    }

    /// Emits an event from a guard (CSRF, scopes, binding), naming the current session.
    pub(crate) fn report_now(&self, kind: EventKind) {
        let (key, principal) = {
            let st = lock(&self.inner.state);
            (
                st.id.as_ref().map(SessionId::store_key),
                st.record.principal().map(|p| p.id().to_owned()),
            )
        };
        let now = self.inner.layer.clock.now();
        self.report(kind, key, principal.as_deref(), now);
    }

    pub(crate) fn incoming_id(&self) -> Option<&SessionId> {
        self.inner.incoming.as_ref().map(|i| i.verified.id())
    }

    /// Whether the request carried a valid token for a live stored session.
    pub fn is_live(&self) -> bool {
        lock(&self.inner.state).live
    }

    /// Whether this session is not (yet) in the store: anonymous, destroyed, or never written.
    pub fn is_new(&self) -> bool {
        lock(&self.inner.state).stored.is_none()
    }

    pub(crate) fn require_existing(&self) -> bool {
        self.inner.layer.require_existing
    }

    /// The configuration of the layer this session belongs to, for the guards.
    pub(crate) fn layer(&self) -> &LayerState {
        &self.inner.layer
    }

    /// Where the request's valid token came from, if it had one. Requests authenticated by
    /// a bearer or header token are not subject to CSRF checks.
    pub fn token_source(&self) -> Option<&TokenSource> {
        self.inner.incoming.as_ref().map(|i| &i.source)
    }

    /// The value under `key`, if present and of type `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let st = lock(&self.inner.state);
        let value = st.record.data().get(key)?;
        T::deserialize(value).ok()
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        lock(&self.inner.state).record.data().get(key).cloned()
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    ///
    /// When `value` cannot be represented as JSON (a map with non-string keys, say); the
    /// session is then unchanged.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), serde_json::Error> {
        let value = serde_json::to_value(value)?;
        let mut st = lock(&self.inner.state);
        let st = &mut *st;
        if st.stored.is_some() {
            set(st.record.data_mut(), key, value.clone());
            set(&mut st.changes.data, key, Some(value));
        } else {
            set(st.record.data_mut(), key, value);
            st.changes.unsaved_data = true;
        }
        Ok(())
    }

    /// Removes `key` and returns its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        let mut st = lock(&self.inner.state);
        let old = st.record.data_mut().remove(key)?;
        if st.stored.is_some() {
            st.changes.data.insert(key.to_owned(), None);
        } else {
            st.changes.unsaved_data = true;
        }
        Some(old)
    }

    /// The data keys currently set.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.inner.state)
            .record
            .data()
            .keys()
            .cloned()
            .collect()
    }

    /// The logged-in principal.
    pub fn principal(&self) -> Option<Principal> {
        lock(&self.inner.state).record.principal().cloned()
    }

    /// Whether a principal is logged in.
    pub fn is_authenticated(&self) -> bool {
        lock(&self.inner.state).record.principal().is_some()
    }

    /// The principal's scopes (empty when anonymous).
    pub fn scopes(&self) -> BTreeSet<String> {
        lock(&self.inner.state)
            .record
            .principal()
            .map(|p| p.scopes().clone())
            .unwrap_or_default()
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        lock(&self.inner.state)
            .record
            .principal()
            .is_some_and(|p| p.has_scope(scope))
    }

    /// Logs `principal` in: the session gets a new ID at once (so [`Session::token`] already
    /// returns the new token) and the old ID stops working at commit. The CSRF secret rotates
    /// with the ID. Data is kept, unless another principal was logged in: then data and flash
    /// messages are dropped, so one user never inherits another's session on a shared browser.
    pub fn login(&self, principal: Principal) {
        let mut st = lock(&self.inner.state);
        let switching = st
            .record
            .principal()
            .is_some_and(|old| old.kind() != principal.kind() || old.id() != principal.id());
        if switching {
            let keys = std::mem::take(st.record.data_mut()).into_keys();
            st.changes.data.extend(keys.map(|key| (key, None)));
            st.record.flash_mut().clear();
            st.changes.flash = true;
        }
        st.record.set_principal(Some(principal));
        st.changes.principal = true;
        Self::new_id(&mut st, RotateReason::Login);
    }

    /// Logs out: the stored session is deleted at commit and the request continues with a
    /// fresh anonymous session (stored only if written to).
    pub fn logout(&self) {
        self.end(true);
    }

    /// Replaces the principal's scopes and rotates the ID. Returns `false`, changing nothing,
    /// when no principal is logged in.
    pub fn set_scopes<I, S>(&self, scopes: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut st = lock(&self.inner.state);
        let Some(p) = st.record.principal_mut() else {
            return false;
        };
        p.set_scopes(scopes.into_iter().map(Into::into).collect());
        st.changes.principal = true;
        Self::new_id(&mut st, RotateReason::ScopesChanged);
        true
    }

    /// Gives the session a new ID, keeping its data; the old ID stops working at commit.
    pub fn rotate(&self) {
        Self::new_id(&mut lock(&self.inner.state), RotateReason::Explicit);
    }

    /// Ends the session: its record is deleted at commit and the client told to drop its token.
    /// Later changes in the same request start a new anonymous session.
    pub fn destroy(&self) {
        self.end(false);
    }

    fn end(&self, logout: bool) {
        let mut st = lock(&self.inner.state);
        let delete = st.stored.take().or(st.changes.delete.take());
        *st = State {
            id: None,
            stored: None,
            live: false,
            record: Record::new(0, 0),
            changes: Changes {
                delete,
                logout,
                ended: true,
                ..Changes::default()
            },
            issued: None,
            adopted: false,
        };
    }

    fn new_id(st: &mut State, reason: RotateReason) {
        st.adopted = false;
        st.id = Some(SessionId::generate());
        st.issued = None;
        st.changes.rotated = st.stored.is_some();
        st.changes.rotation.get_or_insert(reason);
        st.changes.announce = true;
    }

    fn ensure_id(st: &mut State) -> SessionId {
        if st.id.is_none() {
            st.id = Some(SessionId::generate());
            st.changes.announce = true;
        }
        st.id.clone().expect("just set")
    }

    fn transport(&self) -> Transport {
        match self.inner.incoming.as_ref().map(|i| &i.source) {
            Some(TokenSource::Cookie) => Transport::Cookie,
            Some(_) => Transport::Header,
            None => self.inner.layer.default_transport,
        }
    }

    fn mint(&self, st: &mut State, now: i64) -> String {
        if let Some(token) = &st.issued {
            return token.clone();
        }
        let id = Self::ensure_id(st);
        let token = self.inner.layer.codec(self.transport()).sign(&id, now);
        st.issued = Some(token.clone());
        token
    }

    /// The signed token for this session, as the layer will send it. For API clients that
    /// return it in a body (`{"token": ...}`). An anonymous session is stored so the token
    /// names a real session.
    ///
    /// # Security
    ///
    /// The token is a bearer credential: never log it.
    pub fn token(&self) -> String {
        let now = self.inner.layer.clock.now();
        let mut st = lock(&self.inner.state);
        Self::own_id(&mut st);
        st.changes.persist = true;
        self.mint(&mut st, now)
    }

    /// A short hash naming this session in logs and pages; `None` before it has an ID.
    pub fn id_hash(&self) -> Option<String> {
        lock(&self.inner.state).id.as_ref().map(SessionId::short)
    }

    /// A fresh masked CSRF token for this session, for a hidden `csrf_token` form field or an
    /// `X-CSRF-Token` header. Each call returns different bytes (BREACH); all of them verify
    /// until the session's ID changes. An anonymous session gets an ID that is sent to the
    /// client, but no store record: the secret is derived from the ID, so crawlers rendering
    /// a login form cost no store space.
    pub fn csrf_token(&self) -> String {
        let mut st = lock(&self.inner.state);
        let id = Self::ensure_id(&mut st);
        self.inner.layer.csrf.issue(&id)
    }

    /// Whether `token` is a valid CSRF token of this session, compared in constant time.
    pub fn verify_csrf_token(&self, token: &str) -> bool {
        let st = lock(&self.inner.state);
        st.id
            .as_ref()
            .is_some_and(|id| self.inner.layer.csrf.verify(id, token))
    }

    /// Queues a flash message for a later request.
    pub fn flash(&self, message: impl Into<String>) {
        let mut st = lock(&self.inner.state);
        st.record.flash_mut().push(message.into());
        st.changes.flash = true;
    }

    /// Takes the queued flash messages, removing them from the session.
    pub fn take_flashes(&self) -> Vec<String> {
        let mut st = lock(&self.inner.state);
        if st.record.flash().is_empty() {
            return Vec::new();
        }
        st.changes.flash = true;
        std::mem::take(st.record.flash_mut())
    }

    /// Created, last seen and expiry times of a stored session; `None` for one not stored yet.
    pub fn info(&self) -> Option<SessionInfo> {
        let st = lock(&self.inner.state);
        st.stored.map(|key| st.record.info(key))
    }

    /// Lists the live sessions of this session's principal (empty when anonymous).
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn sessions_of_principal(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let Some(p) = self.principal() else {
            return Ok(Vec::new());
        };
        self.inner.layer.store.sessions_of(&p.index_key()).await
    }

    /// Ends one session of this session's principal, named by its store key (as listed by
    /// [`Session::sessions_of_principal`]): "log out that device". Answers `false`, deleting
    /// nothing, when the key is not a live session of the same principal, so a user can never
    /// end someone else's session. Ending the current session works like [`Session::logout`].
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn logout_session(&self, key: StoreKey) -> Result<bool, StoreError> {
        let owned = self
            .sessions_of_principal()
            .await?
            .iter()
            .any(|info| info.key() == key);
        if !owned {
            return Ok(false);
        }
        if lock(&self.inner.state).stored == Some(key) {
            self.logout();
            return Ok(true);
        }
        self.inner
            .layer
            .store
            .commit(Commit::Delete { key }, None)
            .await?;
        let now = self.inner.layer.clock.now();
        let principal = self.principal();
        self.report(
            EventKind::Destroyed,
            Some(key),
            principal.as_ref().map(Principal::id),
            now,
        );
        Ok(true)
    }

    /// Deletes every session of this session's principal, this one included ("log out
    /// everywhere"), and answers how many were deleted.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn logout_everywhere(&self) -> Result<u64, StoreError> {
        let Some(p) = self.principal() else {
            return Ok(0);
        };
        let n = self
            .inner
            .layer
            .store
            .delete_sessions_of(&p.index_key())
            .await?;
        self.destroy();
        Ok(n)
    }

    /// Whether a handler or extractor loaded the session, so the response may depend on it.
    pub(crate) fn accessed(&self) -> bool {
        self.inner.loaded.get().is_some()
    }

    /// Decides what the commit needs. `server_error` responses are never committed.
    pub(crate) fn finish(&self, server_error: bool) -> Finish {
        if server_error || self.inner.loaded.get().is_none() {
            return Finish::Done(Emit::Nothing);
        }
        let needs_store = {
            let st = lock(&self.inner.state);
            let c = &st.changes;
            c.delete.is_some()
                || c.dirty()
                || c.refresh && st.stored.is_some()
                || c.rotated
                || c.persist && st.stored.is_none()
        };
        if !needs_store {
            let now = self.inner.now;
            let mut st = lock(&self.inner.state);
            let emit = if st.changes.reissue && st.stored.is_some() {
                self.emit_token(&mut st, now)
            } else {
                self.unsaved_emit(&mut st, now)
            };
            return Finish::Done(emit);
        }
        let session = self.clone();
        Finish::Store(Box::pin(async move { session.commit().await }))
    }

    /// What to send for a session that is not written this time: its new token, or the
    /// clearing of a token it ended, or nothing.
    fn unsaved_emit(&self, st: &mut State, now: i64) -> Emit {
        if st.changes.announce && st.id.is_some() {
            self.emit_token(st, now)
        } else if st.changes.ended && self.inner.incoming.is_some() {
            Emit::Clear {
                transport: self.transport(),
            }
        } else {
            Emit::Nothing
        }
    }

    fn emit_token(&self, st: &mut State, now: i64) -> Emit {
        let token = self.mint(st, now);
        // An unsaved anonymous session has no creation time yet: its token window starts now.
        let created = match st.record.created() {
            0 => now,
            created => created,
        };
        let deadline = created.saturating_add(self.inner.layer.absolute);
        Emit::Token {
            token,
            transport: self.transport(),
            max_age: deadline.saturating_sub(now).max(0),
        }
    }

    async fn commit(&self) -> Result<Emit, CommitFailure> {
        let result = self.commit_changes().await;
        if let Err(CommitFailure::Store(err)) = &result {
            let kind = match err.kind() {
                StoreErrorKind::LimitReached => EventKind::PrincipalLimit,
                other => EventKind::StoreError(other),
            };
            let (key, principal) = {
                let st = lock(&self.inner.state);
                (
                    st.id.as_ref().map(SessionId::store_key),
                    st.record.principal().map(|p| p.id().to_owned()),
                )
            };
            self.report(
                kind,
                key,
                principal.as_deref(),
                self.inner.layer.clock.now(),
            );
        }
        result
    }

    async fn commit_changes(&self) -> Result<Emit, CommitFailure> {
        let layer = &self.inner.layer;
        // Stamped with the time the request arrived, like the load: one clock read per
        // request (clock_gettime is not free on every machine).
        let now = self.inner.now;
        let store_now = layer.store_on_layer_clock.then_some(now);
        let (delete, logout) = {
            let mut st = lock(&self.inner.state);
            (st.changes.delete.take(), st.changes.logout)
        };
        if let Some(key) = delete {
            layer
                .store
                .commit(Commit::Delete { key }, store_now)
                .await
                .map_err(CommitFailure::Store)?;
            let kind = if logout {
                EventKind::Rotated(RotateReason::Logout)
            } else {
                EventKind::Destroyed
            };
            self.report(kind, Some(key), None, now);
        }
        for _ in 0..3 {
            let (commit, emit) = {
                let mut st = lock(&self.inner.state);
                self.plan(&mut st, now)
            };
            let Some(commit) = commit else {
                return Ok(emit);
            };
            // Losing a refresh of a session another request just ended is harmless; losing
            // data or a login is not, and the client must hear of it.
            let refresh_only =
                matches!(&commit, Commit::Patch { patch, .. } if !patch.touches_data());
            let event = match &commit {
                Commit::Create { key, .. } => Some((EventKind::Created, *key)),
                Commit::Move { to, .. } => {
                    let reason = lock(&self.inner.state).changes.rotation;
                    Some((
                        EventKind::Rotated(reason.unwrap_or(RotateReason::Explicit)),
                        *to,
                    ))
                }
                Commit::Patch { key, .. } if refresh_only => Some((EventKind::Refreshed, *key)),
                _ => None,
            };
            let is_patch = matches!(&commit, Commit::Patch { .. });
            match layer.store.commit(commit, store_now).await {
                Ok(CommitOutcome::Applied) => {
                    if let Some((kind, key)) = event {
                        let principal = lock(&self.inner.state)
                            .record
                            .principal()
                            .map(|p| p.id().to_owned());
                        self.report(kind, Some(key), principal.as_deref(), now);
                    }
                    return Ok(emit);
                }
                Ok(CommitOutcome::Missing) if refresh_only => return Ok(Emit::Nothing),
                Ok(CommitOutcome::Missing) => return Err(CommitFailure::Missing),
                // A patch cannot collide; a store that says so is broken, and the change log
                // went with the patch, so fail rather than retry without it.
                Ok(_) if is_patch => return Err(CommitFailure::Collisions),
                Ok(_) => {
                    // Another session holds this ID (2^-256, or a broken RNG): never
                    // overwrite it, take a new one.
                    let mut st = lock(&self.inner.state);
                    st.id = Some(SessionId::generate());
                    st.issued = None;
                }
                Err(err) => return Err(CommitFailure::Store(err)),
            }
        }
        Err(CommitFailure::Collisions)
    }

    fn plan(&self, st: &mut State, now: i64) -> (Option<Commit>, Emit) {
        let layer = &self.inner.layer;
        let Some(from) = st.stored else {
            if !(st.changes.dirty() || st.changes.persist) {
                return (None, self.unsaved_emit(st, now));
            }
            Self::own_id(st);
            let id = Self::ensure_id(st);
            let mut record = st.record.clone();
            record.set_created(now, layer.expires_at(now, now));
            record.set_user_agent(self.inner.user_agent.as_ref().and_then(|v| v.to_str().ok()));
            layer.binding.stamp(&mut record, &self.inner.client);
            st.record.set_created(now, record.expires_at());
            let emit = self.emit_token(st, now);
            return (
                Some(Commit::Create {
                    key: id.store_key(),
                    record,
                }),
                emit,
            );
        };

        let mut patch = Patch::new(now, layer.expires_at(st.record.created(), now));
        // Only a move can be planned again (after an ID collision); a patch is planned once,
        // so it may take the change log instead of copying it.
        let data = if st.changes.rotated {
            st.changes.data.clone()
        } else {
            std::mem::take(&mut st.changes.data)
        };
        for (key, value) in data {
            match value {
                Some(v) => patch.set(key, v),
                None => patch.remove(key),
            }
        }
        if st.changes.principal {
            patch.replace_principal(st.record.principal().cloned());
        }
        if st.changes.flash {
            patch.replace_flash(st.record.flash().to_vec());
        }
        if st.changes.rotated {
            let to = Self::ensure_id(st).store_key();
            let emit = self.emit_token(st, now);
            return (Some(Commit::Move { from, to, patch }), emit);
        }
        let emit = if st.changes.reissue {
            self.emit_token(st, now)
        } else {
            Emit::Nothing
        };
        (Some(Commit::Patch { key: from, patch }), emit)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.inner.state);
        f.debug_struct("Session")
            .field("id", &st.id)
            .field("live", &st.live)
            .field("authenticated", &st.record.principal().is_some())
            .finish_non_exhaustive()
    }
}
