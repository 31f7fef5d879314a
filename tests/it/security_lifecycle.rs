//! Session lifecycle attacks: fixation, replay after logout, resurrection by a slower
//! concurrent request, store growth from anonymous traffic, and commits of failed requests.

use std::sync::Arc;

use axum::routing::post;
use axum::Router;
use axum_tessera::{Session, SessionConfig, SessionLayer};
use http::StatusCode;
use tokio::sync::Notify;

use crate::support::harness::{self, id_of, key, Harness};

#[tokio::test]
async fn session_fixation_pre_login_id_is_dead_after_login() {
    let h = Harness::web();
    // The attacker gets an anonymous session and plants its cookie in the victim's browser.
    let planted = h.new_session("cart").await;
    let reply = h.call("POST", "/login/victim", Some(&planted)).await;
    let after = reply.token().expect("login re-issues the cookie");
    assert_ne!(id_of(&after), id_of(&planted));
    assert_eq!(
        reply.body, after,
        "session.token() already returns the new token"
    );

    let attacker = h.call("GET", "/whoami", Some(&planted)).await;
    assert!(!attacker.live());
    assert_eq!(attacker.user(), "-");
    let victim = h.call("GET", "/whoami", Some(&after)).await;
    assert_eq!(victim.user(), "victim");
    assert!(
        victim.body.contains("k=cart"),
        "anonymous data carries over"
    );
    assert_eq!(h.store.len(), 1, "the old record is gone, not copied");
}

#[tokio::test]
async fn privilege_change_on_a_logged_in_session_rotates_the_id() {
    let h = Harness::web();
    let first = h.logged_in("alice").await;
    let second = h
        .call("POST", "/login/alice", Some(&first))
        .await
        .token()
        .unwrap();
    assert_ne!(id_of(&first), id_of(&second));
    assert!(!h.call("GET", "/whoami", Some(&first)).await.live());
    assert_eq!(
        h.call("GET", "/whoami", Some(&second)).await.user(),
        "alice"
    );
}

#[tokio::test]
async fn login_as_another_user_does_not_inherit_the_previous_users_data() {
    // A shared computer: alice walks away logged in, bob logs in on the same browser.
    let h = Harness::web();
    let alice = h.logged_in("alice").await;
    h.call("POST", "/write/alices-secret", Some(&alice)).await;
    let bob = h
        .call("POST", "/login/bob", Some(&alice))
        .await
        .token()
        .unwrap();
    let seen = h.call("GET", "/whoami", Some(&bob)).await;
    assert_eq!(seen.user(), "bob");
    assert!(seen.body.contains("k=-"), "{}", seen.body);
}

#[tokio::test]
async fn logout_replay_is_anonymous() {
    let h = Harness::web();
    let token = h.logged_in("alice").await;
    let reply = h.call("POST", "/logout", Some(&token)).await;
    assert!(reply.clears_cookie());
    assert_eq!(h.store.len(), 0);
    let replay = h.call("GET", "/whoami", Some(&token)).await;
    assert!(!replay.live());
    assert_eq!(replay.user(), "-");
    // Writing after the replay starts a new session under a new ID.
    let write = h.call("POST", "/write/x", Some(&token)).await;
    assert_ne!(id_of(&write.token().unwrap()), id_of(&token));
}

#[tokio::test]
async fn logout_everywhere_ends_every_session_of_the_principal() {
    let h = Harness::web();
    let laptop = h.logged_in("alice").await;
    let phone = h.logged_in("alice").await;
    let bob = h.logged_in("bob").await;
    let reply = h.call("POST", "/logout-everywhere", Some(&phone)).await;
    assert_eq!(reply.body, "2");
    assert!(reply.clears_cookie());
    for token in [&laptop, &phone] {
        assert!(!h.call("GET", "/whoami", Some(token)).await.live());
    }
    assert_eq!(h.call("GET", "/whoami", Some(&bob)).await.user(), "bob");
}

/// A route whose handler loads the session, then waits to be released before acting, so a
/// test can finish another request in between.
struct Gate {
    loaded: Notify,
    release: Notify,
}

fn gated(h: &Harness, gate: &Arc<Gate>, cfg: SessionConfig) -> Router {
    let action = |gate: Arc<Gate>, act: fn(&Session)| {
        post(move |session: Session| {
            let gate = gate.clone();
            async move {
                gate.loaded.notify_one();
                gate.release.notified().await;
                act(&session);
                "done"
            }
        })
    };
    Router::new()
        .route(
            "/slow/write",
            action(gate.clone(), |s| s.insert("k", "late").unwrap()),
        )
        .route(
            "/slow/read",
            action(gate.clone(), |s| drop(s.get_value("k"))),
        )
        .route(
            "/slow/login",
            action(gate.clone(), |s| {
                s.login(axum_tessera::Principal::user("mallory"))
            }),
        )
        .merge(harness::routes())
        .layer(SessionLayer::new(cfg.clock(h.clock.clone())).with_store(h.store.clone()))
}

