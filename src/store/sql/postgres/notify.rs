//! Live notifications of [`PostgresStore`]: the listener that feeds the registry of live
//! handles with what the write statements `NOTIFY` (see `statements`), the re-check of an
//! idle deadline, and the re-validation of every handle whenever the listener subscribes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Executor as _, Row};

use super::{from_sqlx, Inner, PostgresStore};
use crate::error::StoreError;
use crate::live::notice::{self, backoff, PING_EVERY};
use crate::live::{Registry, Seen, Watch};
use crate::principal::Principal;
use crate::store::sql::key_of;
use crate::store::SessionStore;
use crate::token::StoreKey;

/// The `application_name` of the listener's connection, so an operator can tell it apart.
const APPLICATION_NAME: &str = "tessera-live";

/// The [`Watch`] of a `PostgresStore`'s registry.
pub(super) struct Watcher {
    /// The store, not held: it holds the registry, which holds this watcher.
    store: Weak<Inner>,
    started: AtomicBool,
}

impl Watcher {
    pub(super) fn new(store: Weak<Inner>) -> Self {
        Self {
            store,
            started: AtomicBool::new(false),
        }
    }
}

impl Watch for Watcher {
    fn opened(&self, registry: &Arc<Registry>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(listen(Arc::downgrade(registry), self.store.clone()));
    }

    fn recheck(&self, registry: &Arc<Registry>, key: StoreKey) {
        let registry = Arc::downgrade(registry);
        let store = self.store.clone();
        tokio::spawn(async move {
            let seen = match store.upgrade() {
                Some(inner) => {
                    Seen::looked_up(SessionStore::lookup(&PostgresStore { inner }, &key).await)
                }
                None => Seen::Gone(None),
            };
            if let Some(registry) = registry.upgrade() {
                registry.rechecked(key, seen, true);
            }
        });
    }
}

/// How a listening spell ended.
enum Spell {
    /// The connection was lost and sqlx has listened again on a new one: re-validate.
    Relistened,
    /// The connection failed: subscribe anew after a pause.
    Failed,
    /// The registry (the store) is gone: stop.
    Done,
}

