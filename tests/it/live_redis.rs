//! Live sessions across instances on a real `redis-server` (and a real Redis Cluster): two
//! stores with two layers, as two processes of a fleet would have. A handle opened through
//! instance A hears what a request through instance B did to its session, also when A's
//! subscription connection was killed while it happened.

use std::time::Duration;

use axum_tessera::live::{EndReason, LiveEvent};
use axum_tessera::store::{LimitPolicy, RedisStore};

use crate::live::{end_of, next};
use crate::support::fleet::{
    a_handle_ends_for, a_rotation_keeps_the_handle, an_idle_deadline_is_rechecked, causes,
    instance, quiet, Instance,
};
use crate::support::redis::{RedisCluster, RedisServer, Resp};

async fn pair(url: &str, prefix: &str, limit: Option<usize>) -> (Instance, Instance) {
    let store = || async {
        let store = RedisStore::connect(url).await.expect("url").prefix(prefix);
        match limit {
            Some(max) => store.max_sessions_per_principal(max, LimitPolicy::EvictOldest),
            None => store,
        }
    };
    let idle = Duration::from_secs(1800);
    (instance(store().await, idle), instance(store().await, idle))
}

/// Waits (at most 4 s) until `ready` holds.
async fn until(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..400 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}");
}

/// The subscriptions the server holds (`CLIENT LIST TYPE pubsub`), one line each.
fn subscribers(server: &RedisServer) -> usize {
    match server.text("CLIENT LIST TYPE pubsub") {
        Some(Resp::Bulk(Some(list))) => String::from_utf8_lossy(&list).lines().count(),
        _ => 0,
    }
}

/// Waits until `n` subscriptions are up (a handle starts its store's on first use).
async fn subscribed(server: &RedisServer, n: usize) {
    until("subscriptions up", || subscribers(server) >= n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_on_one_instance_ends_for_every_cause_on_another() {
    let server = RedisServer::start();
    let url = server.url();
    for (i, cause) in causes().iter().enumerate() {
        let (a, b) = pair(&url, &format!("t{i}:"), None).await;
        a_handle_ends_for(&a, &b, subscribed(&server, 1), cause).await;
    }

    // The per-principal limit: a login through B evicts the oldest session, open on A.
    let (a, b) = pair(&url, "limit:", Some(1)).await;
    let token = a.login("alice").await;
    let mut live = a.open(&token).await;
    b.login("alice").await;
    assert_eq!(end_of(&mut live).await, EndReason::SessionLimit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_changes_and_rotations_through_another_instance_keep_the_handle() {
    let server = RedisServer::start();
    let (a, b) = pair(&server.url(), "keep:", None).await;
    a_rotation_keeps_the_handle(&a, &b, subscribed(&server, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_happens_while_the_subscription_is_down_still_reaches_the_handles() {
    let server = RedisServer::start();
    let (a, b) = pair(&server.url(), "gap:", None).await;
    let alice = a.login("alice").await;
    let bob = a.login("bob").await;
    let mut gone = a.open(&alice).await;
    let mut kept = a.open(&bob).await;
    let first = kept.key();
    subscribed(&server, 1).await;

    let killed = server.text("CLIENT KILL TYPE pubsub").and_then(|r| r.int());
    assert_eq!(killed, Some(1), "A's subscription is killed");
    // Straight away, before A subscribes again: the notices are published to nobody.
    b.post("/logout", &alice).await;
    let bob = b.post("/scopes", &bob).await;

    // The cause too: the logout left it for a subscriber that missed the notice.
    assert_eq!(end_of(&mut gone).await, EndReason::LoggedOut);
    // Bob's session moved to a new ID with new scopes: his handle follows it.
    match next(&mut kept).await {
        LiveEvent::Changed { scopes, rotated } => {
            assert!(rotated);
            assert_eq!(scopes.into_iter().collect::<Vec<_>>(), ["read", "write"]);
        }
        other => panic!("expected a change, got {other:?}"),
    }
    assert_ne!(kept.key(), first);
    subscribed(&server, 1).await;
    assert!(quiet(&mut kept).await, "bob's session lives on");
    // And the new subscription hears what follows.
    b.post("/logout", &bob).await;
    assert_eq!(end_of(&mut kept).await, EndReason::LoggedOut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_deadline_is_rechecked_when_another_instance_kept_the_session_busy() {
    let server = RedisServer::start();
    let url = server.url();
    let idle = Duration::from_secs(3);
    let store = || async {
        RedisStore::connect(&url)
            .await
            .expect("url")
            .prefix("idle:")
    };
    let a = instance(store().await, idle);
    let b = instance(store().await, idle);
    an_idle_deadline_is_rechecked(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_logout_reaches_the_other_instance_also_across_a_lost_subscription() {
    let cluster = RedisCluster::start();
    let store = || async {
        RedisStore::connect_cluster(cluster.urls())
            .await
            .expect("cluster")
            .prefix("live:")
    };
    let idle = Duration::from_secs(1800);
    let a = instance(store().await, idle);
    let b = instance(store().await, idle);
    let alice = a.login("alice").await;
    let mut live = a.open(&alice).await;
    let first = live.key();
    until("A subscribed on one node", || {
        cluster.nodes().iter().any(|n| subscribers(n) > 0)
    })
    .await;
    // A rotation through B is a cross-slot move: the handle follows it from the claim.
    let alice = b.post("/scopes", &alice).await;
    assert!(matches!(
        next(&mut live).await,
        LiveEvent::Changed { rotated: true, .. }
    ));
    assert_ne!(live.key(), first);

    for n in cluster.nodes() {
        n.text("CLIENT KILL TYPE pubsub");
    }
    b.post("/logout", &alice).await;
    let reason = end_of(&mut live).await;
    assert!(
        matches!(reason, EndReason::Deleted | EndReason::LoggedOut),
        "ended after the reconnect: {reason:?}"
    );
}

/// A notice is a hint: one forged by a client allowed only `PUBLISH` can neither grant a
/// handle scopes nor keep it alive past the session's real end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_move_notice_grants_no_scopes_and_keeps_no_handle_alive() {
    let server = RedisServer::start();
    let (a, b) = pair(&server.url(), "forged:", None).await;
    let alice = a.login("alice").await;
    let mut live = a.open(&alice).await;
    subscribed(&server, 1).await;

    let key = live.key().to_hex();
    let forged = format!(
        "m {key} {key} 9223372036854775807 s {}",
        r#"{"kind":"user","id":"alice","scopes":["admin"]}"#
    );
    let heard = server
        .cmd(&[b"PUBLISH", b"forged:live", forged.as_bytes()])
        .and_then(|r| r.int());
    assert_eq!(heard, Some(1), "A's subscription hears the forged notice");
    // The store still holds alice without scopes: nothing to report.
    assert!(quiet(&mut live).await, "no scopes from a notice");

    b.post("/logout", &alice).await;
    assert_eq!(end_of(&mut live).await, EndReason::LoggedOut);
}
