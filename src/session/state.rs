//! The per-request state a [`Session`](super::Session) shares with the load and the commit:
//! what the request said, which ID the session has, and what the handler changed.

use std::mem::ManuallyDrop;
use std::sync::{Mutex, MutexGuard};

use axum::extract::OriginalUri;
use http::header::{ACCEPT, USER_AGENT};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method};
use serde_json::Value;

use super::{ChangeLog, SessionData};
use crate::binding::Client;
use crate::error::StoreError;
use crate::event::{Events, RotateReason};
use crate::record::Record;
use crate::token::{SessionId, StoreKey};
use crate::transport::{Incoming, Presented};

/// What the service read off the request for the session: built once per request.
pub(crate) struct RequestContext {
    /// When the request arrived (Unix seconds).
    pub(crate) now: i64,
    pub(crate) incoming: Option<Incoming>,
    /// Which kinds of token the request presented, valid or not.
    pub(crate) presented: Presented,
    /// What the request looks like to the optional binding (empty when binding is off).
    /// Taken as the layer sees the request, before any inner layer could change it.
    pub(crate) client: Client,
}

/// What a loaded session needs of the request besides its token, copied only when an
/// extractor asks for the session (as the handler sees the request), under the state lock
/// of its load.
pub(crate) struct Seen {
    /// Whether an extractor copied the request yet.
    pub(crate) taken: bool,
    /// The first `Accept` value, for rejections made after the handler (a failed commit),
    /// when the request is gone. Kept as sent: parsing it costs more than the (shared)
    /// copy, and only a failed commit reads it.
    pub(crate) accept: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
    /// Method and path (with the query, which events leave out), which only events show:
    /// copied only when a hook or a `tracing` / `log` consumer may read them (see
    /// [`Events::listening`]); a URI copy is an allocation for a request built in-process.
    /// Not the whole URI: its scheme and authority would be 48 more bytes to move with
    /// every session. `None` inside for a URI without a path (`Uri::path` is then empty).
    pub(crate) origin: Option<(Method, Option<PathAndQuery>)>,
}

impl Seen {
    /// Copies what the session needs of `parts`, once.
    pub(crate) fn take(&mut self, parts: &Parts, events: &Events) {
        if self.taken {
            return;
        }
        self.taken = true;
        let headers = &parts.headers;
        // A hashed look-up costs about as much as comparing a dozen names: a short map
        // (an API client's few headers) is scanned once for both.
        if headers.keys_len() <= SCAN_HEADERS {
            for (name, value) in headers {
                let slot = match *name {
                    ACCEPT => &mut self.accept,
                    USER_AGENT => &mut self.user_agent,
                    _ => continue,
                };
                // The first value, as `HeaderMap::get` answers.
                if slot.is_none() {
                    *slot = Some(value.clone());
                }
            }
        } else {
            self.accept = headers.get(ACCEPT).cloned();
            self.user_agent = headers.get(USER_AGENT).cloned();
        }
        if events.listening() {
            // Under `Router::nest` the parts' URI lost its prefix by the time an extractor
            // runs; events name the path the client asked for.
            let uri = parts
                .extensions
                .get::<OriginalUri>()
                .map_or(&parts.uri, |original| &original.0);
            self.origin = Some((parts.method.clone(), uri.path_and_query().cloned()));
        }
    }
}

/// Up to how many header names [`Seen::take`] scans rather than looks up.
const SCAN_HEADERS: usize = 8;

/// Nothing copied yet.
const UNSEEN: Seen = Seen {
    taken: false,
    accept: None,
    user_agent: None,
    origin: None,
};

/// The session as this request sees it, and what it changed.
pub(crate) struct State {
    pub(crate) id: Id,
    /// Where the loaded record lives in the store, if it came from there.
    pub(crate) stored: Option<StoreKey>,
    /// A record the store could not decode, filed under the presented ID: treated as gone,
    /// and deleted if the session is ended. Boxed, like `load_error`: rare, and every byte
    /// here is moved into the session's `Arc` on every request.
    pub(crate) corrupt: Option<Box<StoreKey>>,
    pub(crate) live: bool,
    /// Everything of the session but its data, which is in `data` (`record.data` stays
    /// empty). Dropped by hand (see `Drop for State`).
    pub(crate) record: ManuallyDrop<Record>,
    pub(crate) data: SessionData,
    pub(crate) changes: Changes,
    /// The token for the current ID, once minted, so `token()` and the emitted token agree.
    pub(crate) issued: Option<String>,
    /// What the first extractor copied off the request.
    pub(crate) seen: Seen,
    /// The load's error, when it failed (see `load.rs`).
    pub(crate) load_error: Option<Box<StoreError>>,
}

