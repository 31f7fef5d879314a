//! [`RedisStore`]: sessions in a Redis or Valkey server, or a Redis Cluster, shared by every
//! instance of a service.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, Value};

use crate::clock::{Clock, SystemClock};
use crate::error::{StoreError, StoreErrorKind};
use crate::live::Registry;
use crate::record::{Record, SessionInfo};
use crate::store::{
    write_deadline_ms, Commit, CommitOutcome, LimitPolicy, Lookup, SessionStore, Update,
    UpdateOutcome,
};
use crate::token::StoreKey;

/// Script arguments of mixed types (text, bytes, numbers, lists of them) as one list.
macro_rules! args {
    ($($x:expr),* $(,)?) => {{
        let mut out: Vec<Vec<u8>> = Vec::new();
        $( redis::ToRedisArgs::write_redis_args(&$x, &mut out); )*
        out
    }};
}

mod cluster;
mod cluster_index;
mod codec;
mod notify;
mod session_store;
mod settle;
mod update;

use codec::*;

const DEFAULT_PREFIX: &str = "tessera:";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Field holding a data key's value: `d:<key>`, so data keys can never clash with the
/// record's own fields.
const DATA: &str = "d:";
/// Shortest time a client keeps trying to settle a create or move whose answer it lost.
const MIN_SETTLE_WINDOW: Duration = Duration::from_secs(30);
/// Longest pause between two attempts to settle one commit.
const MAX_SETTLE_PAUSE: Duration = Duration::from_secs(5);
/// Most commits one store settles at a time: an outage during a login storm must not leave
/// a task per failed login to stampede the server when it returns.
const MAX_SETTLING: usize = 1024;

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("prelude.lua"), include_str!($file))))
    };
}

