//! The statement of each [`PostgresStore`](super::PostgresStore) write (a create, a patch,
//! a move, an atomic update), bound with its [`Guard`]: one statement each, on its own or,
//! when the commit may add a session to a principal under a limit, in a transaction that
//! took the principal's advisory lock first.

use std::time::Duration;

use sqlx::postgres::{PgConnection, Postgres};
use sqlx::Row;

use super::statements::KEY_TAKEN;
use super::{from_sqlx, lock_id, raised, PostgresStore};
use crate::error::{StoreError, StoreErrorKind};
use crate::principal::Principal;
use crate::record::{Patch, Record};
use crate::store::sql::{json, parse_value, NewRow, PatchArgs};
use crate::store::{
    commit_answer, write_deadline_ms, Commit, CommitOutcome, Update, UpdateOutcome,
};
use crate::token::StoreKey;

fn outcome(answer: &str) -> Result<CommitOutcome, StoreError> {
    commit_answer(answer).unwrap_or_else(|| {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            format!("unexpected answer from the commit statement: {answer:?}"),
        ))
    })
}

/// The server-side bounds of one write statement (its last two parameters).
#[derive(Clone, Copy, Debug)]
pub(super) struct Guard {
    /// Unix milliseconds on the application's system clock: a statement still running on
    /// the server past it fails instead of committing.
    pub(super) deadline_ms: i64,
    /// The statement's `lock_timeout`: the whole command timeout.
    pub(super) lock_ms: i64,
}

impl Guard {
    /// For a write starting now under `timeout`. The deadline is `timeout` less a margin (a
    /// quarter of it, at most 250 ms), which is what a statement that passes its check has
    /// to commit and answer before the client gives up.
    pub(super) fn new(timeout: Duration) -> Self {
        Self {
            deadline_ms: write_deadline_ms(timeout),
            lock_ms: i64::try_from(timeout.as_millis().clamp(1, i32::MAX as u128))
                .unwrap_or(i64::from(i32::MAX)),
        }
    }
}

impl PostgresStore {
    pub(super) fn guard(&self) -> Guard {
        Guard::new(self.inner.settings.timeout)
    }

    /// The advisory lock of `principal`, when a limit is set: every write that may add a
    /// session to it (or delete all of its sessions) takes it first.
    pub(super) fn principal_lock(&self, principal: &str) -> Option<i64> {
        self.inner.settings.limit?;
        Some(lock_id(&[
            "principal",
            &self.inner.settings.table.qualified(),
            principal,
        ]))
    }

    /// The principal `commit` may add a session to, when a limit is set.
    pub(super) fn gains(&self, commit: &Commit) -> Option<i64> {
        let principal = match commit {
            Commit::Create { record, .. } => record.principal().map(Principal::index_key),
            Commit::Patch { patch, .. } | Commit::Move { patch, .. } => match patch.principal() {
                Some(Some(p)) => Some(p.index_key()),
                _ => None,
            },
            Commit::Delete { .. } => None,
        }?;
        self.principal_lock(&principal)
    }

    /// Deletes every session of `principal`; answers how many of them were live.
    pub(super) async fn delete_all(
        &self,
        conn: &mut PgConnection,
        principal: &str,
        now: i64,
        guard: Guard,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(&self.inner.sql.delete_sessions_of)
            .bind(principal)
            .bind(now)
            .bind(guard.deadline_ms)
            .bind(guard.lock_ms)
            .fetch_one(conn)
            .await
            .map_err(from_sqlx)
    }

