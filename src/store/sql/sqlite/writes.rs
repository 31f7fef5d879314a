//! The steps of each [`SqliteStore`](super::SqliteStore) write inside its `BEGIN IMMEDIATE`
//! transaction: creates, patches, moves, atomic updates, and making room under the
//! per-principal limit, and what each applied commit tells the live handles. SQLite runs
//! one writer at a time, so a step may read before it writes without racing anyone; JSON is
//! still changed by SQLite only.

use sqlx::sqlite::SqliteConnection;

use super::statements::{bind_patch, path};
use super::{from_sqlx, SqliteStore};
use crate::error::{StoreError, StoreErrorKind};
use crate::live::EndReason;
use crate::record::{Patch, Record};
use crate::store::sql::{json, key_of, parse_value, NewRow, PatchArgs};
use crate::store::{Commit, CommitOutcome, LimitPolicy, Update, UpdateOutcome};
use crate::token::StoreKey;

/// What an admitting step found: the principal may take one more session, or `excess`
/// sessions stand in the way.
fn excess(live: i64, max: i64) -> i64 {
    if max <= 0 {
        0
    } else {
        (live + 1 - max).max(0)
    }
}

impl SqliteStore {
    /// Tells the live handles what `commit`, applied, did to their sessions.
    pub(super) fn notify(&self, commit: &Commit, evicted: &[StoreKey]) {
        let live = &self.inner.live;
        for key in evicted {
            live.ended(*key, EndReason::SessionLimit);
        }
        match commit {
            Commit::Create { .. } => {}
            Commit::Patch { key, patch } => {
                live.moved(*key, *key, patch.principal(), patch.last_seen());
            }
            Commit::Move { from, to, patch } => {
                live.moved(*from, *to, patch.principal(), patch.last_seen());
            }
            Commit::Delete { key } => live.ended(*key, EndReason::Deleted),
        }
    }

    /// Makes room under the limit for one more session of `principal` (not counting
    /// `except`), inside a write transaction; adds the sessions it evicts to `evicted` (their
    /// live handles end once the transaction commits).
    async fn admit(
        &self,
        conn: &mut SqliteConnection,
        principal: &str,
        except: &StoreKey,
        now: i64,
        evicted: &mut Vec<StoreKey>,
    ) -> Result<(), StoreError> {
        let Some((_, policy)) = self.inner.settings.limit else {
            return Ok(());
        };
        let (max, _) = self.inner.settings.limit_args();
        let live: i64 = sqlx::query_scalar(&self.inner.sql.count_live)
            .bind(principal)
            .bind(now)
            .bind(except.as_bytes().to_vec())
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let excess = excess(live, max);
        if excess == 0 {
            return Ok(());
        }
        if policy == LimitPolicy::Reject {
            return Err(StoreError::from_kind(StoreErrorKind::LimitReached));
        }
        tracing::debug!(excess, "session limit: evicting oldest");
        let keys: Vec<Vec<u8>> = sqlx::query_scalar(&self.inner.sql.evict)
            .bind(principal)
            .bind(now)
            .bind(except.as_bytes().to_vec())
            .bind(excess)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        // A key that does not parse names no handle.
        evicted.extend(keys.iter().filter_map(|k| key_of(k).ok()));
        Ok(())
    }

