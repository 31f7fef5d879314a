//! `RedisStore` under faults, on real `redis-server` processes (each on a free loopback port
//! with its own directory, see `support::redis`) and a real three-master Redis Cluster:
//! concurrent increments from two instances, a server stopped (SIGSTOP) during a login, a
//! cluster master stopped for less than the command timeout, records broken outside the
//! store, the TTL of a cluster index, and a run under mixed load through a stop and a crash.
//!
//! Nothing here asserts on timing: each test counts outcomes and prints the counts.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::__fuzz::SessionId;
use axum_tessera::store::{
    Commit, CommitOutcome, LimitPolicy, Record, RedisStore, SessionStore, StoreErrorKind, StoreKey,
    Update,
};
use axum_tessera::{Key, Principal, Session, SessionConfig, SessionLayer};
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::redis::{RedisCluster, RedisServer, Resp};

// ---- the backends -----------------------------------------------------------------------

/// What the store behind a test runs on, for raw reads and writes beside it.
enum Backend<'a> {
    Single(&'a RedisServer),
    Cluster(&'a RedisCluster),
}

impl Backend<'_> {
    fn cmd(&self, parts: &[&[u8]]) -> Option<Resp> {
        match self {
            Self::Single(s) => s.cmd(parts),
            Self::Cluster(c) => c.cmd(parts),
        }
    }

    fn keys(&self, pattern: &str) -> Vec<Vec<u8>> {
        match self {
            Self::Single(s) => s.keys(pattern),
            Self::Cluster(c) => c.keys(pattern),
        }
    }

    async fn store(&self, prefix: &str, timeout: Duration) -> RedisStore {
        let store = match self {
            Self::Single(s) => RedisStore::connect(&s.url()).await,
            Self::Cluster(c) => RedisStore::connect_cluster(c.urls()).await,
        };
        store
            .expect("reachable")
            .prefix(prefix)
            .command_timeout(timeout)
    }

    /// Records (hashes with an expiry) owned by `principal` under `prefix`: a stub or a
    /// tombstone of a cluster move has neither, so only sessions count.
    fn records_of(&self, prefix: &str, principal: &Principal) -> usize {
        let pid = principal.index_key().into_bytes();
        self.keys(&format!("{prefix}s:*"))
            .iter()
            .filter(|key| {
                let owner = self.cmd(&[b"HGET", key, b"pi"]).and_then(|r| r.bytes());
                let e = self.cmd(&[b"HGET", key, b"e"]).and_then(|r| r.bytes());
                owner.as_ref() == Some(&pid) && e.is_some()
            })
            .count()
    }
}

// ---- helpers -----------------------------------------------------------------------------

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A record created now, living an hour, with `principal` and `data`.
fn record(principal: Option<&Principal>, data: &[(&str, Value)]) -> Record {
    let now = unix_now();
    let mut v = serde_json::to_value(Record::new(now, now + 3600)).expect("serialises");
    if let Some(p) = principal {
        v["principal"] = serde_json::to_value(p).expect("serialises");
    }
    let mut map = serde_json::Map::new();
    for (k, val) in data {
        map.insert((*k).to_owned(), val.clone());
    }
    v["data"] = Value::Object(map);
    serde_json::from_value(v).expect("a record")
}

fn new_key() -> StoreKey {
    SessionId::generate().store_key()
}

fn key_bytes(prefix: &str, key: &StoreKey) -> Vec<u8> {
    format!("{prefix}s:{}", key.to_hex()).into_bytes()
}

