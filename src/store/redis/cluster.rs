//! Cluster mode of [`RedisStore`]: a commit whose keys hash to different slots runs as
//! single-slot steps (cluster.lua), ordered so that the step that applies the commit is the
//! last one the caller waits for. The per-principal index in cluster mode is in
//! `cluster_index.rs`.

use super::cluster_index::{evict, index_until};
use super::*;
use crate::record::Patch;

/// A cluster move's placeholder on its target, as a reader finds it.
pub(super) struct Stub {
    /// Hex of the move's source.
    pub(super) source: Vec<u8>,
    /// The move's ID.
    pub(super) id: Vec<u8>,
    /// The move's deadline (Unix ms, as text).
    pub(super) deadline: Vec<u8>,
}

/// Where the move behind a stub stands.
pub(super) enum Resolved {
    /// Committed: the record, now filed under the target.
    Committed(Vec<(Vec<u8>, Vec<u8>)>),
    /// May still commit: the target is not a session yet.
    Pending,
    /// Will never commit; the stub is gone.
    Gone,
}

/// Work left once a cluster commit has applied: best effort, since whoever reads next
/// finishes it anyway.
pub(super) enum Tidy {
    /// Fill the move's stub from the tombstone's record, then drop the tombstone.
    Finish {
        from: StoreKey,
        to: StoreKey,
        id: String,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Remove `key` from the index of `owner`.
    Unindex { owner: Vec<u8>, key: StoreKey },
    /// Delete the sessions a login evicted from the index of `owner`, then their entries.
    Evict {
        owner: Vec<u8>,
        members: Vec<Vec<u8>>,
    },
    /// Extend the index of `owner` by `ttl` seconds, then record `ix` on `key`.
    Follow {
        owner: Vec<u8>,
        key: StoreKey,
        ix: i64,
        ttl: i64,
    },
}

/// What an `admit` step did.
#[derive(Default)]
pub(super) struct Admitted {
    /// The member was not in the index before.
    pub(super) added: bool,
    /// Members to evict once the commit is through.
    pub(super) evicted: Vec<Vec<u8>>,
}

pub(super) fn int(bytes: Option<&Vec<u8>>) -> Option<i64> {
    std::str::from_utf8(bytes?).ok()?.parse().ok()
}

pub(super) fn is(answer: Option<&Vec<u8>>, tag: &[u8]) -> bool {
    answer.map(Vec::as_slice) == Some(tag)
}

/// Cluster mode: each step below touches exactly one slot.
impl RedisStore {
    pub(super) async fn step<T: FromRedisValue>(
        &self,
        key: impl redis::ToRedisArgs,
        step: &str,
        deadline: i64,
        args: Vec<Vec<u8>>,
    ) -> Result<T, StoreError> {
        CLUSTER
            .key(key)
            .arg(deadline)
            .arg(step)
            .arg(self.clock.now())
            .arg(args)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(from_redis)
    }

    /// The index key of a principal ID as the store holds it (bytes, so a corrupt one
    /// still names its index).
    pub(super) fn index_key_of(&self, owner: &[u8]) -> Vec<u8> {
        [self.prefix.as_bytes(), b"p:", owner].concat()
    }

    pub(super) fn session_key_of(&self, hex: &[u8]) -> Vec<u8> {
        [self.prefix.as_bytes(), b"s:", hex].concat()
    }

