//! How [`RedisStore`] answers each [`SessionStore`] call: one script on a standalone server,
//! single-slot steps in a cluster.

use super::codec::*;
use super::*;

impl SessionStore for RedisStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let deadline = self.deadline();
        match self.bounded(self.lookup_record(key, deadline)).await? {
            Lookup::Live(record) => Ok(Some(record)),
            _ => Ok(None),
        }
    }

    async fn lookup(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let deadline = self.deadline();
        self.bounded(self.lookup_record(key, deadline)).await
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let started = tokio::time::Instant::now();
        let deadline = self.deadline();
        let flight = Flight::default();
        let result = match self.conn {
            Conn::Single(_) => self
                .bounded(self.commit_standalone(commit, deadline, &flight))
                .await
                .map(|outcome| (outcome, Vec::new())),
            Conn::Cluster(_) => {
                self.bounded(self.commit_cluster(commit, deadline, &flight))
                    .await
            }
        };
        match result {
            Ok((outcome, tidy)) => {
                if !tidy.is_empty() {
                    // After the commit point the answer is known; tidying is best effort in
                    // the time left, and readers finish what it leaves.
                    let left = self.timeout.saturating_sub(started.elapsed());
                    let tidied = tokio::time::timeout(left, self.tidy(tidy, deadline)).await;
                    if !matches!(tidied, Ok(Ok(()))) {
                        tracing::debug!("cluster commit applied; tidying left to readers");
                    }
                }
                Ok(outcome)
            }
            Err(err) => {
                let pending = lock(&flight).take();
                if let Some(settle) = pending {
                    if self.may_have_applied(&err) {
                        self.settle_later(settle);
                    }
                }
                Err(err)
            }
        }
    }

    async fn update(
        &self,
        key: &StoreKey,
        field: &str,
        update: Update,
    ) -> Result<UpdateOutcome, StoreError> {
        let deadline = self.deadline();
        self.bounded(self.update_once(key, field, update, deadline))
            .await
    }

    async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let deadline = self.deadline();
        let mut out = match self.conn {
            Conn::Cluster(_) => {
                self.bounded(self.sessions_in_cluster(principal, deadline))
                    .await?
            }
            Conn::Single(_) => {
                self.bounded(async {
                    let rows: Vec<IndexRow> = SESSIONS_OF
                        .key(self.index_key(principal))
                        .arg(deadline)
                        .arg(self.clock.now())
                        .arg(self.session_prefix())
                        .arg(principal)
                        .invoke_async(&mut self.conn.clone())
                        .await
                        .map_err(from_redis)?;
                    rows.into_iter()
                        .filter_map(|(hex, c, l, e, ua)| {
                            // A row that does not decode is no session to list.
                            let key = std::str::from_utf8(&hex)
                                .ok()
                                .and_then(StoreKey::from_hex)?;
                            let ua = match ua {
                                Some(ua) => Some(String::from_utf8(ua).ok()?),
                                None => None,
                            };
                            Some(info(key, c, l, e, principal, ua))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?
            }
        };
        out.sort_by_key(|i| std::cmp::Reverse(i.last_seen()));
        Ok(out)
    }

    async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
        let deadline = self.deadline();
        match self.conn {
            Conn::Cluster(_) => {
                self.bounded(self.delete_in_cluster(principal, deadline))
                    .await
            }
            Conn::Single(_) => {
                self.bounded(async {
                    DELETE_SESSIONS_OF
                        .key(self.index_key(principal))
                        .arg(deadline)
                        .arg(self.clock.now())
                        .arg(self.session_prefix())
                        .arg(principal)
                        .invoke_async(&mut self.conn.clone())
                        .await
                        .map_err(from_redis)
                })
                .await
            }
        }
    }
}