    pub(super) async fn apply(
        &self,
        conn: &mut PgConnection,
        commit: &Commit,
        now: i64,
        guard: Guard,
    ) -> Result<CommitOutcome, StoreError> {
        Ok(match commit {
            Commit::Create { key, record } => self.create(conn, key, record, now, guard).await?,
            Commit::Patch { key, patch } => self.patch(conn, key, patch, now, guard).await?,
            Commit::Move { from, to, patch } => {
                self.move_to(conn, from, to, patch, now, guard).await?
            }
            Commit::Delete { key } => {
                sqlx::query(&self.inner.sql.delete)
                    .bind(key.as_bytes().as_slice())
                    .bind(guard.deadline_ms)
                    .bind(guard.lock_ms)
                    .bind(self.end_code(key))
                    .execute(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
                CommitOutcome::Applied
            }
        })
    }

    pub(super) async fn create(
        &self,
        conn: &mut PgConnection,
        key: &StoreKey,
        record: &Record,
        now: i64,
        guard: Guard,
    ) -> Result<CommitOutcome, StoreError> {
        let row = NewRow::encode(record)?;
        let (max, evict) = self.inner.settings.limit_args();
        let answer: String = sqlx::query_scalar(&self.inner.sql.create)
            .bind(key.as_bytes().as_slice())
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
            .bind(max)
            .bind(evict)
            .bind(row.meta)
            .bind(guard.deadline_ms)
            .bind(guard.lock_ms)
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        outcome(&answer)
    }

    pub(super) async fn patch(
        &self,
        conn: &mut PgConnection,
        key: &StoreKey,
        patch: &Patch,
        now: i64,
        guard: Guard,
    ) -> Result<CommitOutcome, StoreError> {
        let args = PatchArgs::encode(patch)?;
        let sets = args.sets_object();
        let admits = args.principal.index_key().is_some() && self.inner.settings.limit.is_some();
        if !admits {
            let updated = bind_patch(sqlx::query(&self.inner.sql.patch), key, now, &args, &sets)
                .bind(args.meta.clone())
                .bind(guard.deadline_ms)
                .bind(guard.lock_ms)
                .fetch_optional(&mut *conn)
                .await
                .map_err(from_sqlx)?;
            return Ok(if updated.is_some() {
                CommitOutcome::Applied
            } else {
                CommitOutcome::Missing
            });
        }
        let (max, evict) = self.inner.settings.limit_args();
        let row = bind_patch(
            sqlx::query(&self.inner.sql.patch_admitting),
            key,
            now,
            &args,
            &sets,
        )
        .bind(max)
        .bind(evict)
        .bind(args.meta.clone())
        .bind(guard.deadline_ms)
        .bind(guard.lock_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
        outcome(&row.try_get::<String, _>(0).map_err(from_sqlx)?)
    }

    pub(super) async fn move_to(
        &self,
        conn: &mut PgConnection,
        from: &StoreKey,
        to: &StoreKey,
        patch: &Patch,
        now: i64,
        guard: Guard,
    ) -> Result<CommitOutcome, StoreError> {
        let args = PatchArgs::encode(patch)?;
        let sets = args.sets_object();
        let (max, evict) = self.inner.settings.limit_args();
        let answer: Result<String, _> = sqlx::query_scalar(&self.inner.sql.move_to)
            .bind(from.as_bytes().as_slice())
            .bind(now)
            .bind(to.as_bytes().as_slice())
            .bind(args.last_seen)
            .bind(args.expires_at)
            .bind(&args.removes)
            .bind(&sets)
            .bind(args.principal.mode())
            .bind(args.principal.index_key())
            .bind(args.principal.json())
            .bind(args.flash.is_some())
            .bind(args.flash.clone().flatten())
            .bind(max)
            .bind(evict)
            .bind(args.meta.clone())
            .bind(guard.deadline_ms)
            .bind(guard.lock_ms)
            .fetch_one(&mut *conn)
            .await;
        match answer {
            Ok(answer) => outcome(&answer),
            // The target was taken after the statement's snapshot: the statement failed,
            // so the source row is still there.
            Err(err) if raised(&err, KEY_TAKEN) => Ok(CommitOutcome::Collision),
            Err(err) => Err(from_sqlx(err)),
        }
    }

    pub(super) async fn update_in(
        &self,
        conn: &mut PgConnection,
        key: &StoreKey,
        field: &str,
        update: Update,
        now: i64,
        guard: Guard,
    ) -> Result<UpdateOutcome, StoreError> {
        match update {
            Update::Increment { by } => {
                let value: Option<Option<String>> = sqlx::query_scalar(&self.inner.sql.increment)
                    .bind(key.as_bytes().as_slice())
                    .bind(now)
                    .bind(field)
                    .bind(by)
                    .bind(guard.deadline_ms)
                    .bind(guard.lock_ms)
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
                let row = sqlx::query(&self.inner.sql.compare_and_set)
                    .bind(key.as_bytes().as_slice())
                    .bind(now)
                    .bind(field)
                    .bind(expected_text)
                    .bind(new_text)
                    .bind(guard.deadline_ms)
                    .bind(guard.lock_ms)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
                let live: bool = row.try_get(0).map_err(from_sqlx)?;
                let applied: bool = row.try_get(1).map_err(from_sqlx)?;
                let current: Option<String> = row.try_get(2).map_err(from_sqlx)?;
                Ok(match (live, applied) {
                    (false, _) => UpdateOutcome::Missing,
                    (true, true) => UpdateOutcome::Applied(new),
                    (true, false) => UpdateOutcome::Conflict(parse_value(current.as_deref())?),
                })
            }
        }
    }
}

type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds $1 to $11 of a patch statement (see `Statements`).
fn bind_patch<'q>(
    query: Query<'q>,
    key: &'q StoreKey,
    now: i64,
    args: &'q PatchArgs,
    sets: &'q str,
) -> Query<'q> {
    query
        .bind(key.as_bytes().as_slice())
        .bind(now)
        .bind(args.last_seen)
        .bind(args.expires_at)
        .bind(&args.removes)
        .bind(sets)
        .bind(args.principal.mode())
        .bind(args.principal.index_key())
        .bind(args.principal.json())
        .bind(args.flash.is_some())
        .bind(args.flash.clone().flatten())
}
