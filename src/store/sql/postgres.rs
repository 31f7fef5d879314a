//! [`PostgresStore`]: sessions in PostgreSQL, through the application's own `sqlx::PgPool`.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use sqlx::postgres::{PgConnection, PgPool, PgRow, Postgres};
use sqlx::{Executor as _, Row, Transaction};

use super::schema;
use super::{key_of, principal_id, store_error, Settings, StoredRow, Table, SWEEP_BATCH};
use crate::clock::Clock;
use crate::error::{ConfigError, StoreError, StoreErrorKind};
use crate::record::{Record, SessionInfo};
use crate::store::{
    Commit, CommitOutcome, LimitPolicy, Lookup, SessionStore, Update, UpdateOutcome,
};
use crate::token::StoreKey;

mod statements;
mod writes;

use statements::Statements;

#[doc = concat!(
    "A session store in PostgreSQL, on the `sqlx::PgPool` the application already has:\n",
    "every instance of a service shares its sessions through the database.\n",
    "\n",
    "# Example\n",
    "\n",
    "```no_run\n",
    "use axum_tessera::store::{LimitPolicy, PostgresStore};\n",
    "use axum_tessera::{Key, SessionConfig, SessionLayer};\n",
    "\n",
    "# async fn run() -> Result<(), Box<dyn std::error::Error>> {\n",
    "let pool = sqlx::PgPool::connect(\"postgres://app@localhost/app\").await?;\n",
    "let store = PostgresStore::new(pool)\n",
    "    .table(\"auth.sessions\")?\n",
    "    .command_timeout(std::time::Duration::from_millis(500))\n",
    "    .max_sessions_per_principal(10, LimitPolicy::EvictOldest);\n",
    "store.migrate().await?;\n",
    "let _sweeper = store.spawn_sweeper(std::time::Duration::from_secs(300));\n",
    "let layer = SessionLayer::new(SessionConfig::web(Key::generate())).with_store(store);\n",
    "# let _ = layer; Ok(()) }\n",
    "```\n",
    "\n",
    "TLS to the server is sqlx's: enable one of its TLS features (`tls-rustls-ring`,\n",
    "`tls-native-tls`, ...) in the application's own `sqlx` dependency and ask for it in\n",
    "the connection URL (`sslmode=require`).\n",
    "\n",
    "# Schema\n",
    "\n",
    "[`PostgresStore::migrate`] creates the table and its indexes when they are missing\n",
    "(shown for the default table name; [`PostgresStore::table`] renames both):\n",
    "\n",
    "```sql\n",
    include_str!("postgres.sql"),
    "```\n",
    "\n",
    "Sessions are filed under [`StoreKey`], the SHA-256 of their ID, so a dump of the table\n",
    "holds no usable session.\n",
    "\n",
    "# Cost and guarantees\n",
    "\n",
    "A load is one `SELECT`. A commit is one transaction holding one statement: a patch is an\n",
    "`UPDATE` whose `(data - removed) || set` changes only the keys it names, so concurrent\n",
    "requests changing different keys all survive; a create is an\n",
    "`INSERT ... ON CONFLICT ... WHERE expired` (create-only, but an expired row under the key\n",
    "is replaced); a move deletes the old row and inserts the new one in one statement, and\n",
    "commits only when both happened. A login that may meet the per-principal limit first\n",
    "takes a transaction-scoped advisory lock on the principal, so concurrent logins cannot\n",
    "both take the last place. [`update`](SessionStore::update) changes one key in SQL\n",
    "(increment, or compare-and-set under a row lock). Every statement compares\n",
    "`expires_at` with the store's clock, so an expired row is never served before\n",
    "[`PostgresStore::sweep`] removes it.\n",
    "\n",
    "# Failures\n",
    "\n",
    "Every operation is bounded by [`PostgresStore::command_timeout`] (default 2 seconds),\n",
    "waiting for a pool connection included. Each write transaction opens with\n",
    "`SET LOCAL statement_timeout` and `SET LOCAL idle_in_transaction_session_timeout` at\n",
    "the same value, so the server itself aborts a statement the client stopped waiting\n",
    "for and never keeps its locks. A write cut off by the timeout is not applied later: its\n",
    "transaction has not sent `COMMIT`, and sqlx rolls it back before the connection is\n",
    "used again. Only a timeout while the `COMMIT` itself is in flight leaves the outcome\n",
    "unknown (the store answers [`StoreErrorKind::Timeout`]). A row that does not decode is\n",
    "reported as [`StoreErrorKind::Corrupt`]; [`Commit::Delete`] removes it like any other.\n",
)]
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    settings: Settings,
    sql: Statements,
    /// `BEGIN` and the `SET LOCAL` timeouts: one simple-query message.
    begin: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.inner.settings.table.qualified())
            .field("timeout", &self.inner.settings.timeout)
            .field("per_principal", &self.inner.settings.limit)
            .finish_non_exhaustive()
    }
}

