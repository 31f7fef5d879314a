//! [`SqliteStore`]: sessions in an SQLite database, through the application's own
//! `sqlx::SqlitePool`.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::sqlite::{Sqlite, SqlitePool, SqliteRow};
use sqlx::{Executor as _, Row, Transaction};

use super::schema;
use super::{key_of, principal_id, store_error, Settings, StoredRow, Table, SWEEP_BATCH};
use crate::clock::Clock;
use crate::error::{ConfigError, StoreError, StoreErrorKind};
use crate::live::{EndReason, Registry};
use crate::record::{Record, SessionInfo};
use crate::store::{
    Commit, CommitOutcome, LimitPolicy, Lookup, SessionStore, Update, UpdateOutcome,
};
use crate::token::StoreKey;

mod statements;
mod writes;

use statements::Statements;

#[doc = concat!(
    "A session store in an SQLite database: the persistent store for one machine, on the\n",
    "`sqlx::SqlitePool` the application already has.\n",
    "\n",
    "# Example\n",
    "\n",
    "```\n",
    "use axum_tessera::store::{LimitPolicy, SqliteStore};\n",
    "use axum_tessera::{Key, SessionConfig, SessionLayer};\n",
    "use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};\n",
    "\n",
    "# #[tokio::main(flavor = \"current_thread\")]\n",
    "# async fn main() -> Result<(), Box<dyn std::error::Error>> {\n",
    "# let dir = std::env::temp_dir().join(format!(\"tessera-doc-{}\", std::process::id()));\n",
    "# std::fs::create_dir_all(&dir)?;\n",
    "# let path = dir.join(\"sessions.db\");\n",
    "let options = SqliteConnectOptions::new()\n",
    "    .filename(&path)\n",
    "    .create_if_missing(true)\n",
    "    .journal_mode(SqliteJournalMode::Wal);\n",
    "let pool = SqlitePool::connect_with(options).await?;\n",
    "let store = SqliteStore::new(pool)\n",
    "    .table(\"sessions\")?\n",
    "    .max_sessions_per_principal(5, LimitPolicy::EvictOldest);\n",
    "store.migrate().await?;\n",
    "let _sweeper = store.spawn_sweeper(std::time::Duration::from_secs(300));\n",
    "let layer = SessionLayer::new(SessionConfig::web(Key::generate())).with_store(store);\n",
    "# let _ = layer; std::fs::remove_dir_all(&dir)?;\n",
    "# Ok(()) }\n",
    "```\n",
    "\n",
    "# Schema\n",
    "\n",
    "[`SqliteStore::migrate`] creates the table and its indexes when they are missing (shown\n",
    "for the default table name; [`SqliteStore::table`] renames both):\n",
    "\n",
    "```sql\n",
    include_str!("sqlite.sql"),
    "```\n",
    "\n",
    "Sessions are filed under [`StoreKey`], the SHA-256 of their ID, so a copy of the\n",
    "database holds no usable session.\n",
    "\n",
    "# Cost and guarantees\n",
    "\n",
    "A load is one `SELECT`. Every write (commit, [`update`](SessionStore::update), logout\n",
    "everywhere, sweep) is one `BEGIN IMMEDIATE` transaction: SQLite serialises writers, so\n",
    "create-only inserts, patches that never resurrect, moves (the row is re-keyed in place)\n",
    "and the per-principal limit are race-free, also between processes sharing the file. A\n",
    "patch is one `UPDATE` whose `json_set` / `json_remove` change only the data keys it\n",
    "names, so concurrent requests changing different keys all survive. Every statement\n",
    "compares `expires_at` with the store's clock, so an expired row is never served before\n",
    "[`SqliteStore::sweep`] removes it. Data keys may hold any character (the JSON paths\n",
    "escape them, which needs SQLite 3.45 or newer, as sqlx's `sqlite` feature bundles).\n",
    "\n",
    "# Live sessions\n",
    "\n",
    "Like a `MemoryStore`, the store tells the open [`LiveSession`](crate::live::LiveSession)\n",
    "handles of its sessions (keyed by store key) of each commit it applies: a change of\n",
    "scopes or a rotation, a logout or destroy, a logout everywhere, a login as another\n",
    "principal, an eviction by the per-principal limit. It knows only its own commits, those\n",
    "of this process: a handle whose session another process on the same file ends learns of\n",
    "it at the session's expiry.\n",
    "\n",
    "# Failures\n",
    "\n",
    "Every operation is bounded by [`SqliteStore::command_timeout`] (default 2 seconds). A\n",
    "transaction cut off by the timeout is rolled back, never committed later: sqlx's\n",
    "connection worker rolls back a transaction whose caller has gone. Only a timeout while\n",
    "`COMMIT` itself runs leaves the outcome unknown. Keep the pool's `busy_timeout` (sqlx's\n",
    "default: 5 seconds) at or above the command timeout, and use WAL mode so loads do not\n",
    "wait for writers. An in-memory database (`sqlite::memory:`) is private to each\n",
    "connection, so a pool of several would keep several stores: use a file. A row that\n",
    "does not decode is reported as\n",
    "[`StoreErrorKind::Corrupt`]; [`Commit::Delete`] removes it like any other.\n",
)]
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    settings: Settings,
    sql: Statements,
    /// The live handles of the sessions this store (this process) writes: told of every
    /// commit it makes. Commits by another process on the same file are not seen.
    live: Arc<Registry>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.inner.settings.table.qualified())
            .field("timeout", &self.inner.settings.timeout)
            .field("per_principal", &self.inner.settings.limit)
            .finish_non_exhaustive()
    }
}

