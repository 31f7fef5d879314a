//! The commit after the response: [`decide`] turns a session's state into a [`Plan`] (a pure
//! function, tested by table), and [`Session::finish`] applies it in one store call.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{StoreError, StoreErrorKind};
use crate::event::{EventKind, RotateReason};
use crate::record::{Patch, Record};
use crate::session::{EndKind, Id, Session, SharedData, State};
use crate::store::{BoxFuture, Commit, CommitOutcome, LayerStore, MemoryStore};
use crate::token::{SessionId, StoreKey};
use crate::transport::Emit;

/// What the commit does, decided from the session's state alone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// A stored record to delete first: the session was destroyed or logged out.
    pub(crate) delete: Option<(StoreKey, EndKind)>,
    pub(crate) write: Option<Write>,
    pub(crate) emit: EmitPlan,
}

/// The data of a new session for the default store, in the form its entry keeps (the
/// create's record then carries none), so no map is built only to be turned back into a slice.
struct InMemory<'a> {
    store: &'a MemoryStore,
    data: Option<SharedData>,
}

/// The write that follows the delete, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// File the whole record under the session's own (fresh) ID.
    Create,
    /// Patch the stored record; `refresh_only` when only its times change.
    Patch { key: StoreKey, refresh_only: bool },
    /// Move the stored record to the session's new ID, with the patch.
    Move { from: StoreKey },
}

/// What the response tells the client about its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EmitPlan {
    Nothing,
    /// The token of the session's current ID.
    Token,
    /// Drop the token it sent.
    Clear,
}

/// Decides the commit of a loaded session whose response was not a server error.
/// `had_token`: the request carried a valid token (only such a client needs telling that its
/// session ended). `consent_mode`: the layer sets no cookie for an anonymous visitor before
/// consent.
pub(crate) fn decide(st: &State, had_token: bool, consent_mode: bool) -> Plan {
    let changes = &st.changes;
    let delete = changes
        .ending
        .and_then(|ending| ending.delete.map(|key| (key, ending.kind)));
    // Nothing of a visitor who has not consented reaches the store or the client.
    let pending = consent_mode && st.consent_pending();
    let write = match st.stored {
        None if pending => None,
        None if changes.dirty() || changes.credential_out => Some(Write::Create),
        None => None,
        Some(from) if st.rotated() => Some(Write::Move { from }),
        Some(key) if changes.dirty() || changes.refreshes() => Some(Write::Patch {
            key,
            refresh_only: !changes.dirty(),
        }),
        Some(_) => None,
    };
    let emit = match write {
        Some(Write::Create | Write::Move { .. }) => EmitPlan::Token,
        // A new cookie choice needs the cookie sent again with its new attributes.
        Some(Write::Patch { .. }) if changes.renewal.reissue || changes.persistence => {
            EmitPlan::Token
        }
        Some(Write::Patch { .. }) => EmitPlan::Nothing,
        None if st.stored.is_some() && changes.renewal.reissue => EmitPlan::Token,
        // A session written nowhere this time: its new ID's token, or the end of the one the
        // client sent.
        None if st.id.is_fresh() && !pending => EmitPlan::Token,
        None if changes.ending.is_some() && had_token => EmitPlan::Clear,
        None => EmitPlan::Nothing,
    };
    Plan {
        delete,
        write,
        emit,
    }
}

/// Why the commit did not happen.
#[derive(Debug)]
pub(crate) enum CommitFailure {
    Store(StoreError),
    /// The record vanished (destroyed or expired by another request) before the patch.
    Missing,
    Collisions,
    /// The store panicked (or its task was cancelled) mid-commit.
    Aborted,
}

/// Commits moved onto their own task (see [`Running`]), counted so that a shutdown can wait
/// for them ([`SessionLayer::drain`](crate::SessionLayer::drain)).
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Resolves once no commit is running.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a commit ending in between still wakes us.
            notified.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts one running commit while alive, even if the commit panics.
