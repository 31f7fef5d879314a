//! How long a [`Session`] lives: [`Session::info`], [`Session::extend`] and the login's
//! cookie choice ([`Session::remember`]).

use crate::record::SessionInfo;
use crate::session::Session;

impl Session {
    /// Created, last activity and expiry of this session as the response will leave it:
    /// for a stored session, and for one this request creates (a login, a first write, a
    /// token handed out), whose clock starts now. `None` when nothing is or will be stored:
    /// an anonymous visitor, an ended session, or (under
    /// [consent mode](crate::SessionConfig::require_consent)) a visitor who has not
    /// consented.
    ///
    /// When the commit writes the session (a change, a due sliding refresh,
    /// [`Session::extend`]), last activity is this request's time and the expiry moves with
    /// it; otherwise both are what the store holds. A session created in this request gets
    /// its final ID here, so [`SessionInfo::key`] already names the record the commit writes.
    pub fn info(&self) -> Option<SessionInfo> {
        let layer = &self.inner.layer;
        let now = self.inner.request.now;
        let timeouts = *layer.timeouts();
        let mut st = self.lock();
        let creates = st.stored.is_none()
            && (st.changes.dirty() || st.changes.credential_out)
            && !(layer.require_consent() && st.consent_pending());
        if st.stored.is_none() && !creates {
            return None;
        }
        if creates {
            // What the commit does before creating: an adopted or unsaved ID is replaced.
            st.own_id();
        }
        let key = st.ensure_id().store_key();
        let touched = st.rotated() || st.changes.dirty() || st.changes.refreshes();
        let record = &st.record;
        let (created, last_seen, expires_at) = if creates {
            (now, now, timeouts.expires_at(now, now))
        } else if touched {
            let created = record.created();
            (created, now, timeouts.expires_at(created, now))
        } else {
            (record.created(), record.last_seen(), record.expires_at())
        };
        Some(
            record
                .info(key)
                .with_times(created, last_seen, expires_at)
                .with_absolute_timeout(timeouts.absolute),
        )
    }

    /// Resets the idle clock: the commit writes this request's time as the last activity
    /// even when no sliding refresh is due ("stay signed in"). The absolute timeout never
    /// moves: the new expiry is the earlier of now plus the idle timeout and creation plus
    /// the absolute timeout.
    ///
    /// Answers `false`, changing nothing, when the session is not in the store (anonymous,
    /// ended, or created in this request, whose clock starts at this commit anyway).
    ///
    /// # Example
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use axum_tessera::{CsrfProtected, Session};
    ///
    /// async fn stay_signed_in(session: Session, _: CsrfProtected) -> StatusCode {
    ///     if session.extend() { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED }
    /// }
    /// ```
    pub fn extend(&self) -> bool {
        let mut st = self.lock();
        if st.stored.is_none() {
            return false;
        }
        st.changes.extend = true;
        true
    }

    /// Marks this request as not being the user's activity: no sliding refresh is written
    /// for it (an explicit [`Session::extend`] still is). For the browser API's `info` and
    /// `csrf-token` routes, which a page polls by itself.
    pub(crate) fn suppress_refresh(&self) {
        self.lock().changes.quiet = true;
    }

    /// Chooses this session's cookie ("remember me"): `true` a persistent cookie whose
    /// `Max-Age` runs to the absolute deadline, `false` a browser-session cookie (no
    /// `Max-Age`: it goes when the browser closes). Call it with [`Session::login`]; the
    /// choice is stored with the session, so every later token of it (rotation, re-issue
    /// under a new key) goes out the same way. Without a call the session follows
    /// [`CookieConfig::persistent`](crate::CookieConfig::persistent). Logging out, or in as
    /// another principal, forgets the choice.
    ///
    /// # Example
    ///
    /// ```
    /// use axum::{response::Redirect, Form};
    /// use axum_tessera::{CsrfProtected, Principal, Session};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Login { user: String, remember: Option<String> }
    ///
    /// async fn login(session: Session, CsrfProtected(Form(f)): CsrfProtected<Form<Login>>) -> Redirect {
    ///     // check the password, then:
    ///     session.login(Principal::user(f.user));
    ///     session.remember(f.remember.is_some()); // an HTML checkbox is sent only when ticked
    ///     Redirect::to("/")
    /// }
    /// ```
    pub fn remember(&self, on: bool) {
        let mut st = self.lock();
        if st.record.persistent() != Some(on) {
            st.record.set_persistent(Some(on));
            st.changes.persistence = true;
        }
    }

    /// Whether this session's cookie is persistent: the login's choice
    /// ([`Session::remember`]) or else the configured default.
    pub fn is_persistent(&self) -> bool {
        let default = self.inner.layer.cookie().is_persistent();
        self.lock().record.persistent().unwrap_or(default)
    }
}
