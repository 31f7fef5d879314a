//! Session events: what happened to a session ([`SessionEvent`]), the hooks that receive them,
//! the `tracing` events that mirror them, and the lock-free counters behind
//! [`SessionLayer::stats`](crate::SessionLayer::stats).
//!
//! # Example
//!
//! ```
//! use axum_tessera::{EventKind, Key, SessionConfig};
//!
//! let cfg = SessionConfig::web(Key::generate()).on_event(|event| {
//!     if let EventKind::TokenRejected(reason) = event.kind() {
//!         eprintln!("{} {}: token rejected ({reason:?})", event.method(), event.path());
//!     }
//! });
//! # let _ = cfg;
//! ```

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::Method;
use time::OffsetDateTime;

use crate::clock::to_datetime;
use crate::error::StoreErrorKind;
use crate::token::{StoreKey, TokenError};

/// Why a session got a new ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateReason {
    /// [`Session::login`](crate::Session::login).
    Login,
    /// [`Session::logout`](crate::Session::logout): the old record is deleted.
    Logout,
    /// [`Session::set_scopes`](crate::Session::set_scopes).
    ScopesChanged,
    /// [`Session::rotate`](crate::Session::rotate).
    Explicit,
}

/// Which timeout ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpiryReason {
    /// Unused for longer than the idle timeout.
    Idle,
    /// Older than the absolute timeout.
    Absolute,
}

/// Why a presented token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    /// Not of the token shape or not canonically encoded.
    Malformed,
    /// The MAC does not verify: tampered, forged, or signed by a key no longer in the ring.
    BadSignature,
    /// Older than the token window.
    Expired,
    /// Dated further in the future than the allowed clock skew.
    FutureDated,
    /// Longer than the size limit; rejected before decoding.
    Oversized,
    /// A valid token minted for another transport of this layer (a header token in a
    /// cookie, or the reverse).
    WrongPurpose,
    /// A valid token whose session the store does not know (ended, evicted, or never stored).
    UnknownId,
}

impl RejectReason {
    /// Every reason, in the order [`Stats::rejected`] reports them.
    pub const ALL: [RejectReason; 7] = [
        Self::Malformed,
        Self::BadSignature,
        Self::Expired,
        Self::FutureDated,
        Self::Oversized,
        Self::WrongPurpose,
        Self::UnknownId,
    ];