struct Counted(Arc<InFlight>);

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A commit in progress. Polled in place while it completes at once (the MemoryStore never
/// waits), and moved onto a task of its own as soon as it would wait: the response future
/// that polls it is dropped when the client goes away, and a commit cut short part-way could
/// leave a store call applied whose outcome nobody hears of, or a multi-step move half done.
pub(crate) enum Running {
    Here(Option<BoxFuture<'static, Result<Emit, CommitFailure>>>),
    Task(JoinHandle<Result<Emit, CommitFailure>>),
}

impl Running {
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        in_flight: &Arc<InFlight>,
    ) -> Poll<Result<Emit, CommitFailure>> {
        loop {
            match self {
                Running::Here(slot) => {
                    let mut commit = slot.take().expect("commit polled after completion");
                    if let Poll::Ready(outcome) = commit.as_mut().poll(cx) {
                        return Poll::Ready(outcome);
                    }
                    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                        // Not on Tokio: nowhere to move it, so it stays with the response.
                        *slot = Some(commit);
                        return Poll::Pending;
                    };
                    in_flight.count.fetch_add(1, Ordering::SeqCst);
                    let counted = Counted(in_flight.clone());
                    *self = Running::Task(runtime.spawn(async move {
                        let _counted = counted;
                        commit.await
                    }));
                }
                Running::Task(task) => {
                    return Poll::Ready(match ready!(Pin::new(task).poll(cx)) {
                        Ok(outcome) => outcome,
                        Err(_) => Err(CommitFailure::Aborted),
                    });
                }
            }
        }
    }
}

/// What [`Session::finish`] leaves the response future to do.
pub(crate) enum Finish {
    Done(Emit),
    /// The default store's commit, already applied.
    Committed(Result<Emit, CommitFailure>),
    Store(BoxFuture<'static, Result<Emit, CommitFailure>>),
}

impl Session {
    /// Decides what the commit needs. `server_error` responses are never committed, and a
    /// session nobody loaded has nothing to commit.
    pub(crate) fn finish(&self, server_error: bool) -> Finish {
        if server_error || !self.accessed() {
            return Finish::Done(Emit::Nothing);
        }
        let plan = {
            let mut st = self.lock();
            let plan = decide(
                &st,
                self.inner.request.incoming.is_some(),
                self.inner.layer.require_consent(),
            );
            if plan.delete.is_none() && plan.write.is_none() {
                return Finish::Done(self.emit(&mut st, plan.emit, self.inner.request.now));
            }
            plan
        };
        if let LayerStore::Memory(_) = self.inner.layer.store() {
            // The default store answers every call at once, so its commit finishes in this
            // one poll: no boxed future to allocate, move and free per write.
            let commit = std::pin::pin!(self.commit(plan));
            let mut cx = Context::from_waker(Waker::noop());
            return Finish::Committed(match commit.poll(&mut cx) {
                Poll::Ready(outcome) => outcome,
                // Not reachable: nothing in the memory store's commit waits.
                Poll::Pending => Err(CommitFailure::Aborted),
            });
        }
        let session = self.clone();
        Finish::Store(Box::pin(async move { session.commit(plan).await }))
    }

    async fn commit(&self, plan: Plan) -> Result<Emit, CommitFailure> {
        let result = self.apply(plan).await;
        if let Err(CommitFailure::Store(err)) = &result {
            let kind = match err.kind() {
                StoreErrorKind::LimitReached => EventKind::PrincipalLimit,
                other => EventKind::StoreError(other),
            };
            let (key, principal) = self.subject();
            self.report(kind, key, principal.as_deref(), self.inner.layer.now());
        }
        result
    }

    async fn apply(&self, plan: Plan) -> Result<Emit, CommitFailure> {
        let layer = &self.inner.layer;
        // Stamped with the time the request arrived, like the load: one clock read per
        // request (clock_gettime is not free on every machine).
        let now = self.inner.request.now;
        let store_now = layer.store_time(now);
        if let Some((key, kind)) = plan.delete {
            layer
                .store()
                .commit(Commit::Delete { key }, store_now)
                .await
                .map_err(CommitFailure::Store)?;
            let kind = match kind {
                EndKind::Logout => EventKind::Rotated(RotateReason::Logout),
                EndKind::Destroy => EventKind::Destroyed,
            };
            self.report(kind, Some(key), None, now);
        }
        let Some(write) = plan.write else {
            return Ok(self.emit(&mut self.lock(), plan.emit, now));
        };
        // Losing a refresh of a session another request just ended is harmless; losing
        // data, a login or an asked-for extension is not, and the client must hear of it.
        let refresh_only = matches!(
            write,
            Write::Patch {
                refresh_only: true,
                ..
            }
        ) && !self.lock().changes.extend;
        for _ in 0..3 {
            let (commit, event, in_memory, emit) = {
                let mut st = self.lock();
                let (commit, event, in_memory) = self.build(&mut st, write, now);
                (commit, event, in_memory, self.emit(&mut st, plan.emit, now))
            };
            let outcome = match in_memory {
                Some(InMemory { store, data }) => store.create_shared(commit, data, store_now),
                None => layer.store().commit(commit, store_now).await,
            };
            match outcome {
                Ok(CommitOutcome::Applied) => {
                    if let Some((kind, key)) = event {
                        // The key is known: no second SHA-256 of the ID for it. The
                        // principal only for someone to read (a lock and a copy).
                        let listening = layer.events().listening();
                        let principal = listening.then(|| self.principal_id()).flatten();
                        self.report(kind, Some(key), principal.as_deref(), now);
                    }
                    return Ok(emit);
                }
                Ok(CommitOutcome::Missing) if refresh_only => return Ok(Emit::Nothing),
                Ok(CommitOutcome::Missing) => return Err(CommitFailure::Missing),
                // A patch cannot collide; a store that says so is broken, and the change log
                // went with the patch, so fail rather than retry without it.
                Ok(_) if matches!(write, Write::Patch { .. }) => {
                    return Err(CommitFailure::Collisions)
                }
                Ok(_) => {
                    // Another session holds this ID (2^-256, or a broken RNG): never
                    // overwrite it, take a new one.
                    let mut st = self.lock();
                    st.id = Id::Fresh(SessionId::generate());
                    st.issued = None;
                }
                Err(err) => return Err(CommitFailure::Store(err)),
            }
        }
        Err(CommitFailure::Collisions)
    }

