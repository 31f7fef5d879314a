//! [`Session`]: the handle handlers read and change. Loading lives in `load.rs`, deciding and
//! applying the commit in `commit.rs`; this file owns the per-request state they share.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::TokenSource;
use crate::event::{EventKind, RotateReason, Subject};
use crate::live::EndReason;
use crate::principal::Principal;
use crate::rejection::{prefers_json_in, Capture, Challenge};
use crate::state::LayerState;
use crate::token::{SessionId, StoreKey};
use crate::transport::{Presented, Transport};

mod consent;
mod data;
mod devices;
mod lifetime;
mod state;

pub(crate) use data::{ChangeLog, DataKey, SessionData, SharedData};
#[cfg(test)]
pub(crate) use state::Renewal;
pub(crate) use state::{lock, EndKind, Ending, Id, RequestContext, State};

/// What the layer puts into request extensions. Private, so the only way to a [`Session`] is
/// through the extractors, which load it first: a handle reached before loading would read
/// as empty and drop its writes.
#[derive(Clone)]
pub(crate) struct SessionHandle(pub(crate) Session);

impl SessionHandle {
    /// The session, with what it needs of the request copied from `parts` if this is the
    /// first extractor to ask: for an extractor that does not load it (loading copies the
    /// request under the same lock).
    pub(crate) fn session(&self, parts: &Parts) -> Session {
        self.0.lock().seen.take(parts, self.0.inner.layer.events());
        self.0.clone()
    }
}

/// The request's session under the layer, from request parts, not yet loaded: its load
/// ([`Session::load`]) copies what it needs of the request.
pub(crate) fn of_parts(parts: &Parts) -> Option<Session> {
    parts
        .extensions
        .get::<SessionHandle>()
        .map(|handle| handle.0.clone())
}

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
    pub(crate) inner: Arc<Handle>,
}

/// [`Handle::loaded`]: not loaded yet.
pub(crate) const UNLOADED: u8 = 0;
/// [`Handle::loaded`]: loaded.
pub(crate) const LOADED: u8 = 1;
/// [`Handle::loaded`]: the load failed; the error is [`State::load_error`].
pub(crate) const FAILED: u8 = 2;

pub(crate) struct Handle {
    pub(crate) layer: Arc<LayerState>,
    pub(crate) request: RequestContext,
    /// Whether the load ran and how it ended ([`UNLOADED`], [`LOADED`], [`FAILED`]; the
    /// error is in the state): an atomic rather than a `OnceLock`, whose initialisation
    /// costs a call per request.
    pub(crate) loaded: AtomicU8,
    /// Serialises loads from stores that answer asynchronously; made by the first such
    /// load, so a session of the default store carries a word, not the mutex, into its
    /// `Arc` (a Dyn store's load allocates anyway).
    pub(crate) load_gate: OnceLock<Box<tokio::sync::Mutex<()>>>,
    pub(crate) state: Mutex<State>,
}

