//! Lost answers of [`RedisStore`]: a create or move whose client timed out after the script
//! may have run is rolled back once its deadline has passed on the server, in the background.

use super::*;

impl RedisStore {
    /// Settles a lost answer on a standalone server; `true` once there is nothing left to do.
    pub(super) async fn settle_standalone(
        &self,
        s: &Settle,
        deadline: i64,
    ) -> Result<bool, StoreError> {
        let answer: String = SETTLE
            .key(self.session_key(&s.target))
            .arg(deadline)
            .arg(s.deadline)
            .arg(&s.id)
            .arg(&*self.prefix)
            .arg(self.clock.now())
            .arg(s.target.to_hex())
            .arg(s.source.map(|k| k.to_hex()).unwrap_or_default())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(from_redis)?;
        if answer == "undone" {
            tracing::info!(key = %s.target.short(), "rolled back a commit whose answer was lost");
        }
        Ok(answer != "wait")
    }
    /// Whether a failed commit may still have applied: not when nothing reached the server
    /// (connection refused), nor when a standalone server refused it as late (one attempt,
    /// no client retry); in a cluster a refusal may answer a retry of an attempt that ran.
    pub(super) fn may_have_applied(&self, err: &StoreError) -> bool {
        if err.kind() == StoreErrorKind::LimitReached {
            return false;
        }
        let redis = std::error::Error::source(err).and_then(|e| e.downcast_ref::<RedisError>());
        match redis {
            Some(e) if e.is_connection_refusal() => false,
            Some(e) if e.code() == Some("LATE") => matches!(self.conn, Conn::Cluster(_)),
            _ => true,
        }
    }
    /// Rolls back, in the background, a create or move the caller was told failed but
    /// which may have applied (see the type's documentation).
    pub(super) fn settle_later(&self, settle: Settle) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.settling.fetch_add(1, Ordering::SeqCst) >= MAX_SETTLING {
            self.settling.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                key = %settle.target.short(),
                "too many commits with lost answers to settle; this one stays until it expires"
            );
            return;
        }
        let store = self.clone();
        runtime.spawn(async move {
            let mut pause = (store.timeout / 2).max(Duration::from_millis(50));
            let until = tokio::time::Instant::now() + store.settle_window();
            let mut done = false;
            while !done && tokio::time::Instant::now() < until {
                tokio::time::sleep(pause).await;
                let deadline = store.deadline();
                let settled = match store.conn {
                    Conn::Single(_) => {
                        store
                            .bounded(store.settle_standalone(&settle, deadline))
                            .await
                    }
                    Conn::Cluster(_) => store.bounded(store.settle_cluster(&settle, deadline)).await,
                };
                match settled {
                    Ok(true) => done = true,
                    // Too early: the commit's deadline has not passed on the server yet.
                    Ok(false) => {}
                    Err(_) => pause = pause.saturating_mul(2).min(MAX_SETTLE_PAUSE),
                }
            }
            store.settling.fetch_sub(1, Ordering::SeqCst);
            if !done {
                tracing::warn!(
                    key = %settle.target.short(),
                    "could not settle a commit whose answer was lost; what it wrote stays until it expires"
                );
            }
        });
    }
}
