//! The steps of each [`PostgresStore`](super::PostgresStore) write inside its transaction:
//! one statement each (a create, a patch, a move, an atomic update), after the principal's
//! advisory lock when the commit may add a session to a principal under a limit.

use sqlx::postgres::{PgConnection, Postgres};
use sqlx::Row;

use super::{from_sqlx, lock_id, PostgresStore};
use crate::error::{StoreError, StoreErrorKind};
use crate::record::{Patch, Record};
use crate::store::sql::{json, parse_value, NewRow, PatchArgs};
use crate::store::{CommitOutcome, Update, UpdateOutcome};
use crate::token::StoreKey;

fn outcome(answer: &str) -> Result<CommitOutcome, StoreError> {
    match answer {
        "applied" => Ok(CommitOutcome::Applied),
        "collision" => Ok(CommitOutcome::Collision),
        "missing" => Ok(CommitOutcome::Missing),
        "limit" => Err(StoreError::from_kind(StoreErrorKind::LimitReached)),
        other => Err(StoreError::new(
            StoreErrorKind::Unavailable,
            format!("unexpected answer from the commit statement: {other:?}"),
        )),
    }
}

impl PostgresStore {
    /// Takes the principal's lock when `principal` may gain a session under a limit.
    pub(super) async fn lock_principal(
        &self,
        conn: &mut PgConnection,
        principal: Option<&str>,
    ) -> Result<(), StoreError> {
        match principal {
            Some(p) if self.inner.settings.limit.is_some() => {
                let id = lock_id(&["principal", &self.inner.settings.table.qualified(), p]);
                self.lock(conn, id).await
            }
            _ => Ok(()),
        }
    }

    pub(super) async fn create(
        &self,
        conn: &mut PgConnection,
        key: &StoreKey,
        record: &Record,
        now: i64,
    ) -> Result<CommitOutcome, StoreError> {
        let row = NewRow::encode(record)?;
        self.lock_principal(conn, row.principal.as_deref()).await?;
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
    ) -> Result<CommitOutcome, StoreError> {
        let args = PatchArgs::encode(patch)?;
        let sets = args.sets_object();
        let admits = args.principal.index_key().is_some() && self.inner.settings.limit.is_some();
        if !admits {
            let updated = bind_patch(sqlx::query(&self.inner.sql.patch), key, now, &args, &sets)
                .bind(args.meta.clone())
                .fetch_optional(&mut *conn)
                .await
                .map_err(from_sqlx)?;
            return Ok(if updated.is_some() {
                CommitOutcome::Applied
            } else {
                CommitOutcome::Missing
            });
        }
        self.lock_principal(conn, args.principal.index_key())
            .await?;
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
    ) -> Result<CommitOutcome, StoreError> {
        let args = PatchArgs::encode(patch)?;
        let sets = args.sets_object();
        self.lock_principal(conn, args.principal.index_key())
            .await?;
        let (max, evict) = self.inner.settings.limit_args();
        let answer: String = sqlx::query_scalar(&self.inner.sql.move_to)
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
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        outcome(&answer)
    }

    pub(super) async fn update_in(
        &self,
        conn: &mut PgConnection,
        key: &StoreKey,
        field: &str,
        update: Update,
        now: i64,
    ) -> Result<UpdateOutcome, StoreError> {
        match update {
            Update::Increment { by } => {
                let value: Option<Option<String>> = sqlx::query_scalar(&self.inner.sql.increment)
                    .bind(key.as_bytes().as_slice())
                    .bind(now)
                    .bind(field)
                    .bind(by)
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