    /// Runs `steps` in order, stopping at the first failure (a tombstone is dropped only
    /// once its record is filed under the new key).
    pub(super) async fn tidy(&self, steps: Vec<Tidy>, deadline: i64) -> Result<(), StoreError> {
        for step in steps {
            match step {
                Tidy::Finish {
                    from,
                    to,
                    id,
                    fields,
                } => {
                    let filled: String = self
                        .step(
                            self.session_key(&to),
                            "fill",
                            deadline,
                            args![from.to_hex(), id, field_args(fields)],
                        )
                        .await?;
                    if filled == "filled" {
                        self.step::<String>(
                            self.session_key(&from),
                            "drop",
                            deadline,
                            args![to.to_hex(), id],
                        )
                        .await?;
                    }
                }
                Tidy::Unindex { owner, key } => {
                    self.prune(&owner, vec![key.to_hex().into_bytes()], 0, deadline)
                        .await?;
                }
                Tidy::Evict { owner, members } => {
                    for hex in &members {
                        self.step::<(Vec<u8>, i64)>(
                            self.session_key_of(hex),
                            "delete",
                            deadline,
                            args![owner, "l"],
                        )
                        .await?;
                    }
                    self.prune(&owner, members, 0, deadline).await?;
                }
                Tidy::Follow {
                    owner,
                    key,
                    ix,
                    ttl,
                } => {
                    // The index first: a session may claim a longer-lived index than it has
                    // only if the extension is already done.
                    self.prune(&owner, Vec::new(), ttl, deadline).await?;
                    self.step::<String>(self.session_key(&key), "mark", deadline, args![ix])
                        .await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn commit_cluster(
        &self,
        commit: Commit,
        deadline: i64,
        flight: &Flight,
    ) -> Result<(CommitOutcome, Vec<Tidy>), StoreError> {
        let now = self.clock.now();
        match commit {
            Commit::Create { key, record } => {
                let id = commit_id();
                let owner = record
                    .principal()
                    .map(|p| p.index_key().into_bytes())
                    .unwrap_or_default();
                let (ix, ttl) = index_until(record.expires_at(), now);
                let mut fields = record_fields(&record)?;
                fields.push(("op".to_owned(), id.clone()));
                if !owner.is_empty() {
                    fields.push(("ix".to_owned(), ix.to_string()));
                }
                let mut admitted = Admitted::default();
                if !owner.is_empty() {
                    admitted = self.admit(&owner, &key, None, true, ttl, deadline).await?;
                }
                *lock(flight) = Some(Settle {
                    target: key,
                    source: None,
                    id: id.clone(),
                    deadline,
                    owner: owner.clone(),
                });
                let fields = field_args(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.into_bytes(), v.into_bytes())),
                );
                let answer: String = self
                    .step(self.session_key(&key), "put", deadline, args![id, fields])
                    .await?;
                let outcome = outcome(&answer)?;
                if outcome != CommitOutcome::Applied {
                    lock(flight).take();
                    self.unadmit(&owner, &key, &admitted, deadline).await;
                    return Ok((outcome, Vec::new()));
                }
                Ok((outcome, evict(owner, admitted.evicted)))
            }
            Commit::Patch { key, patch } => {
                let login = patch
                    .principal()
                    .flatten()
                    .map(|p| p.index_key().into_bytes());
                let (ix, ttl) = index_until(patch.expires_at(), now);
                let mut admitted = Admitted::default();
                if let Some(owner) = &login {
                    admitted = self
                        .admit(owner, &key, Some(&key), true, ttl, deadline)
                        .await?;
                }
                let (answer, old, new, follow): (String, Vec<u8>, Vec<u8>, i64) = self
                    .step(
                        self.session_key(&key),
                        "patch",
                        deadline,
                        args![ix, patch_args(&patch)?],
                    )
                    .await?;
                let outcome = outcome(&answer)?;
                if outcome != CommitOutcome::Applied {
                    if let Some(owner) = &login {
                        self.unadmit(owner, &key, &admitted, deadline).await;
                    }
                    return Ok((outcome, Vec::new()));
                }
                let mut tidy = Vec::new();
                if !old.is_empty() && old != new {
                    tidy.push(Tidy::Unindex { owner: old, key });
                }
                if follow == 1 {
                    tidy.push(Tidy::Follow {
                        owner: new.clone(),
                        key,
                        ix,
                        ttl,
                    });
                }
                tidy.extend(evict(new, admitted.evicted));
                Ok((outcome, tidy))
            }
            Commit::Move { from, to, patch } => {
                self.move_in_cluster(from, to, &patch, deadline, flight)
                    .await
            }
            Commit::Delete { key } => {
                let (owner, _): (Vec<u8>, i64) = self
                    .step(
                        self.session_key(&key),
                        "delete",
                        deadline,
                        args!["", self.end_code(&key)],
                    )
                    .await?;
                let tidy = if owner.is_empty() {
                    Vec::new()
                } else {
                    vec![Tidy::Unindex { owner, key }]
                };
                Ok((CommitOutcome::Applied, tidy))
            }
        }
    }

    /// A move: admit the target to the owner's index, write a stub under the target, claim
    /// the source (the commit point, last). See the type's documentation and cluster.lua.
    async fn move_in_cluster(
        &self,
        from: StoreKey,
        to: StoreKey,
        patch: &Patch,
        deadline: i64,
        flight: &Flight,
    ) -> Result<(CommitOutcome, Vec<Tidy>), StoreError> {
        // Who owns the session once moved: the principal a login or logout names, else the
        // one it has, which the claim checks is still the one admitted. Two attempts
        // absorb a concurrent change of owner.
        for _ in 0..3 {
            let now = self.clock.now();
            let id = commit_id();
            let (ix, ttl) = index_until(patch.expires_at(), now);
            let life = patch.expires_at().saturating_sub(now).max(1);
            let owner = match patch.principal() {
                Some(p) => p.map(|p| p.index_key().into_bytes()).unwrap_or_default(),
                None => {
                    let row: Vec<Vec<u8>> = self
                        .step(self.session_key(&from), "owner", deadline, Vec::new())
                        .await?;
                    if !is(row.first(), b"live") {
                        return Ok((CommitOutcome::Missing, Vec::new()));
                    }
                    row.into_iter().nth(1).unwrap_or_default()
                }
            };
            let mut admitted = Admitted::default();
            if !owner.is_empty() {
                let login = matches!(patch.principal(), Some(Some(_)));
                admitted = self
                    .admit(&owner, &to, Some(&from), login, ttl, deadline)
                    .await?;
            }
            let stub: String = self
                .step(
                    self.session_key(&to),
                    "stub",
                    deadline,
                    args![from.to_hex(), id, life],
                )
                .await?;
            if stub != "applied" {
                self.unadmit(&owner, &to, &admitted, deadline).await;
                return Ok((outcome(&stub)?, Vec::new()));
            }
            *lock(flight) = Some(Settle {
                target: to,
                source: Some(from),
                id: id.clone(),
                deadline,
                owner: owner.clone(),
            });
            let claim: Vec<Vec<u8>> = self
                .step(
                    self.session_key(&from),
                    "claim",
                    deadline,
                    args![to.to_hex(), id, owner, ix, patch_args(patch)?],
                )
                .await?;
            if !is(claim.first(), b"applied") {
                lock(flight).take();
                // Best effort: a stub left behind is discarded by its next reader.
                let _ = self
                    .step::<Vec<Vec<u8>>>(self.session_key(&to), "discard", deadline, args![id, ""])
                    .await;
                self.unadmit(&owner, &to, &admitted, deadline).await;
                if is(claim.first(), b"owner") {
                    continue;
                }
                return Ok((CommitOutcome::Missing, Vec::new()));
            }
            let mut claim = claim.into_iter().skip(1);
            let old = claim.next().unwrap_or_default();
            let mut tidy = vec![Tidy::Finish {
                from,
                to,
                id,
                fields: pairs(claim.collect()),
            }];
            if !old.is_empty() {
                tidy.push(Tidy::Unindex {
                    owner: old,
                    key: from,
                });
            }
            tidy.extend(evict(owner, admitted.evicted));
            return Ok((CommitOutcome::Applied, tidy));
        }
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "the session kept changing owner during a move",
        ))
    }

