//! A principal's sessions seen from one of them: list them ("your devices"), end one,
//! end all ("log out everywhere").

use crate::error::StoreError;
use crate::event::EventKind;
use crate::live::EndReason;
use crate::principal::Principal;
use crate::record::SessionInfo;
use crate::session::Session;
use crate::store::Commit;
use crate::token::StoreKey;

impl Session {
    /// Lists the live sessions of this session's principal (empty when anonymous).
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn sessions_of_principal(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let Some(p) = self.principal() else {
            return Ok(Vec::new());
        };
        let absolute = self.inner.layer.timeouts().absolute;
        let list = self.inner.layer.store().sessions_of(&p.index_key()).await?;
        Ok(list
            .into_iter()
            .map(|info| info.with_absolute_timeout(absolute))
            .collect())
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
        if self.lock().stored == Some(key) {
            self.logout();
            return Ok(true);
        }
        self.inner
            .layer
            .live_registry()
            .hint(key, EndReason::EndedElsewhere);
        self.inner
            .layer
            .store()
            .commit(Commit::Delete { key }, None)
            .await?;
        let now = self.inner.layer.now();
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
        // This session's own handles end for the same cause as the others', not with the
        // "destroyed" that `destroy` notes: a store that notifies from another task (Redis)
        // may report the delete only after it.
        let own = self.lock().stored;
        let live = self.inner.layer.live_registry();
        if let Some(key) = own {
            live.hint(key, EndReason::LoggedOutEverywhere);
        }
        let n = self
            .inner
            .layer
            .store()
            .delete_sessions_of(&p.index_key())
            .await?;
        self.destroy();
        if let Some(key) = own {
            live.hint(key, EndReason::LoggedOutEverywhere);
        }
        Ok(n)
    }
}
