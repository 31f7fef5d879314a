//! Cluster mode of [`RedisStore`]: a commit whose keys hash to different slots runs as
//! single-slot steps.

use super::codec::*;
use super::*;

/// Cluster mode: each step below touches exactly one slot.
impl RedisStore {
    pub(super) async fn step<T: FromRedisValue>(
        &self,
        key: String,
        step: &str,
        args: Vec<String>,
    ) -> Result<T, StoreError> {
        CLUSTER
            .key(key)
            .arg(step)
            .arg(self.clock.now())
            .arg(args)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(from_redis)
    }

    /// Writes `fields` under `key`, create-only.
    pub(super) async fn put(
        &self,
        key: &StoreKey,
        fields: Vec<String>,
    ) -> Result<CommitOutcome, StoreError> {
        let answer: String = self.step(self.session_key(key), "put", fields).await?;
        outcome(&answer)
    }

    /// Adds `key` to the index of `principal`, taking the place of `rotating` if that is
    /// already indexed; answers the evicted members, or `LimitReached`.
    pub(super) async fn admit(
        &self,
        principal: &str,
        key: &StoreKey,
        rotating: Option<&StoreKey>,
        enforce: bool,
    ) -> Result<Vec<String>, StoreError> {
        let (limit, policy) = if enforce {
            self.limit_args()
        } else {
            (0, "evict")
        };
        if limit > 0 {
            // Only live members may count against the limit; the index step cannot see the
            // records, so prune first.
            self.sessions_in_cluster(principal).await?;
        }
        let args = vec![
            principal.to_owned(),
            key.to_hex(),
            rotating.map(StoreKey::to_hex).unwrap_or_default(),
            limit.to_string(),
            policy.to_owned(),
        ];
        let mut answer: Vec<String> = self.step(self.index_key(principal), "admit", args).await?;
        if answer.first().map(String::as_str) != Some("ok") {
            return Err(StoreError::from_kind(StoreErrorKind::LimitReached));
        }
        answer.remove(0);
        Ok(answer)
    }

    pub(super) async fn unindex(&self, principal: &str, key: &StoreKey) -> Result<(), StoreError> {
        if principal.is_empty() {
            return Ok(());
        }
        self.query::<i64>(
            redis::cmd("ZREM")
                .arg(self.index_key(principal))
                .arg(key.to_hex()),
        )
        .await
        .map(drop)
    }

    pub(super) async fn delete_evicted(&self, evicted: Vec<String>) -> Result<(), StoreError> {
        for hex in evicted {
            let key = format!("{}{hex}", self.session_prefix());
            self.query::<i64>(redis::cmd("DEL").arg(key)).await?;
        }
        Ok(())
    }

    pub(super) async fn commit_cluster(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        match commit {
            Commit::Create { key, record } => {
                let Some(pid) = record.principal().map(|p| p.index_key().to_owned()) else {
                    return self.put(&key, put_args(&record)?).await;
                };
                let evicted = self.admit(&pid, &key, None, true).await?;
                let outcome = self.put(&key, put_args(&record)?).await?;
                if outcome != CommitOutcome::Applied {
                    self.unindex(&pid, &key).await?;
                }
                self.delete_evicted(evicted).await?;
                Ok(outcome)
            }
            Commit::Patch { key, patch } => {
                let new_owner = patch
                    .principal()
                    .flatten()
                    .map(|p| p.index_key().to_owned());
                let mut evicted = Vec::new();
                if let Some(owner) = &new_owner {
                    evicted = self.admit(owner, &key, Some(&key), true).await?;
                }
                let (answer, old): (String, String) = self
                    .step(self.session_key(&key), "patch", patch_args(&patch)?)
                    .await?;
                let outcome = outcome(&answer)?;
                let now_owner = match patch.principal() {
                    Some(p) => p.map(|p| p.index_key().to_owned()).unwrap_or_default(),
                    None => old.clone(),
                };
                if outcome == CommitOutcome::Applied && old != now_owner {
                    self.unindex(&old, &key).await?;
                }
                self.delete_evicted(evicted).await?;
                Ok(outcome)
            }
            Commit::Move { from, to, patch } => self.move_in_cluster(from, to, patch).await,
            Commit::Delete { key } => {
                let (owner, _): (String, i64) = self
                    .step(self.session_key(&key), "delete", vec![String::new()])
                    .await?;
                self.unindex(&owner, &key).await?;
                Ok(CommitOutcome::Applied)
            }
        }
    }

