//! Live notifications of [`RedisStore`]: the subscription that feeds the registry of live
//! handles with what the commit scripts publish (see `notify` in prelude.lua), the re-check
//! of an idle deadline, and the re-validation of every handle when a subscription starts.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use futures_core::Stream;
use tokio::task::JoinSet;

use super::*;
use crate::live::{Registry, Seen, Watch};
use crate::principal::Principal;

/// The [`Watch`] of a `RedisStore`'s registry.
pub(super) struct Watcher {
    /// A clone that does not hold the registry (which holds this watcher).
    store: RedisStore,
    /// Where to subscribe; empty: the store cannot notify (only deadlines end handles).
    clients: Arc<[redis::Client]>,
    started: AtomicBool,
}

impl Watcher {
    pub(super) fn new(store: RedisStore, clients: Arc<[redis::Client]>) -> Self {
        Self {
            store,
            clients,
            started: AtomicBool::new(false),
        }
    }
}

impl Watch for Watcher {
    fn opened(&self, registry: &Arc<Registry>) {
        if self.clients.is_empty() || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(listen(
            Arc::downgrade(registry),
            self.store.clone(),
            self.clients.clone(),
        ));
    }

    fn recheck(&self, registry: &Arc<Registry>, key: StoreKey) {
        let registry = Arc::downgrade(registry);
        let store = self.store.clone();
        tokio::spawn(async move {
            let seen = Seen::looked_up(SessionStore::lookup(&store, &key).await);
            if let Some(registry) = registry.upgrade() {
                registry.rechecked(key, seen, true);
            }
        });
    }
}

pub(super) use crate::live::notice::code;
use crate::live::notice::{apply, backoff, reason_of, PING_EVERY};