/// The listener task: one connection, listened on again whenever it is lost, until the
/// store (its registry) is dropped.
async fn listen(registry: Weak<Registry>, store: Weak<Inner>) {
    let Some(inner) = store.upgrade() else {
        return;
    };
    let channel = inner.sql.channel.clone();
    // Listening again on the channel is a no-op round trip: the listener's ping (it also
    // leaves `LISTEN` as the connection's query in `pg_stat_activity`).
    let ping = format!("LISTEN \"{channel}\"");
    let timeout = inner.settings.timeout;
    // A pool of its own, of one connection made with the store pool's options: the listener
    // does not keep one of the application's connections.
    let options = (*inner.pool.connect_options())
        .clone()
        .application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect_lazy_with(options);
    drop(inner);
    let mut failures: u32 = 0;
    while registry.strong_count() > 0 {
        match tokio::time::timeout(timeout, subscribe(&pool, &channel)).await {
            Ok(Ok(mut listener)) => loop {
                // Whatever ended while nothing listened (before the first subscription, too)
                // is read once, for all handles, before the notices queued since.
                let (Some(strong), Some(inner)) = (registry.upgrade(), store.upgrade()) else {
                    return;
                };
                let keys = strong.keys();
                let store_now = PostgresStore { inner };
                let seen = match store_now.read(&keys).await {
                    Ok(seen) => seen,
                    Err(err) => {
                        tracing::debug!(%err, "live-session re-validation failed");
                        break;
                    }
                };
                drop(store_now);
                // The notices of what changed before that read are on the listener's
                // connection by now: one round trip on it brings them in, and they carry the
                // causes a read cannot see (a logout, not just "gone").
                let pinged = tokio::time::timeout(timeout, listener.execute(ping.as_str()));
                if !matches!(pinged.await, Ok(Ok(_))) {
                    break;
                }
                while let Some(notification) = listener.next_buffered() {
                    heard(&strong, &store, notification.payload());
                }
                for (key, seen) in keys.into_iter().zip(seen) {
                    strong.rechecked(key, seen, false);
                }
                drop(strong);
                failures = 0;
                match serve(&mut listener, &registry, &store, timeout, &ping).await {
                    Spell::Relistened => {
                        tracing::debug!("live-session listener reconnected");
                    }
                    Spell::Failed => break,
                    Spell::Done => return,
                }
            },
            Ok(Err(err)) => tracing::debug!(%err, "live-session LISTEN failed"),
            Err(_) => tracing::debug!("live-session LISTEN timed out"),
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(backoff(failures)).await;
    }
}

async fn subscribe(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Applies the notices `listener` receives until its connection is lost or the store is gone.
async fn serve(
    listener: &mut PgListener,
    registry: &Weak<Registry>,
    store: &Weak<Inner>,
    timeout: Duration,
    ping: &str,
) -> Spell {
    loop {
        match tokio::time::timeout(PING_EVERY, listener.try_recv()).await {
            Ok(Ok(Some(notification))) => {
                let Some(strong) = registry.upgrade() else {
                    return Spell::Done;
                };
                heard(&strong, store, notification.payload());
            }
            Ok(Ok(None)) => return Spell::Relistened,
            Ok(Err(err)) => {
                tracing::debug!(%err, "live-session listener lost");
                return Spell::Failed;
            }
            Err(_) => {
                if registry.strong_count() == 0 {
                    return Spell::Done;
                }
                let pinged = tokio::time::timeout(timeout, listener.execute(ping));
                let pinged = pinged.await;
                if !matches!(pinged, Ok(Ok(_))) {
                    return Spell::Failed;
                }
            }
        }
    }
}

/// Applies one notice; a moved session is read from the store.
fn heard(registry: &Arc<Registry>, store: &Weak<Inner>, payload: &str) {
    let Some((key, rotated)) = notice::apply(registry, payload.as_bytes()) else {
        return;
    };
    let registry = Arc::downgrade(registry);
    let store = store.clone();
    tokio::spawn(async move {
        let (Some(registry), Some(inner)) = (registry.upgrade(), store.upgrade()) else {
            return;
        };
        match (PostgresStore { inner }).read(&[key]).await {
            Ok(seen) => {
                for mut seen in seen {
                    // Read under the key it rotated to: the handle reports the rotation.
                    if let Seen::Live { moved, .. } = &mut seen {
                        *moved = rotated;
                    }
                    registry.rechecked(key, seen, false);
                }
            }
            Err(err) => tracing::debug!(%err, "live-session re-read failed"),
        }
    });
}

impl PostgresStore {
    /// The registry of the live handles of this store's sessions, fed by its listener.
    pub(crate) fn live_registry(&self) -> Arc<Registry> {
        self.inner
            .live
            .get_or_init(|| Arc::new(Registry::watched(Watcher::new(Arc::downgrade(&self.inner)))))
            .clone()
    }

    /// The code the delete of `key` notifies: the cause the layer noted, if any.
    pub(super) fn end_code(&self, key: &StoreKey) -> &'static str {
        notice::code(self.inner.live.get().and_then(|r| r.take_hint(key)))
    }

    /// Reads the sessions of `keys` in one statement (`key = ANY($1)`): what the registry
    /// is to be told of each, in order. A session not found live is gone (its handles end
    /// as [`EndReason::Deleted`](crate::live::EndReason::Deleted) unless a notice or the
    /// layer told the cause); one filed under another principal ends them; its scopes are
    /// read, so a change is reported.
    async fn read(&self, keys: &[StoreKey]) -> Result<Vec<Seen>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.inner.settings.now();
        let bytes: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let rows = self
            .inner
            .settings
            .bounded(async {
                sqlx::query(&self.inner.sql.revalidate)
                    .bind(&bytes)
                    .bind(now)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(from_sqlx)
            })
            .await?;
        let mut live = HashMap::with_capacity(rows.len());
        for row in rows {
            let Ok(key) = row.try_get::<Vec<u8>, _>(0).map(|k| key_of(&k)) else {
                continue;
            };
            let (Ok(key), Ok(true)) = (key, row.try_get::<bool, _>(1)) else {
                continue;
            };
            let Ok(last_seen) = row.try_get::<i64, _>(2) else {
                continue;
            };
            let principal: Option<String> = row.try_get(3).unwrap_or_default();
            let data: Option<String> = row.try_get(4).unwrap_or_default();
            live.insert(
                key,
                Seen::Live {
                    principal: principal.unwrap_or_default(),
                    last_seen,
                    scopes: data
                        .and_then(|json| serde_json::from_str::<Principal>(&json).ok())
                        .map(|p| p.scopes().clone()),
                    moved: false,
                },
            );
        }
        Ok(keys
            .iter()
            .map(|key| live.remove(key).unwrap_or(Seen::Gone(None)))
            .collect())
    }
}