    /// A stable lowercase label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::FutureDated => "future_dated",
            Self::Oversized => "oversized",
            Self::WrongPurpose => "wrong_purpose",
            Self::UnknownId => "unknown_id",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl From<TokenError> for RejectReason {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::Oversized => Self::Oversized,
            TokenError::BadSignature => Self::BadSignature,
            TokenError::Expired => Self::Expired,
            TokenError::FutureDated => Self::FutureDated,
            _ => Self::Malformed,
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A new session was stored.
    Created,
    /// A live session was loaded from the store.
    Loaded,
    /// A read-mostly session's last-seen time was written (sliding expiry).
    Refreshed,
    /// The session got a new ID; the old one is dead.
    Rotated(RotateReason),
    /// The session had timed out when it was presented.
    Expired(ExpiryReason),
    /// The session was ended by [`Session::destroy`](crate::Session::destroy).
    Destroyed,
    /// A presented token was not accepted; the request continued without it.
    TokenRejected(RejectReason),
    /// The session was bound to another client IP or user agent and was dropped.
    BindingMismatch,
    /// A CSRF check refused the request; the text names the missing piece.
    CsrfRejected(&'static str),
    /// A scope guard refused the request for lack of this scope.
    ScopeDenied(String),
    /// The store failed.
    StoreError(StoreErrorKind),
    /// The per-principal session limit refused a new session.
    PrincipalLimit,
    /// The store held a record for the presented token that it could not decode (changed
    /// outside the store): the request continued as if the session were gone.
    CorruptRecord,
}

impl EventKind {
    const COUNT: usize = 13;

    fn index(&self) -> usize {
        match self {
            Self::Created => 0,
            Self::Loaded => 1,
            Self::Refreshed => 2,
            Self::Rotated(_) => 3,
            Self::Expired(_) => 4,
            Self::Destroyed => 5,
            Self::TokenRejected(_) => 6,
            Self::BindingMismatch => 7,
            Self::CsrfRejected(_) => 8,
            Self::ScopeDenied(_) => 9,
            Self::StoreError(_) => 10,
            Self::PrincipalLimit => 11,
            Self::CorruptRecord => 12,
        }
    }
}

/// One thing that happened to a session, with the request it happened in.
///
/// Carries no secret: the session appears only as a short hash of its store key. Hooks
/// registered with [`SessionConfig::on_event`](crate::SessionConfig::on_event) receive every
/// event; they run on the request's task, outside the session's lock, so keep them quick
/// (send to a channel for anything slow).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use axum_tessera::{EventKind, Key, SessionConfig, SessionEvent};
/// use axum_tessera::event::RejectReason;
///
/// let forged = Arc::new(Mutex::new(Vec::new()));
/// let seen = forged.clone();
/// let cfg = SessionConfig::web(Key::generate()).on_event(move |event: &SessionEvent| {
///     if let EventKind::TokenRejected(RejectReason::BadSignature) = event.kind() {
///         seen.lock().unwrap().push(format!("{} {}", event.method(), event.path()));
///     }
/// });
/// # let _ = cfg;
/// ```
#[derive(Clone, Debug)]
pub struct SessionEvent {
    kind: EventKind,
    method: Method,
    path: String,
    session: Option<String>,
    principal: Option<String>,
    at: i64,
}

impl SessionEvent {
    /// What happened.
    pub fn kind(&self) -> &EventKind {
        &self.kind
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request path (without the query).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Short hash of the session's store key, when there is one.
    pub fn session_hash(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The principal ID, when known.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// When it happened.
    pub fn timestamp(&self) -> OffsetDateTime {
        to_datetime(self.at)
    }
}

impl fmt::Display for SessionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {} {}", self.kind, self.method, self.path)?;
        if let Some(s) = &self.session {
            write!(f, " session={s}")?;
        }
        if let Some(p) = &self.principal {
            write!(f, " principal={p}")?;
        }
        Ok(())
    }
}

type Hook = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// Hooks and counters, shared by every request of a layer.
#[derive(Clone, Default)]
pub(crate) struct Events {
    hooks: Vec<Hook>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    kinds: [AtomicU64; EventKind::COUNT],
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

/// Where and to whom an event happened: the parts of the request an event reports.
pub(crate) struct Subject<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) session: Option<StoreKey>,
    pub(crate) principal: Option<&'a str>,
    pub(crate) now: i64,
}

impl Events {
    pub(crate) fn add_hook(&mut self, hook: Hook) {
        self.hooks.push(hook);
    }

    /// Whether anything but the counters may read an event: a hook, a `tracing` subscriber,
    /// or a `log` logger (which `tracing` forwards events to when no subscriber was ever
    /// set). When not, [`Events::count`] is all an event needs, and nothing of the request
    /// has to be kept for it.
    pub(crate) fn listening(&self) -> bool {
        !self.hooks.is_empty()
            || tracing::dispatcher::has_been_set()
            || log::max_level() != log::LevelFilter::Off
    }