    pub(super) async fn move_in_cluster(
        &self,
        from: StoreKey,
        to: StoreKey,
        patch: Patch,
    ) -> Result<CommitOutcome, StoreError> {
        // A login names its principal: admit the new key first, so a refused login changes
        // nothing and a live session is never missing from its index.
        let login = patch
            .principal()
            .flatten()
            .map(|p| p.index_key().to_owned());
        let mut evicted = Vec::new();
        if let Some(owner) = &login {
            evicted = self.admit(owner, &to, Some(&from), true).await?;
        }
        let claimed: Option<(HashMap<String, String>, HashMap<String, String>)> = self
            .step(self.session_key(&from), "claim", patch_args(&patch)?)
            .await?;
        let Some((before, after)) = claimed.filter(|(_, after)| after.contains_key("e")) else {
            if let Some(owner) = &login {
                self.unindex(owner, &to).await?;
            }
            return Ok(CommitOutcome::Missing);
        };
        let old_owner = before.get("pi").cloned().unwrap_or_default();
        let new_owner = after.get("pi").cloned().unwrap_or_default();
        if login.is_none() && !new_owner.is_empty() {
            self.admit(&new_owner, &to, Some(&from), false).await?;
        }
        let outcome = self.put(&to, field_args(after)).await?;
        if outcome != CommitOutcome::Applied {
            // Put the old record back as it was: a collision changes nothing.
            self.put(&from, field_args(before)).await?;
            if new_owner != old_owner {
                self.unindex(&new_owner, &to).await?;
            }
            return Ok(outcome);
        }
        self.unindex(&old_owner, &from).await?;
        self.delete_evicted(evicted).await?;
        Ok(CommitOutcome::Applied)
    }

    /// The index members of `principal` with their join times.
    pub(super) async fn members(&self, principal: &str) -> Result<Vec<(String, f64)>, StoreError> {
        self.query(
            redis::cmd("ZRANGE")
                .arg(self.index_key(principal))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )
        .await
    }

    /// Whether an index member without a record may be a login still in flight (admitted,
    /// record not yet written): such a member must be neither pruned nor forgotten.
    pub(super) fn in_flight(&self, joined: f64, now: i64) -> bool {
        let grace = i64::try_from(self.timeout.as_secs()).unwrap_or(i64::MAX / 2) + 1;
        joined > now.saturating_sub(grace) as f64
    }

    /// The live sessions of `principal`, pruning index entries that are not.
    pub(super) async fn sessions_in_cluster(
        &self,
        principal: &str,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let index = self.index_key(principal);
        let now = self.clock.now();
        let mut out = Vec::new();
        for (hex, joined) in self.members(principal).await? {
            let row: IndexRow = self
                .query(
                    redis::cmd("HMGET")
                        .arg(format!("{}{hex}", self.session_prefix()))
                        .arg(&["c", "l", "e", "pi", "u"]),
                )
                .await?;
            match (row, StoreKey::from_hex(&hex)) {
                ((Some(c), Some(l), Some(e), Some(pi), ua), Some(key))
                    if e > now && pi == principal =>
                {
                    out.push(info(key, c, l, e, principal, ua)?);
                }
                ((_, _, None, _, _), Some(_)) if self.in_flight(joined, now) => {}
                _ => {
                    self.query::<i64>(redis::cmd("ZREM").arg(&index).arg(&hex))
                        .await?;
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn delete_in_cluster(&self, principal: &str) -> Result<u64, StoreError> {
        let index = self.index_key(principal);
        let now = self.clock.now();
        let mut deleted = 0;
        for (hex, joined) in self.members(principal).await? {
            let key = format!("{}{hex}", self.session_prefix());
            let (owner, live): (String, i64) =
                self.step(key, "delete", vec![principal.to_owned()]).await?;
            deleted += u64::from(live == 1);
            if owner.is_empty() && self.in_flight(joined, now) {
                continue;
            }
            // Member by member, not the whole index: a login meanwhile stays indexed.
            self.query::<i64>(redis::cmd("ZREM").arg(&index).arg(&hex))
                .await?;
        }
        Ok(deleted)
    }
}
