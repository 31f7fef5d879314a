//! Live sessions: a handle that outlives the request ([`LiveSession`], from
//! [`Session::live`]) for a WebSocket or server-sent-events handler, and the guard for the
//! upgrade ([`LiveUpgrade`]).
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_tessera::live::{LiveEvent, LiveUpgrade};
//! use axum_tessera::{Key, Session, SessionConfig, SessionLayer};
//!
//! // An SSE-like stream of what happens to the session; a WebSocket handler is the same
//! // loop inside `on_upgrade` (see the README's recipe).
//! async fn watch(_: LiveUpgrade, session: Session) -> String {
//!     let Some(mut live) = session.live() else { return "not signed in".into() };
//!     match live.next().await {
//!         Some(LiveEvent::Changed { scopes, .. }) => format!("scopes now {scopes:?}"),
//!         Some(LiveEvent::Ended(end)) => format!("ended: {}", end.reason()),
//!         _ => "gone".into(),
//!     }
//! }
//!
//! let app: Router = Router::new()
//!     .route("/watch", get(watch))
//!     .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
//! # let _ = app;
//! ```
//!
//! # What ends a handle, and how it hears of it
//!
//! The store tells the handle: a [`MemoryStore`](crate::store::MemoryStore) keeps a registry
//! of the open handles of its sessions, keyed by [`StoreKey`] (never by ID or token), and
//! reports each commit that ends, moves or re-owns a registered session, and each record it
//! evicts, as it applies it: logout, destroy, logout everywhere, a session ended from another
//! device, a login as another principal, LRU eviction and the per-principal limit. Idle and
//! absolute expiry fire from the deadline the handle knows, on a timer, and a commit that
//! refreshes the session moves that deadline: an idle handle makes no store call.
//!
//! A [`RedisStore`](crate::store::RedisStore) reports the same causes across instances: its
//! commit scripts publish them (store keys and the cause), and one subscription per store,
//! started with its first handle, feeds its registry. A refresh made through another
//! instance is not published, so at its idle deadline a handle asks the store once whether
//! the session was used meanwhile, and ends only if not. When the subscription comes back
//! after a loss, every open handle is re-validated in one batched call, so a session ended
//! during the gap still ends its handles (with its cause where the store kept it, else as
//! [`EndReason::Deleted`]). See the store's documentation.
//!
//! A [`PostgresStore`](crate::store::PostgresStore) does the same through `LISTEN` /
//! `NOTIFY`: its commit statements notify in the statement itself, one listener per store
//! feeds the registry and re-validates every handle in one statement whenever it listens
//! again. A [`SqliteStore`](crate::store::SqliteStore) tells the handles of this process of
//! its own commits, in-process; a commit of another process on the same file reaches them
//! at expiry only.
//!
//! Stores that cannot notify (a store of the application's own) still end their handles at
//! expiry, but do not report logout, destroy or eviction to them: a fleet must not rely on a
//! live handle for revocation unless its store notifies.
//!
//! # Activity
//!
//! Nothing the handle does counts as the user's activity: server pushes, pings and pongs
//! keep no session alive. When a client message is the user's activity (a chat message, not
//! a heartbeat), call [`LiveSession::touch`], which refreshes the session in the store like a
//! request would, and moves the handle's own deadline with it.
//!
//! # Security
//!
//! A browser sends cookies with a WebSocket handshake from any site, and WebSockets have no
//! CORS: a page elsewhere could open a socket that acts as the user (cross-site WebSocket
//! hijacking). Put [`LiveUpgrade`] first in a WebSocket handler: it refuses (403) an upgrade
//! that is not authenticated by a bearer or header token unless its `Origin` is allowed,
//! before the session is loaded.
//!
//! Server-sent events are a plain `GET`: a foreign page can start an `EventSource`, but the
//! same-origin policy keeps it from reading the stream unless CORS allows it, and the default
//! `SameSite=Lax` cookie is not sent on a cross-site subresource request. So a
//! `text/event-stream` `GET` is treated like any `GET` (no Origin check, as for CSRF); an
//! application that relaxes CORS or `SameSite` must check `Origin` itself.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::FromRequestParts;
use futures_core::Stream;
use http::request::Parts;
use tokio::time::{Instant, Sleep};

