//! `RedisStore` on a real `redis-server` started by the tests: the conformance suite, two
//! service instances sharing sessions, failure and recovery, and round trips per request
//! counted by Redis itself.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::store::conformance::{Setup, StoreFactory};
use axum_tessera::store::RedisStore;
use axum_tessera::{Key, Session, SessionConfig, SessionLayer};
use http::StatusCode;

use crate::support::api::call;
use crate::support::redis::RedisServer;
use crate::support::{login_alice, whoami};

/// What `Session` answers a bearer token that no longer authenticates: a 401, not a
/// fresh anonymous session.
const DEAD_TOKEN: &str = "session token invalid or expired";

const TIMEOUT: Duration = Duration::from_millis(500);

async fn store_for(url: &str, setup: Setup) -> RedisStore {
    let store = RedisStore::connect(url)
        .await
        .expect("valid url")
        .prefix(format!("test:{}:", setup.namespace()))
        .with_clock(setup.clock());
    match setup.limit() {
        Some((max, policy)) => store.max_sessions_per_principal(max, policy),
        None => store,
    }
}

/// One server per factory: the generated tests run in parallel, each on its own server.
fn standalone() -> impl StoreFactory {
    let server = Arc::new(RedisServer::start());
    move |setup: Setup| {
        let server = server.clone();
        async move { store_for(&server.url(), setup).await }
    }
}

axum_tessera::store_conformance_tests!(standalone());

// ---- through the layer -------------------------------------------------------------------

async fn logout(session: Session) -> &'static str {
    session.logout();
    "bye"
}

async fn set_key(session: Session, Path(key): Path<String>) -> &'static str {
    session.insert(&key, true).expect("a bool serialises");
    "set"
}

async fn keys(session: Session) -> String {
    session.keys().join(",")
}

/// One instance of a small service; instances built with the same key share sessions
/// through the store.
fn app(store: RedisStore) -> Router {
    let key = Key::from_bytes(&[7u8; 32]).expect("32 bytes");
    let cfg = SessionConfig::api(key).require_existing(false);
    Router::new()
        .route("/login", post(login_alice))
        .route("/logout", post(logout))
        .route("/me", get(whoami))
        .route("/set/{key}", post(set_key))
        .route("/keys", get(keys))
        .route("/health", get(|| async { "ok" }))
        .layer(SessionLayer::new(cfg).with_store(store))
}

async fn connect(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::connect(&server.url())
        .await
        .expect("valid url")
        .prefix(prefix)
        .command_timeout(TIMEOUT)
}

/// Sends a request, failing (not hanging) if the service takes far longer than the store
/// timeout allows.
async fn send(app: &Router, method: &str, uri: &str, token: Option<&str>) -> (StatusCode, String) {
    tokio::time::timeout(TIMEOUT * 20, call(app, method, uri, token))
        .await
        .unwrap_or_else(|_| panic!("{method} {uri} hung past the store timeout"))
}