    async fn is_live(
        &self,
        conn: &mut SqliteConnection,
        key: &StoreKey,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(&self.inner.sql.is_live)
            .bind(key.as_bytes().to_vec())
            .bind(now)
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?
            .is_some())
    }

    /// The current owner of the live session under `key`: `None` when it is gone,
    /// `Some(None)` when it is anonymous.
    async fn owner(
        &self,
        conn: &mut SqliteConnection,
        key: &StoreKey,
        now: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        sqlx::query_scalar(&self.inner.sql.principal_of)
            .bind(key.as_bytes().to_vec())
            .bind(now)
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)
    }

    /// Whether a patch setting `new` would add the session under `key` (owned by
    /// `current`) to a principal while a limit is set.
    fn admits(&self, current: Option<&str>, new: Option<&str>) -> Option<String> {
        match new {
            Some(new) if self.inner.settings.limit.is_some() && current != Some(new) => {
                Some(new.to_owned())
            }
            _ => None,
        }
    }

    pub(super) async fn create(
        &self,
        conn: &mut SqliteConnection,
        key: &StoreKey,
        record: &Record,
        now: i64,
        evicted: &mut Vec<StoreKey>,
    ) -> Result<CommitOutcome, StoreError> {
        let row = NewRow::encode(record)?;
        if let Some(principal) = self.admits(None, row.principal.as_deref()) {
            if self.is_live(conn, key, now).await? {
                return Ok(CommitOutcome::Collision);
            }
            self.admit(conn, &principal, key, now, evicted).await?;
        }
        let inserted = sqlx::query(&self.inner.sql.create)
            .bind(key.as_bytes().to_vec())
            .bind(now)
            .bind(row.created)
            .bind(row.last_seen)
            .bind(row.expires_at)
            .bind(row.principal)
            .bind(row.principal_data)
            .bind(row.data)
            .bind(row.flash)
            .bind(row.user_agent)
            .bind(row.bound_user_agent)
            .bind(row.bound_ip)
            .bind(row.meta)
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        Ok(if inserted.is_some() {
            CommitOutcome::Applied
        } else {
            CommitOutcome::Collision
        })
    }

    pub(super) async fn patch(
        &self,
        conn: &mut SqliteConnection,
        key: &StoreKey,
        patch: &Patch,
        now: i64,
        evicted: &mut Vec<StoreKey>,
    ) -> Result<CommitOutcome, StoreError> {
        let args = PatchArgs::encode(patch)?;
        if args.principal.index_key().is_some() && self.inner.settings.limit.is_some() {
            let Some(current) = self.owner(conn, key, now).await? else {
                return Ok(CommitOutcome::Missing);
            };
            if let Some(principal) = self.admits(current.as_deref(), args.principal.index_key()) {
                self.admit(conn, &principal, key, now, evicted).await?;
            }
        }
        let sql = self.inner.sql.patch(&args, false);
        let updated = bind_patch(&sql, key, now, &args, None)
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        Ok(if updated.is_some() {
            CommitOutcome::Applied
        } else {
            CommitOutcome::Missing
        })
    }

    pub(super) async fn move_to(
        &self,
        conn: &mut SqliteConnection,
        from: &StoreKey,
        to: &StoreKey,
        patch: &Patch,
        now: i64,
        evicted: &mut Vec<StoreKey>,
    ) -> Result<CommitOutcome, StoreError> {
        let args = PatchArgs::encode(patch)?;
        if args.principal.index_key().is_some() && self.inner.settings.limit.is_some() {
            let Some(current) = self.owner(conn, from, now).await? else {
                return Ok(CommitOutcome::Missing);
            };
            if let Some(principal) = self.admits(current.as_deref(), args.principal.index_key()) {
                // Checked before anything moves, so a refused login leaves the old session.
                if self.is_live(conn, to, now).await? {
                    return Ok(CommitOutcome::Collision);
                }
                self.admit(conn, &principal, from, now, evicted).await?;
            }
        }
        let sql = self.inner.sql.patch(&args, true);
        for attempt in 0..2 {
            let moved = bind_patch(&sql, from, now, &args, Some(to))
                .fetch_optional(&mut *conn)
                .await
                .map_err(from_sqlx)?;
            if moved.is_some() {
                return Ok(CommitOutcome::Applied);
            }
            if !self.is_live(conn, from, now).await? {
                return Ok(CommitOutcome::Missing);
            }
            if attempt == 1 || self.is_live(conn, to, now).await? {
                break;
            }
            // An expired row holds the target: it may be replaced.
            sqlx::query(&self.inner.sql.delete)
                .bind(to.as_bytes().to_vec())
                .execute(&mut *conn)
                .await
                .map_err(from_sqlx)?;
        }
        Ok(CommitOutcome::Collision)
    }

    pub(super) async fn update_in(
        &self,
        conn: &mut SqliteConnection,
        key: &StoreKey,
        field: &str,
        update: Update,
        now: i64,
    ) -> Result<UpdateOutcome, StoreError> {
        let path = path(field);
        match update {
            Update::Increment { by } => {
                let value: Option<Option<String>> = sqlx::query_scalar(&self.inner.sql.increment)
                    .bind(key.as_bytes().to_vec())
                    .bind(now)
                    .bind(&path)
                    .bind(by)
                    .bind(i64::MAX)
                    .bind(i64::MIN)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
                match value {
                    Some(value) => Ok(UpdateOutcome::Applied(parse_value(value.as_deref())?)),
                    None => Ok(UpdateOutcome::Missing),
                }
            }
            Update::CompareAndSet { expected, new } => {
                let new_text = new.as_ref().map(json).transpose()?;
                let expected_text = expected.as_ref().map(json).transpose()?;
                let applied = sqlx::query(&self.inner.sql.compare_and_set)
                    .bind(key.as_bytes().to_vec())
                    .bind(now)
                    .bind(&path)
                    .bind(new_text)
                    .bind(expected_text)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
                if applied.is_some() {
                    return Ok(UpdateOutcome::Applied(new));
                }
                let current: Option<Option<String>> = sqlx::query_scalar(&self.inner.sql.value_of)
                    .bind(key.as_bytes().to_vec())
                    .bind(now)
                    .bind(&path)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
                match current {
                    Some(value) => Ok(UpdateOutcome::Conflict(parse_value(value.as_deref())?)),
                    None => Ok(UpdateOutcome::Missing),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_counts_the_sessions_in_the_way() {
        assert_eq!(excess(5, 0), 0, "no limit");
        assert_eq!(excess(1, 3), 0);
        assert_eq!(excess(2, 3), 0);
        assert_eq!(excess(3, 3), 1);
        assert_eq!(excess(7, 3), 5);
    }
}