    /// The store call for `write`, the event to report once it is applied, and for a new
    /// session in the default store its data (see [`InMemory`]).
    fn build(
        &self,
        st: &mut State,
        write: Write,
        now: i64,
    ) -> (Commit, Option<(EventKind, StoreKey)>, Option<InMemory<'_>>) {
        let layer = &self.inner.layer;
        let timeouts = layer.timeouts();
        let (key, moved) = match write {
            Write::Create => {
                st.own_id();
                let key = st.ensure_id().store_key();
                let mut record = Record::clone(&st.record);
                // The default store keeps data as a sorted slice, which the session's data
                // already is: no map built only to be turned back into one.
                let memory = match layer.store() {
                    LayerStore::Memory(store) => Some((store, st.data.share())),
                    LayerStore::Dyn(_) => {
                        *record.data_mut() = st.data.to_map();
                        None
                    }
                };
                record.set_created(now, timeouts.expires_at(now, now));
                let user_agent = st.seen.user_agent.as_ref();
                record.set_user_agent(user_agent.and_then(|v| v.to_str().ok()));
                layer
                    .binding()
                    .stamp(&mut record, &self.inner.request.client);
                st.record.set_created(now, record.expires_at());
                let memory = memory.map(|(store, data)| InMemory { store, data });
                return (
                    Commit::Create { key, record },
                    Some((EventKind::Created, key)),
                    memory,
                );
            }
            Write::Patch { key, .. } => (key, false),
            Write::Move { from } => (from, true),
        };
        let mut patch = Patch::new(now, timeouts.expires_at(st.record.created(), now));
        // Only a move can be built again (after an ID collision); a patch is built once, so
        // it may take the change log instead of copying it.
        let data = if moved {
            st.changes.data.clone()
        } else {
            std::mem::take(&mut st.changes.data)
        };
        for (name, value) in data {
            match value {
                Some(v) => patch.set(name, v),
                None => patch.remove(name),
            }
        }
        if st.changes.principal {
            patch.replace_principal(st.record.principal().cloned());
        }
        if st.changes.flash {
            patch.replace_flash(st.record.flash().to_vec());
        }
        if st.changes.persistence {
            patch.replace_persistent(st.record.persistent());
        }
        if let (true, Some(at)) = (st.changes.consent, st.record.consented_at()) {
            patch.record_consent(at);
        }
        match write {
            Write::Move { from } => {
                let to = st.ensure_id().store_key();
                let reason = st.changes.rotation.unwrap_or(RotateReason::Explicit);
                (
                    Commit::Move { from, to, patch },
                    Some((EventKind::Rotated(reason), to)),
                    None,
                )
            }
            Write::Patch { refresh_only, .. } => (
                Commit::Patch { key, patch },
                refresh_only.then_some((EventKind::Refreshed, key)),
                None,
            ),
            Write::Create => unreachable!("returned above"),
        }
    }

