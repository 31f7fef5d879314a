//! Time attacks: stale, future-dated and absurdly dated tokens, and sessions kept past their
//! idle or absolute limit by a client that simply keeps sending its cookie.

use axum::Router;
use axum_tessera::__fuzz::{SessionId, TokenCodec, TokenError};
use axum_tessera::clock::ManualClock;
use axum_tessera::{KeyRing, SessionConfig, SessionLayer};
use std::time::Duration;

use crate::support::harness::{self, key, ForgetfulStore, Harness, T0};

fn codec() -> TokenCodec {
    TokenCodec::new(&KeyRing::new(key(1)), "cookie:__Host-tessera")
}

#[test]
fn token_age_exactly_at_the_limit_passes() {
    let c = codec();
    let token = c.sign(&SessionId::generate(), T0);
    assert!(c.verify(&token, T0 + 3600, 3600, 0).is_ok());
}

#[test]
fn token_one_second_over_the_age_limit_fails() {
    let c = codec();
    let token = c.sign(&SessionId::generate(), T0);
    assert_eq!(
        c.verify(&token, T0 + 3601, 3600, 0),
        Err(TokenError::Expired)
    );
}

#[test]
fn token_future_dated_exactly_at_the_skew_passes_and_beyond_fails() {
    let c = codec();
    let token = c.sign(&SessionId::generate(), T0 + 60);
    assert!(c.verify(&token, T0, 3600, 60).is_ok());
    assert_eq!(
        c.verify(&token, T0 - 1, 3600, 60),
        Err(TokenError::FutureDated)
    );
}

#[test]
fn huge_and_negative_issue_times_do_not_panic() {
    let c = codec();
    let id = SessionId::generate();
    let times = [i64::MIN, i64::MIN + 1, -1, 0, 1, T0, i64::MAX - 1, i64::MAX];
    for issued in times {
        let token = c.sign(&id, issued);
        for now in times {
            for (max_age, skew) in [(0, 0), (3600, 60), (i64::MAX, i64::MAX), (-1, -1)] {
                let _ = c.verify(&token, now, max_age, skew);
            }
        }
    }
    // Negative times sign as 0, so a token can never claim to predate the epoch.
    let v = c.verify(&c.sign(&id, -5), 0, 10, 0).unwrap();
    assert_eq!(v.issued_at(), 0);
}

#[tokio::test]
async fn session_idle_timeout_last_second_passes_and_the_limit_fails() {
    // The idle window is [last seen, last seen + idle): at the deadline the session is dead.
    let h = Harness::new(SessionConfig::web(key(1)).idle_timeout(Duration::from_secs(30 * 60)));
    let a = h.new_session("a").await;
    let b = h.new_session("b").await;
    h.clock.set(T0 + 30 * 60 - 1);
    assert!(h.call("GET", "/whoami", Some(&a)).await.live());
    h.clock.set(T0 + 30 * 60);
    let reply = h.call("GET", "/whoami", Some(&b)).await;
    assert!(!reply.live());
    assert!(reply.set_cookie().is_none());
}

#[tokio::test]
async fn idle_timeout_is_enforced_server_side_while_the_client_keeps_its_cookie() {
    let h = Harness::new(SessionConfig::web(key(1)).idle_timeout(Duration::from_secs(30 * 60)));
    let token = h.new_session("v").await;
    // The persistent cookie lives 12 hours (absolute timeout); the server must not.
    h.clock.advance(Duration::from_secs(60 * 60));
    let reply = h.call("GET", "/whoami", Some(&token)).await;
    assert!(!reply.live());
    assert!(reply.body.contains("k=-"), "no data from a dead session");
    h.clock.set(T0);
    assert!(
        !h.call("GET", "/whoami", Some(&token)).await.live(),
        "turning the clock back does not revive a removed session"
    );
}

#[tokio::test]
async fn absolute_timeout_is_enforced_despite_constant_activity() {
    let h = Harness::new(
        SessionConfig::web(key(1))
            .idle_timeout(Duration::from_secs(30 * 60))
            .absolute_timeout(Duration::from_secs(2 * 60 * 60)),
    );
    let token = h.new_session("v").await;
    // A request every 20 minutes keeps the idle timer fresh.
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(20 * 60));
        assert!(h.call("GET", "/whoami", Some(&token)).await.live());
    }
    h.clock.set(T0 + 2 * 3600 - 1);
    assert!(h.call("GET", "/whoami", Some(&token)).await.live());
    h.clock.set(T0 + 2 * 3600);
    assert!(!h.call("GET", "/whoami", Some(&token)).await.live());
}

#[tokio::test]
async fn timeouts_are_enforced_even_when_the_store_returns_expired_records() {
    let clock = ManualClock::new(T0);
    let cfg = SessionConfig::web(key(1))
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(60 * 60))
        .clock(clock.clone());
    let app: Router =
        harness::routes().layer(SessionLayer::new(cfg).with_store(ForgetfulStore::default()));
    let h = Harness {
        app,
        store: harness::CountingStore::on(&clock),
        clock,
    };
    let idle = h.new_session("idle").await;
    h.clock.advance(Duration::from_secs(31 * 60));
    assert!(!h.call("GET", "/whoami", Some(&idle)).await.live(), "idle");

    h.clock.set(T0);
    let busy = h.new_session("busy").await;
    for _ in 0..2 {
        h.clock.advance(Duration::from_secs(20 * 60));
        assert!(h.call("GET", "/whoami", Some(&busy)).await.live());
    }
    h.clock.set(T0 + 3600 - 1);
    assert!(h.call("GET", "/whoami", Some(&busy)).await.live());
    h.clock.set(T0 + 3600);
    assert!(
        !h.call("GET", "/whoami", Some(&busy)).await.live(),
        "absolute"
    );
}

#[tokio::test]
async fn future_dated_token_beyond_the_skew_is_rejected() {
    let h = Harness::web(); // skew 60 seconds
    h.clock.set(T0 + 1000);
    let token = h.new_session("v").await;
    h.clock.set(T0 + 1000 - 60);
    assert!(
        h.call("GET", "/whoami", Some(&token)).await.live(),
        "at the skew"
    );
    h.clock.set(T0 + 1000 - 61);
    let loads = h.store.loads();
    assert!(!h.call("GET", "/whoami", Some(&token)).await.live());
    assert_eq!(h.store.loads(), loads, "rejected before the store");
}

#[tokio::test]
async fn huge_and_negative_clocks_do_not_panic() {
    for now in [i64::MIN, -1, 0, T0, i64::MAX - 1, i64::MAX] {
        let h = Harness::web();
        h.clock.set(now);
        let write = h.call("POST", "/write/v", None).await;
        assert!(write.status.is_success(), "{now}: {}", write.status);
        let token = write.token();
        for path in ["/whoami", "/csrf"] {
            let reply = h.call("GET", path, token.as_deref()).await;
            assert!(reply.status.is_success(), "{now} {path}: {}", reply.status);
        }
        for path in ["/login/u", "/logout"] {
            let reply = h.call("POST", path, token.as_deref()).await;
            assert!(reply.status.is_success(), "{now} {path}: {}", reply.status);
        }
        // The same token at the other extremes.
        if let Some(token) = &token {
            for later in [i64::MIN, 0, i64::MAX] {
                h.clock.set(later);
                let reply = h.call("GET", "/whoami", Some(token)).await;
                assert!(reply.status.is_success(), "{now} -> {later}");
            }
        }
    }
}
