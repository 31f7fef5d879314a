//! Instances of one service for the cross-instance live-session tests: each its own store
//! (connections, subscription or listener, registry) and layer, sharing the server and the
//! key with the others, as two processes of a fleet would.

use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::live::LiveSession;
use axum_tessera::store::SessionStore;
use axum_tessera::{Session, SessionConfig, SessionLayer};
use tokio::sync::{mpsc, Mutex};

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

/// Waits (at most 4 s) until `ready` holds.
pub async fn until(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..400 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}");
}