fn db_kind(db: &dyn sqlx::error::DatabaseError) -> StoreErrorKind {
    let code = db.code().unwrap_or_default();
    match code.as_ref() {
        // query_canceled (our statement_timeout), lock_not_available.
        "57014" | "55P03" => StoreErrorKind::Timeout,
        // untranslatable_character (`\u0000` in JSON), character_not_in_repertoire (NUL in
        // text): values PostgreSQL cannot hold.
        "22P05" | "22021" => StoreErrorKind::InvalidValue,
        // Any other data exception: a stored value the statement cannot work with.
        c if c.starts_with("22") => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Unavailable,
    }
}

fn from_sqlx(err: sqlx::Error) -> StoreError {
    store_error(err, db_kind)
}

fn stored_row(row: &PgRow) -> Result<StoredRow, sqlx::Error> {
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

/// A 64-bit advisory lock ID for `what` (the table's, or a principal's in it).
fn lock_id(parts: &[&str]) -> i64 {
    let mut hash = Sha256::new().chain_update(b"axum-tessera\0");
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl PostgresStore {
    /// A store on `pool`, in the table `tessera_sessions`, with a 2-second command timeout,
    /// on the system clock, with no per-principal limit. Call
    /// [`PostgresStore::migrate`] once to create the table.
    pub fn new(pool: PgPool) -> Self {
        Self::build(pool, Settings::default())
    }

    fn build(pool: PgPool, settings: Settings) -> Self {
        let ms = settings.timeout.as_millis().clamp(1, i32::MAX as u128);
        Self {
            inner: Arc::new(Inner {
                sql: Statements::new(&settings.table),
                begin: format!(
                    "BEGIN; SET LOCAL statement_timeout = {ms}; \
                     SET LOCAL idle_in_transaction_session_timeout = {ms}"
                ),
                pool,
                settings,
            }),
        }
    }

    fn with_settings(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.inner.settings.clone();
        change(&mut settings);
        Self::build(self.inner.pool.clone(), settings)
    }

    /// Keeps sessions in `name` (default `tessera_sessions`): a table name, or
    /// `schema.table` for a table in another schema (which must exist). Indexes are named
    /// after the table. PostgreSQL folds the name to lower case.
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
    /// Write transactions also tell the server to abort their statements past it.
    #[must_use]
    pub fn command_timeout(self, timeout: Duration) -> Self {
        self.with_settings(|s| s.timeout = timeout)
    }

    /// Reads time from `clock` (default: the system clock) for every expiry decision, so
    /// the database's own clock never matters. Give it the same clock as the layer's
    /// [`SessionConfig::clock`](crate::SessionConfig::clock).
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

    /// Creates the table and its indexes if they do not exist (see the schema above), in one
    /// transaction under an advisory lock, so instances starting together do not race.
    /// Safe to run at every start-up.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] when the server refuses the DDL (no `CREATE`
    /// privilege, missing schema); [`StoreErrorKind::Timeout`] past the command timeout.
    // Spelled as `impl Future + Send` so the compiler proves `Send` here, where sqlx's
    // executor lifetimes are concrete, rather than in every caller.
    pub fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send + '_ {
        let ddl = schema::postgres(&self.inner.settings.table);
        let lock = lock_id(&["migrate", &self.inner.settings.table.qualified()]);
        self.write(move |mut tx| async move {
            self.lock(&mut tx, lock).await?;
            // Several statements, no arguments: one simple-query message.
            (&mut *tx).execute(ddl.as_str()).await.map_err(from_sqlx)?;
            Ok((tx, (), true))
        })
    }

    /// Deletes every expired row now (in transactions of at most 1000 rows, found through
    /// the `expires_at` index; rows another sweeper is deleting are skipped) and answers
    /// how many went.
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

    /// Runs [`PostgresStore::sweep`] every `period` on the current Tokio runtime until every
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
                match (PostgresStore { inner }).sweep().await {
                    Ok(removed) => tracing::debug!(removed, "postgres store sweep"),
                    Err(error) => tracing::warn!(%error, "postgres store sweep failed"),
                }
            }
        })
    }

    /// Opens a write transaction with the `SET LOCAL` timeouts, on a task of its own: sqlx
    /// does not roll back a `BEGIN` whose caller went away before its answer, and would
    /// hand the open transaction to the pool's next user. On its own task the `BEGIN`
    /// always completes, and if our caller has gone, dropping the transaction rolls it back.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let pool = self.inner.pool.clone();
        let begin = self.inner.begin.clone();
        tokio::spawn(async move { pool.begin_with(begin).await })
            .await
            .map_err(|e| StoreError::new(StoreErrorKind::Unavailable, e))?
            .map_err(from_sqlx)
    }

    /// Runs `op` in one write transaction under the command timeout; `op` answers the
    /// transaction back, its result, and whether to commit (otherwise the transaction is
    /// rolled back and writes nothing).
    fn write<'a, T, F, Fut>(&'a self, op: F) -> impl Future<Output = Result<T, StoreError>> + 'a
    where
        T: 'a,
        F: FnOnce(Transaction<'static, Postgres>) -> Fut + 'a,
        Fut: Future<Output = Result<(Transaction<'static, Postgres>, T, bool), StoreError>> + 'a,
    {
        self.inner.settings.bounded(async move {
            let tx = self.begin().await?;
            let (tx, value, commit) = op(tx).await?;
            if commit {
                tx.commit().await.map_err(from_sqlx)?;
            }
            // Otherwise dropping `tx` queues its ROLLBACK, sent before the connection's
            // next use.
            Ok(value)
        })
    }

    /// Serialises this transaction with every other one that takes `id`, until it ends.
    async fn lock(&self, conn: &mut PgConnection, id: i64) -> Result<(), StoreError> {
        sqlx::query(&self.inner.sql.lock)
            .bind(id)
            .execute(conn)
            .await
            .map_err(from_sqlx)?;
        Ok(())
    }

    async fn lookup_row(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let now = self.inner.settings.now();
        let row = sqlx::query(&self.inner.sql.lookup)
            .bind(key.as_bytes().as_slice())
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

impl SessionStore for PostgresStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let now = self.inner.settings.now();
        self.inner
            .settings
            .bounded(async {
                let row = sqlx::query(&self.inner.sql.load)
                    .bind(key.as_bytes().as_slice())
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
        self.write(|mut tx| async move {
            let outcome = match &commit {
                Commit::Create { key, record } => self.create(&mut tx, key, record, now).await?,
                Commit::Patch { key, patch } => self.patch(&mut tx, key, patch, now).await?,
                Commit::Move { from, to, patch } => {
                    self.move_to(&mut tx, from, to, patch, now).await?
                }
                Commit::Delete { key } => {
                    sqlx::query(&self.inner.sql.delete)
                        .bind(key.as_bytes().as_slice())
                        .execute(&mut *tx)
                        .await
                        .map_err(from_sqlx)?;
                    CommitOutcome::Applied
                }
            };
            Ok((tx, outcome, outcome == CommitOutcome::Applied))
        })
        .await
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
        self.write(|mut tx| async move {
            // Under the principal's lock when a limit is set, so a login that evicts and
            // this delete never take the same rows in different orders (a deadlock).
            self.lock_principal(&mut tx, Some(principal)).await?;
            let live: i64 = sqlx::query_scalar(&self.inner.sql.delete_sessions_of)
                .bind(principal)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            Ok((tx, u64::try_from(live).unwrap_or(0), true))
        })
        .await
    }
}