/// The session's ID and what the client knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Id {
    /// No ID yet: an anonymous session that has not needed one.
    Unset,
    /// A verified ID the store did not know, kept only to check the CSRF tokens it backs.
    /// Replaced before anything is stored under it or handed out as a credential: it may have
    /// been planted by someone else, who must not see what this client writes.
    Adopted(SessionId),
    /// The ID the client presented, whose live record was loaded.
    Presented(SessionId),
    /// An ID assigned in this request: the client does not hold it yet, so its token is sent
    /// even if nothing is stored.
    Fresh(SessionId),
}

impl Id {
    pub(crate) fn get(&self) -> Option<&SessionId> {
        match self {
            Self::Unset => None,
            Self::Adopted(id) | Self::Presented(id) | Self::Fresh(id) => Some(id),
        }
    }

    pub(crate) fn is_fresh(&self) -> bool {
        matches!(self, Self::Fresh(_))
    }
}

/// What the handler changed, for the commit to turn into one store call.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Data keys touched: `Some` set, `None` removed. Kept only for a stored session,
    /// whose commit is a patch; a new session is created whole.
    pub(crate) data: ChangeLog,
    /// Data of a session not in the store changed.
    pub(crate) unsaved_data: bool,
    pub(crate) principal: bool,
    pub(crate) flash: bool,
    /// The login's cookie choice changed ([`Session::remember`]): written like data, and
    /// the token goes out again with the new cookie attributes.
    pub(crate) persistence: bool,
    /// Consent was recorded ([`Session::record_consent`]): written like data.
    pub(crate) consent: bool,
    /// [`Session::extend`] ran: write the times even if no sliding refresh is due.
    pub(crate) extend: bool,
    /// This request is not the user's activity (the browser API's reads): no sliding
    /// refresh, unless [`Session::extend`] asks for one.
    pub(crate) quiet: bool,
    /// A credential for this session was handed to the handler (`token()`): store the
    /// session so the token names a real one.
    pub(crate) credential_out: bool,
    /// What the load found due: a sliding refresh, a token re-issued under the newest key.
    pub(crate) renewal: Renewal,
    /// `destroy` / `logout` ran.
    pub(crate) ending: Option<Ending>,
    /// The first reason the ID changed in this request.
    pub(crate) rotation: Option<RotateReason>,
}

impl Changes {
    /// Whether the session's content (not just its times) changed.
    pub(crate) fn dirty(&self) -> bool {
        !self.data.is_empty()
            || self.unsaved_data
            || self.principal
            || self.flash
            || self.persistence
            || self.consent
    }

    /// Whether the commit of a stored session writes new times even if nothing else changed.
    pub(crate) fn refreshes(&self) -> bool {
        self.extend || (self.renewal.refresh && !self.quiet)
    }
}

/// Upkeep the load found due for a stored session, written even when nothing else changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Renewal {
    /// Enough of the idle window has passed to write a new `last_seen`.
    pub(crate) refresh: bool,
    /// The token was signed by an older key of the ring: send one under the newest.
    pub(crate) reissue: bool,
}

/// How the session was ended, and the stored record still to delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ending {
    pub(crate) kind: EndKind,
    pub(crate) delete: Option<StoreKey>,
}

