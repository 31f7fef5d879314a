//! [`RedisStore`]: sessions in a Redis or Valkey server, or a Redis Cluster, shared by every
//! instance of a service.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, Value};
use serde_json::{Map, Value as Json};

use crate::clock::{Clock, SystemClock};
use crate::error::{StoreError, StoreErrorKind};
use crate::record::{Patch, Record, SessionInfo};
use crate::store::{Commit, CommitOutcome, LimitPolicy, Lookup, SessionStore};
use crate::token::StoreKey;

const DEFAULT_PREFIX: &str = "tessera:";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Field holding a data key's value: `d:<key>`, so data keys can never clash with the
/// record's own fields.
const DATA: &str = "d:";

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("redis/prelude.lua"),
                include_str!(concat!("redis/", $file))
            ))
        })
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
        let client = ClusterClientBuilder::new(urls)
            .connection_timeout(DEFAULT_TIMEOUT)
            .response_timeout(DEFAULT_TIMEOUT)
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

/// Cluster mode: each step below touches exactly one slot.
impl RedisStore {
    async fn step<T: FromRedisValue>(
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
    async fn put(&self, key: &StoreKey, fields: Vec<String>) -> Result<CommitOutcome, StoreError> {
        let answer: String = self.step(self.session_key(key), "put", fields).await?;
        outcome(&answer)
    }

    /// Adds `key` to the index of `principal`, taking the place of `rotating` if that is
    /// already indexed; answers the evicted members, or `LimitReached`.
    async fn admit(
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

    async fn unindex(&self, principal: &str, key: &StoreKey) -> Result<(), StoreError> {
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

    async fn delete_evicted(&self, evicted: Vec<String>) -> Result<(), StoreError> {
        for hex in evicted {
            let key = format!("{}{hex}", self.session_prefix());
            self.query::<i64>(redis::cmd("DEL").arg(key)).await?;
        }
        Ok(())
    }

    async fn commit_cluster(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
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

    async fn move_in_cluster(
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
    async fn members(&self, principal: &str) -> Result<Vec<(String, f64)>, StoreError> {
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
    fn in_flight(&self, joined: f64, now: i64) -> bool {
        let grace = i64::try_from(self.timeout.as_secs()).unwrap_or(i64::MAX / 2) + 1;
        joined > now.saturating_sub(grace) as f64
    }

    /// The live sessions of `principal`, pruning index entries that are not.
    async fn sessions_in_cluster(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
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

    async fn delete_in_cluster(&self, principal: &str) -> Result<u64, StoreError> {
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

fn from_redis(err: RedisError) -> StoreError {
    let kind = if err.is_timeout() {
        StoreErrorKind::Timeout
    } else if matches!(
        err.kind(),
        redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
    ) {
        StoreErrorKind::Corrupt
    } else {
        StoreErrorKind::Unavailable
    };
    StoreError::new(kind, err)
}

fn unavailable(err: RedisError) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, err)
}

fn corrupt(err: serde_json::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, err)
}

fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

/// A whole record as the arguments of the `put` step: expiry, field count, field/value pairs.
fn put_args(record: &Record) -> Result<Vec<String>, StoreError> {
    let mut fields = HashMap::new();
    fields.insert("c".to_owned(), record.created().to_string());
    fields.insert("l".to_owned(), record.last_seen().to_string());
    fields.insert("e".to_owned(), record.expires_at().to_string());
    if let Some(p) = record.principal() {
        fields.insert("p".to_owned(), json(p)?);
        fields.insert("pi".to_owned(), p.index_key().to_owned());
    }
    if !record.flash().is_empty() {
        fields.insert("f".to_owned(), json(&record.flash())?);
    }
    if let Some(ua) = record.user_agent() {
        fields.insert("u".to_owned(), ua.to_owned());
    }
    if let Some(hash) = record.bound_user_agent() {
        fields.insert("bu".to_owned(), hash.to_owned());
    }
    if let Some(ip) = record.bound_ip() {
        fields.insert("bi".to_owned(), ip.to_string());
    }
    for (k, v) in record.data() {
        fields.insert(format!("{DATA}{k}"), json(v)?);
    }
    Ok(field_args(fields))
}

fn field_args(fields: HashMap<String, String>) -> Vec<String> {
    let mut args = Vec::with_capacity(2 + 2 * fields.len());
    args.push(fields.get("e").cloned().unwrap_or_else(|| "0".into()));
    args.push(fields.len().to_string());
    for (k, v) in fields {
        args.push(k);
        args.push(v);
    }
    args
}

/// A patch in the layout the scripts' `apply` reads.
fn patch_args(patch: &Patch) -> Result<Vec<String>, StoreError> {
    let mut args = vec![
        patch.last_seen().to_string(),
        patch.expires_at().to_string(),
    ];
    match patch.principal() {
        None => args.extend([String::new(), String::new(), String::new()]),
        Some(None) => args.extend(["clear".to_owned(), String::new(), String::new()]),
        Some(Some(p)) => args.extend(["set".to_owned(), json(p)?, p.index_key().to_owned()]),
    }
    match patch.flash() {
        None => args.extend([String::new(), String::new()]),
        Some([]) => args.extend(["set".to_owned(), String::new()]),
        Some(flash) => args.extend(["set".to_owned(), json(&flash)?]),
    }
    args.push(patch.removes().len().to_string());
    args.extend(patch.removes().iter().map(|k| format!("{DATA}{k}")));
    args.push(patch.sets().len().to_string());
    for (k, v) in patch.sets() {
        args.push(format!("{DATA}{k}"));
        args.push(json(v)?);
    }
    Ok(args)
}

/// Rebuilds a record from its hash through `Record`'s serde form.
fn decode(mut fields: HashMap<String, String>) -> Result<Record, StoreError> {
    let mut record = Map::new();
    for (field, name) in [("c", "created"), ("l", "last_seen"), ("e", "expires_at")] {
        let n: i64 = fields
            .remove(field)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                StoreError::new(StoreErrorKind::Corrupt, format!("session lacks {name}"))
            })?;
        record.insert(name.to_owned(), n.into());
    }
    if let Some(p) = fields.remove("p") {
        record.insert(
            "principal".into(),
            serde_json::from_str(&p).map_err(corrupt)?,
        );
    }
    if let Some(f) = fields.remove("f") {
        record.insert("flash".into(), serde_json::from_str(&f).map_err(corrupt)?);
    }
    if let Some(ua) = fields.remove("u") {
        record.insert("user_agent".into(), Json::String(ua));
    }
    if let Some(hash) = fields.remove("bu") {
        record.insert("bound_user_agent".into(), Json::String(hash));
    }
    if let Some(ip) = fields.remove("bi") {
        record.insert("bound_ip".into(), Json::String(ip));
    }
    let mut data = Map::new();
    for (field, value) in fields {
        if let Some(key) = field.strip_prefix(DATA) {
            data.insert(
                key.to_owned(),
                serde_json::from_str(&value).map_err(corrupt)?,
            );
        }
    }
    record.insert("data".into(), Json::Object(data));
    serde_json::from_value(Json::Object(record)).map_err(corrupt)
}

fn info(
    key: StoreKey,
    created: i64,
    last_seen: i64,
    expires_at: i64,
    principal: &str,
    user_agent: Option<String>,
) -> Result<SessionInfo, StoreError> {
    Ok(SessionInfo::new(
        key,
        created,
        last_seen,
        expires_at,
        Some(id_of_index_key(principal).to_owned()),
        user_agent,
    ))
}

/// The principal ID inside a [`crate::Principal::index_key`] (`<kind length>:<kind>:<id>`).
fn id_of_index_key(index_key: &str) -> &str {
    index_key
        .split_once(':')
        .and_then(|(len, rest)| rest.get(len.parse::<usize>().ok()? + 1..))
        .unwrap_or(index_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_survives_the_hash_encoding() {
        let mut record = Record::new(10, 100);
        record.set_principal(Some(crate::Principal::user("u").with_scopes(["a"])));
        record.set_user_agent(Some("ua"));
        record.set_binding(Some("ab".repeat(32)), Some("2001:db8::1".parse().unwrap()));
        record
            .data_mut()
            .insert("k".into(), json!({"x": [1, null]}));
        record
            .data_mut()
            .insert("c".into(), json!("not the created field"));
        record.flash_mut().push("hi".into());
        let args = put_args(&record).unwrap();
        let n: usize = args[1].parse().unwrap();
        let fields: HashMap<String, String> = args[2..]
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect();
        assert_eq!(fields.len(), n);
        assert_eq!(decode(fields).unwrap(), record);
    }

    #[test]
    fn a_hash_without_times_is_corrupt() {
        let fields = HashMap::from([("d:k".to_owned(), "1".to_owned())]);
        assert_eq!(decode(fields).unwrap_err().kind(), StoreErrorKind::Corrupt);
    }
}