impl Session {
    // Inlined into the service's call, which builds the request context right there: one
    // call and a move of the context fewer per request (~90 instructions under callgrind).
    #[inline(always)]
    pub(crate) fn new(layer: Arc<LayerState>, request: RequestContext) -> Self {
        Self {
            inner: Arc::new(Handle {
                layer,
                request,
                loaded: AtomicU8::new(UNLOADED),
                load_gate: OnceLock::new(),
                state: Mutex::new(State::new()),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Emits an event about this request's session; only counts it when nobody listens.
    /// Never called under the state lock.
    pub(crate) fn report(
        &self,
        kind: EventKind,
        session: Option<StoreKey>,
        principal: Option<&str>,
        now: i64,
    ) {
        let events = self.inner.layer.events();
        if !events.listening() {
            events.count(&kind);
            return;
        }
        let origin = self.lock().seen.origin.clone();
        let (method, path) = match &origin {
            Some((method, path)) => (method, path.as_ref().map_or("", |p| p.path())),
            None => (&http::Method::GET, "/"),
        };
        events.emit(
            kind,
            Subject {
                method,
                path,
                session,
                principal,
                now,
            },
        );
    }

    /// The store key and principal ID of the current session, for events.
    pub(crate) fn subject(&self) -> (Option<StoreKey>, Option<String>) {
        let st = self.lock();
        (
            st.id.get().map(SessionId::store_key),
            st.record.principal().map(|p| p.id().to_owned()),
        )
    }

    /// The principal ID of the current session, for events.
    pub(crate) fn principal_id(&self) -> Option<String> {
        self.lock().record.principal().map(|p| p.id().to_owned())
    }

    /// Emits an event from a guard (CSRF, scopes, binding), naming the current session.
    pub(crate) fn report_now(&self, kind: EventKind) {
        let (key, principal) = self.subject();
        let now = self.inner.layer.now();
        self.report(kind, key, principal.as_deref(), now);
    }

    pub(crate) fn incoming_id(&self) -> Option<&SessionId> {
        self.inner
            .request
            .incoming
            .as_ref()
            .map(|i| i.verified.id())
    }

    /// The configuration of the layer this session belongs to, for the guards.
    pub(crate) fn layer(&self) -> &LayerState {
        &self.inner.layer
    }

    pub(crate) fn require_existing(&self) -> bool {
        self.inner.layer.require_existing()
    }

    /// Which kinds of token the request presented, valid or not.
    pub(crate) fn presented(&self) -> Presented {
        self.inner.request.presented
    }

    /// The `WWW-Authenticate` challenge of a 401 to this request: the layer's scheme, with
    /// `invalid_token` when the request presented a token (which did not authenticate, or
    /// there would be no 401).
    pub(crate) fn challenge(&self) -> Challenge {
        Challenge {
            scheme: self.inner.layer.scheme(),
            invalid_token: self.inner.request.presented.any(),
        }
    }

    /// How rejections made after the handler answer this request.
    pub(crate) fn capture(&self) -> Capture {
        Capture {
            wants_json: prefers_json_in(self.lock().seen.accept.iter()),
            render: self.inner.layer.renderer().cloned(),
        }
    }

    /// How this session's token travels: the way it came, or the layer's default.
    pub(crate) fn transport(&self) -> Transport {
        match &self.inner.request.incoming {
            Some(incoming) => incoming.transport(),
            None => self.inner.layer.default_transport(),
        }
    }

    /// The token for the current ID (assigning one if needed), minted once per ID.
    pub(crate) fn mint(&self, st: &mut State, now: i64) -> String {
        if let Some(token) = &st.issued {
            return token.clone();
        }
        let id = st.ensure_id();
        let token = self.inner.layer.codec(self.transport()).sign(&id, now);
        st.issued = Some(token.clone());
        token
    }

    /// Whether the request carried a valid token for a live stored session.
    pub fn is_live(&self) -> bool {
        self.lock().live
    }

    /// Whether this session is not (yet) in the store: anonymous, destroyed, or never written.
    pub fn is_new(&self) -> bool {
        self.lock().stored.is_none()
    }

    /// Where the request's valid token came from, if it had one. Requests authenticated by
    /// a bearer or header token are not subject to CSRF checks.
    pub fn token_source(&self) -> Option<&TokenSource> {
        self.inner.request.incoming.as_ref().map(|i| &i.source)
    }

    /// The value under `key`, if present and of type `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let st = self.lock();
        let value = st.data.get(key)?;
        T::deserialize(value).ok()
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.lock().data.get(key).cloned()
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    ///
    /// When `value` cannot be represented as JSON (a map with non-string keys, say); the
    /// session is then unchanged.
    ///
    /// The commit writes this value whatever another request wrote meanwhile: for a
    /// counter or another value computed from the current one, use
    /// [`Session::increment`] or [`Session::update`], which the store applies atomically.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), serde_json::Error> {
        let value = serde_json::to_value(value)?;
        self.lock().set_value(key, value);
        Ok(())
    }

    /// Removes `key` and returns its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        self.lock().remove_value(key)
    }

    /// The data keys currently set.
    pub fn keys(&self) -> Vec<String> {
        self.lock().data.keys()
    }

    /// The logged-in principal.
    pub fn principal(&self) -> Option<Principal> {
        self.lock().record.principal().cloned()
    }

    /// Whether a principal is logged in.
    pub fn is_authenticated(&self) -> bool {
        self.lock().record.principal().is_some()
    }

    /// The principal's scopes (empty when anonymous).
    pub fn scopes(&self) -> BTreeSet<String> {
        self.lock()
            .record
            .principal()
            .map(|p| p.scopes().clone())
            .unwrap_or_default()
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.lock()
            .record
            .principal()
            .is_some_and(|p| p.has_scope(scope))
    }

    /// Logs `principal` in: the session gets a new ID at once (so [`Session::token`] already
    /// returns the new token) and the old ID stops working at commit. The CSRF secret rotates
    /// with the ID. Data is kept, unless another principal was logged in: then data and flash
    /// messages are dropped, so one user never inherits another's session on a shared browser.
    pub fn login(&self, principal: Principal) {
        let mut st = self.lock();
        let switching = st
            .record
            .principal()
            .is_some_and(|old| old.kind() != principal.kind() || old.id() != principal.id());
        if switching {
            let keys = std::mem::take(&mut st.data).keys().into_iter();
            st.changes.data.extend(keys.map(|key| (key, None)));
            st.record.flash_mut().clear();
            st.changes.flash = true;
            // The other user's "remember me" is not this one's.
            if st.record.persistent().is_some() {
                st.record.set_persistent(None);
                st.changes.persistence = true;
            }
        }
        st.record.set_principal(Some(principal));
        st.changes.principal = true;
        st.new_id(RotateReason::Login);
    }

    /// Logs out: the stored session is deleted at commit and the request continues with a
    /// fresh anonymous session (stored only if written to).
    pub fn logout(&self) {
        self.end(EndKind::Logout);
    }

    /// Replaces the principal's scopes and rotates the ID. Returns `false`, changing nothing,
    /// when no principal is logged in.
    pub fn set_scopes<I, S>(&self, scopes: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut st = self.lock();
        let Some(p) = st.record.principal_mut() else {
            return false;
        };
        p.set_scopes(scopes.into_iter().map(Into::into).collect());
        st.changes.principal = true;
        st.new_id(RotateReason::ScopesChanged);
        true
    }

    /// Gives the session a new ID, keeping its data; the old ID stops working at commit.
    pub fn rotate(&self) {
        self.lock().new_id(RotateReason::Explicit);
    }

    /// Ends the session: its record is deleted at commit and the client told to drop its token.
    /// Later changes in the same request start a new anonymous session.
    pub fn destroy(&self) {
        self.end(EndKind::Destroy);
    }

    fn end(&self, kind: EndKind) {
        let mut st = self.lock();
        let delete = st
            .stored
            .take()
            .or(st.corrupt.take().map(|key| *key))
            .or(st.changes.ending.and_then(|ending| ending.delete));
        // What the request said stays: the fresh session is still this request's. So does a
        // failed load's error, which the load's outcome flag points at.
        let mut fresh = State::new();
        std::mem::swap(&mut fresh.seen, &mut st.seen);
        std::mem::swap(&mut fresh.load_error, &mut st.load_error);
        *st = fresh;
        st.changes.ending = Some(Ending { kind, delete });
        drop(st);
        // The store will report only "deleted": tell the live handles why. Noted now,
        // before the commit; a commit that then fails leaves the note unused.
        if let Some(key) = delete {
            let reason = match kind {
                EndKind::Logout => EndReason::LoggedOut,
                EndKind::Destroy => EndReason::Destroyed,
            };
            self.inner.layer.live_registry().hint(key, reason);
        }
    }

    /// The signed token for this session, as the layer will send it. For API clients that
    /// return it in a body (`{"token": ...}`). An anonymous session is stored so the token
    /// names a real session.
    ///
    /// # Security
    ///
    /// The token is a bearer credential: never log it.
    pub fn token(&self) -> String {
        let now = self.inner.layer.now();
        let mut st = self.lock();
        st.own_id();
        st.changes.credential_out = true;
        self.mint(&mut st, now)
    }

    /// A short hash naming this session in logs and pages; `None` before it has an ID.
    pub fn id_hash(&self) -> Option<String> {
        self.lock().id.get().map(SessionId::short)
    }

    /// A fresh masked CSRF token for this session, for a hidden `csrf_token` form field or an
    /// `X-CSRF-Token` header. Each call returns different bytes (BREACH); all of them verify
    /// until the session's ID changes. An anonymous session gets an ID that is sent to the
    /// client, but no store record: the secret is derived from the ID, so crawlers rendering
    /// a login form cost no store space.
    pub fn csrf_token(&self) -> String {
        let mut st = self.lock();
        let id = st.ensure_unsaved_id();
        self.inner.layer.csrf().issue(&id)
    }

    /// Whether `token` is a valid CSRF token of this session, compared in constant time.
    pub fn verify_csrf_token(&self, token: &str) -> bool {
        let st = self.lock();
        st.id
            .get()
            .is_some_and(|id| self.inner.layer.csrf().verify(id, token))
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Session")
            .field("id", &st.id.get())
            .field("live", &st.live)
            .field("authenticated", &st.record.principal().is_some())
            .finish_non_exhaustive()
    }
}