static COMMIT: LazyLock<Script> = script!("commit.lua");
static UPDATE: LazyLock<Script> = script!("update.lua");
static SETTLE: LazyLock<Script> = script!("settle.lua");
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
/// expired record is never returned. Indexes carry a TTL that follows the longest-lived
/// session they list. A session's end leaves its cause, and a move its target, under
/// `<prefix>x:<hex>` for 60 seconds (a standalone server; see *Live sessions*).
///
/// On a standalone server (or a primary with replicas), a load is one `HGETALL` and a commit
/// is one `EVALSHA` of a Lua script that does the whole commit atomically: create-only
/// creates, patches that never resurrect, a move that renames the record and updates the
/// index, and the per-principal limit. [`SessionStore::update`] is one `EVALSHA` too
/// (`HINCRBY` for increments), on a standalone server and in a cluster alike. A move also
/// keeps a copy of the session as it was under `<prefix>u:<hex>` for as long as its
/// commit may be settled (see *Failures*), about 35 seconds with the default timeout; this
/// needs Redis 6.2 or later (`COPY`).
///
/// # Redis Cluster
///
/// With [`RedisStore::connect_cluster`], loads and commits of anonymous sessions are still
/// one single-slot round trip each. A session's keys cannot share a slot with its move
/// target (two random IDs) or its principal's index, so the commits that cross slots run as
/// several single-slot steps, each atomic:
///
/// * a login takes 3 round trips before it answers (admit the new key to the index, write
///   a stub under the new key, claim the old record) and 2 after (fill the stub, drop the
///   old record's tombstone); a rotation within a principal takes one more before (who owns
///   the session) and one more after (unindex the old key);
/// * deleting a logged-in session takes 2; `sessions_of` and `delete_sessions_of` take one
///   round trip per listed session plus one or two; with a per-principal limit, a login
///   first prunes the index (as `sessions_of`).
///
/// The claim is the move's commit point and the last step a commit waits for: before it
/// nothing a reader can see has changed (the stub is not a session), after it the move has
/// happened, and what the tidying steps did not finish is finished by the next reader of the
/// stub (a load of the new key, or `sessions_of`), which reads the moved record from the old
/// key's tombstone. So a move cut short at any step leaves the session either untouched
/// (the old key works, the stub is discarded once the move's deadline has passed) or moved,
/// never half-done, and a live session is never missing from its principal's index. An
/// index entry whose record does not exist yet counts as a login in flight for one command
/// timeout before it is pruned. Each index's TTL is extended by the steps that add to or
/// prune it, and by a patch that makes a session outlive it (each session records until when
/// its index was last extended, so this costs two extra round trips at most once per idle
/// timeout of activity). Use [`RedisStore::connect`] only for a standalone server: its
/// commit script reaches keys of several slots, which a cluster refuses.
///
/// # Live sessions
///
/// The store notifies [live handles](crate::live) on every instance: each commit that ends a
/// session (logout, destroy, logout everywhere, ended from another device, per-principal
/// limit), moves it or changes its principal or scopes publishes a short message on the
/// channel `<prefix>live`, from the same script, so a notice is sent exactly when the change
/// applies. Messages carry store keys (the hashes the keys are named after) and the cause,
/// never session IDs, tokens or principals; for a move the receiver reads the session's
/// principal, scopes and last use from the store, so a message forged by a client allowed to
/// `PUBLISH` can end handles early but grants no scopes and keeps none alive (restrict
/// `PUBLISH` on `<prefix>live` with an ACL all the same). An end heard in the 30 seconds before a handle opens (its
/// request loaded the session, then another instance ended it) ends the handle as it opens.
/// Refreshes are not published: at its idle deadline a handle
/// looks its session up once (one `HGETALL`) and ends only if no instance used it meanwhile.
///
/// Each store (shared by its clones) holds one subscription connection, opened when its first
/// handle registers; with no handle ever opened, nothing subscribes. Whenever it subscribes
/// (the first time, and after a lost connection, retried with a backoff of at most a
/// second), it re-validates every open handle in one batched call before it reads the
/// messages queued meanwhile: one pipeline of `HMGET`s on a standalone server; in a cluster,
/// which refuses pipelines across slots, one `HMGET` per session, all sent at once. A session
/// gone by then ends its handles with the cause its end left for 60 seconds under
/// `<prefix>x:<store key hex>` (a standalone server; a script in a cluster cannot reach that
/// key's slot), else as [`EndReason::Deleted`](crate::live::EndReason::Deleted). A session
/// that moved (a rotation, a login) is followed to its new key, which a standalone move
/// leaves under the same key for 60 seconds and a cluster move in its tombstone while that
/// lasts (a cluster move tidied up during the gap ends the handle as `Deleted`), and a scope
/// change is reported as a [`LiveEvent::Changed`](crate::live::LiveEvent::Changed).
/// A silent subscription is pinged every 30 seconds, so a connection that died without
/// closing is noticed; otherwise an idle handle makes no call.
///
/// In a cluster the scripts use plain `PUBLISH`, not `SPUBLISH`: a sharded channel would
/// have to hash to the slot of the keys each script touches (a different one per session),
/// so a subscriber would need one connection per shard; plain messages reach every node's
/// subscribers over the cluster bus, so one subscription on any node hears all. The cost is
/// one cluster-bus broadcast per session end, move or principal change, not per request.
///
/// [`RedisStore::connect`] and [`RedisStore::connect_cluster`] subscribe through the same
/// server or seed nodes; a store made from a connection you configured needs
/// [`RedisStore::with_subscription`], or it cannot notify (its handles then end at their
/// deadlines only).
///
/// # Failures
///
/// Every operation is bounded by [`RedisStore::command_timeout`] (default 2 seconds): an
/// unreachable or hung server yields [`StoreErrorKind::Timeout`] or
/// [`StoreErrorKind::Unavailable`], which the layer turns into a 503, and the connection is
/// re-established in the background once the server is back.
///
/// A failure means nothing was applied. A command that has been written to a connection
/// cannot be called back, so every script carries its own deadline: the moment its client
/// gives up, `deadline = send time + command_timeout − margin` with
/// `margin = min(command_timeout / 4, 250 ms)`, on the application's clock. A script that
/// starts past it on the server's clock (`TIME`) does nothing and the call fails with
/// `Timeout`, so a server that stalls and resumes later cannot apply what its client already
/// reported as failed. The margin covers the reply's way back and a server clock up to that
/// much behind the application's (keep clocks synchronised); a server clock ahead only makes
/// slow calls fail a little early.
///
/// The one case no deadline covers is an answer lost after the script ran (the server
/// crashes or stalls between running a commit and replying, or the connection breaks). For
/// creates and moves, where that would leave a session, possibly logged in, that nobody
/// holds the token of, the client settles the commit in the background once the commit's
/// deadline has passed on the server: it recognises the commit by an ID stored with the
/// record and rolls it back (the moved session is put back under its old key). It keeps
/// trying for `max(30 s, 10 × command_timeout)`; a server down longer leaves such a session
/// until it expires. A login rolled back this way keeps any evictions it made. Increments
/// are not settled: one whose answer was lost may count without having been reported.
///
/// A record changed outside the store (a field that is not UTF-8, a data value that is not
/// JSON, a time that is not a number, a key holding another type) loads as
/// [`StoreErrorKind::Corrupt`], and never makes a delete, or a commit under another key,
/// fail: the scripts read every field defensively. One whose times do not read as numbers
/// is no session anywhere (not live for patches, not listed, not counted against a
/// per-principal limit); one whose times read but whose other fields do not decode stays
/// indexed, so "log out everywhere" still deletes it, and counts against a limit until it
/// is deleted.
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
    /// Commits being settled in the background, shared by clones.
    settling: Arc<AtomicUsize>,
    /// Where the live-session subscription connects (a cluster: any node will do).
    subscription: Arc<[redis::Client]>,
    /// The live handles of this store's sessions, made on first use (by the layer), once
    /// the builder methods have run; shared by clones.
    live: Arc<OnceLock<Arc<Registry>>>,
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