use crate::clock::Clock;
use crate::error::StoreError;
use crate::principal::Principal;
use crate::record::Patch;
use crate::rejection::{Capture, Captures, CsrfRejection, MissingSessionLayer, SessionRejection};
use crate::session::{Session, SessionHandle};
use crate::state::{LayerState, Timeouts};
use crate::store::{Commit, CommitOutcome};
use crate::token::StoreKey;

#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod notice;
// The watch side of the registry (subscriptions, re-checks) serves the stores that notify
// across instances (`RedisStore`, `PostgresStore`).
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
mod registry;

pub(crate) use registry::Registry;
use registry::{lock, Slot};
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) use registry::{Seen, Watch};

/// Why a [`LiveSession`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// [`Session::logout`].
    LoggedOut,
    /// [`Session::destroy`].
    Destroyed,
    /// [`Session::logout_everywhere`], from this session or another of the principal's.
    LoggedOutEverywhere,
    /// Another session of the principal ended this one ([`Session::logout_session`]).
    EndedElsewhere,
    /// Someone else logged in on this session ([`Session::login`] with another principal),
    /// or the principal was logged out of it.
    PrincipalChanged,
    /// The idle timeout passed without activity.
    IdleTimeout,
    /// The absolute timeout passed.
    AbsoluteTimeout,
    /// The store evicted the session to stay under its size bound.
    Evicted,
    /// A newer login of the principal evicted it (per-principal limit).
    SessionLimit,
    /// The record was deleted by a store call whose cause the handle does not know.
    Deleted,
}

impl EndReason {
    /// A short text for logs and WebSocket close frames (at most 20 bytes, well under the
    /// 123 a close reason may hold): "logged out", "expired", "ended elsewhere", ...
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::LoggedOut => "logged out",
            Self::Destroyed => "session ended",
            Self::LoggedOutEverywhere => "logged out everywhere",
            Self::EndedElsewhere => "ended elsewhere",
            Self::PrincipalChanged => "signed in as another user",
            Self::IdleTimeout => "expired",
            Self::AbsoluteTimeout => "expired (absolute)",
            Self::Evicted => "evicted",
            Self::SessionLimit => "session limit",
            Self::Deleted => "session deleted",
        }
    }

    /// Whether the session ran out of time, rather than being ended by someone.
    pub fn is_expiry(&self) -> bool {
        matches!(self, Self::IdleTimeout | Self::AbsoluteTimeout)
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a [`LiveSession`] ended: the last event it yields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveEnd {
    reason: EndReason,
}

impl LiveEnd {
    /// Why the session ended.
    pub fn reason(&self) -> EndReason {
        self.reason
    }
}

/// What a [`LiveSession`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveEvent {
    /// The session changed and lives on: its scopes (the current set), and whether its ID
    /// rotated (the handle follows the new ID by itself). Changes that come faster than the
    /// handle is polled are folded into one, with the latest scopes.
    Changed {
        /// The principal's scopes now.
        scopes: BTreeSet<String>,
        /// The session moved to a new ID.
        rotated: bool,
    },
    /// The session ended; nothing follows.
    Ended(LiveEnd),
}

