//! [`PostgresStore`]: sessions in PostgreSQL, through the application's own `sqlx::PgPool`.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgRow, Postgres};
use sqlx::{Executor as _, Row, Transaction};

use super::schema;
use super::{key_of, principal_id, store_error, Settings, StoredRow, Table, SWEEP_BATCH};
use crate::clock::Clock;
use crate::error::{ConfigError, StoreError, StoreErrorKind};
use crate::live::Registry;
use crate::record::{Record, SessionInfo};
use crate::store::{
    Commit, CommitOutcome, LimitPolicy, Lookup, SessionStore, Update, UpdateOutcome,
};
use crate::token::StoreKey;

mod notify;
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
    "A load is one `SELECT`, and a commit one statement in its own implicit transaction:\n",
    "one round trip each (a route that never touches its session costs none). A patch is an\n",
    "`UPDATE` whose `(data - removed) || set` changes only the keys it names, so concurrent\n",
    "requests changing different keys all survive; a create is an\n",
    "`INSERT ... ON CONFLICT ... WHERE expired` (create-only, but an expired row under the key\n",
    "is replaced); a move deletes the old row and inserts the new one in one statement (data-\n",
    "modifying CTEs), which fails as a whole if the new key was taken meanwhile; a logout is\n",
    "one `DELETE`. [`update`](SessionStore::update) changes one key in SQL (increment, or\n",
    "compare-and-set under a row lock), also in one statement.\n",
    "\n",
    "The exception is a commit that may add a session to a principal under\n",
    "[`PostgresStore::max_sessions_per_principal`]: it first takes a transaction-scoped\n",
    "advisory lock on the principal, so concurrent logins cannot both take the last place,\n",
    "and its statement needs a snapshot taken after that lock. It is one transaction of\n",
    "four round trips: `BEGIN` with the timeouts in one simple-query message, the lock,\n",
    "the statement, `COMMIT` (the lock is its own statement so that a lock wait that times\n",
    "out rolls back like any failed statement).\n",
    "[`delete_sessions_of`](SessionStore::delete_sessions_of) under a limit takes the same\n",
    "lock.\n",
    "\n",
    "Every statement compares `expires_at` with the store's clock, so an expired row is\n",
    "never served before [`PostgresStore::sweep`] removes it.\n",
    "\n",
    "A pool built with sqlx's `test_before_acquire(true)` (its default) pings each\n",
    "connection it hands out, one more round trip before every load and every commit;\n",
    "`PgPoolOptions::new().test_before_acquire(false)` saves it (a broken connection then\n",
    "fails one call with [`StoreErrorKind::Unavailable`] and is replaced).\n",
    "\n",
    "# Live sessions\n",
    "\n",
    "The store notifies [`LiveSession`](crate::live::LiveSession) handles on every\n",
    "instance: each commit statement that ends a session (logout, destroy, logout\n",
    "everywhere, ended from another device, per-principal limit), moves it (a rotation) or\n",
    "changes its principal or scopes also calls `pg_notify` in the same statement, so a\n",
    "notice goes out exactly when the change commits (PostgreSQL delivers `NOTIFY` at\n",
    "commit; a statement that fails notifies nobody), and a commit stays one statement. The\n",
    "channel is the table's qualified name in lower case followed by `_live`\n",
    "(`tessera_sessions_live`, `auth.sessions_live`); a name longer than 63 bytes is cut to\n",
    "54 and followed by `_` and 8 hex digits of its SHA-256. Notices carry store keys (hex)\n",
    "and the cause, never session IDs, tokens or principals, in the wording `RedisStore`\n",
    "publishes; a logout everywhere of many sessions is sent 100 keys a notice (a payload\n",
    "stays under PostgreSQL's 8000 bytes). For a move the listener reads the session's\n",
    "principal, scopes and last use from the table: `NOTIFY` needs no privilege, so any\n",
    "role that can connect could send a notice, and one forged can end handles early but\n",
    "grants no scopes and keeps none alive. Refreshes are not notified: at its idle\n",
    "deadline a handle looks its session up once and ends only if no instance used it\n",
    "meanwhile.\n",
    "\n",
    "Each store (shared by its clones) listens on one connection, opened with its pool's\n",
    "connect options in a pool of its own (it takes none of the application's\n",
    "connections), named `tessera-live` (`application_name`), when its first handle\n",
    "registers; with no handle ever opened, nothing listens. Whenever it starts listening (the\n",
    "first time, and after a lost connection, retried with a backoff of at most a second), it\n",
    "re-validates every open handle of the process in one statement (`WHERE key = ANY($1)`),\n",
    "then applies the notices that reached it meanwhile: a session gone during the gap ends\n",
    "its handles as [`EndReason::Deleted`](crate::live::EndReason::Deleted) (the table keeps\n",
    "no cause; a notice that did arrive gives the real one), a change of principal ends them,\n",
    "a scope change is reported. A session that rotated during the gap is not followed (the\n",
    "table keeps no trace of the move): its handles end as `Deleted`. A silent listener is\n",
    "pinged every 30 seconds; otherwise an idle handle makes no call.\n",
    "\n",
    "# Failures\n",
    "\n",
    "Every operation is bounded by [`PostgresStore::command_timeout`] (default 2 seconds),\n",
    "waiting for a pool connection included. Each write statement carries its deadline: the\n",
    "command timeout less a margin (a quarter of it, at most 250 ms), from when the call\n",
    "started, on the application's system clock. The statement checks the server's\n",
    "`clock_timestamp()` against it after its last write; past it, the statement fails and\n",
    "its implicit transaction writes nothing. So a write the client gave up on (a server\n",
    "frozen, a network stalled, a queue of statements in front of it) is not applied when\n",
    "the server gets to it later. Each write also sets `lock_timeout` to the command\n",
    "timeout for itself, so the server aborts a statement stuck on a row lock rather than\n",
    "keep waiting after the client left.\n",
    "\n",
    "What this guarantees, and what it does not: a write answered with an error was not\n",
    "applied, except when the server stalls between the statement's deadline check and its\n",
    "commit for longer than the margin (a synchronous standby's wait comes after the check\n",
    "too), when a limited login's separate `COMMIT` is delayed past the timeout on the\n",
    "client's or the network's side, or when the server's clock runs behind the\n",
    "application's by more than the margin; then the answer is\n",
    "[`StoreErrorKind::Timeout`] and the outcome unknown, as for any commit in flight when a\n",
    "connection fails. A server clock *ahead* of the application's by more than the\n",
    "command timeout less the margin makes every write fail with `Timeout` (the error\n",
    "names the deadline and the server's time):\n",
    "keep the clocks synchronised (NTP). A row that does not decode is reported as\n",
    "[`StoreErrorKind::Corrupt`]; [`Commit::Delete`] removes it like any other.\n",
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
    /// The live handles of this store's sessions, made on first use (by the layer).
    live: OnceLock<Arc<Registry>>,
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
    if db.message().contains(statements::PAST_DEADLINE) {
        return StoreErrorKind::Timeout;
    }
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