async fn send(app: &Router, method: &str, uri: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        app.clone()
            .oneshot(req.body(Body::empty()).expect("request")),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {uri} hung"))
    .expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Routes of a small API service (bearer tokens, sessions for anyone).
fn api(key: &Key, store: RedisStore) -> Router {
    async fn start(session: Session) -> String {
        session.insert("cart", ["tea"]).expect("serialises");
        session.token()
    }
    async fn login(session: Session, Path(user): Path<String>) -> String {
        session.login(Principal::user(user));
        session.token()
    }
    async fn slow_login(session: Session, Path(user): Path<String>) -> String {
        // As a handler that checks a password: the session is loaded, then time passes
        // before the commit.
        let _ = session.get_value("cart");
        tokio::time::sleep(Duration::from_millis(150)).await;
        session.login(Principal::user(user));
        session.token()
    }
    async fn me(session: Session) -> String {
        let who = session
            .principal()
            .map(|p| p.id().to_owned())
            .unwrap_or_else(|| "anonymous".into());
        let cart = session.get_value("cart").unwrap_or(Value::Null);
        format!("{who}|{cart}")
    }
    async fn set_key(session: Session, Path(key): Path<String>) -> &'static str {
        session.insert(&key, true).expect("serialises");
        "set"
    }
    async fn keys(session: Session) -> String {
        session.keys().join(",")
    }
    async fn incr(session: Session) -> (StatusCode, String) {
        match session.increment("n", 1).await {
            Ok(n) => (StatusCode::OK, n.to_string()),
            Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        }
    }
    async fn count(session: Session) -> String {
        session.get::<i64>("n").unwrap_or(0).to_string()
    }
    let cfg = SessionConfig::api(key.clone()).require_existing(false);
    Router::new()
        .route("/start", post(start))
        .route("/login/{user}", post(login))
        .route("/slow-login/{user}", post(slow_login))
        .route("/me", get(me))
        .route("/set/{key}", post(set_key))
        .route("/keys", get(keys))
        .route("/incr", post(incr))
        .route("/count", get(count))
        .layer(SessionLayer::new(cfg).with_store(store))
}

// ---- 1. increments -----------------------------------------------------------------------

const INCREMENTS: usize = 400;

/// 400 concurrent `SessionStore::update` increments of one key, alternating between two
/// stores (two connections, as two instances): the count ends at exactly 400.
async fn increments_from_two_stores(backend: &Backend<'_>, label: &str) {
    let prefix = format!("incr-{label}:");
    let a = backend.store(&prefix, Duration::from_secs(5)).await;
    let b = backend.store(&prefix, Duration::from_secs(5)).await;
    let key = new_key();
    let created = a
        .commit(Commit::Create {
            key,
            record: record(None, &[]),
        })
        .await
        .expect("create");
    assert_eq!(created, CommitOutcome::Applied);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..INCREMENTS {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { store.update(&key, "n", Update::Increment { by: 1 }).await });
    }
    let mut applied = 0;
    while let Some(done) = tasks.join_next().await {
        if matches!(
            done.expect("task"),
            Ok(axum_tessera::store::UpdateOutcome::Applied(_))
        ) {
            applied += 1;
        }
    }
    let n = a.load(&key).await.expect("load").expect("live").data()["n"].clone();
    println!(
        "{label}: {INCREMENTS} store increments from two instances: applied {applied}, value {n}"
    );
    assert_eq!(applied, INCREMENTS);
    assert_eq!(n, json!(INCREMENTS));
}

/// The same through HTTP: two routers (two layers with one key, two stores) and a handler
/// calling `session.increment`, driven with the session cookie of a first response.
async fn increments_through_two_layers(backend: &Backend<'_>, label: &str) {
    async fn start(session: Session) -> &'static str {
        session.insert("started", true).expect("serialises");
        "started"
    }
    async fn incr(session: Session) -> (StatusCode, String) {
        match session.increment("n", 1).await {
            Ok(n) => (StatusCode::OK, n.to_string()),
            Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        }
    }
    let prefix = format!("http-incr-{label}:");
    let key = Key::generate();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = backend.store(&prefix, Duration::from_secs(5)).await;
        apps.push(
            Router::new()
                .route("/start", get(start))
                .route("/incr", get(incr))
                .layer(SessionLayer::new(SessionConfig::web(key.clone())).with_store(store)),
        );
    }
    let res = apps[0]
        .clone()
        .oneshot(Request::get("/start").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..INCREMENTS {
        let app = apps[i % 2].clone();
        let cookie = cookie.clone();
        tasks.spawn(async move {
            let req = Request::get("/incr")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .expect("request");
            let res = app.oneshot(req).await.expect("infallible");
            let status = res.status();
            let body = res.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        });
    }
    let mut values = BTreeSet::new();
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.expect("task");
        match status {
            StatusCode::OK => {
                values.insert(body.parse::<usize>().expect("a count"));
            }
            _ => failed += 1,
        }
    }
    println!(
        "{label}: {INCREMENTS} HTTP increments through two layers: distinct answers {}, highest {:?}, failed {failed}",
        values.len(),
        values.last()
    );
    assert_eq!(failed, 0);
    assert_eq!(
        values,
        (1..=INCREMENTS).collect::<BTreeSet<_>>(),
        "every increment counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_instances_all_count() {
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let backend = Backend::Single(&server);
    increments_from_two_stores(&backend, "standalone").await;
    increments_through_two_layers(&backend, "standalone").await;
}