/// A session watched beyond its request: a [`Stream`] of [`LiveEvent`]s that ends after
/// [`LiveEvent::Ended`]. Get one from [`Session::live`].
///
/// Cheap: a few hundred bytes and one timer per open handle, no task of its own, and no
/// store call while nothing happens. Dropping it unregisters it.
///
/// # Example
///
/// ```
/// use axum_tessera::live::{LiveEvent, LiveSession};
///
/// async fn follow(mut live: LiveSession) -> String {
///     while let Some(event) = live.next().await {
///         match event {
///             LiveEvent::Changed { scopes, .. } => println!("scopes: {scopes:?}"),
///             LiveEvent::Ended(end) => return end.reason().to_string(),
///             _ => {}
///         }
///     }
///     unreachable!("Ended comes last")
/// }
/// ```
#[must_use = "a live session does nothing unless polled"]
pub struct LiveSession {
    slot: Arc<Slot>,
    registry: Arc<Registry>,
    /// The layer, not the request's session: a handle must not keep the request alive.
    layer: Arc<LayerState>,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set for, in clock seconds.
    armed: i64,
    done: bool,
}

impl fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.slot.state);
        f.debug_struct("LiveSession")
            .field("session", &st.key)
            .field("ended", &st.end)
            .finish_non_exhaustive()
    }
}

impl LiveSession {
    /// The next event: `None` once [`LiveEvent::Ended`] was yielded.
    pub async fn next(&mut self) -> Option<LiveEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits for the end of the session, skipping changes.
    pub async fn ended(&mut self) -> Option<LiveEnd> {
        while let Some(event) = self.next().await {
            if let LiveEvent::Ended(end) = event {
                return Some(end);
            }
        }
        None
    }

    /// The store key of the session as it is now (it follows rotations).
    pub fn key(&self) -> StoreKey {
        lock(&self.slot.state).key
    }

    /// Records the user's activity, as a request would: refreshes the session's idle
    /// deadline in the store and in this handle. Call it on a real user message, never on a
    /// ping: see the [module docs](self#activity). Answers `false` when the session is gone.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn touch(&self) -> Result<bool, StoreError> {
        let layer = &self.layer;
        let now = layer.now();
        let (key, created) = {
            let st = lock(&self.slot.state);
            if st.end.is_some() {
                return Ok(false);
            }
            (st.key, st.created)
        };
        let timeouts = layer.timeouts();
        let patch = Patch::new(now, timeouts.expires_at(created, now));
        let outcome = layer
            .store()
            .commit(Commit::Patch { key, patch }, layer.store_time(now))
            .await?;
        if outcome != CommitOutcome::Applied {
            return Ok(false);
        }
        // A notifying store has moved the deadline already; one that does not learns it here.
        self.slot.update(|st| st.last_seen = st.last_seen.max(now));
        Ok(true)
    }

    fn timeouts(&self) -> Timeouts {
        *self.layer.timeouts()
    }

    fn clock(&self) -> &dyn Clock {
        self.layer.clock()
    }
}

impl Stream for LiveSession {
    type Item = LiveEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LiveEvent>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let deadline = {
                let mut st = lock(&this.slot.state);
                if let Some(reason) = st.end {
                    drop(st);
                    this.done = true;
                    return Poll::Ready(Some(LiveEvent::Ended(LiveEnd { reason })));
                }
                if let Some((scopes, rotated)) = st.change.take() {
                    return Poll::Ready(Some(LiveEvent::Changed { scopes, rotated }));
                }
                st.waker = Some(cx.waker().clone());
                let t = this.timeouts();
                let idle = st.last_seen.saturating_add(t.idle);
                let absolute = st.created.saturating_add(t.absolute);
                let now = this.clock().now();
                if now >= idle.min(absolute) {
                    if now < absolute && (st.checking || this.registry.rechecks()) {
                        // A store shared by other instances: they may have refreshed the
                        // session unseen, so ask it once before ending (the answer wakes).
                        if !st.checking {
                            st.checking = true;
                            let key = st.key;
                            drop(st);
                            this.registry.recheck(key);
                        }
                        return Poll::Pending;
                    }
                    let reason = if now >= absolute {
                        EndReason::AbsoluteTimeout
                    } else {
                        EndReason::IdleTimeout
                    };
                    st.end = Some(reason);
                    continue;
                }
                idle.min(absolute)
            };
            if deadline != this.armed {
                // The clock counts whole seconds: waking `deadline - now` seconds from now
                // is never early, and at most a second late (two, rarely: the system clock's
                // coarse reading trails by up to a tick, so a wake just after a second
                // boundary can still read the second before and wait once more).
                let now = this.clock().now();
                let wait = u64::try_from(deadline.saturating_sub(now)).unwrap_or(0);
                this.sleep
                    .as_mut()
                    .reset(Instant::now() + Duration::from_secs(wait));
                this.armed = deadline;
            }
            match Future::poll(this.sleep.as_mut(), cx) {
                Poll::Pending => return Poll::Pending,
                // Due by the timer: the next turn reads the clock. A clock that has not
                // reached the deadline yet (a manual one) re-arms the timer at least a
                // second ahead, so this never spins.
                Poll::Ready(()) => this.armed = i64::MIN,
            }
        }
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.registry.unregister(&self.slot);
    }
}