/// Whether `err` is the error a statement raised on purpose with `marker` (see
/// `statements::fail`).
fn raised(err: &sqlx::Error, marker: &str) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.message().contains(marker))
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
                live: OnceLock::new(),
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
    /// Write statements also carry a deadline the server checks before it commits, and a
    /// `lock_timeout` of this length (see Failures above).
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
        self.write(Some(lock), move |mut tx| async move {
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
                .write(None, |mut tx| async move {
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

    /// Opens a write transaction with the `SET LOCAL` timeouts, then takes the advisory
    /// lock `lock` when given. The `BEGIN` runs on a task of its own: sqlx does not roll back
    /// a `BEGIN` whose caller went away before its answer, and would hand the open
    /// transaction to the pool's next user. On its own task the `BEGIN` always completes,
    /// and if our caller has gone, dropping the transaction rolls it back.
    ///
    /// The lock is a statement inside the transaction, not part of the `BEGIN` message: a
    /// lock wait that fails (its timeout) inside the `BEGIN` message would leave a failed
    /// transaction that sqlx does not know it opened, and the connection would go back to the
    /// pool refusing every statement; inside, the dropped transaction rolls back.
    async fn begin(&self, lock: Option<i64>) -> Result<Transaction<'static, Postgres>, StoreError> {
        let pool = self.inner.pool.clone();
        let begin = self.inner.begin.clone();
        let mut tx = tokio::spawn(async move { pool.begin_with(begin).await })
            .await
            .map_err(|e| StoreError::new(StoreErrorKind::Unavailable, e))?
            .map_err(from_sqlx)?;
        if let Some(id) = lock {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        }
        Ok(tx)
    }

    /// Runs `op` in one write transaction (after taking the advisory lock `lock`, when
    /// given) under the command timeout; `op` answers the transaction back, its result, and
    /// whether to commit (otherwise the transaction is rolled back and writes nothing).
    fn write<'a, T, F, Fut>(
        &'a self,
        lock: Option<i64>,
        op: F,
    ) -> impl Future<Output = Result<T, StoreError>> + 'a
    where
        T: 'a,
        F: FnOnce(Transaction<'static, Postgres>) -> Fut + 'a,
        Fut: Future<Output = Result<(Transaction<'static, Postgres>, T, bool), StoreError>> + 'a,
    {
        self.inner.settings.bounded(async move {
            let tx = self.begin(lock).await?;
            let (tx, value, commit) = op(tx).await?;
            if commit {
                tx.commit().await.map_err(from_sqlx)?;
            }
            // Otherwise dropping `tx` queues its ROLLBACK, sent before the connection's
            // next use.
            Ok(value)
        })
    }

    /// Runs `op`, one statement in its own implicit transaction (one round trip), on a pool
    /// connection under the command timeout. The statement's [`Guard`](writes::Guard) keeps a statement
    /// the client stopped waiting for from committing.
    fn single<'a, T, F, Fut>(&'a self, op: F) -> impl Future<Output = Result<T, StoreError>> + 'a
    where
        T: 'a,
        F: FnOnce(PoolConnection<Postgres>) -> Fut + 'a,
        Fut: Future<Output = Result<T, StoreError>> + 'a,
    {
        self.inner.settings.bounded(async move {
            let conn = self.inner.pool.acquire().await.map_err(from_sqlx)?;
            op(conn).await
        })
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
        let guard = self.guard();
        match self.gains(&commit) {
            // The admitting statement must see every session an earlier login of the
            // principal added: its snapshot has to be taken after the lock, in a statement
            // of its own.
            Some(lock) => {
                self.write(Some(lock), |mut tx| async move {
                    let outcome = self.apply(&mut tx, &commit, now, guard).await?;
                    Ok((tx, outcome, outcome == CommitOutcome::Applied))
                })
                .await
            }
            None => {
                self.single(
                    |mut conn| async move { self.apply(&mut conn, &commit, now, guard).await },
                )
                .await
            }
        }
    }

    async fn update(
        &self,
        key: &StoreKey,
        field: &str,
        update: Update,
    ) -> Result<UpdateOutcome, StoreError> {
        let now = self.inner.settings.now();
        let guard = self.guard();
        self.single(|mut conn| async move {
            self.update_in(&mut conn, key, field, update, now, guard)
                .await
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
        let guard = self.guard();
        let live = match self.principal_lock(principal) {
            // Under the principal's lock when a limit is set, so a login that evicts and
            // this delete never take the same rows in different orders (a deadlock).
            Some(lock) => {
                self.write(Some(lock), |mut tx| async move {
                    let live = self.delete_all(&mut tx, principal, now, guard).await?;
                    Ok((tx, live, true))
                })
                .await?
            }
            None => {
                self.single(|mut conn| async move {
                    self.delete_all(&mut conn, principal, now, guard).await
                })
                .await?
            }
        };
        Ok(u64::try_from(live).unwrap_or(0))
    }
}