fn db_kind(db: &dyn sqlx::error::DatabaseError) -> StoreErrorKind {
    let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
    match code {
        // SQLITE_BUSY, SQLITE_LOCKED: the write lock was not to be had within busy_timeout.
        5 | 6 => StoreErrorKind::Timeout,
        1 if db.message().contains("malformed JSON") => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Unavailable,
    }
}

fn from_sqlx(err: sqlx::Error) -> StoreError {
    store_error(err, db_kind)
}

fn stored_row(row: &SqliteRow) -> Result<StoredRow, sqlx::Error> {
    Ok(StoredRow {
        created: row.try_get(0)?,
        last_seen: row.try_get(1)?,
        expires_at: row.try_get(2)?,
        principal_data: row.try_get(3)?,
        data: row.try_get(4)?,
        flash: row.try_get(5)?,
        user_agent: row.try_get(6)?,
        bound_user_agent: row.try_get(7)?,
        bound_ip: row.try_get(8)?,
        meta: row.try_get(9)?,
    })
}

impl SqliteStore {
    /// A store on `pool`, in the table `tessera_sessions`, with a 2-second command timeout,
    /// on the system clock, with no per-principal limit. Call
    /// [`SqliteStore::migrate`] once to create the table.
    pub fn new(pool: SqlitePool) -> Self {
        Self::build(pool, Settings::default())
    }

