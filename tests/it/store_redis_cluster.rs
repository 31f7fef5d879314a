//! `RedisStore` on a real three-master Redis Cluster made with `redis-cli --cluster create`:
//! the whole conformance suite, and login rotation through the layer.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use axum_tessera::store::conformance::{self, Setup};
use axum_tessera::store::RedisStore;
use axum_tessera::{Key, Session, SessionConfig, SessionLayer};
use http::StatusCode;

use crate::support::api::{bearer, call};
use crate::support::redis::RedisCluster;
use crate::support::{login_alice, send, whoami};

/// What `Session` answers a bearer token that no longer authenticates: a 401, not a
/// fresh anonymous session.
const DEAD_TOKEN: &str = "session token invalid or expired";

async fn cluster_store(cluster: &RedisCluster) -> RedisStore {
    RedisStore::connect_cluster(cluster.urls())
        .await
        .expect("cluster reachable")
}

/// One cluster for the whole suite: starting one takes seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_cluster() {
    let cluster = Arc::new(RedisCluster::start());
    let factory = {
        let cluster = cluster.clone();
        move |setup: Setup| {
            let cluster = cluster.clone();
            async move {
                let store = cluster_store(&cluster)
                    .await
                    .prefix(format!("test:{}:", setup.namespace()))
                    .with_clock(setup.clock());
                match setup.limit() {
                    Some((max, policy)) => store.max_sessions_per_principal(max, policy),
                    None => store,
                }
            }
        }
    };
    conformance::run_all(&factory).await;
    let sizes = cluster.sizes();
    assert!(
        sizes.iter().filter(|&&n| n > 0).count() >= 2,
        "keys spread over the masters: {sizes:?}"
    );
}

async fn count(session: Session) -> String {
    let n: u64 = session.get("n").unwrap_or(0) + 1;
    session.insert("n", n).expect("a u64 serialises");
    n.to_string()
}

async fn everywhere(session: Session) -> String {
    session
        .logout_everywhere()
        .await
        .expect("store reachable")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotation_and_logout_everywhere_on_a_cluster() {
    let cluster = RedisCluster::start();
    let cfg = SessionConfig::api(Key::generate()).require_existing(false);
    let app = Router::new()
        .route("/login", post(login_alice))
        .route("/me", get(whoami))
        .route("/count", post(count))
        .route("/everywhere", post(everywhere))
        .layer(SessionLayer::new(cfg).with_store(cluster_store(&cluster).await));

    // An anonymous session with data, then a login: the data moves to the new ID.
    let res = send(&app, bearer("POST", "/count", None)).await;
    let first = res.headers["x-session-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(call(&app, "POST", "/count", Some(&first)).await.1, "2");
    let (status, second) = call(&app, "POST", "/login", Some(&first)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(first, second, "login rotates the ID");
    assert_eq!(call(&app, "GET", "/me", Some(&first)).await.1, DEAD_TOKEN);
    assert_eq!(call(&app, "GET", "/me", Some(&second)).await.1, "alice");
    assert_eq!(
        call(&app, "POST", "/count", Some(&second)).await.1,
        "3",
        "data kept"
    );

    // Rotating again within the principal, and a second device.
    let (_, third) = call(&app, "POST", "/login", Some(&second)).await;
    assert_eq!(call(&app, "GET", "/me", Some(&second)).await.1, DEAD_TOKEN);
    let (_, other_device) = call(&app, "POST", "/login", None).await;
    assert_eq!(
        call(&app, "GET", "/me", Some(&other_device)).await.1,
        "alice"
    );

    assert_eq!(call(&app, "POST", "/everywhere", Some(&third)).await.1, "2");
    assert_eq!(call(&app, "GET", "/me", Some(&third)).await.1, DEAD_TOKEN);
    assert_eq!(
        call(&app, "GET", "/me", Some(&other_device)).await.1,
        DEAD_TOKEN
    );
}