    /// Finishes or discards the move behind the stub found under `to`.
    pub(super) async fn resolve(
        &self,
        to: &StoreKey,
        stub: &Stub,
        deadline: i64,
    ) -> Result<Resolved, StoreError> {
        let from = std::str::from_utf8(&stub.source)
            .ok()
            .and_then(StoreKey::from_hex);
        let reply: Vec<Vec<u8>> = match from {
            Some(from) => {
                self.step(
                    self.session_key(&from),
                    "resolve",
                    deadline,
                    args![to.to_hex(), stub.id, stub.deadline],
                )
                .await?
            }
            None => Vec::new(),
        };
        match (reply.first().map(Vec::as_slice), from) {
            (Some(b"committed"), Some(from)) => {
                let fields = pairs(reply.into_iter().skip(1).collect());
                let filled: String = self
                    .step(
                        self.session_key(to),
                        "fill",
                        deadline,
                        args![from.to_hex(), stub.id, field_args(fields.clone())],
                    )
                    .await?;
                if filled == "filled" {
                    // The record is filed; the tombstone may go (or expire, if this fails).
                    let _ = self
                        .step::<String>(
                            self.session_key(&from),
                            "drop",
                            deadline,
                            args![to.to_hex(), stub.id],
                        )
                        .await;
                    return Ok(Resolved::Committed(fields));
                }
                // Another reader filled it, or it was deleted since: read what is there now.
                let now: HashMap<Vec<u8>, Vec<u8>> = self
                    .query(redis::cmd("HGETALL").arg(self.session_key(to)))
                    .await?;
                Ok(match Hash::of(now) {
                    Hash::Record(fields) => Resolved::Committed(fields),
                    _ => Resolved::Gone,
                })
            }
            (Some(b"pending"), _) => Ok(Resolved::Pending),
            _ => {
                self.step::<Vec<Vec<u8>>>(
                    self.session_key(to),
                    "discard",
                    deadline,
                    args![stub.id, ""],
                )
                .await?;
                Ok(Resolved::Gone)
            }
        }
    }