    fn build(pool: SqlitePool, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                sql: Statements::new(&settings.table),
                pool,
                settings,
                live: Arc::default(),
            }),
        }
    }

    fn with_settings(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.inner.settings.clone();
        change(&mut settings);
        Self::build(self.inner.pool.clone(), settings)
    }

    /// Keeps sessions in `name` (default `tessera_sessions`): a table name, or
    /// `schema.table` for a table in an attached database. Indexes are named after it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTableName`] unless each part is an ASCII letter or `_`
    /// followed by letters, digits and `_`, at most 48 characters.
    pub fn table(self, name: &str) -> Result<Self, ConfigError> {
        let table = Table::parse(name)?;
        Ok(self.with_settings(|s| s.table = table))
    }

    /// Longest any store operation may take before it fails with
    /// [`StoreErrorKind::Timeout`] (default 2 seconds), waiting for a connection included.
    #[must_use]
    pub fn command_timeout(self, timeout: Duration) -> Self {
        self.with_settings(|s| s.timeout = timeout)
    }

    /// Reads time from `clock` (default: the system clock) for every expiry decision. Give
    /// it the same clock as the layer's [`SessionConfig::clock`](crate::SessionConfig::clock).
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        self.with_settings(|s| s.clock = Arc::new(clock))
    }

    /// Allows each principal at most `max` live sessions (at least 1; default: no limit); a
    /// login beyond it follows `policy`. "Oldest" means earliest login.
    #[must_use]
    pub fn max_sessions_per_principal(self, max: usize, policy: LimitPolicy) -> Self {
        self.with_settings(|s| s.limit = Some((max.max(1), policy)))
    }

    /// Creates the table and its indexes if they do not exist (see the schema above), in
    /// one transaction. Safe to run at every start-up.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] when the database refuses the DDL;
    /// [`StoreErrorKind::Timeout`] past the command timeout.
    // Spelled as `impl Future + Send` so the compiler proves `Send` here, where sqlx's
    // executor lifetimes are concrete, rather than in every caller.
    pub fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send + '_ {
        let ddl = schema::sqlite(&self.inner.settings.table);
        self.inner.settings.bounded(async move {
            let mut tx = self.begin().await?;
            // Several statements, no arguments: sqlx runs them one after the other.
            (&mut *tx).execute(ddl.as_str()).await.map_err(from_sqlx)?;
            tx.commit().await.map_err(from_sqlx)
        })
    }

    /// Deletes every expired row now (in transactions of at most 1000 rows, found through the
    /// `expires_at` index) and answers how many went.
    ///
    /// # Errors
    ///
    /// As any write: [`StoreErrorKind::Unavailable`] or [`StoreErrorKind::Timeout`] (per
    /// batch); the rows deleted by earlier batches stay deleted.
    pub fn sweep(&self) -> impl Future<Output = Result<u64, StoreError>> + Send + '_ {
        self.sweep_all()
    }

    async fn sweep_all(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let now = self.inner.settings.now();
            let deleted = self
                .write(|mut tx| async move {
                    let done = sqlx::query(&self.inner.sql.sweep)
                        .bind(now)
                        .bind(SWEEP_BATCH)
                        .execute(&mut *tx)
                        .await
                        .map_err(from_sqlx)?
                        .rows_affected();
                    Ok((tx, done, true))
                })
                .await?;
            total += deleted;
            if deleted < SWEEP_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Runs [`SqliteStore::sweep`] every `period` on the current Tokio runtime until every
    /// clone of the store is dropped. A failed sweep is logged at warn and retried at the
    /// next tick.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn_sweeper(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                match (SqliteStore { inner }).sweep().await {
                    Ok(removed) => tracing::debug!(removed, "sqlite store sweep"),
                    Err(error) => tracing::warn!(%error, "sqlite store sweep failed"),
                }
            }
        })
    }

    /// `BEGIN IMMEDIATE`: takes the write lock first, so a transaction that reads before it
    /// writes can neither race another writer nor fail to upgrade its lock.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(from_sqlx)
    }

    /// Runs `op` in one write transaction under the command timeout; `op` answers the
    /// transaction back, its result, and whether to commit (otherwise the transaction is
    /// rolled back and writes nothing).
    async fn write<'a, T, F, Fut>(&'a self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Transaction<'static, Sqlite>) -> Fut,
        Fut: Future<Output = Result<(Transaction<'static, Sqlite>, T, bool), StoreError>> + 'a,
    {
        self.inner
            .settings
            .bounded(async {
                let tx = self.begin().await?;
                let (tx, value, commit) = op(tx).await?;
                if commit {
                    tx.commit().await.map_err(from_sqlx)?;
                }
                // Otherwise dropping `tx` rolls it back.
                Ok(value)
            })
            .await
    }

    /// The registry of the live handles of this store's sessions.
    pub(crate) fn live_registry(&self) -> &Arc<Registry> {
        &self.inner.live
    }

    async fn lookup_row(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let now = self.inner.settings.now();
        let row = sqlx::query(&self.inner.sql.lookup)
            .bind(key.as_bytes().to_vec())
            .bind(now)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(from_sqlx)?;
        let Some(row) = row else {
            return Ok(Lookup::Missing);
        };
        let live: bool = row.try_get(10).map_err(from_sqlx)?;
        let record = stored_row(&row).map_err(from_sqlx)?.decode()?;
        Ok(if live {
            Lookup::Live(record)
        } else {
            Lookup::Expired(record)
        })
    }
}