impl Session {
    /// A handle that follows this session beyond the request, for a WebSocket or SSE
    /// handler: it yields [`LiveEvent::Changed`] when the session changes and lives on, and
    /// [`LiveEvent::Ended`] when it ends, for any cause (see the [module docs](crate::live)).
    ///
    /// `None` when the session is not a live stored one (an anonymous visitor who has not
    /// been stored, or a session this request ended or has not committed yet).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime with time enabled (the handle's expiry timer needs one).
    pub fn live(&self) -> Option<LiveSession> {
        let (key, principal, scopes, created, last_seen) = {
            let st = self.lock();
            if !st.live || st.changes.ending.is_some() {
                return None;
            }
            let key = st.stored?;
            let p = st.record.principal();
            let principal = p.map(Principal::index_key).unwrap_or_default();
            let scopes = registry::fingerprint(p.map(Principal::scopes));
            (
                key,
                principal,
                scopes,
                st.record.created(),
                st.record.last_seen(),
            )
        };
        let layer = self.layer();
        let registry = layer.live_registry().clone();
        let slot = Arc::new(Slot::new(key, principal, scopes, created, last_seen));
        registry.register(&slot);
        // Registered before this check, so a delete that lands in between is either seen
        // here or reported to the slot: the handle never follows a session already gone.
        if !layer.store().is_live_now(&key) {
            registry.ended(key, EndReason::Deleted);
        }
        Some(LiveSession {
            slot,
            registry,
            layer: self.inner.layer.clone(),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: i64::MIN,
            done: false,
        })
    }
}

/// Guards a WebSocket upgrade against cross-site WebSocket hijacking: put it first among a
/// handler's extractors (before `WebSocketUpgrade` and `Session`).
///
/// A request with `Upgrade: websocket` that is not authenticated by a bearer or header
/// token (a cookie session, or no session at all) must carry an allowed `Origin` (the
/// request's own, or the configured trusted origins, as for CSRF), and must not be
/// `Sec-Fetch-Site: cross-site`; otherwise it is refused with 403 before the session is
/// loaded, whatever the session. Bearer and header tokens are exempt: a foreign page cannot
/// make a browser send them. Other requests (a server-sent-events `GET` included, see the
/// [module docs](crate::live#security)) pass untouched.
///
/// # Example
///
/// ```
/// use axum_tessera::live::LiveUpgrade;
/// use axum_tessera::Session;
///
/// async fn ws(_: LiveUpgrade, session: Session /*, ws: WebSocketUpgrade */) -> String {
///     session.principal().map(|p| p.id().to_owned()).unwrap_or_default()
/// }
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct LiveUpgrade;

impl<S: Send + Sync> FromRequestParts<S> for LiveUpgrade {
    type Rejection = CsrfRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<SessionHandle>()
            .map(|handle| handle.session(parts))
            .ok_or_else(|| {
                CsrfRejection::from(SessionRejection::from(MissingSessionLayer::default()))
                    .captured(&Capture::of(parts))
            })?;
        crate::guard::check_upgrade_origin(parts, &session)
            .map_err(|r| r.captured(&Capture::of(parts)))?;
        Ok(LiveUpgrade)
    }
}