    /// Settles a lost answer in a cluster; `true` once there is nothing left to do.
    pub(super) async fn settle_cluster(
        &self,
        s: &Settle,
        deadline: i64,
    ) -> Result<bool, StoreError> {
        let target = self.session_key(&s.target);
        let hex = s.target.to_hex();
        let Some(from) = s.source else {
            let reply: Vec<Vec<u8>> = self
                .step(&target, "discard", deadline, args![s.id, s.deadline])
                .await?;
            if is(reply.first(), b"wait") {
                return Ok(false);
            }
            if is(reply.first(), b"discarded") {
                let owner = reply.into_iter().nth(1).unwrap_or_default();
                self.prune(&owner, vec![hex.into_bytes()], 0, deadline)
                    .await?;
                tracing::info!(key = %s.target.short(), "rolled back a create whose answer was lost");
            }
            return Ok(true);
        };
        let revoked: String = self
            .step(
                self.session_key(&from),
                "revoke",
                deadline,
                args![hex, s.id, s.deadline],
            )
            .await?;
        if revoked == "wait" {
            return Ok(false);
        }
        // Whatever the claim did, the target must not stay: if a reader already finished
        // the move, deleting it loses the session, but leaves no session nobody holds.
        self.step::<Vec<Vec<u8>>>(&target, "discard", deadline, args![s.id, ""])
            .await?;
        self.prune(&s.owner, vec![hex.clone().into_bytes()], 0, deadline)
            .await?;
        if revoked == "revoked" {
            let back: Vec<Vec<u8>> = self
                .step(
                    self.session_key(&from),
                    "restore",
                    deadline,
                    args![hex, s.id],
                )
                .await?;
            if is(back.first(), b"restored") {
                let owner = back.get(1).cloned().unwrap_or_default();
                if !owner.is_empty() {
                    let now = self.clock.now();
                    let (_, ttl) = index_until(int(back.get(2)).unwrap_or(now), now);
                    self.step::<String>(
                        self.index_key_of(&owner),
                        "reindex",
                        deadline,
                        args![from.to_hex(), now, ttl],
                    )
                    .await?;
                }
                tracing::info!(key = %from.short(), "rolled back a move whose answer was lost");
            }
        }
        Ok(true)
    }
}

/// The cluster steps driven one by one against a real `redis-server` (they touch one key
/// each, so a standalone server runs them as a cluster node would), to cut a move short at
/// each point and check that whoever comes next finishes it, discards it or rolls it back.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Principal;
    use std::io::{Read, Write};
    use std::time::{SystemTime, UNIX_EPOCH};