    /// The response's part of `plan`, minting the token if it names one.
    fn emit(&self, st: &mut State, plan: EmitPlan, now: i64) -> Emit {
        match plan {
            EmitPlan::Nothing => Emit::Nothing,
            EmitPlan::Clear => Emit::Clear {
                transport: self.transport(),
            },
            EmitPlan::Token => {
                // A copy: a handle kept past the response (a WebSocket task) must still read
                // the token the response carried from `token()`.
                let token = self.mint(st, now);
                // An unsaved anonymous session has no creation time yet: its token window
                // starts now.
                let created = match st.record.created() {
                    0 => now,
                    created => created,
                };
                let layer = &self.inner.layer;
                let deadline = created.saturating_add(layer.timeouts().absolute);
                Emit::Token {
                    token,
                    transport: self.transport(),
                    max_age: deadline.saturating_sub(now).max(0),
                    persistent: st
                        .record
                        .persistent()
                        .unwrap_or(layer.cookie().is_persistent()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Ending, Renewal};

    fn id() -> SessionId {
        SessionId::generate()
    }

    /// A session as the load leaves it: stored under `key` with the presented ID, or
    /// anonymous.
    fn stored() -> (State, StoreKey) {
        let id = id();
        let key = id.store_key();
        let mut st = State::new();
        st.id = Id::Presented(id);
        st.stored = Some(key);
        st.live = true;
        (st, key)
    }

    #[test]
    fn decide_table() {
        struct Case {
            name: &'static str,
            state: State,
            had_token: bool,
            consent_mode: bool,
            expect: Plan,
        }
        let plan = |delete, write, emit| Plan {
            delete,
            write,
            emit,
        };
        let mut cases = vec![Case {
            name: "untouched anonymous visitor: nothing",
            state: State::new(),
            had_token: false,
            consent_mode: false,
            expect: plan(None, None, EmitPlan::Nothing),
        }];

        let mut st = State::new();
        st.ensure_id();
        cases.push(Case {
            name: "anonymous CSRF token: send the new ID, store nothing",
            state: st,
            had_token: false,
            consent_mode: false,
            expect: plan(None, None, EmitPlan::Token),
        });

        let mut st = State::new();
        st.ensure_id();
        st.changes.unsaved_data = true;
        cases.push(Case {
            name: "anonymous with data: create",
            state: st,
            had_token: false,
            consent_mode: false,
            expect: plan(None, Some(Write::Create), EmitPlan::Token),
        });

        let mut st = State::new();
        st.id = Id::Adopted(id());
        cases.push(Case {
            name: "adopted ID, untouched: nothing (the client holds it)",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(None, None, EmitPlan::Nothing),
        });

        let mut st = State::new();
        st.id = Id::Adopted(id());
        st.changes.credential_out = true;
        cases.push(Case {
            name: "adopted ID, token handed out: create under an own ID",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(None, Some(Write::Create), EmitPlan::Token),
        });

        let (st, _) = stored();
        cases.push(Case {
            name: "stored session read: nothing",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(None, None, EmitPlan::Nothing),
        });

        let (mut st, key) = stored();
        st.changes.renewal = Renewal {
            refresh: true,
            reissue: false,
        };
        cases.push(Case {
            name: "stored session read, refresh due: times-only patch",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(
                None,
                Some(Write::Patch {
                    key,
                    refresh_only: true,
                }),
                EmitPlan::Nothing,
            ),
        });

        let (mut st, _) = stored();
        st.changes.renewal.reissue = true;
        cases.push(Case {
            name: "stored session read, old key: re-issue without a write",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(None, None, EmitPlan::Token),
        });

        let (mut st, key) = stored();
        st.changes.data.insert("n".into(), Some(1.into()));
        st.changes.renewal.reissue = true;
        cases.push(Case {
            name: "stored session written, old key: patch and re-issue",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(
                None,
                Some(Write::Patch {
                    key,
                    refresh_only: false,
                }),
                EmitPlan::Token,
            ),
        });

        let (mut st, key) = stored();
        st.new_id(RotateReason::Login);
        st.changes.principal = true;
        cases.push(Case {
            name: "login on a stored session: move",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(None, Some(Write::Move { from: key }), EmitPlan::Token),
        });

        let (_, key) = stored();
        let mut st = State::new();
        st.changes.ending = Some(Ending {
            kind: EndKind::Destroy,
            delete: Some(key),
        });
        cases.push(Case {
            name: "destroyed: delete and clear the token",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(Some((key, EndKind::Destroy)), None, EmitPlan::Clear),
        });

        let (_, key) = stored();
        let mut st = State::new();
        st.changes.ending = Some(Ending {
            kind: EndKind::Logout,
            delete: Some(key),
        });
        st.ensure_id();
        st.changes.unsaved_data = true;
        cases.push(Case {
            name: "logout, then data: delete, then create the new anonymous session",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(
                Some((key, EndKind::Logout)),
                Some(Write::Create),
                EmitPlan::Token,
            ),
        });

        let mut st = State::new();
        st.changes.ending = Some(Ending {
            kind: EndKind::Destroy,
            delete: None,
        });
        cases.push(Case {
            name: "destroy without a token: nothing to tell",
            state: st,
            had_token: false,
            consent_mode: false,
            expect: plan(None, None, EmitPlan::Nothing),
        });

        let (mut st, key) = stored();
        st.changes.extend = true;
        cases.push(Case {
            name: "extend, no refresh due: times-only patch",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(
                None,
                Some(Write::Patch {
                    key,
                    refresh_only: true,
                }),
                EmitPlan::Nothing,
            ),
        });

        let (mut st, _) = stored();
        st.changes.renewal.refresh = true;
        st.changes.quiet = true;
        cases.push(Case {
            name: "refresh due on a quiet route (browser API read): nothing",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(None, None, EmitPlan::Nothing),
        });

        let (mut st, key) = stored();
        st.changes.quiet = true;
        st.changes.extend = true;
        cases.push(Case {
            name: "extend on a quiet route: still written",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(
                None,
                Some(Write::Patch {
                    key,
                    refresh_only: true,
                }),
                EmitPlan::Nothing,
            ),
        });

        let (mut st, key) = stored();
        st.changes.persistence = true;
        cases.push(Case {
            name: "cookie choice changed: patch and send the cookie again",
            state: st,
            had_token: true,
            consent_mode: false,
            expect: plan(
                None,
                Some(Write::Patch {
                    key,
                    refresh_only: false,
                }),
                EmitPlan::Token,
            ),
        });

        let mut st = State::new();
        st.ensure_unsaved_id();
        st.changes.unsaved_data = true;
        cases.push(Case {
            name: "consent mode, visitor without consent writes: nothing stored, no cookie",
            state: st,
            had_token: false,
            consent_mode: true,
            expect: plan(None, None, EmitPlan::Nothing),
        });

        let mut st = State::new();
        st.ensure_id();
        st.record.set_consented_at(Some(1));
        st.changes.consent = true;
        cases.push(Case {
            name: "consent mode, consent recorded: create",
            state: st,
            had_token: false,
            consent_mode: true,
            expect: plan(None, Some(Write::Create), EmitPlan::Token),
        });

        let mut st = State::new();
        st.record.set_principal(Some(crate::Principal::user("u")));
        st.changes.principal = true;
        st.new_id(RotateReason::Login);
        cases.push(Case {
            name: "consent mode, login without consent: create (strictly necessary)",
            state: st,
            had_token: false,
            consent_mode: true,
            expect: plan(None, Some(Write::Create), EmitPlan::Token),
        });

        let (_, key) = stored();
        let mut st = State::new();
        st.changes.ending = Some(Ending {
            kind: EndKind::Logout,
            delete: Some(key),
        });
        st.ensure_unsaved_id();
        cases.push(Case {
            name: "consent mode, logout then a CSRF token: delete and clear, no new cookie",
            state: st,
            had_token: true,
            consent_mode: true,
            expect: plan(Some((key, EndKind::Logout)), None, EmitPlan::Clear),
        });

        for case in cases {
            assert_eq!(
                decide(&case.state, case.had_token, case.consent_mode),
                case.expect,
                "{}",
                case.name
            );
        }
    }

    /// Review: the token a response carries is the one `token()` answers, before and after
    /// the response was built (a handle kept past the response, e.g. on a WebSocket upgrade,
    /// still reads the token the client was sent).
    #[test]
    fn token_after_the_response_is_the_one_the_response_carried() {
        use std::time::Duration;
        let clock = crate::clock::ManualClock::new(1_700_000_000);
        let layer = crate::SessionLayer::new(
            crate::SessionConfig::web(crate::Key::generate()).clock(clock.clone()),
        );
        let session = Session::detached(&layer);
        let before = session.token();
        let now = session.inner.request.now;
        let sent = match session.emit(&mut session.lock(), EmitPlan::Token, now) {
            Emit::Token { token, .. } => token,
            _ => panic!("a token emit"),
        };
        assert_eq!(
            sent, before,
            "the response carries the token the handler saw"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(session.token(), sent, "token() after the response");
    }
}