impl SessionStore for SqliteStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let now = self.inner.settings.now();
        self.inner
            .settings
            .bounded(async {
                let row = sqlx::query(&self.inner.sql.load)
                    .bind(key.as_bytes().to_vec())
                    .bind(now)
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err(from_sqlx)?;
                row.map(|row| stored_row(&row).map_err(from_sqlx)?.decode())
                    .transpose()
            })
            .await
    }

    async fn lookup(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        self.inner.settings.bounded(self.lookup_row(key)).await
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let now = self.inner.settings.now();
        let commit = &commit;
        let (outcome, evicted) = self
            .write(|mut tx| async move {
                let mut evicted = Vec::new();
                let ev = &mut evicted;
                let outcome = match commit {
                    Commit::Create { key, record } => {
                        self.create(&mut tx, key, record, now, ev).await?
                    }
                    Commit::Patch { key, patch } => {
                        self.patch(&mut tx, key, patch, now, ev).await?
                    }
                    Commit::Move { from, to, patch } => {
                        self.move_to(&mut tx, from, to, patch, now, ev).await?
                    }
                    Commit::Delete { key } => {
                        sqlx::query(&self.inner.sql.delete)
                            .bind(key.as_bytes().to_vec())
                            .execute(&mut *tx)
                            .await
                            .map_err(from_sqlx)?;
                        CommitOutcome::Applied
                    }
                };
                Ok((tx, (outcome, evicted), outcome == CommitOutcome::Applied))
            })
            .await?;
        if outcome == CommitOutcome::Applied {
            self.notify(commit, &evicted);
        }
        Ok(outcome)
    }

    async fn update(
        &self,
        key: &StoreKey,
        field: &str,
        update: Update,
    ) -> Result<UpdateOutcome, StoreError> {
        let now = self.inner.settings.now();
        self.write(|mut tx| async move {
            let outcome = self.update_in(&mut tx, key, field, update, now).await?;
            let applied = matches!(outcome, UpdateOutcome::Applied(_));
            Ok((tx, outcome, applied))
        })
        .await
    }

    async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let now = self.inner.settings.now();
        self.inner
            .settings
            .bounded(async {
                let rows = sqlx::query(&self.inner.sql.sessions_of)
                    .bind(principal)
                    .bind(now)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(from_sqlx)?;
                rows.iter()
                    .map(|row| {
                        let key: Vec<u8> = row.try_get(0).map_err(from_sqlx)?;
                        Ok(SessionInfo::new(
                            key_of(&key)?,
                            row.try_get(1).map_err(from_sqlx)?,
                            row.try_get(2).map_err(from_sqlx)?,
                            row.try_get(3).map_err(from_sqlx)?,
                            Some(principal_id(principal).to_owned()),
                            row.try_get(4).map_err(from_sqlx)?,
                        ))
                    })
                    .collect()
            })
            .await
    }

    async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
        let now = self.inner.settings.now();
        let gone: Vec<(Vec<u8>, bool)> = self
            .write(|mut tx| async move {
                let gone = sqlx::query_as(&self.inner.sql.delete_sessions_of)
                    .bind(principal)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(from_sqlx)?;
                Ok((tx, gone, true))
            })
            .await?;
        for (key, _) in &gone {
            if let Ok(key) = key_of(key) {
                self.inner.live.ended(key, EndReason::LoggedOutEverywhere);
            }
        }
        Ok(gone.iter().filter(|(_, live)| *live).count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Patch;
    use crate::token::SessionId;
    use serde_json::json;
    use sqlx::sqlite::SqliteConnectOptions;

    /// Data keys a JSON path could misread.
    const AWKWARD: [&str; 11] = [
        "a\"b",
        "a\\b",
        "a.b",
        "a[0]",
        "",
        "ü",
        "line\nbreak",
        "$",
        "'",
        "\"",
        "\\\"",
    ];

    async fn store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "tessera-sqlite-unit-{}-{}",
            std::process::id(),
            SessionId::generate().short()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.join("s.db"))
            .create_if_missing(true);
        let store = SqliteStore::new(SqlitePool::connect_with(options).await.unwrap());
        store.migrate().await.unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn awkward_data_keys_are_patched_updated_and_removed_exactly() {
        let (store, dir) = store().await;
        let key = SessionId::generate().store_key();
        let mut record = Record::new(1, i64::MAX);
        for (i, k) in AWKWARD.iter().enumerate() {
            record.data_mut().insert((*k).to_owned(), json!(i));
        }
        record.data_mut().insert("other".into(), json!("kept"));
        let outcome = store
            .commit(Commit::Create {
                key,
                record: record.clone(),
            })
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Applied);
        assert_eq!(store.load(&key).await.unwrap().as_ref(), Some(&record));

        let mut patch = Patch::new(2, i64::MAX);
        for (i, k) in AWKWARD.iter().enumerate() {
            if i % 2 == 0 {
                patch.set((*k).to_owned(), json!({ "set": i, "nested": {"k": null} }));
            } else {
                patch.remove((*k).to_owned());
            }
        }
        store
            .commit(Commit::Patch {
                key,
                patch: patch.clone(),
            })
            .await
            .unwrap();
        patch.apply(&mut record);
        assert_eq!(store.load(&key).await.unwrap().as_ref(), Some(&record));

        for k in AWKWARD {
            let outcome = store
                .update(&key, k, Update::Increment { by: 3 })
                .await
                .unwrap();
            assert_eq!(outcome, UpdateOutcome::Applied(Some(json!(3))), "{k:?}");
            let cas = Update::CompareAndSet {
                expected: Some(json!(3)),
                new: None,
            };
            let outcome = store.update(&key, k, cas).await.unwrap();
            assert_eq!(outcome, UpdateOutcome::Applied(None), "{k:?}");
            record.data_mut().remove(k);
        }
        assert_eq!(store.load(&key).await.unwrap().as_ref(), Some(&record));
        assert_eq!(record.data().len(), 1, "only `other` is left");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn increments_saturate_and_replace_what_is_not_an_integer() {
        let (store, dir) = store().await;
        let key = SessionId::generate().store_key();
        let mut record = Record::new(1, i64::MAX);
        for (k, v) in [
            ("max", json!(i64::MAX - 1)),
            ("min", json!(i64::MIN + 1)),
            ("float", json!(1.5)),
            ("huge", json!(u64::MAX)),
            ("text", json!("7")),
        ] {
            record.data_mut().insert(k.into(), v);
        }
        store.commit(Commit::Create { key, record }).await.unwrap();
        for (k, by, expect) in [
            ("max", 5, json!(i64::MAX)),
            ("min", -5, json!(i64::MIN)),
            ("float", 2, json!(2)),
            ("huge", 2, json!(2)),
            ("text", 2, json!(2)),
        ] {
            let outcome = store
                .update(&key, k, Update::Increment { by })
                .await
                .unwrap();
            assert_eq!(outcome, UpdateOutcome::Applied(Some(expect)), "{k}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