    struct Server(std::process::Child, u16);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A throwaway server, or `None` (the test is skipped) when `redis-server` is missing.
    fn server() -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = Server(child, port);
        for _ in 0..200 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() {
                    return Some(server);
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    fn key() -> StoreKey {
        crate::token::SessionId::generate().store_key()
    }

    fn unix_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    fn login(now: i64, user: &str) -> Patch {
        let mut patch = Patch::new(now, now + 3600);
        patch.replace_principal(Some(Principal::user(user)));
        patch
    }

    async fn exists(store: &RedisStore, key: &StoreKey) -> bool {
        store
            .query::<i64>(redis::cmd("EXISTS").arg(store.session_key(key)))
            .await
            .expect("EXISTS")
            == 1
    }

    async fn create(store: &RedisStore, record: &Record) -> StoreKey {
        let key = key();
        let commit = Commit::Create {
            key,
            record: record.clone(),
        };
        let (outcome, _) = store
            .commit_cluster(commit, store.deadline(), &Flight::default())
            .await
            .expect("create");
        assert_eq!(outcome, CommitOutcome::Applied);
        key
    }

    async fn keys_of(store: &RedisStore, user: &str) -> Vec<StoreKey> {
        let index = Principal::user(user).index_key();
        let deadline = store.deadline();
        let list = store.sessions_in_cluster(&index, deadline).await;
        list.expect("sessions_of").iter().map(|i| i.key()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moves_cut_short_are_finished_discarded_or_rolled_back() {
        let Some(server) = server() else {
            eprintln!("redis-server not found: skipped");
            return;
        };
        let url = format!("redis://127.0.0.1:{}", server.1);
        let store = RedisStore::connect(&url)
            .await
            .expect("url")
            .prefix("unit:");
        let now = store.clock.now();
        let mut anonymous = Record::new(now, now + 3600);
        anonymous
            .data_mut()
            .insert("cart".into(), serde_json::json!(["tea"]));

        // Cut short after the claim (the commit point), before any tidying: the move has
        // happened, and the next reader of the new key finishes it.
        let from = create(&store, &anonymous).await;
        let to = key();
        let patch = login(now, "alice");
        let commit = Commit::Move {
            from,
            to,
            patch: patch.clone(),
        };
        let (outcome, tidy) = store
            .commit_cluster(commit, store.deadline(), &Flight::default())
            .await
            .expect("move");
        assert_eq!((outcome, tidy.len()), (CommitOutcome::Applied, 1));
        drop(tidy);
        assert_eq!(
            store.load(&from).await.expect("load"),
            None,
            "the old key is dead"
        );
        let mut moved = anonymous.clone();
        patch.apply(&mut moved);
        assert_eq!(
            store.load(&to).await.expect("load"),
            Some(moved),
            "finished by a load"
        );
        assert!(
            !exists(&store, &from).await,
            "tombstone dropped once the record is filed"
        );
        assert_eq!(keys_of(&store, "alice").await, vec![to]);

        // Cut short before the claim: the stub is no session while the claim may still
        // come, and is discarded once its deadline has passed; the old session is untouched.
        let from = create(&store, &anonymous).await;
        let to = key();
        let deadline = unix_ms() + 300;
        let owner = Principal::user("bob").index_key().into_bytes();
        store
            .admit(&owner, &to, Some(&from), true, 7200, deadline)
            .await
            .expect("admit");
        let stub: String = store
            .step(
                store.session_key(&to),
                "stub",
                deadline,
                args![from.to_hex(), "m1", 3600],
            )
            .await
            .expect("stub");
        assert_eq!(stub, "applied");
        assert_eq!(
            store.load(&to).await.expect("load"),
            None,
            "pending: no session yet"
        );
        assert!(exists(&store, &to).await, "pending: kept");
        assert!(keys_of(&store, "bob").await.is_empty());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(store.load(&to).await.expect("load"), None);
        assert!(!exists(&store, &to).await, "abandoned: discarded");
        let claim: Vec<Vec<u8>> = store
            .step(
                store.session_key(&from),
                "claim",
                deadline,
                args![
                    to.to_hex(),
                    "m1",
                    owner,
                    0,
                    patch_args(&login(now, "bob")).unwrap()
                ],
            )
            .await
            .unwrap_or_default();
        assert!(
            claim.is_empty(),
            "a claim past its deadline is refused: {claim:?}"
        );
        assert_eq!(
            store.load(&from).await.expect("load"),
            Some(anonymous.clone())
        );

        // Applied, but the answer was lost: settled by a rollback once past the deadline.
        let from = create(&store, &anonymous).await;
        let to = key();
        let flight = Flight::default();
        let deadline = unix_ms() + 300;
        let commit = Commit::Move {
            from,
            to,
            patch: login(now, "carol"),
        };
        let (outcome, _) = store
            .commit_cluster(commit, deadline, &flight)
            .await
            .expect("move");
        assert_eq!(outcome, CommitOutcome::Applied);
        let settle = lock(&flight).take().expect("the claim was sent");
        let early = store.settle_cluster(&settle, store.deadline()).await;
        assert!(
            matches!(early, Ok(false)),
            "waits for the deadline: {early:?}"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let done = store.settle_cluster(&settle, store.deadline()).await;
        assert!(matches!(done, Ok(true)), "{done:?}");
        assert_eq!(
            store.load(&to).await.expect("load"),
            None,
            "no session nobody holds"
        );
        assert!(!exists(&store, &to).await);
        assert_eq!(
            store.load(&from).await.expect("load"),
            Some(anonymous.clone()),
            "back"
        );
        assert!(keys_of(&store, "carol").await.is_empty());

        // The same for a rotation within a principal: the old key is back in the index.
        let mut dave = Record::new(now, now + 3600);
        dave.set_principal(Some(Principal::user("dave")));
        let from = create(&store, &dave).await;
        let to = key();
        let flight = Flight::default();
        let deadline = unix_ms() + 300;
        let commit = Commit::Move {
            from,
            to,
            patch: Patch::new(now, now + 3600),
        };
        store
            .commit_cluster(commit, deadline, &flight)
            .await
            .expect("rotation");
        let settle = lock(&flight).take().expect("sent");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(
            store.settle_cluster(&settle, store.deadline()).await,
            Ok(true)
        ));
        assert_eq!(store.load(&from).await.expect("load"), Some(dave));
        assert_eq!(keys_of(&store, "dave").await, vec![from]);

        // A create whose answer was lost: deleted and unindexed.
        let key = key();
        let mut erin = Record::new(now, now + 3600);
        erin.set_principal(Some(Principal::user("erin")));
        let flight = Flight::default();
        let deadline = unix_ms() + 300;
        store
            .commit_cluster(Commit::Create { key, record: erin }, deadline, &flight)
            .await
            .expect("create");
        let settle = lock(&flight).take().expect("sent");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(
            store.settle_cluster(&settle, store.deadline()).await,
            Ok(true)
        ));
        assert!(!exists(&store, &key).await);
        assert!(keys_of(&store, "erin").await.is_empty());
        drop(server);
    }
}