/// The subscription task: one connection, re-established whenever it is lost, until the
/// store (its registry) is dropped.
async fn listen(registry: Weak<Registry>, store: RedisStore, clients: Arc<[redis::Client]>) {
    let channel = format!("{}live", store.prefix);
    let mut failures: u32 = 0;
    while registry.strong_count() > 0 {
        let client = &clients[failures as usize % clients.len()];
        match store.bounded(subscribe(client, &channel)).await {
            Ok(pubsub) => {
                let (mut sink, mut stream) = pubsub.split();
                // Whatever ended while nothing listened (before the first subscription,
                // too) is read once, for all handles, before the messages queued since.
                let Some(strong) = registry.upgrade() else {
                    return;
                };
                let revalidated = store.revalidate(&strong).await;
                drop(strong);
                match revalidated {
                    Ok(()) => {
                        failures = 0;
                        loop {
                            let next =
                                std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx));
                            match tokio::time::timeout(PING_EVERY, next).await {
                                Ok(Some(msg)) => match registry.upgrade() {
                                    Some(strong) => {
                                        // A move names its keys only: what the session now
                                        // holds is read from the store (see `notice`).
                                        if let Some((key, rotated)) =
                                            apply(&strong, msg.get_payload_bytes())
                                        {
                                            tokio::spawn(store.clone().reread(
                                                registry.clone(),
                                                key,
                                                rotated,
                                            ));
                                        }
                                    }
                                    None => return,
                                },
                                Ok(None) => break,
                                Err(_) => {
                                    if registry.strong_count() == 0 {
                                        return;
                                    }
                                    let ping =
                                        tokio::time::timeout(store.timeout, sink.ping::<Value>());
                                    if !matches!(ping.await, Ok(Ok(_))) {
                                        break;
                                    }
                                }
                            }
                        }
                        tracing::debug!("live-session subscription lost; reconnecting");
                    }
                    Err(err) => tracing::debug!(%err, "live-session re-validation failed"),
                }
            }
            Err(err) => tracing::debug!(%err, "live-session subscription failed"),
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(backoff(failures)).await;
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, StoreError> {
    let mut pubsub = client.get_async_pubsub().await.map_err(from_redis)?;
    pubsub.subscribe(channel).await.map_err(from_redis)?;
    Ok(pubsub)
}

/// What a re-validation reads of a session: [`FIELDS`], and the cause its end left.
type Row = (Vec<Option<Vec<u8>>>, Option<String>);

/// The fields a re-validation reads of each session.
const FIELDS: [&str; 6] = ["e", "l", "pi", "mv", "pf", "p"];
/// Most rounds a re-validation follows sessions that moved during the gap.
const MAX_FOLLOW: usize = 4;

impl RedisStore {
    /// Where to subscribe to live-session notices, for a store made with
    /// [`RedisStore::from_connection_manager`] or [`RedisStore::from_cluster_connection`]
    /// (the `connect` methods set it): the server, or any node of the cluster. Without it
    /// the store cannot notify: live handles end at their deadlines only (see the type's
    /// documentation).
    #[must_use]
    pub fn with_subscription(mut self, client: redis::Client) -> Self {
        self.subscription = Arc::new([client]);
        self
    }

    /// The registry of the live handles of this store's sessions, fed by its subscription.
    pub(crate) fn live_registry(&self) -> Arc<Registry> {
        self.live
            .get_or_init(|| {
                let mut lean = self.clone();
                lean.live = Arc::default();
                let watcher = notify::Watcher::new(lean, self.subscription.clone());
                Arc::new(Registry::watched(watcher))
            })
            .clone()
    }

    /// The code the delete of `key` publishes: the cause the layer noted, if any.
    pub(super) fn end_code(&self, key: &StoreKey) -> &'static str {
        notify::code(self.live.get().and_then(|r| r.take_hint(key)))
    }

    /// Reads every open handle's session at once and reports what changed to the registry:
    /// on a standalone server one pipeline (one round trip); in a cluster, which refuses a
    /// pipeline across slots, one `HMGET` per session, all sent at once. Sessions that moved
    /// meanwhile are followed and read again, for a few rounds at most.
    async fn revalidate(&self, registry: &Registry) -> Result<(), StoreError> {
        let mut keys = registry.keys();
        for round in 0..MAX_FOLLOW {
            if keys.is_empty() {
                break;
            }
            let rows = self.read_rows(&keys).await?;
            let now = self.clock.now();
            let mut moved = Vec::new();
            for (key, (row, cause)) in keys.into_iter().zip(rows) {
                if let Some(seen) = seen(&row, cause.as_deref(), now, round > 0) {
                    if let Seen::Moved(to) = seen {
                        moved.push(to);
                    }
                    registry.rechecked(key, seen, false);
                }
            }
            keys = moved;
        }
        Ok(())
    }

    /// Reads the session a move notice named and reports it to the registry: its
    /// principal, scopes and last use as the store has them. A cluster move still on its
    /// way (its stub) is read again shortly, a few times at most.
    async fn reread(self, registry: Weak<Registry>, key: StoreKey, rotated: bool) {
        for _ in 0..MAX_FOLLOW {
            let rows = match self.read_rows(&[key]).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::debug!(%err, "live-session re-read failed");
                    return;
                }
            };
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let Some((row, cause)) = rows.into_iter().next() else {
                return;
            };
            if let Some(seen) = seen(&row, cause.as_deref(), self.clock.now(), rotated) {
                registry.rechecked(key, seen, false);
                return;
            }
            drop(registry);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One batch of re-validation reads (see `revalidate`).
    async fn read_rows(&self, keys: &[StoreKey]) -> Result<Vec<Row>, StoreError> {
        let rows: Vec<Row> = match &self.conn {
            Conn::Single(_) => {
                // Each session's fields, and the cause of its end if it ended lately.
                let mut pipe = redis::pipe();
                for key in keys {
                    pipe.cmd("HMGET").arg(self.session_key(key)).arg(&FIELDS);
                    pipe.cmd("GET")
                        .arg(format!("{}x:{}", self.prefix, key.to_hex()));
                }
                let values: Vec<Value> = self
                    .bounded(async {
                        pipe.query_async(&mut self.conn.clone())
                            .await
                            .map_err(from_redis)
                    })
                    .await?;
                let mut values = values.into_iter();
                let mut rows = Vec::with_capacity(keys.len());
                while let (Some(fields), Some(cause)) = (values.next(), values.next()) {
                    let fields = redis::from_redis_value(fields).unwrap_or_default();
                    let cause = redis::from_redis_value(cause).unwrap_or_default();
                    rows.push((fields, cause));
                }
                rows
            }
            Conn::Cluster(_) => {
                let mut calls = JoinSet::new();
                for (i, key) in keys.iter().enumerate() {
                    let mut conn = self.conn.clone();
                    let cmd = redis::cmd("HMGET")
                        .arg(self.session_key(key))
                        .arg(&FIELDS)
                        .to_owned();
                    calls.spawn(async move {
                        let row: Result<Vec<Option<Vec<u8>>>, _> = cmd.query_async(&mut conn).await;
                        (i, row)
                    });
                }
                let mut rows = vec![(Vec::new(), None); keys.len()];
                self.bounded(async {
                    while let Some(done) = calls.join_next().await {
                        let (i, row) = done.map_err(|e| {
                            StoreError::new(StoreErrorKind::Unavailable, e.to_string())
                        })?;
                        rows[i].0 = row.map_err(from_redis)?;
                    }
                    Ok(())
                })
                .await?;
                rows
            }
        };
        Ok(rows)
    }
}

/// What a re-validation's row says of a session; `None`: a cluster move's stub, whose
/// record is on its way (the handle keeps following it).
fn seen(row: &[Option<Vec<u8>>], cause: Option<&str>, now: i64, moved: bool) -> Option<Seen> {
    let text = |i: usize| {
        row.get(i)
            .and_then(Option::as_deref)
            .and_then(|b| std::str::from_utf8(b).ok())
    };
    if let Some(to) = text(3).and_then(StoreKey::from_hex) {
        return Some(Seen::Moved(to));
    }
    if text(4).is_some() {
        return None;
    }
    let int = |i: usize| text(i).and_then(|t| t.parse::<i64>().ok());
    Some(match (int(0), int(1)) {
        (Some(expires), Some(last_seen)) if expires > now => Seen::Live {
            principal: text(2).unwrap_or_default().to_owned(),
            last_seen,
            scopes: text(5)
                .and_then(|json| serde_json::from_str::<Principal>(json).ok())
                .map(|p| p.scopes().clone()),
            moved,
        },
        _ => match cause.and_then(|c| c.strip_prefix('>')) {
            // Moved on a standalone server (RENAME leaves no tombstone).
            Some(to) => StoreKey::from_hex(to).map_or(Seen::Gone(None), Seen::Moved),
            None => Seen::Gone(cause.map(reason_of)),
        },
    })
}
