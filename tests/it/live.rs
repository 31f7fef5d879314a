//! Live sessions in-process: a `LiveSession` opened in a request follows the session after
//! it, ending with the right reason for every cause and yielding the changes that keep it;
//! and `LiveUpgrade` refuses cross-origin WebSocket upgrades before the session loads.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::clock::ManualClock;
use axum_tessera::live::{EndReason, LiveEvent, LiveSession, LiveUpgrade};
use axum_tessera::store::{LimitPolicy, MemoryStore};
use axum_tessera::{Principal, Session, SessionConfig, SessionLayer};
use tokio::sync::{mpsc, Mutex};

use crate::support::{key, send};

const T0: i64 = 1_700_000_000;
const IDLE: u64 = 60;
const ABSOLUTE: u64 = 600;

type Opened = Arc<Mutex<mpsc::UnboundedReceiver<LiveSession>>>;
/// Where `/live` hands the handles it opens.
pub(crate) type Handles = mpsc::UnboundedSender<LiveSession>;

/// The routes both live test modules serve: log in as `user` (scope `read`), open a handle
/// (`/live` answers "open" or "none"), and the ways a session changes or ends.
pub(crate) fn routes() -> Router<Handles> {
    Router::new()
        .route(
            "/login/{user}",
            post(|s: Session, Path(user): Path<String>| async move {
                s.login(Principal::user(user).with_scopes(["read"]));
                s.token()
            }),
        )
        .route(
            "/live",
            get(|State(tx): State<Handles>, s: Session| async move {
                match s.live() {
                    Some(live) => {
                        tx.send(live).unwrap();
                        "open"
                    }
                    None => "none",
                }
            }),
        )
        .route("/logout", post(|s: Session| async move { s.logout() }))
        .route("/destroy", post(|s: Session| async move { s.destroy() }))
        .route(
            "/scopes",
            post(|s: Session| async move {
                s.set_scopes(["read", "write"]);
                s.token()
            }),
        )
        .route(
            "/everywhere",
            post(|s: Session| async move { s.logout_everywhere().await.unwrap().to_string() }),
        )
}

struct App {
    router: Router,
    clock: ManualClock,
    opened: Opened,
}

fn app_with(store: impl FnOnce(ManualClock) -> MemoryStore) -> App {
    let clock = ManualClock::new(T0);
    let store = store(clock.clone());
    let (tx, rx) = mpsc::unbounded_channel::<LiveSession>();
    let cfg = SessionConfig::api(key(7))
        .clock(clock.clone())
        .idle_timeout(Duration::from_secs(IDLE))
        .absolute_timeout(Duration::from_secs(ABSOLUTE));
    let router = routes()
        .route(
            "/ws",
            get(|_: LiveUpgrade, s: Session| async move { s.is_live().to_string() }),
        )
        .route(
            "/rotate",
            post(|s: Session| async move {
                s.rotate();
                s.token()
            }),
        )
        .route(
            "/end-others",
            post(|s: Session| async move {
                let own = s.live().map(|l| l.key());
                for info in s.sessions_of_principal().await.unwrap() {
                    if Some(info.key()) != own {
                        s.logout_session(info.key()).await.unwrap();
                    }
                }
            }),
        )
        .route("/touch", get(|| async { "no-op" }))
        .with_state(tx)
        .layer(SessionLayer::new(cfg).with_store(store));
    App {
        router,
        clock,
        opened: Arc::new(Mutex::new(rx)),
    }
}

fn app() -> App {
    app_with(|clock| MemoryStore::new().with_clock(clock))
}

