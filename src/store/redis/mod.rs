//! [`RedisStore`]: sessions in a Redis or Valkey server, or a Redis Cluster, shared by every
//! instance of a service.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Script, Value};

use crate::clock::{Clock, SystemClock};
use crate::error::{StoreError, StoreErrorKind};
use crate::record::{Patch, Record, SessionInfo};
use crate::store::{Commit, CommitOutcome, LimitPolicy, Lookup, SessionStore};
use crate::token::StoreKey;

mod cluster;
mod codec;

use codec::*;

const DEFAULT_PREFIX: &str = "tessera:";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Field holding a data key's value: `d:<key>`, so data keys can never clash with the
/// record's own fields.
const DATA: &str = "d:";

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("prelude.lua"), include_str!($file))))
    };
}

static COMMIT: LazyLock<Script> = script!("commit.lua");
static SESSIONS_OF: LazyLock<Script> = script!("sessions_of.lua");
static DELETE_SESSIONS_OF: LazyLock<Script> = script!("delete_sessions_of.lua");
static CLUSTER: LazyLock<Script> = script!("cluster.lua");

/// A session store in Redis (or Valkey), shared by every instance of a service: how a
/// service grows from one server to a fleet.
///
/// # Layout and cost
///
/// Each session is a hash under `<prefix>s:<store key hex>` with one field per data key, so a
/// commit writes only what the request changed and concurrent requests that change different
/// keys both survive. Each principal has an index, a sorted set under
/// `<prefix>p:<principal ID>`. Records carry a server-side TTL equal to their remaining
/// lifetime, and the store also re-checks [`Record::expires_at`] against its clock, so an
/// expired record is never returned.
///
/// On a standalone server (or a primary with replicas), a load is one `HGETALL` and a commit
/// is one `EVALSHA` of a Lua script that does the whole commit atomically: create-only
/// creates, patches that never resurrect, a move that renames the record and updates the
/// index, and the per-principal limit.
///
/// # Redis Cluster
///
/// With [`RedisStore::connect_cluster`], loads and commits of anonymous sessions are still
/// one single-slot round trip each. A session's keys cannot share a slot with its move
/// target (two random IDs) or its principal's index, so the commits that cross slots run as
/// several single-slot steps, each atomic:
///
/// * a login or rotation (move) takes 3 to 4 round trips: admit the new key to the index,
///   take the old record (it stops working at once), write the new one create-only, tidy the
///   index;
/// * deleting a logged-in session takes 2; `sessions_of` and `delete_sessions_of` take one
///   round trip per listed session plus one; with a per-principal limit, a login first prunes
///   the index (as `sessions_of`).
///
/// The steps are ordered so an interruption (a node failing mid-commit) never leaves the
/// old ID of a move working, nor a live session missing from its principal's index; it can
/// lose the session being moved (the client gets a 503 and logs in again) and leave stale
/// index entries, which readers skip and prune. An index entry whose record does not exist
/// yet counts as a login in flight for one command timeout before it is pruned. In a
/// cluster, indexes carry no TTL (a patch cannot reach them); each is pruned whenever it is
/// read. Use [`RedisStore::connect`] only for a standalone server: its commit script reaches
/// keys of several slots, which a cluster refuses.
///
/// # Failures
///
/// Every operation is bounded by [`RedisStore::command_timeout`] (default 2 seconds): an
/// unreachable or hung server yields [`StoreErrorKind::Timeout`] or
/// [`StoreErrorKind::Unavailable`], which the layer turns into a 503, and the connection is
/// re-established in the background once the server is back.
///
/// # Example
///
/// ```no_run
/// use axum_tessera::store::{LimitPolicy, RedisStore};
/// use axum_tessera::{Key, SessionConfig, SessionLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379")
///     .await?
///     .prefix("myapp:session:")
///     .command_timeout(std::time::Duration::from_millis(500))
///     .max_sessions_per_principal(10, LimitPolicy::EvictOldest);
/// let layer = SessionLayer::new(SessionConfig::web(Key::generate())).with_store(store);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: Arc<str>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    limit: Option<(usize, LimitPolicy)>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "mode",
                &match self.conn {
                    Conn::Single(_) => "standalone",
                    Conn::Cluster(_) => "cluster",
                },
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("per_principal", &self.limit)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisStore {
    /// A store on the standalone server at `url` (`redis://[:password@]host[:port][/db]`,
    /// `rediss://` needs a TLS feature of the `redis` crate).
    ///
    /// Connects lazily: a server that is down now is not an error here (requests get 503
    /// until it is reachable), so a service can start before its Redis.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] when `url` does not parse.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_TIMEOUT))
            // The store's own timeout bounds every call; a second, shorter one inside would
            // only make slow-but-working servers fail.
            .set_response_timeout(None)
            .set_max_delay(Duration::from_secs(1));
        let manager =
            ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(Self::from_connection_manager(manager))
    }

    /// A store on the Redis Cluster reachable through any of `urls` (seed nodes).
    ///
    /// See the type's documentation for what crosses slots.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] when a URL does not parse or no seed node answers.
    pub async fn connect_cluster<I, S>(urls: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        // No response timeout of the cluster client: the store's own timeout
        // (`command_timeout`) bounds every call, as on a standalone server, so a slow but
        // working node is waited for as long as the caller asked and not a fixed 2 seconds.
        let client = ClusterClientBuilder::new(urls)
            .connection_timeout(DEFAULT_TIMEOUT)
            .build()
            .map_err(unavailable)?;
        let conn = tokio::time::timeout(DEFAULT_TIMEOUT, client.get_async_connection())
            .await
            .map_err(|_| StoreError::from_kind(StoreErrorKind::Timeout))?
            .map_err(unavailable)?;
        Ok(Self::from_cluster_connection(conn))
    }

    /// A store on a connection you configured yourself (TLS, credentials, retry policy...).
    pub fn from_connection_manager(conn: ConnectionManager) -> Self {
        Self::with_conn(Conn::Single(conn))
    }

    /// A store on a Redis Cluster connection you configured yourself.
    pub fn from_cluster_connection(conn: ClusterConnection) -> Self {
        Self::with_conn(Conn::Cluster(conn))
    }

    fn with_conn(conn: Conn) -> Self {
        Self {
            conn,
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
            clock: Arc::new(SystemClock),
            limit: None,
        }
    }

    /// Puts every key under `prefix` (default `tessera:`), so several services or
    /// environments can share one server.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Longest any store operation may take before it fails with
    /// [`StoreErrorKind::Timeout`] (default 2 seconds).
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads time from `clock` (default: the system clock) for expiry decisions and TTLs.
    /// Give it the same clock as the layer's [`SessionConfig::clock`](crate::SessionConfig::clock).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Allows each principal at most `max` live sessions (at least 1; default: no limit); a
    /// login beyond it follows `policy`. "Oldest" means earliest login.
    #[must_use]
    pub fn max_sessions_per_principal(mut self, max: usize, policy: LimitPolicy) -> Self {
        self.limit = Some((max.max(1), policy));
        self
    }

    fn session_key(&self, key: &StoreKey) -> String {
        format!("{}s:{}", self.prefix, key.to_hex())
    }

    fn session_prefix(&self) -> String {
        format!("{}s:", self.prefix)
    }

    fn index_key(&self, principal: &str) -> String {
        format!("{}p:{principal}", self.prefix)
    }

    fn limit_args(&self) -> (usize, &'static str) {
        match self.limit {
            Some((max, LimitPolicy::Reject)) => (max, "reject"),
            Some((max, _)) => (max, "evict"),
            None => (0, "evict"),
        }
    }

    /// Runs `op` under the command timeout.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::from_kind(StoreErrorKind::Timeout)),
        }
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        cmd.query_async(&mut self.conn.clone())
            .await
            .map_err(from_redis)
    }

    /// One `HGETALL`; a record the server still holds past its expiry (its TTL runs on the
    /// server's clock) is reported as expired, never served.
    async fn lookup_record(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let fields: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.session_key(key)))
            .await?;
        if fields.is_empty() {
            return Ok(Lookup::Missing);
        }
        let record = decode(fields)?;
        Ok(if record.is_expired(self.clock.now()) {
            Lookup::Expired(record)
        } else {
            Lookup::Live(record)
        })
    }

    async fn commit_standalone(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let now = self.clock.now();
        let (limit, policy) = self.limit_args();
        let mut inv = COMMIT.prepare_invoke();
        let mut head = |op: &str, keys: &[&StoreKey]| {
            for key in keys {
                inv.key(self.session_key(key));
            }
            inv.arg(op)
                .arg(now)
                .arg(&*self.prefix)
                .arg(limit)
                .arg(policy)
                .arg(keys[0].to_hex())
                .arg(keys.get(1).map(|k| k.to_hex()).unwrap_or_default());
        };
        match &commit {
            Commit::Create { key, record } => {
                head("create", &[key]);
                let pid = record
                    .principal()
                    .map(|p| p.index_key())
                    .unwrap_or_default();
                inv.arg(pid).arg(put_args(record)?);
            }
            Commit::Patch { key, patch } => {
                head("patch", &[key]);
                inv.arg(patch_args(patch)?);
            }
            Commit::Move { from, to, patch } => {
                head("move", &[from, to]);
                inv.arg(patch_args(patch)?);
            }
            Commit::Delete { key } => head("delete", &[key]),
        }
        let answer: String = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(from_redis)?;
        outcome(&answer)
    }
}