/// A create or move whose client never heard the answer: rolled back if it applied.
#[derive(Clone, Debug)]
struct Settle {
    /// Where the commit filed its record (create: the key; move: the target).
    target: StoreKey,
    /// The move's source; `None` for a create.
    source: Option<StoreKey>,
    /// The commit's ID, stored as `op` with what it wrote.
    id: String,
    /// The commit's deadline (Unix ms): once past on the server, the commit cannot start.
    deadline: i64,
    /// The principal ID the target was admitted under, in a cluster (empty: none).
    owner: Vec<u8>,
}

/// Where a commit stands while it runs, readable after its future was dropped by the
/// timeout: set once the step that applies it has been sent.
type Flight = Mutex<Option<Settle>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh ID for one commit, so the commit can be recognised in the store afterwards.
fn commit_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn flag(set: bool) -> &'static str {
    if set {
        "1"
    } else {
        "0"
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
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        Ok(Self::from_connection_manager(manager).with_subscription(client))
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
        let nodes = urls
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
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
        let mut store = Self::from_cluster_connection(conn);
        store.subscription = nodes.into();
        Ok(store)
    }

    /// A store on a connection you configured yourself (TLS, credentials, retry policy...).
    pub fn from_connection_manager(conn: ConnectionManager) -> Self {
        Self::with_conn(Conn::Single(conn))
    }

    /// A store on a Redis Cluster connection you configured yourself. Leave its response
    /// timeout unset (or longer than [`RedisStore::command_timeout`]), so that the store's
    /// timeout is the one that counts.
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
            settling: Arc::new(AtomicUsize::new(0)),
            subscription: Arc::new([]),
            live: Arc::default(),
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
    /// [`StoreErrorKind::Timeout`] (default 2 seconds). Scripts sent to the server carry a
    /// deadline derived from it (see the type's documentation).
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads time from `clock` (default: the system clock) for expiry decisions and TTLs.
    /// Give it the same clock as the layer's [`SessionConfig::clock`](crate::SessionConfig::clock).
    /// Script deadlines always follow the system clock, which the server's `TIME` is
    /// compared with.
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

    /// The moment (Unix ms, system clock) after which a script sent now must not start: the
    /// time this call gives up, less a margin for the reply's way back and for clock skew
    /// between this machine and the server.
    fn deadline(&self) -> i64 {
        write_deadline_ms(self.timeout)
    }

    /// How long a lost answer is being settled (see the type's documentation).
    fn settle_window(&self) -> Duration {
        MIN_SETTLE_WINDOW.max(self.timeout.saturating_mul(10))
    }

    /// How long a move's undo copy is kept: until its settling has surely ended.
    fn undo_ttl(&self) -> u64 {
        self.settle_window()
            .saturating_add(self.timeout)
            .as_secs()
            .saturating_add(5)
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

    /// One `HGETALL`, read as bytes (the record decodes them itself, so a byte that is not
    /// UTF-8 is `Corrupt`, not a client error); a record the server still holds past its
    /// expiry (its TTL runs on the server's clock) is reported as expired, never served.
    async fn lookup_record(&self, key: &StoreKey, deadline: i64) -> Result<Lookup, StoreError> {
        let fields: HashMap<Vec<u8>, Vec<u8>> = self
            .query(redis::cmd("HGETALL").arg(self.session_key(key)))
            .await?;
        let fields = match Hash::of(fields) {
            Hash::Record(fields) => fields,
            // Only a cluster move writes stubs.
            Hash::Stub(stub) => match self.resolve(key, &stub, deadline).await? {
                cluster::Resolved::Committed(fields) => fields,
                _ => return Ok(Lookup::Missing),
            },
            _ => return Ok(Lookup::Missing),
        };
        let record = decode_hash(fields)?;
        Ok(if record.is_expired(self.clock.now()) {
            Lookup::Expired(record)
        } else {
            Lookup::Live(record)
        })
    }

    async fn commit_standalone(
        &self,
        commit: Commit,
        deadline: i64,
        flight: &Flight,
    ) -> Result<CommitOutcome, StoreError> {
        let now = self.clock.now();
        let id = commit_id();
        let (limit, policy) = self.limit_args();
        let mut inv = COMMIT.prepare_invoke();
        let mut head = |op: &str, keys: &[&StoreKey]| {
            for key in keys {
                inv.key(self.session_key(key));
            }
            inv.arg(deadline)
                .arg(op)
                .arg(now)
                .arg(&*self.prefix)
                .arg(limit)
                .arg(policy)
                .arg(keys[0].to_hex())
                .arg(keys.get(1).map(|k| k.to_hex()).unwrap_or_default())
                .arg(&id)
                .arg(self.undo_ttl());
        };
        let settle = |target: StoreKey, source: Option<StoreKey>| Settle {
            target,
            source,
            id: id.clone(),
            deadline,
            owner: Vec::new(),
        };
        let pending = match &commit {
            Commit::Create { key, record } => {
                head("create", &[key]);
                let pid = record
                    .principal()
                    .map(|p| p.index_key())
                    .unwrap_or_default();
                let mut fields = record_fields(record)?;
                fields.push(("op".to_owned(), id.clone()));
                inv.arg(pid).arg(field_args(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.into_bytes(), v.into_bytes())),
                ));
                Some(settle(*key, None))
            }
            Commit::Patch { key, patch } => {
                head("patch", &[key]);
                inv.arg(patch_args(patch)?);
                None
            }
            Commit::Move { from, to, patch } => {
                head("move", &[from, to]);
                inv.arg(patch_args(patch)?);
                Some(settle(*to, Some(*from)))
            }
            Commit::Delete { key } => {
                head("delete", &[key]);
                inv.arg(self.end_code(key));
                None
            }
        };
        *lock(flight) = pending;
        let answer: String = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(from_redis)?;
        outcome(&answer)
    }
}