fn req(method: &str, uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

impl App {
    async fn call(&self, method: &str, uri: &str, token: Option<&str>) -> String {
        let reply = send(&self.router, req(method, uri, token)).await;
        assert!(
            reply.status.is_success(),
            "{method} {uri}: {}",
            reply.status
        );
        reply.body
    }

    async fn login(&self, user: &str) -> String {
        self.call("POST", &format!("/login/{user}"), None).await
    }

    async fn open(&self, token: &str) -> LiveSession {
        assert_eq!(self.call("GET", "/live", Some(token)).await, "open");
        self.opened.lock().await.recv().await.unwrap()
    }
}

/// The next event, waiting at most ten seconds of (possibly paused) tokio time: a bound
/// only so a broken build fails instead of hanging.
pub(crate) async fn next(live: &mut LiveSession) -> LiveEvent {
    tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("an event in time")
        .expect("an event before the end")
}

pub(crate) async fn end_of(live: &mut LiveSession) -> EndReason {
    match next(live).await {
        LiveEvent::Ended(end) => end.reason(),
        other => panic!("expected the end, got {other:?}"),
    }
}

#[tokio::test]
async fn live_ends_with_the_cause_of_each_end() {
    struct Case {
        name: &'static str,
        /// The request that ends the session, made with the session's own token or (when
        /// `other_device`) with a second session of the same user.
        uri: &'static str,
        other_device: bool,
        expect: EndReason,
    }
    let cases = [
        Case {
            name: "logout",
            uri: "/logout",
            other_device: false,
            expect: EndReason::LoggedOut,
        },
        Case {
            name: "destroy",
            uri: "/destroy",
            other_device: false,
            expect: EndReason::Destroyed,
        },
        Case {
            name: "logout everywhere from another device",
            uri: "/everywhere",
            other_device: true,
            expect: EndReason::LoggedOutEverywhere,
        },
        Case {
            name: "logout everywhere from itself",
            uri: "/everywhere",
            other_device: false,
            expect: EndReason::LoggedOutEverywhere,
        },
        Case {
            name: "ended from another device",
            uri: "/end-others",
            other_device: true,
            expect: EndReason::EndedElsewhere,
        },
        Case {
            name: "login as another principal",
            uri: "/login/mallory",
            other_device: false,
            expect: EndReason::PrincipalChanged,
        },
    ];
    for case in cases {
        let app = app();
        let token = app.login("alice").await;
        let mut live = app.open(&token).await;
        let actor = if case.other_device {
            app.login("alice").await
        } else {
            token
        };
        app.call("POST", case.uri, Some(&actor)).await;
        assert_eq!(end_of(&mut live).await, case.expect, "{}", case.name);
        assert!(
            live.next().await.is_none(),
            "{}: nothing after the end",
            case.name
        );
    }
}

#[tokio::test]
async fn live_follows_scope_changes_and_rotations() {
    let app = app();
    let token = app.login("alice").await;
    let mut live = app.open(&token).await;
    let first = live.key();
    let token = app.call("POST", "/scopes", Some(&token)).await;
    match next(&mut live).await {
        LiveEvent::Changed { scopes, rotated } => {
            assert!(rotated);
            assert_eq!(scopes.into_iter().collect::<Vec<_>>(), ["read", "write"]);
        }
        other => panic!("expected a change, got {other:?}"),
    }
    assert_ne!(live.key(), first, "the handle follows the new ID");
    let token = app.call("POST", "/rotate", Some(&token)).await;
    assert!(matches!(
        next(&mut live).await,
        LiveEvent::Changed { rotated: true, .. }
    ));
    // Still following: a logout under the newest ID ends it.
    app.call("POST", "/logout", Some(&token)).await;
    assert_eq!(end_of(&mut live).await, EndReason::LoggedOut);
}

#[tokio::test]
async fn live_ends_at_idle_and_absolute_expiry_without_store_calls() {
    tokio::time::pause();
    let app = app();
    let token = app.login("alice").await;
    let mut live = app.open(&token).await;
    app.clock.advance(Duration::from_secs(IDLE));
    tokio::time::advance(Duration::from_secs(IDLE)).await;
    assert_eq!(end_of(&mut live).await, EndReason::IdleTimeout);

    // Kept active by requests (and `touch`), a session still ends at its absolute deadline.
    let token = app.login("bob").await;
    let mut live = app.open(&token).await;
    for _ in 0..(ABSOLUTE / 30) {
        app.clock.advance(Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        if live.touch().await.unwrap() {
            continue;
        }
        break;
    }
    assert_eq!(end_of(&mut live).await, EndReason::AbsoluteTimeout);
}

#[tokio::test]
async fn live_touch_moves_the_idle_deadline_and_pushes_do_not() {
    tokio::time::pause();
    let app = app();
    let token = app.login("alice").await;
    let mut live = app.open(&token).await;
    app.clock.advance(Duration::from_secs(IDLE - 10));
    assert!(live.touch().await.unwrap());
    app.clock.advance(Duration::from_secs(IDLE - 10));
    tokio::time::advance(Duration::from_secs(IDLE - 10)).await;
    let pending = tokio::time::timeout(Duration::from_millis(10), live.next()).await;
    assert!(pending.is_err(), "touched {} s ago: still live", IDLE - 10);
    app.clock.advance(Duration::from_secs(10));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(end_of(&mut live).await, EndReason::IdleTimeout);
}

#[tokio::test]
async fn live_ends_on_lru_and_principal_limit_eviction() {
    let app = app_with(|clock| MemoryStore::new().with_clock(clock).max_sessions(2));
    let token = app.login("alice").await;
    let mut live = app.open(&token).await;
    app.login("bob").await;
    app.login("carol").await;
    assert_eq!(end_of(&mut live).await, EndReason::Evicted);

    let app = app_with(|clock| {
        MemoryStore::new()
            .with_clock(clock)
            .max_sessions_per_principal(1, LimitPolicy::EvictOldest)
    });
    let token = app.login("alice").await;
    let mut live = app.open(&token).await;
    app.login("alice").await;
    assert_eq!(end_of(&mut live).await, EndReason::SessionLimit);
}

#[tokio::test]
async fn live_is_none_without_a_stored_session() {
    let app = app();
    assert_eq!(app.call("GET", "/live", None).await, "none");
}

#[tokio::test]
async fn live_handles_of_other_sessions_are_untouched() {
    let app = app();
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mut a = app.open(&alice).await;
    let mut b = app.open(&bob).await;
    app.call("POST", "/logout", Some(&alice)).await;
    assert_eq!(end_of(&mut a).await, EndReason::LoggedOut);
    let pending = tokio::time::timeout(Duration::from_millis(50), b.next()).await;
    assert!(
        pending.is_err(),
        "bob's handle hears nothing of alice's logout"
    );
}

#[tokio::test]
async fn live_upgrade_checks_origin_of_cookie_upgrades_only() {
    struct Case {
        name: &'static str,
        origin: Option<&'static str>,
        upgrade: bool,
        bearer: bool,
        expect: StatusCode,
    }
    let cases = [
        Case {
            name: "same origin",
            origin: Some("https://app.test"),
            upgrade: true,
            bearer: false,
            expect: StatusCode::OK,
        },
        Case {
            name: "foreign origin",
            origin: Some("https://evil.test"),
            upgrade: true,
            bearer: false,
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "no origin",
            origin: None,
            upgrade: true,
            bearer: false,
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "null origin",
            origin: Some("null"),
            upgrade: true,
            bearer: false,
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "bearer upgrade, foreign origin",
            origin: Some("https://evil.test"),
            upgrade: true,
            bearer: true,
            expect: StatusCode::OK,
        },
        Case {
            name: "plain GET (SSE), foreign origin",
            origin: Some("https://evil.test"),
            upgrade: false,
            bearer: false,
            expect: StatusCode::OK,
        },
    ];
    let app = app();
    let token = app.login("alice").await;
    for case in cases {
        let mut b = Request::get("/ws").header(header::HOST, "app.test");
        if case.upgrade {
            b = b
                .header(header::UPGRADE, "websocket")
                .header(header::CONNECTION, "upgrade");
        }
        if let Some(o) = case.origin {
            b = b.header(header::ORIGIN, o);
        }
        if case.bearer {
            b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let reply = send(&app.router, b.body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, case.expect, "{}", case.name);
    }
}
