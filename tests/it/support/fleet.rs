//! Instances of one service for the cross-instance live-session tests: each its own store
//! (connections, subscription or listener, registry) and layer, sharing the server and the
//! key with the others, as two processes of a fleet would.

use std::future::Future;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::live::{EndReason, LiveEvent, LiveSession};
use axum_tessera::store::SessionStore;
use axum_tessera::{Session, SessionConfig, SessionLayer};
use tokio::sync::{mpsc, Mutex};

use crate::live::{end_of, next};
use crate::support::api::call;
use crate::support::key;

/// One instance of the service: its own store (connection, subscription, registry) and
/// layer, sharing the server and the key with the others.
pub struct Instance {
    router: Router,
    opened: Mutex<mpsc::UnboundedReceiver<LiveSession>>,
}

pub fn instance(store: impl SessionStore, idle: Duration) -> Instance {
    let (tx, rx) = mpsc::unbounded_channel::<LiveSession>();
    let cfg = SessionConfig::api(key(9))
        .idle_timeout(idle)
        .refresh_after(0.0);
    let router = crate::live::routes()
        .route(
            "/whoami",
            get(|s: Session| async move { s.is_live().to_string() }),
        )
        .route(
            "/end/{hex}",
            post(|s: Session, Path(hex): Path<String>| async move {
                let key = axum_tessera::store::StoreKey::from_hex(&hex).expect("a store key");
                s.logout_session(key).await.unwrap().to_string()
            }),
        )
        .route(
            // `n` scopes of 100 characters: a principal too large for a notice.
            "/scopes/{n}",
            post(|s: Session, Path(n): Path<usize>| async move {
                s.set_scopes((0..n).map(|i| format!("{i:0>100}")));
                s.token()
            }),
        )
        .with_state(tx)
        .layer(SessionLayer::new(cfg).with_store(store));
    Instance {
        router,
        opened: Mutex::new(rx),
    }
}

impl Instance {
    pub async fn post(&self, uri: &str, token: &str) -> String {
        let (status, body) = call(&self.router, "POST", uri, Some(token)).await;
        assert!(status.is_success(), "POST {uri}: {status}");
        body
    }

    pub async fn login(&self, user: &str) -> String {
        let (status, body) = call(&self.router, "POST", &format!("/login/{user}"), None).await;
        assert!(status.is_success(), "login: {status}");
        body
    }

    pub async fn get(&self, uri: &str, token: &str) -> String {
        call(&self.router, "GET", uri, Some(token)).await.1
    }

    pub async fn open(&self, token: &str) -> LiveSession {
        assert_eq!(
            self.get("/live", token).await,
            "open",
            "a live session to follow"
        );
        self.opened.lock().await.recv().await.expect("sent")
    }
}

/// Whether the handle is still open with nothing to report.
pub async fn quiet(live: &mut LiveSession) -> bool {
    tokio::time::timeout(Duration::from_millis(200), live.next())
        .await
        .is_err()
}

/// One way a session ends through another instance: `uri` posted through B with the
/// session's own token or, `other_device`, with a second session of the same user (`/end/`
/// gets the session's store key appended).
pub struct Cause {
    pub name: &'static str,
    pub uri: &'static str,
    pub other_device: bool,
    pub expect: EndReason,
}

/// Every cause a request through another instance can give (the per-principal limit aside).
pub fn causes() -> [Cause; 5] {
    [
        ("logout", "/logout", false, EndReason::LoggedOut),
        ("destroy", "/destroy", false, EndReason::Destroyed),
        (
            "everywhere",
            "/everywhere",
            true,
            EndReason::LoggedOutEverywhere,
        ),
        ("ended elsewhere", "/end/", true, EndReason::EndedElsewhere),
        (
            "another principal",
            "/login/mallory",
            false,
            EndReason::PrincipalChanged,
        ),
    ]
    .map(|(name, uri, other_device, expect)| Cause {
        name,
        uri,
        other_device,
        expect,
    })
}

/// Opens alice's handle on `a`, waits for `listening` (the store's subscription or
/// listener), then gives `cause` through `b`: the handle ends with its reason and yields
/// nothing after.
pub async fn a_handle_ends_for(
    a: &Instance,
    b: &Instance,
    listening: impl Future<Output = ()>,
    cause: &Cause,
) {
    let token = a.login("alice").await;
    let mut live = a.open(&token).await;
    listening.await;
    let (actor, uri) = if cause.other_device {
        let uri = if cause.uri == "/end/" {
            format!("/end/{}", live.key().to_hex())
        } else {
            cause.uri.to_owned()
        };
        (b.login("alice").await, uri)
    } else {
        (token, cause.uri.to_owned())
    };
    b.post(&uri, &actor).await;
    assert_eq!(end_of(&mut live).await, cause.expect, "{}", cause.name);
    assert!(
        live.next().await.is_none(),
        "{}: nothing after the end",
        cause.name
    );
}

/// A rotation with new scopes through `b` keeps alice's handle on `a` (opened, then
/// `listening` awaited): it follows the new ID, reports the scopes, and ends at the logout
/// that follows.
pub async fn a_rotation_keeps_the_handle(
    a: &Instance,
    b: &Instance,
    listening: impl Future<Output = ()>,
) {
    let token = a.login("alice").await;
    let mut live = a.open(&token).await;
    let first = live.key();
    listening.await;
    // `set_scopes` rotates the ID: the handle follows it.
    let token = b.post("/scopes", &token).await;
    match next(&mut live).await {
        LiveEvent::Changed { scopes, rotated } => {
            assert!(rotated);
            assert_eq!(scopes.into_iter().collect::<Vec<_>>(), ["read", "write"]);
        }
        other => panic!("expected a change, got {other:?}"),
    }
    assert_ne!(live.key(), first);
    assert!(quiet(&mut live).await, "the handle lives on");
    b.post("/logout", &token).await;
    assert_eq!(end_of(&mut live).await, EndReason::LoggedOut);
}

/// With an idle timeout of 3 s on both instances: requests through `b` for twice that keep
/// alice's handle on `a` open (it passes its own deadline, asks the store once, and finds
/// the session used meanwhile); left alone, it ends at the idle deadline.
pub async fn an_idle_deadline_is_rechecked(a: &Instance, b: &Instance) {
    let token = a.login("alice").await;
    let mut live = a.open(&token).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(b.get("/whoami", &token).await, "true");
        assert!(
            tokio::time::timeout(Duration::ZERO, live.next())
                .await
                .is_err(),
            "kept alive through B"
        );
    }
    assert_eq!(end_of(&mut live).await, EndReason::IdleTimeout);
}
