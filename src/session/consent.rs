//! Consent mode on the [`Session`]: recording the visitor's consent to the session cookie.
//! The rule itself (no cookie for an anonymous visitor before consent) is applied by the
//! commit; see [`SessionConfig::require_consent`](crate::SessionConfig::require_consent).

use crate::session::Session;

impl Session {
    /// Records that the visitor consented to the session cookie: under
    /// [consent mode](crate::SessionConfig::require_consent) the session is stored and its
    /// cookie set from this response on, like any session's. The time is kept with the
    /// session (see [`Session::consented_at`]), for an audit trail. Calling it again changes
    /// nothing.
    ///
    /// Consent belongs to the session: [`Session::logout`] and [`Session::destroy`] end it
    /// with the session, and the next anonymous visit asks again.
    ///
    /// # Example
    ///
    /// ```
    /// use axum::response::Redirect;
    /// use axum_tessera::{CsrfProtected, Session};
    ///
    /// // The cookie banner's "Accept" button posts here.
    /// async fn accept(session: Session, _: CsrfProtected) -> Redirect {
    ///     session.record_consent();
    ///     Redirect::to("/")
    /// }
    /// ```
    pub fn record_consent(&self) {
        let now = self.inner.request.now;
        let mut st = self.lock();
        if st.record.consented_at().is_none() {
            st.record.set_consented_at(Some(now));
            st.changes.consent = true;
        }
    }

    /// Whether the visitor's consent is recorded in this session.
    pub fn has_consent(&self) -> bool {
        self.lock().record.consented_at().is_some()
    }

    /// When the visitor consented (see [`Session::record_consent`]).
    pub fn consented_at(&self) -> Option<time::OffsetDateTime> {
        self.lock()
            .record
            .consented_at()
            .map(crate::clock::to_datetime)
    }
}