/// `HMGET c l e pi u` of one indexed session.
type IndexRow = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn outcome(answer: &str) -> Result<CommitOutcome, StoreError> {
    match answer {
        "applied" => Ok(CommitOutcome::Applied),
        "collision" => Ok(CommitOutcome::Collision),
        "missing" => Ok(CommitOutcome::Missing),
        "limit" => Err(StoreError::from_kind(StoreErrorKind::LimitReached)),
        other => Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("unexpected answer from the commit script: {other:?}"),
        )),
    }
}

impl SessionStore for RedisStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        match self.bounded(self.lookup_record(key)).await? {
            Lookup::Live(record) => Ok(Some(record)),
            _ => Ok(None),
        }
    }

    async fn lookup(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        self.bounded(self.lookup_record(key)).await
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        match self.conn {
            Conn::Single(_) => self.bounded(self.commit_standalone(commit)).await,
            Conn::Cluster(_) => self.bounded(self.commit_cluster(commit)).await,
        }
    }

    async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let mut out = match self.conn {
            Conn::Cluster(_) => self.bounded(self.sessions_in_cluster(principal)).await?,
            Conn::Single(_) => {
                self.bounded(async {
                    let rows: Vec<(String, i64, i64, i64, Option<String>)> = SESSIONS_OF
                        .key(self.index_key(principal))
                        .arg(self.clock.now())
                        .arg(self.session_prefix())
                        .arg(principal)
                        .invoke_async(&mut self.conn.clone())
                        .await
                        .map_err(from_redis)?;
                    rows.into_iter()
                        .map(|(hex, c, l, e, ua)| {
                            let key = StoreKey::from_hex(&hex).ok_or_else(|| {
                                StoreError::new(StoreErrorKind::Corrupt, "bad index member")
                            })?;
                            info(key, c, l, e, principal, ua)
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
        match self.conn {
            Conn::Cluster(_) => self.bounded(self.delete_in_cluster(principal)).await,
            Conn::Single(_) => {
                self.bounded(async {
                    DELETE_SESSIONS_OF
                        .key(self.index_key(principal))
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