/// `destroy` and `logout` delete alike but report differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndKind {
    Destroy,
    Logout,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            id: Id::Unset,
            stored: None,
            corrupt: None,
            live: false,
            record: ManuallyDrop::new(Record::new(0, 0)),
            data: SessionData::default(),
            changes: Changes::default(),
            issued: None,
            seen: UNSEEN,
            load_error: None,
        }
    }

    /// Makes the ID one that may be stored or handed out as a credential: replaces an
    /// adopted ID (see [`Id::Adopted`]) or an ID minted for an unsaved session (see
    /// [`SessionId::generate_unsaved`]) with a fresh ordinary one.
    pub(crate) fn own_id(&mut self) {
        let replace = match &self.id {
            Id::Adopted(_) => true,
            Id::Fresh(id) => id.is_unsaved(),
            Id::Unset | Id::Presented(_) => false,
        };
        if replace {
            self.id = Id::Fresh(SessionId::generate());
            self.issued = None;
        }
    }

    /// Gives the session a new ID; the stored record, if any, moves to it at commit.
    pub(crate) fn new_id(&mut self, reason: RotateReason) {
        self.id = Id::Fresh(SessionId::generate());
        self.issued = None;
        self.changes.rotation.get_or_insert(reason);
    }

    /// The ID, assigning a fresh one to a session that has none.
    pub(crate) fn ensure_id(&mut self) -> SessionId {
        if let Some(id) = self.id.get() {
            return id.clone();
        }
        let id = SessionId::generate();
        self.id = Id::Fresh(id.clone());
        id
    }

    /// Sets data key `key`, recording the change for the commit.
    pub(crate) fn set_value(&mut self, key: &str, value: Value) {
        if self.stored.is_some() {
            self.data.set(key, value.clone());
            self.changes.data.set(key, Some(value));
        } else {
            self.data.set(key, value);
            self.changes.unsaved_data = true;
        }
    }

    /// Removes data key `key`, recording the change for the commit.
    pub(crate) fn remove_value(&mut self, key: &str) -> Option<Value> {
        let old = self.data.remove(key)?;
        if self.stored.is_some() {
            self.changes.data.set(key, None);
        } else {
            self.changes.unsaved_data = true;
        }
        Some(old)
    }

    /// The ID, giving a session that has none an unsaved one: for CSRF tokens of a visitor
    /// whose session is not stored, so the next request needs no store lookup.
    pub(crate) fn ensure_unsaved_id(&mut self) -> SessionId {
        if let Some(id) = self.id.get() {
            return id.clone();
        }
        let id = SessionId::generate_unsaved();
        self.id = Id::Fresh(id.clone());
        id
    }

    /// Under consent mode, whether this session must stay out of the store and off the
    /// client: an anonymous visitor that is not stored, has not consented and was handed no
    /// token by the application.
    pub(crate) fn consent_pending(&self) -> bool {
        self.stored.is_none()
            && self.record.principal().is_none()
            && self.record.consented_at().is_none()
            && !self.changes.credential_out
    }

    /// The ID changed after loading a stored record: the commit is a move.
    pub(crate) fn rotated(&self) -> bool {
        self.stored.is_some() && self.id.is_fresh()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // Every request that reaches the layer drops a state, whose record's data map is
        // empty (the data is in `data`): dropping even an empty `BTreeMap` walks an iterator
        // out of line (~50 instructions). So the record's fields are dropped here, the map
        // only when it holds something; naming every field makes a new one a compile error
        // until it is handled here.
        let Record {
            created: _,
            last_seen: _,
            expires_at: _,
            principal,
            data,
            flash,
            user_agent,
            bound_user_agent,
            bound_ip: _,
            persistent: _,
            consented_at: _,
        } = &mut *self.record;
        // Each taken only when it holds something: most hold nothing, and a take writes.
        if principal.is_some() {
            drop(principal.take());
        }
        if flash.capacity() != 0 {
            drop(std::mem::take(flash));
        }
        if user_agent.is_some() {
            drop(user_agent.take());
        }
        if bound_user_agent.is_some() {
            drop(bound_user_agent.take());
        }
        if !data.is_empty() {
            // Leaves an empty map behind, which owns no memory: not dropping it leaks nothing.
            drop(std::mem::take(data));
        }
    }
}

pub(crate) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A handler that panicked mid-change leaves plain data; the response is a 5xx anyway, and
    // 5xx responses are never committed.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy names the first `Accept` and `User-Agent` values, as a look-up would,
    /// whether the map is short enough to scan or not.
    #[test]
    fn seen_takes_the_first_values_of_short_and_long_maps() {
        for extra in [0, SCAN_HEADERS + 4] {
            let mut req = http::Request::get("/");
            for i in 0..extra {
                req = req.header(format!("x-filler-{i}"), "1");
            }
            let req = req
                .header(USER_AGENT, "agent/1")
                .header(ACCEPT, "application/json")
                .header(ACCEPT, "text/html")
                .header(USER_AGENT, "agent/2")
                .body(())
                .unwrap();
            let (parts, ()) = req.into_parts();
            let mut seen = UNSEEN;
            seen.take(&parts, &Events::default());
            assert_eq!(
                seen.accept,
                parts.headers.get(ACCEPT).cloned(),
                "{extra} extra"
            );
            assert_eq!(
                seen.user_agent.as_ref().unwrap(),
                "agent/1",
                "{extra} extra"
            );
            assert_eq!(seen.accept.as_ref().unwrap(), "application/json");
        }
    }
}