#[tokio::test]
async fn slower_concurrent_request_does_not_resurrect_a_logged_out_session() {
    struct Case {
        name: &'static str,
        path: &'static str,
        status: StatusCode,
    }
    let cases = [
        Case {
            name: "write",
            path: "/slow/write",
            // The write is lost and the client must hear it.
            status: StatusCode::SERVICE_UNAVAILABLE,
        },
        Case {
            name: "refresh only",
            path: "/slow/read",
            status: StatusCode::OK,
        },
        Case {
            name: "login",
            path: "/slow/login",
            status: StatusCode::SERVICE_UNAVAILABLE,
        },
    ];
    for case in cases {
        let h = Harness::web();
        // refresh on every request, so even the read commits something
        let cfg = SessionConfig::web(key(1)).refresh_after(0.0);
        let gate = Arc::new(Gate {
            loaded: Notify::new(),
            release: Notify::new(),
        });
        let h = Harness {
            app: gated(&h, &gate, cfg),
            ..h
        };
        let token = h.logged_in("alice").await;
        h.clock.advance(std::time::Duration::from_secs(5));

        let slow = tokio::spawn({
            let (h, token) = (h.clone(), token.clone());
            async move { h.call("POST", case.path, Some(&token)).await }
        });
        gate.loaded.notified().await;
        assert!(h
            .call("POST", "/logout", Some(&token))
            .await
            .clears_cookie());
        gate.release.notify_one();
        let slow = slow.await.unwrap();

        assert_eq!(slow.status, case.status, "{}", case.name);
        assert!(slow.token().is_none(), "{}: no new token", case.name);
        assert_eq!(h.store.len(), 0, "{}: nothing resurrected", case.name);
        let replay = h.call("GET", "/whoami", Some(&token)).await;
        assert!(!replay.live(), "{}", case.name);
    }
}

#[tokio::test]
async fn anonymous_traffic_that_writes_nothing_creates_no_record_and_no_cookie() {
    let h = Harness::web();
    for _ in 0..50 {
        let reply = h.call("GET", "/whoami", None).await;
        assert!(!reply.live());
        assert!(reply.set_cookie().is_none());
    }
    assert_eq!(h.store.len(), 0);
    assert_eq!(h.store.commits(), 0);
    assert_eq!(h.store.loads(), 0, "no token, nothing to load");
}

#[tokio::test]
async fn route_that_never_touches_the_session_makes_no_store_call() {
    let h = Harness::web();
    let token = h.new_session("v").await;
    let calls = h.store.calls();
    h.clock.advance(std::time::Duration::from_secs(20 * 60)); // a refresh would be due
    let reply = h.call("GET", "/untouched", Some(&token)).await;
    assert_eq!(reply.body, "ok");
    assert!(reply.set_cookie().is_none());
    assert_eq!(h.store.calls(), calls);
}

#[tokio::test]
async fn server_error_response_commits_nothing() {
    let h = Harness::web();
    // New session: nothing created, no cookie.
    let reply = h.call("POST", "/fail", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookie().is_none());
    assert_eq!(h.store.len(), 0);
    // Existing session: the write is not saved.
    let token = h.new_session("before").await;
    let commits = h.store.commits();
    let reply = h.call("POST", "/fail", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookie().is_none());
    assert_eq!(h.store.commits(), commits);
    assert!(h
        .call("GET", "/whoami", Some(&token))
        .await
        .body
        .contains("k=before"));
}

#[tokio::test]
async fn user_can_list_their_live_sessions_and_nobody_elses() {
    let h = Harness::web();
    let laptop = h.logged_in("alice").await;
    let phone = h.logged_in("alice").await;
    h.logged_in("bob").await;
    let list = h.call("GET", "/sessions", Some(&laptop)).await.body;
    assert_eq!(list.split(',').count(), 2, "{list}");
    h.call("POST", "/logout", Some(&phone)).await;
    let list = h.call("GET", "/sessions", Some(&laptop)).await.body;
    assert_eq!(list.split(',').count(), 1, "{list}");
    assert_eq!(h.call("GET", "/sessions", None).await.body, "", "anonymous");
}

#[tokio::test]
async fn administrator_can_end_every_session_of_one_user() {
    // An account is disabled: the operator ends its sessions through the store, outside any
    // request of that user.
    use axum_tessera::store::SessionStore as _;
    let h = Harness::web();
    let a1 = h.logged_in("alice").await;
    let a2 = h.logged_in("alice").await;
    let bob = h.logged_in("bob").await;
    assert_eq!(
        h.store
            .inner
            .delete_sessions_of(&axum_tessera::Principal::user("alice").index_key())
            .await
            .unwrap(),
        2
    );
    for token in [&a1, &a2] {
        assert!(!h.call("GET", "/whoami", Some(token)).await.live());
    }
    assert!(h.call("GET", "/whoami", Some(&bob)).await.live());
}

/// The full store key of the session behind `token`, as a user's session list names it.
fn store_key_hex(token: &str) -> String {
    axum_tessera::__fuzz::SessionId::parse(id_of(token))
        .unwrap()
        .store_key()
        .to_hex()
}

#[tokio::test]
async fn user_can_end_one_chosen_device_but_never_someone_elses_session() {
    let h = Harness::web();
    let laptop = h.logged_in("alice").await;
    let phone = h.logged_in("alice").await;
    let mallory = h.logged_in("mallory").await;

    // Mallory learns the key of Alice's phone session (say, from a leaked log line).
    let reply = h
        .call(
            "POST",
            &format!("/logout-session/{}", store_key_hex(&phone)),
            Some(&mallory),
        )
        .await;
    assert_eq!(reply.body, "false");
    assert!(h.call("GET", "/whoami", Some(&phone)).await.live());
    let anonymous = h
        .call(
            "POST",
            &format!("/logout-session/{}", store_key_hex(&phone)),
            None,
        )
        .await;
    assert_eq!(anonymous.body, "false");
    assert!(h.call("GET", "/whoami", Some(&phone)).await.live());

    // Alice ends her phone from the laptop.
    let reply = h
        .call(
            "POST",
            &format!("/logout-session/{}", store_key_hex(&phone)),
            Some(&laptop),
        )
        .await;
    assert_eq!(reply.body, "true");
    assert!(!h.call("GET", "/whoami", Some(&phone)).await.live());
    assert!(h.call("GET", "/whoami", Some(&laptop)).await.live());
}