    /// Counts the event for [`Stats`], and nothing else.
    pub(crate) fn count(&self, kind: &EventKind) {
        self.counters.kinds[kind.index()].fetch_add(1, Ordering::Relaxed);
        if let EventKind::TokenRejected(reason) = kind {
            self.counters.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the event, mirrors it to `tracing`, and calls every hook. A panicking hook is
    /// caught and logged: observability must never take a request down.
    pub(crate) fn emit(&self, kind: EventKind, subject: Subject<'_>) {
        self.count(&kind);
        trace_event(&kind, &subject);
        if self.hooks.is_empty() {
            return;
        }
        let event = SessionEvent {
            kind,
            method: subject.method.clone(),
            path: subject.path.to_owned(),
            session: subject.session.map(|k| k.short()),
            principal: subject.principal.map(str::to_owned),
            at: subject.now,
        };
        for hook in &self.hooks {
            if catch_unwind(AssertUnwindSafe(|| hook(&event))).is_err() {
                tracing::error!(event = ?event.kind, "session event hook panicked; ignored");
            }
        }
    }

    pub(crate) fn snapshot(&self, live_sessions: Option<usize>) -> Stats {
        let kind = |i: usize| self.counters.kinds[i].load(Ordering::Relaxed);
        Stats {
            created: kind(0),
            loaded: kind(1),
            refreshed: kind(2),
            rotated: kind(3),
            expired: kind(4),
            destroyed: kind(5),
            binding_mismatches: kind(7),
            csrf_rejected: kind(8),
            scope_denied: kind(9),
            store_errors: kind(10),
            principal_limit: kind(11),
            corrupt_records: kind(12),
            rejected: RejectReason::ALL
                .iter()
                .map(|r| {
                    (
                        *r,
                        self.counters.rejected[r.index()].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            live_sessions,
        }
    }
}

fn trace_event(kind: &EventKind, s: &Subject<'_>) {
    let (method, path, principal) = (s.method.as_str(), s.path, s.principal);
    let session = s.session.map(tracing::field::display);
    macro_rules! at {
        ($level:ident, $msg:literal $(, $k:ident = $v:expr)*) => {
            tracing::$level!(method, path, session, principal $(, $k = $v)*, $msg)
        };
    }
    match kind {
        EventKind::Created => at!(debug, "session created"),
        EventKind::Loaded => at!(trace, "session loaded"),
        EventKind::Refreshed => at!(trace, "session refreshed"),
        EventKind::Rotated(r) => at!(info, "session rotated", reason = tracing::field::debug(r)),
        EventKind::Expired(r) => at!(debug, "session expired", reason = tracing::field::debug(r)),
        EventKind::Destroyed => at!(info, "session destroyed"),
        EventKind::TokenRejected(r @ RejectReason::BadSignature) => {
            at!(warn, "session token rejected", reason = r.as_str())
        }
        EventKind::TokenRejected(r) => at!(debug, "session token rejected", reason = r.as_str()),
        EventKind::BindingMismatch => at!(warn, "session binding mismatch; session dropped"),
        EventKind::CsrfRejected(why) => at!(warn, "CSRF check failed", reason = *why),
        EventKind::ScopeDenied(scope) => at!(info, "scope denied", scope = scope.as_str()),
        EventKind::StoreError(k) => at!(
            error,
            "session store error",
            kind = tracing::field::debug(k)
        ),
        EventKind::PrincipalLimit => at!(warn, "per-principal session limit reached"),
        EventKind::CorruptRecord => at!(warn, "corrupt session record treated as gone"),
    }
}

/// Counters since the layer was built, read without locks.
///
/// Serialises to JSON for a metrics or health endpoint, with `rejected` as an object from
/// reason to count:
///
/// ```
/// use axum::{routing::get, Json, Router};
/// use axum_tessera::{Key, SessionConfig, SessionLayer, Stats};
///
/// let layer = SessionLayer::new(SessionConfig::web(Key::generate()));
/// let stats_layer = layer.clone(); // clones share the counters
/// let app: Router = Router::new()
///     .route("/metrics/sessions", get(move || async move { Json(stats_layer.stats()) }))
///     .layer(layer);
///
/// let stats: Stats = SessionLayer::new(SessionConfig::web(Key::generate())).stats();
/// let json = serde_json::to_value(&stats).unwrap();
/// assert_eq!(json["created"], 0);
/// assert_eq!(json["rejected"]["bad_signature"], 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Sessions stored for the first time.
    pub created: u64,
    /// Live sessions loaded.
    pub loaded: u64,
    /// Sliding-expiry writes.
    pub refreshed: u64,
    /// ID rotations (login, logout, scope change, explicit).
    pub rotated: u64,
    /// Sessions found timed out.
    pub expired: u64,
    /// Sessions destroyed.
    pub destroyed: u64,
    /// Sessions dropped for an IP / user-agent mismatch.
    pub binding_mismatches: u64,
    /// Requests refused by a CSRF check.
    pub csrf_rejected: u64,
    /// Requests refused by a scope guard.
    pub scope_denied: u64,
    /// Store failures (load or commit).
    pub store_errors: u64,
    /// New sessions refused by the per-principal limit.
    pub principal_limit: u64,
    /// Presented sessions whose stored record could not be decoded (treated as gone).
    pub corrupt_records: u64,
    /// Rejected tokens by reason.
    #[serde(serialize_with = "reasons_as_map")]
    pub rejected: Vec<(RejectReason, u64)>,
    /// Sessions the store holds, when it can tell cheaply (MemoryStore can).
    pub live_sessions: Option<usize>,
}

fn reasons_as_map<S: serde::Serializer>(
    rejected: &[(RejectReason, u64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(rejected.iter().map(|(reason, n)| (reason.as_str(), n)))
}

impl Stats {
    /// Rejected tokens for one reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}