async fn log_in(app: &Router) -> String {
    let (status, token) = send(app, "POST", "/login", None).await;
    assert_eq!(status, StatusCode::OK, "login: {token}");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions() {
    let server = RedisServer::start();
    let a = app(connect(&server, "shared:").await);
    let b = app(connect(&server, "shared:").await);

    let token = log_in(&a).await;
    assert_eq!(send(&b, "GET", "/me", Some(&token)).await.1, "alice");
    send(&b, "POST", "/set/from_b", Some(&token)).await;
    send(&a, "POST", "/set/from_a", Some(&token)).await;
    assert_eq!(
        send(&a, "GET", "/keys", Some(&token)).await.1,
        "from_a,from_b"
    );
    assert_eq!(
        send(&b, "POST", "/logout", Some(&token)).await.0,
        StatusCode::OK
    );
    assert_eq!(send(&a, "GET", "/me", Some(&token)).await.1, DEAD_TOKEN);

    let other_prefix = app(connect(&server, "other:").await);
    let token = log_in(&a).await;
    assert_eq!(
        send(&other_prefix, "GET", "/me", Some(&token)).await.1,
        DEAD_TOKEN,
        "a different prefix is a different store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_changing_different_keys_all_survive() {
    let server = RedisServer::start();
    let app = app(connect(&server, "race:").await);
    let token = log_in(&app).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (app, token) = (app.clone(), token.clone());
        tasks
            .spawn(async move { send(&app, "POST", &format!("/set/k{i:02}"), Some(&token)).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.expect("task").0, StatusCode::OK);
    }
    let expect: Vec<String> = (0..24).map(|i| format!("k{i:02}")).collect();
    assert_eq!(
        send(&app, "GET", "/keys", Some(&token)).await.1,
        expect.join(",")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_under_the_prefix_with_the_session_ttl() {
    let server = RedisServer::start();
    let app = app(connect(&server, "ttl-check:").await);
    log_in(&app).await;
    let keys: Vec<String> = server
        .keys("*")
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let session = keys
        .iter()
        .find(|k| k.starts_with("ttl-check:s:"))
        .unwrap_or_else(|| panic!("no session key in {keys:?}"))
        .clone();
    assert!(
        keys.iter().any(|k| k == "ttl-check:p:4:user:alice"),
        "index key: {keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("ttl-check:")),
        "everything under the prefix: {keys:?}"
    );
    // The api preset's idle timeout is one hour: the server-side TTL matches it.
    let ttl = server
        .cmd(&[b"TTL", session.as_bytes()])
        .and_then(|r| r.int())
        .expect("integer reply");
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_server_gives_503_and_sessions_survive_a_restart() {
    let mut server = RedisServer::start();
    let app = app(connect(&server, "crash:").await);
    let mut tokens = Vec::new();
    for i in 0..5 {
        let token = log_in(&app).await;
        send(&app, "POST", &format!("/set/n{i}"), Some(&token)).await;
        tokens.push(token);
    }

    server.kill();
    for token in &tokens {
        let (status, body) = send(&app, "GET", "/me", Some(token)).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "load with the server down"
        );
        assert_eq!(body, "session store unavailable");
    }
    let (status, body) = send(&app, "POST", "/login", None).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "commit with the server down"
    );
    assert_eq!(body, "session could not be saved; please retry");
    assert_eq!(
        send(&app, "GET", "/health", None).await,
        (StatusCode::OK, "ok".to_owned()),
        "routes that never touch the session keep working"
    );

    server.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if send(&app, "GET", "/me", Some(&tokens[0])).await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store reconnects once the server is back");
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(send(&app, "GET", "/me", Some(token)).await.1, "alice");
        assert_eq!(
            send(&app, "GET", "/keys", Some(token)).await.1,
            format!("n{i}")
        );
    }
    let token = log_in(&app).await;
    assert_eq!(send(&app, "GET", "/me", Some(&token)).await.1, "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_gives_503_within_the_timeout() {
    let server = RedisServer::start();
    let app = app(connect(&server, "hang:").await);
    let token = log_in(&app).await;

    server.stop();
    let (status, _) = send(&app, "GET", "/me", Some(&token)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "load from a frozen server"
    );
    let (status, _) = send(&app, "POST", "/set/x", Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    server.resume();

    let mut answers = Vec::new();
    for _ in 0..50 {
        let (status, body) = send(&app, "GET", "/me", Some(&token)).await;
        if status == StatusCode::OK {
            answers.push(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answers, ["alice"], "serves again once the server thaws");
}

/// Commands this client sends in standalone mode; everything else in `INFO commandstats`
/// ran inside a script, in the same round trip.
const CLIENT_COMMANDS: [&str; 4] = ["evalsha", "eval", "hgetall", "script|load"];

/// Calls per command name.
type Calls = Vec<(String, u64)>;

/// (round trips, commands run inside scripts) since the last `CONFIG RESETSTAT`.
fn round_trips(server: &RedisServer) -> (Calls, Calls) {
    let (mut client, mut inner): (Vec<_>, Vec<_>) = server
        .command_calls()
        .into_iter()
        .filter(|(name, _)| !matches!(name.as_str(), "info" | "config|resetstat"))
        .partition(|(name, _)| CLIENT_COMMANDS.contains(&name.as_str()));
    client.sort();
    inner.sort();
    (client, inner)
}

/// Counts the commands Redis executed per request with `INFO commandstats`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_per_load_and_per_commit() {
    const N: u64 = 50;
    let server = RedisServer::start();
    let app = app(connect(&server, "rt:").await);
    // Warm up: the first run of a script answers NOSCRIPT and is loaded once.
    let token = log_in(&app).await;
    send(&app, "POST", "/set/warm", Some(&token)).await;
    let mut rotating = Vec::new();
    for _ in 0..N {
        rotating.push(log_in(&app).await);
    }

    struct Case {
        name: &'static str,
        method: &'static str,
        uri: &'static str,
        tokens: Vec<Option<String>>,
        expect: Vec<(&'static str, u64)>,
    }
    let same = |t: &str| vec![Some(t.to_owned()); N as usize];
    let cases = [
        Case {
            name: "read (load only)",
            method: "GET",
            uri: "/me",
            tokens: same(&token),
            expect: vec![("hgetall", N)],
        },
        Case {
            name: "write (load + patch commit)",
            method: "POST",
            uri: "/set/k",
            tokens: same(&token),
            expect: vec![("evalsha", N), ("hgetall", N)],
        },
        Case {
            name: "login without a session (create)",
            method: "POST",
            uri: "/login",
            tokens: vec![None; N as usize],
            expect: vec![("evalsha", N)],
        },
        Case {
            name: "login rotating a session (load + move)",
            method: "POST",
            uri: "/login",
            tokens: rotating.into_iter().map(Some).collect(),
            expect: vec![("evalsha", N), ("hgetall", N)],
        },
        Case {
            name: "route that never touches the session",
            method: "GET",
            uri: "/health",
            tokens: same(&token),
            expect: vec![],
        },
    ];
    for case in cases {
        server.text("CONFIG RESETSTAT");
        for token in &case.tokens {
            let (status, _) = send(&app, case.method, case.uri, token.as_deref()).await;
            assert_eq!(status, StatusCode::OK, "{}", case.name);
        }
        let (client, inner) = round_trips(&server);
        eprintln!(
            "{} x{N}: round trips {client:?}; inside scripts {inner:?}",
            case.name
        );
        let expect: Vec<(String, u64)> = case
            .expect
            .iter()
            .map(|(n, c)| ((*n).to_owned(), *c))
            .collect();
        assert_eq!(client, expect, "{}", case.name);
    }
}