// ---- 2. a server stopped during a login ----------------------------------------------------

/// Ghost sessions of `user`: listed by `sessions_of`, or records of it in the backend,
/// polled for a while (the client settles a failed commit in the background).
async fn ghosts_of(backend: &Backend<'_>, prefix: &str, user: &str) -> usize {
    let principal = Principal::user(user);
    let reader = backend.store(prefix, Duration::from_secs(2)).await;
    let mut ghosts = usize::MAX;
    for _ in 0..40 {
        let listed = reader
            .sessions_of(&principal.index_key())
            .await
            .map_or(usize::MAX, |l| l.len());
        ghosts = listed.max(backend.records_of(prefix, &principal));
        if ghosts == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ghosts
}

/// An anonymous session with a cart, through `app`: its token and its raw key.
async fn anonymous_session(backend: &Backend<'_>, prefix: &str, app: &Router) -> (String, Vec<u8>) {
    let pattern = format!("{prefix}s:*");
    let before: BTreeSet<Vec<u8>> = backend.keys(&pattern).into_iter().collect();
    let (status, token) = send(app, "POST", "/start", None).await;
    assert_eq!(status, StatusCode::OK, "anonymous session: {token}");
    let raw = backend
        .keys(&pattern)
        .into_iter()
        .find(|k| !before.contains(k))
        .expect("the new session's key");
    (token, raw)
}

/// The login of `user` through `app`, with the nodes `stop` picks (given the pre-login
/// session's key) stopped 60 ms into a handler that takes 150 ms after loading the session,
/// and resumed 1.5 s in; answers (login status, ghost sessions, what the old token loads).
async fn login_during_a_stop<'a>(
    backend: &Backend<'_>,
    prefix: &str,
    stop: impl Fn(&[u8]) -> Vec<&'a RedisServer>,
    user: &str,
    app: &Router,
) -> (StatusCode, usize, String) {
    let (token, raw) = anonymous_session(backend, prefix, app).await;
    let stopped = stop(&raw);
    let started = Instant::now();
    let login = {
        let app = app.clone();
        let (token, uri) = (token.clone(), format!("/slow-login/{user}"));
        tokio::spawn(async move { send(&app, "POST", &uri, Some(&token)).await })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    for node in &stopped {
        node.stop();
    }
    let (login_status, _) = login.await.expect("task");
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed())).await;
    for node in &stopped {
        node.resume();
    }
    // Whatever the stopped server still had queued runs now, and the client settles the
    // failed commit: count once that had its chance.
    let ghosts = ghosts_of(backend, prefix, user).await;
    let (_, old) = send(app, "GET", "/me", Some(&token)).await;
    (login_status, ghosts, old)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_while_the_server_is_stopped_leaves_no_ghost() {
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let backend = Backend::Single(&server);
    let store = backend.store("ghost:", Duration::from_millis(500)).await;
    let app = api(&Key::generate(), store);
    let (status, ghosts, old) =
        login_during_a_stop(&backend, "ghost:", |_| vec![&server], "ghost-user", &app).await;
    println!(
        "standalone: login while stopped answered {}",
        status.as_u16()
    );
    println!("standalone: ghost sessions: {ghosts}");
    println!("standalone: the pre-login session loads as {old}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ghosts, 0);
    assert_eq!(
        old, r#"anonymous|["tea"]"#,
        "the pre-login session is untouched"
    );
}

// ---- 2b. an answer lost after the script ran ---------------------------------------------

/// A TCP proxy in front of a server that, when armed, swallows the next reply from the
/// server and cuts that connection: a crash right after a command ran, on cue.
struct CutProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl CutProxy {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (armed2, cuts2) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (armed, cuts) = (armed2.clone(), cuts2.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
                    });
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = server_rx.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if armed.swap(false, Ordering::SeqCst) {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if client_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        Self { port, armed, cuts }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A login whose commit ran but whose answer never came back (the connection broke right
/// after): the layer answers 503, and the store rolls the login back in the background, so
/// the principal has no session and the pre-login session works again. The same for a
/// login that creates its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answer_of_a_login_is_rolled_back() {
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let backend = Backend::Single(&server);
    let proxy = CutProxy::start(server.port()).await;
    let prefix = "lost:";
    let store = RedisStore::connect(&proxy.url())
        .await
        .expect("url")
        .prefix(prefix)
        .command_timeout(Duration::from_millis(500));
    let app = api(&Key::generate(), store);
    // Warm up: the scripts are loaded, so the reply cut below is the commit's own.
    let (token, _) = anonymous_session(&backend, prefix, &app).await;
    assert_eq!(
        send(&app, "POST", "/login/warm", Some(&token)).await.0,
        StatusCode::OK
    );

    let (token, _) = anonymous_session(&backend, prefix, &app).await;
    let login = {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move { send(&app, "POST", "/slow-login/lost-move", Some(&token)).await })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    proxy.armed.store(true, Ordering::SeqCst);
    let (moved, _) = login.await.expect("task");
    // Before the commit's deadline has passed the store may not settle it (the commit
    // could still be on its way): what it applied is visible now.
    let applied = backend.records_of(prefix, &Principal::user("lost-move"));
    let move_ghosts = ghosts_of(&backend, prefix, "lost-move").await;
    let (_, old) = send(&app, "GET", "/me", Some(&token)).await;

    let create = {
        let app = app.clone();
        tokio::spawn(async move { send(&app, "POST", "/slow-login/lost-create", None).await })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    proxy.armed.store(true, Ordering::SeqCst);
    let (created, _) = create.await.expect("task");
    let applied = applied + backend.records_of(prefix, &Principal::user("lost-create"));
    let create_ghosts = ghosts_of(&backend, prefix, "lost-create").await;

    let cuts = proxy.cuts.load(Ordering::SeqCst);
    println!(
        "lost answers: {cuts} replies cut; the login by move answered {}, by create {}",
        moved.as_u16(),
        created.as_u16()
    );
    println!("lost answers: logins applied without an answer: {applied}, rolled back since: ghost sessions: {}", move_ghosts + create_ghosts);
    println!("lost answers: the pre-login session loads as {old}");
    assert_eq!(
        (cuts, applied),
        (2, 2),
        "both commits ran, and lost their answer"
    );
    assert_eq!(moved, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(created, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(move_ghosts + create_ghosts, 0);
    assert_eq!(old, r#"anonymous|["tea"]"#, "the pre-login session is back");
}

// ---- 4. corrupt records --------------------------------------------------------------------

/// Records broken outside the store load as `Corrupt`, are deleted like any other, and do
/// not stop a login under another key; one whose times are unreadable counts against no
/// limit either.
async fn corrupt_records(backend: &Backend<'_>, label: &str) {
    let prefix = format!("corrupt-{label}:");
    let store = backend.store(&prefix, Duration::from_secs(2)).await;
    let limited = store
        .clone()
        .max_sessions_per_principal(1, LimitPolicy::Reject);
    let alice = Principal::user("alice");
    // (what, field, value, whether the field is one of the record's times)
    let breakages: [(&str, &[u8], &[u8], bool); 5] = [
        (
            "a data field that is not JSON",
            b"d:cart",
            b"{not json",
            false,
        ),
        ("an expiry that is not a number", b"e", b"soon", true),
        (
            "a creation time that is not a number",
            b"c",
            b"yesterday",
            true,
        ),
        (
            "a user agent that is not UTF-8",
            b"u",
            b"caf\xe9 \xff",
            false,
        ),
        (
            "a data field that is not UTF-8",
            b"d:bytes",
            b"\"\xc3\x28\"",
            false,
        ),
    ];
    let (mut corrupt, mut deleted, mut logins) = (0, 0, 0);
    for (what, field, value, time) in breakages {
        let key = new_key();
        let created = store
            .commit(Commit::Create {
                key,
                record: record(Some(&alice), &[("cart", json!(["tea"]))]),
            })
            .await
            .expect("create");
        assert_eq!(created, CommitOutcome::Applied, "{what}");
        let raw = key_bytes(&prefix, &key);
        assert!(
            matches!(
                backend.cmd(&[b"HSET", &raw, field, value]),
                Some(Resp::Int(_))
            ),
            "{what}: written"
        );
        let load = store.load(&key).await.map_err(|e| e.kind());
        let lookup = store.lookup(&key).await.map_err(|e| e.kind());
        if load == Err(StoreErrorKind::Corrupt) && lookup == Err(StoreErrorKind::Corrupt) {
            corrupt += 1;
        } else {
            println!("{label}: {what}: load {load:?}, lookup {lookup:?}");
        }
        // Listing the principal's sessions and logging in again work around it.
        store
            .sessions_of(&alice.index_key())
            .await
            .unwrap_or_else(|e| panic!("{what}: sessions_of: {e:?}"));
        let other = new_key();
        let by = if time { &limited } else { &store };
        let login = by
            .commit(Commit::Create {
                key: other,
                record: record(Some(&alice), &[]),
            })
            .await
            .map_err(|e| e.kind());
        if login == Ok(CommitOutcome::Applied) {
            logins += 1;
        } else {
            println!("{label}: {what}: login under another key: {login:?}");
        }
        if store
            .commit(Commit::Delete { key })
            .await
            .map_err(|e| e.kind())
            == Ok(CommitOutcome::Applied)
        {
            deleted += 1;
        }
        assert_eq!(
            store.load(&key).await.map_err(|e| e.kind()),
            Ok(None),
            "{what}: gone"
        );
        store
            .commit(Commit::Delete { key: other })
            .await
            .expect("logout");
    }
    // A key of another type entirely.
    let key = new_key();
    let raw = key_bytes(&prefix, &key);
    backend.cmd(&[b"SET", &raw, b"not a hash"]);
    let load = store.load(&key).await.map_err(|e| e.kind());
    corrupt += usize::from(load == Err(StoreErrorKind::Corrupt));
    deleted += usize::from(
        store
            .commit(Commit::Delete { key })
            .await
            .map_err(|e| e.kind())
            == Ok(CommitOutcome::Applied),
    );
    println!(
        "{label}: corrupt records reported as Corrupt: {corrupt} of 6, deleted: {deleted} of 6, logins beside them: {logins} of 5"
    );
    assert_eq!((corrupt, deleted, logins), (6, 6, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_are_reported_and_deleted() {
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    corrupt_records(&Backend::Single(&server), "standalone").await;
}

// ---- 3, 5 and the rest in a cluster --------------------------------------------------------

/// A load with `command_timeout(5s)` from a master stopped for 3 s waits for it.
async fn master_stopped_shorter_than_the_timeout(cluster: &RedisCluster) {
    let prefix = "slow:";
    let store = Backend::Cluster(cluster)
        .store(prefix, Duration::from_secs(5))
        .await;
    let (mut ok, mut failed) = (0, 0);
    for round in 0..2 {
        let key = new_key();
        let created = store
            .commit(Commit::Create {
                key,
                record: record(None, &[("round", json!(round))]),
            })
            .await
            .expect("create");
        assert_eq!(created, CommitOutcome::Applied);
        let master = cluster.owner(&key_bytes(prefix, &key));
        master.stop();
        let reader = store.clone();
        let pending = tokio::spawn(async move {
            if round == 0 {
                reader.load(&key).await.map(|r| r.is_some())
            } else {
                reader
                    .update(&key, "n", Update::Increment { by: 1 })
                    .await
                    .map(|o| matches!(o, axum_tessera::store::UpdateOutcome::Applied(_)))
            }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        master.resume();
        match pending.await.expect("task") {
            Ok(true) => ok += 1,
            other => {
                println!("cluster: round {round} with a master stopped 3 s: {other:?}");
                failed += 1;
            }
        }
    }
    println!("cluster: command_timeout(5s), master stopped 3 s: succeeded {ok}, failed {failed}");
    assert_eq!((ok, failed), (2, 0));
}

/// After a login the principal's index has a TTL, and keeps one through a rotation and
/// after `sessions_of` pruned it.
async fn index_ttl(cluster: &RedisCluster) {
    let prefix = "ttl:";
    let store = Backend::Cluster(cluster)
        .store(prefix, Duration::from_secs(2))
        .await;
    let app = api(&Key::generate(), store.clone());
    let index = format!("{prefix}p:{}", Principal::user("ttl-user").index_key()).into_bytes();
    let pttl = || {
        cluster
            .cmd(&[b"PTTL", &index])
            .and_then(|r| r.int())
            .unwrap_or(-2)
    };

    let (status, token) = send(&app, "POST", "/login/ttl-user", None).await;
    assert_eq!(status, StatusCode::OK);
    let after_login = pttl();
    let (_, anon) = send(&app, "POST", "/start", None).await;
    let (_, rotated) = send(&app, "POST", "/login/ttl-user", Some(&anon)).await;
    let after_move = pttl();
    // An index left without a TTL (as earlier versions wrote them) gets one when read.
    cluster.cmd(&[b"PERSIST", &index]);
    let listed = store
        .sessions_of(&Principal::user("ttl-user").index_key())
        .await
        .expect("sessions_of")
        .len();
    let after_read = pttl();
    println!(
        "cluster: index PTTL after a login {after_login} ms, after a login by move {after_move} ms, after sessions_of ({listed} listed) {after_read} ms"
    );
    assert!(after_login > 0 && after_move > 0 && after_read > 0);
    assert_eq!(listed, 2);
    assert_eq!(
        send(&app, "GET", "/me", Some(&rotated)).await.1,
        "ttl-user|[\"tea\"]"
    );
    assert_eq!(
        send(&app, "GET", "/me", Some(&token)).await.1,
        "ttl-user|null"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_faults() {
    let cluster = RedisCluster::start();
    let backend = Backend::Cluster(&cluster);
    increments_from_two_stores(&backend, "cluster").await;
    increments_through_two_layers(&backend, "cluster").await;
    corrupt_records(&backend, "cluster").await;
    index_ttl(&cluster).await;

    // A login whose claim of the old session runs into the stopped master holding it:
    // admitted and stubbed, never claimed; the stub is discarded, the old session stays.
    let prefix = "ghost:";
    let store = backend.store(prefix, Duration::from_millis(500)).await;
    let app = api(&Key::generate(), store);
    let holder = |raw: &[u8]| vec![cluster.owner(raw)];
    let (status, ghosts, old) =
        login_during_a_stop(&backend, prefix, holder, "ghost-user", &app).await;
    let all = |_: &[u8]| cluster.nodes().iter().collect::<Vec<_>>();
    let (status_all, ghosts_all, old_all) =
        login_during_a_stop(&backend, prefix, all, "ghost-user-2", &app).await;
    println!(
        "cluster: login with masters stopped answered {} and {}",
        status.as_u16(),
        status_all.as_u16()
    );
    println!("cluster: ghost sessions: {}", ghosts + ghosts_all);
    println!("cluster: the pre-login sessions load as {old} and {old_all}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status_all, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ghosts + ghosts_all, 0);
    assert_eq!(old, r#"anonymous|["tea"]"#);
    assert_eq!(old_all, r#"anonymous|["tea"]"#);

    master_stopped_shorter_than_the_timeout(&cluster).await;
}

// ---- 6. mixed load through a stop and a crash -----------------------------------------------

/// What the load saw, to check against what the store holds afterwards.
#[derive(Default)]
struct Ledger {
    /// (session token, key) of every write answered 200.
    writes: Vec<(String, String)>,
    /// (user, token) of every login answered 200.
    logins: Vec<(String, String)>,
    /// Users whose login failed.
    failed_logins: Vec<String>,
    incr_acked: usize,
    incr_failed: usize,
    other_failures: usize,
}

async fn worker(
    apps: Arc<Vec<Router>>,
    me: usize,
    counter: String,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut own: Option<String> = None;
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) && i < 400 {
        i += 1;
        let app = &apps[(me + i) % apps.len()];
        match i % 3 {
            0 => {
                let Some(token) = own.clone() else {
                    let (status, token) = send(app, "POST", "/start", None).await;
                    if status == StatusCode::OK {
                        own = Some(token);
                    }
                    continue;
                };
                let key = format!("w{me}-{i}");
                let (status, _) = send(app, "POST", &format!("/set/{key}"), Some(&token)).await;
                let mut l = ledger.lock().unwrap();
                match status {
                    StatusCode::OK => l.writes.push((token, key)),
                    _ => l.other_failures += 1,
                }
            }
            1 => {
                let (status, _) = send(app, "POST", "/incr", Some(&counter)).await;
                let mut l = ledger.lock().unwrap();
                match status {
                    StatusCode::OK => l.incr_acked += 1,
                    _ => l.incr_failed += 1,
                }
            }
            _ => {
                let user = format!("u{me}-{i}");
                // Half the logins rotate an anonymous session (a move), half create one.
                let from = if i.is_multiple_of(2) {
                    let (status, token) = send(app, "POST", "/start", None).await;
                    if status != StatusCode::OK {
                        ledger.lock().unwrap().other_failures += 1;
                        continue;
                    }
                    Some(token)
                } else {
                    None
                };
                let (status, token) =
                    send(app, "POST", &format!("/login/{user}"), from.as_deref()).await;
                let mut l = ledger.lock().unwrap();
                match status {
                    StatusCode::OK => l.logins.push((user, token)),
                    _ => l.failed_logins.push(user),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_through_a_stop_and_a_crash() {
    let mut server = RedisServer::start();
    let prefix = "mixed:";
    let key = Key::generate();
    let timeout = Duration::from_millis(500);
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = Backend::Single(&server).store(prefix, timeout).await;
        apps.push(api(&key, store));
    }
    let apps = Arc::new(apps);
    let (status, counter) = send(&apps[0], "POST", "/start", None).await;
    assert_eq!(status, StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let workers: Vec<_> = (0..6)
        .map(|me| {
            tokio::spawn(worker(
                apps.clone(),
                me,
                counter.clone(),
                stop.clone(),
                ledger.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.resume();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("worker");
    }

    // Back to normal: wait until the service answers again.
    for _ in 0..100 {
        if send(&apps[0], "GET", "/count", Some(&counter)).await.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("workers done")
        .into_inner()
        .unwrap();
    let backend = Backend::Single(&server);
    let reader = backend.store(prefix, Duration::from_secs(2)).await;

    let mut lost_writes = 0;
    let mut by_session: HashMap<&str, Vec<&str>> = HashMap::new();
    for (token, k) in &ledger.writes {
        by_session.entry(token).or_default().push(k);
    }
    for (token, keys) in &by_session {
        let (_, held) = send(&apps[1], "GET", "/keys", Some(token)).await;
        let held: BTreeSet<&str> = held.split(',').collect();
        lost_writes += keys.iter().filter(|k| !held.contains(**k)).count();
    }
    for (user, token) in &ledger.logins {
        let (_, me) = send(&apps[0], "GET", "/me", Some(token)).await;
        if !me.starts_with(&format!("{user}|")) {
            lost_writes += 1;
        }
    }
    let (_, value) = send(&apps[1], "GET", "/count", Some(&counter)).await;
    let value: usize = value.parse().expect("a count");
    let lost_increments = ledger.incr_acked.saturating_sub(value);

    // Logins that failed must leave nothing, once the client has settled them.
    let mut ghosts = usize::MAX;
    for _ in 0..60 {
        ghosts = 0;
        for user in &ledger.failed_logins {
            let principal = Principal::user(user);
            let listed = reader
                .sessions_of(&principal.index_key())
                .await
                .map_or(1, |l| l.len());
            ghosts += listed.max(backend.records_of(prefix, &principal));
        }
        if ghosts == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    println!(
        "mixed load: writes acknowledged {}, logins acknowledged {}, logins failed {}, increments acknowledged {} failed {}, other failures {}",
        ledger.writes.len(),
        ledger.logins.len(),
        ledger.failed_logins.len(),
        ledger.incr_acked,
        ledger.incr_failed,
        ledger.other_failures
    );
    println!(
        "mixed load: counter {value} (acknowledged {}, applied without an answer {})",
        ledger.incr_acked,
        value.saturating_sub(ledger.incr_acked)
    );
    println!("acknowledged writes lost: {lost_writes}");
    println!("same-key increments lost: {lost_increments}");
    println!("ghost sessions: {ghosts}");
    assert!(
        !ledger.writes.is_empty() && !ledger.logins.is_empty() && ledger.incr_acked > 0,
        "the load ran"
    );
    assert!(
        ledger.incr_failed + ledger.failed_logins.len() + ledger.other_failures > 0,
        "the faults were felt"
    );
    assert_eq!(lost_writes, 0, "acknowledged writes lost");
    assert_eq!(lost_increments, 0, "same-key increments lost");
    assert!(
        value <= ledger.incr_acked + ledger.incr_failed,
        "no increment counted twice"
    );
    assert_eq!(ghosts, 0, "ghost sessions");
}
