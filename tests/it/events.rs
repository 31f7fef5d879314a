//! Session events through HTTP: each kind emitted exactly once for its cause, none carrying a
//! token or ID, and hooks that cannot take a request down.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::routing;
use axum::Router;
use axum_tessera::__fuzz::{SessionId, TokenCodec};
use axum_tessera::clock::ManualClock;
use axum_tessera::event::{ExpiryReason, RejectReason, RotateReason};
use axum_tessera::store::StoreErrorKind;
use axum_tessera::{
    CookieConfig, EventKind, Key, KeyRing, Principal, Session, SessionConfig, SessionEvent,
    SessionLayer,
};
use std::time::Duration;

use crate::support::{get, post, send, CountingStore, LogCapture};

const T0: i64 = 1_800_000_000;

fn key() -> Key {
    Key::from_bytes(&[9u8; 32]).unwrap()
}

struct Fixture {
    app: Router,
    layer: SessionLayer,
    store: CountingStore,
    clock: ManualClock,
    events: Arc<Mutex<Vec<SessionEvent>>>,
}

impl Fixture {
    fn new(adjust: impl FnOnce(SessionConfig) -> SessionConfig) -> Self {
        let clock = ManualClock::new(T0);
        let store = CountingStore::on(&clock);
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let cfg = SessionConfig::web(key())
            .cookie(CookieConfig::new("id").secure(false))
            .clock(clock.clone())
            .on_event(move |e| sink.lock().unwrap().push(e.clone()));
        let layer = SessionLayer::new(adjust(cfg)).with_store(store.clone());
        let app = routes().layer(layer.clone());
        Self {
            app,
            layer,
            store,
            clock,
            events,
        }
    }

    /// The kinds emitted since the last call.
    fn take(&self) -> Vec<EventKind> {
        self.events
            .lock()
            .unwrap()
            .drain(..)
            .map(|e| e.kind().clone())
            .collect()
    }

    async fn session(&self) -> String {
        let reply = send(&self.app, post("/write", None)).await;
        let cookie = format!("id={}", reply.cookie("id").unwrap());
        self.take();
        cookie
    }
}

fn routes() -> Router {
    async fn read(s: Session) -> String {
        s.get::<u64>("n").map_or("none".into(), |n| n.to_string())
    }
    async fn write(s: Session) -> &'static str {
        let n = s.get::<u64>("n").unwrap_or(0);
        s.insert("n", n + 1).unwrap();
        "ok"
    }
    async fn login(s: Session) -> String {
        s.login(Principal::user("p1"));
        s.token()
    }
    async fn scopes(s: Session) -> &'static str {
        s.set_scopes(["x"]);
        "ok"
    }
    async fn rotate(s: Session) -> &'static str {
        s.rotate();
        "ok"
    }
    async fn logout(s: Session) -> &'static str {
        s.logout();
        "ok"
    }
    async fn destroy(s: Session) -> &'static str {
        s.destroy();
        "ok"
    }
    Router::new()
        .route("/read", routing::get(read))
        .route("/write", routing::post(write))
        .route("/login", routing::post(login))
        .route("/scopes", routing::post(scopes))
        .route("/rotate", routing::post(rotate))
        .route("/logout", routing::post(logout))
        .route("/destroy", routing::post(destroy))
}

#[tokio::test]
async fn lifecycle_events_are_emitted_once_per_cause() {
    let f = Fixture::new(|c| {
        c.idle_timeout(Duration::from_secs(20 * 60))
            .refresh_after(0.5)
    });
    send(&f.app, post("/write", None)).await;
    assert_eq!(f.take(), [EventKind::Created]);

    let cookie = {
        let reply = send(&f.app, post("/write", None)).await;
        f.take();
        format!("id={}", reply.cookie("id").unwrap())
    };
    send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(f.take(), [EventKind::Loaded]);

    f.clock.advance(Duration::from_secs(11 * 60));
    send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(f.take(), [EventKind::Loaded, EventKind::Refreshed]);

    let reply = send(&f.app, post("/login", Some(&cookie))).await;
    assert_eq!(
        f.take(),
        [EventKind::Loaded, EventKind::Rotated(RotateReason::Login)]
    );
    let cookie = format!("id={}", reply.cookie("id").unwrap());

    let reply = send(&f.app, post("/scopes", Some(&cookie))).await;
    assert_eq!(
        f.take(),
        [
            EventKind::Loaded,
            EventKind::Rotated(RotateReason::ScopesChanged)
        ]
    );
    let cookie = format!("id={}", reply.cookie("id").unwrap());

    let reply = send(&f.app, post("/rotate", Some(&cookie))).await;
    assert_eq!(
        f.take(),
        [
            EventKind::Loaded,
            EventKind::Rotated(RotateReason::Explicit)
        ]
    );
    let cookie = format!("id={}", reply.cookie("id").unwrap());

    send(&f.app, post("/logout", Some(&cookie))).await;
    assert_eq!(
        f.take(),
        [EventKind::Loaded, EventKind::Rotated(RotateReason::Logout)]
    );

    let cookie = f.session().await;
    send(&f.app, post("/destroy", Some(&cookie))).await;
    assert_eq!(f.take(), [EventKind::Loaded, EventKind::Destroyed]);
}

#[tokio::test]
async fn events_carry_request_and_principal_but_only_a_short_hash() {
    let f = Fixture::new(|c| c);
    let cookie = f.session().await;
    let reply = send(&f.app, post("/login", Some(&cookie))).await;
    let token = reply.cookie("id").unwrap();
    let events = f.events.lock().unwrap().clone();
    let rotated = events.last().unwrap();
    assert_eq!(rotated.kind(), &EventKind::Rotated(RotateReason::Login));
    assert_eq!(rotated.method(), "POST");
    assert_eq!(rotated.path(), "/login");
    assert_eq!(rotated.principal(), Some("p1"));
    assert_eq!(rotated.timestamp().unix_timestamp(), T0);
    let id = token.split('.').nth(1).unwrap();
    let hash = rotated.session_hash().unwrap();
    assert_eq!(hash, SessionId::parse(id).unwrap().short());
    assert_eq!(hash.len(), 8);
}

#[tokio::test]
async fn events_under_a_nested_router_name_the_full_path() {
    // The layer wraps the outer router; axum strips `/app` from the URI the nested handler
    // sees, but the event names the path the client asked for.
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let cfg = SessionConfig::web(key())
        .cookie(CookieConfig::new("id").secure(false))
        .on_event(move |e| sink.lock().unwrap().push(e.clone()));
    let app = Router::new()
        .nest("/app", routes())
        .layer(SessionLayer::new(cfg).with_store(axum_tessera::store::MemoryStore::new()));
    let reply = send(&app, post("/app/login", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let events = events.lock().unwrap().clone();
    let created = events.last().expect("an event for the login");
    assert_eq!(created.path(), "/app/login");
}

#[tokio::test]
async fn expiry_events_name_the_timeout() {
    let f = Fixture::new(|c| {
        c.idle_timeout(Duration::from_secs(10 * 60))
            .absolute_timeout(Duration::from_secs(30 * 60))
    });
    let cookie = f.session().await;
    f.clock.advance(Duration::from_secs(11 * 60));
    send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(f.take(), [EventKind::Expired(ExpiryReason::Idle)]);

    // A session rotated late carries a young token but an old creation time.
    let f = Fixture::new(|c| {
        c.idle_timeout(Duration::from_secs(10 * 60))
            .absolute_timeout(Duration::from_secs(30 * 60))
            .refresh_after(0.0)
    });
    let mut cookie = f.session().await;
    for _ in 0..3 {
        f.clock.advance(Duration::from_secs(9 * 60));
        let reply = send(&f.app, post("/rotate", Some(&cookie))).await;
        cookie = format!("id={}", reply.cookie("id").unwrap());
    }
    f.take();
    f.clock.advance(Duration::from_secs(4 * 60));
    assert_eq!(send(&f.app, get("/read", Some(&cookie))).await.body, "none");
    assert_eq!(f.take(), [EventKind::Expired(ExpiryReason::Absolute)]);
}

#[tokio::test]
async fn each_token_rejection_reason_is_reported_once() {
    let f = Fixture::new(|c| {
        c.absolute_timeout(Duration::from_secs(60 * 60))
            .idle_timeout(Duration::from_secs(30 * 60))
    });
    let ring = KeyRing::new(key());
    let cookie_codec = TokenCodec::new(&ring, "cookie:id");
    let id = SessionId::generate();
    let good = cookie_codec.sign(&id, T0);
    let mut flipped = good.clone().into_bytes();
    let at = flipped.len() - 5;
    flipped[at] = if flipped[at] == b'a' { b'b' } else { b'a' };
    struct Case {
        name: &'static str,
        token: String,
        expect: RejectReason,
    }
    let cases = [
        Case {
            name: "malformed",
            token: "v1.nope".into(),
            expect: RejectReason::Malformed,
        },
        Case {
            name: "bad signature",
            token: String::from_utf8(flipped).unwrap(),
            expect: RejectReason::BadSignature,
        },
        Case {
            name: "expired",
            token: cookie_codec.sign(&id, T0 - 7200),
            expect: RejectReason::Expired,
        },
        Case {
            name: "future",
            token: cookie_codec.sign(&id, T0 + 3600),
            expect: RejectReason::FutureDated,
        },
        Case {
            name: "oversized",
            token: "x".repeat(4000),
            expect: RejectReason::Oversized,
        },
        Case {
            name: "wrong purpose",
            token: TokenCodec::new(&ring, "header").sign(&id, T0),
            expect: RejectReason::WrongPurpose,
        },
        Case {
            name: "unknown id",
            token: good,
            expect: RejectReason::UnknownId,
        },
    ];
    for case in &cases {
        let reply = send(&f.app, get("/read", Some(&format!("id={}", case.token)))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", case.name);
        assert_eq!(
            f.take(),
            [EventKind::TokenRejected(case.expect)],
            "{}",
            case.name
        );
    }
    let stats = f.layer.stats();
    for case in &cases {
        assert_eq!(stats.rejected(case.expect), 1, "{}", case.name);
    }
}

#[tokio::test]
async fn store_failures_and_the_principal_limit_are_reported() {
    let f = Fixture::new(|c| c);
    let cookie = f.session().await;
    f.store.fail_loads(true);
    let reply = send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        f.take(),
        [EventKind::StoreError(StoreErrorKind::Unavailable)]
    );
    f.store.fail_loads(false);

    f.store.fail_commits(true);
    f.store.fail_with(StoreErrorKind::LimitReached);
    send(&f.app, post("/login", Some(&cookie))).await;
    assert_eq!(f.take(), [EventKind::Loaded, EventKind::PrincipalLimit]);
    let stats = f.layer.stats();
    assert_eq!(stats.store_errors, 1);
    assert_eq!(stats.principal_limit, 1);
}

#[tokio::test]
async fn stats_count_what_happened_and_live_sessions() {
    let f = Fixture::new(|c| c);
    let a = f.session().await;
    f.session().await;
    send(&f.app, post("/login", Some(&a))).await;
    let stats = f.layer.stats();
    assert_eq!(stats.created, 2);
    assert_eq!(stats.loaded, 1);
    assert_eq!(stats.rotated, 1);
    assert_eq!(stats.live_sessions, Some(2));
}

#[tokio::test]
async fn a_panicking_hook_leaves_the_response_and_other_hooks_intact() {
    let seen = Arc::new(Mutex::new(0));
    let counter = seen.clone();
    let layer = SessionLayer::new(
        SessionConfig::web(key())
            .cookie(CookieConfig::new("id").secure(false))
            .on_event(|_| panic!("a broken hook"))
            .on_event(move |_| *counter.lock().unwrap() += 1),
    );
    let app = routes().layer(layer);
    let reply = send(&app, post("/write", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "ok");
    assert!(reply.cookie("id").is_some(), "the commit still happened");
    assert_eq!(*seen.lock().unwrap(), 1);
}

#[tokio::test]
async fn no_event_or_log_line_contains_a_token_or_id() {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let f = Fixture::new(|c| c.refresh_after(0.0));
    let mut secrets = Vec::new();
    let reply = send(&f.app, post("/write", None)).await;
    let mut token = reply.cookie("id").unwrap();
    secrets.push(token.clone());
    for path in ["/login", "/scopes", "/rotate"] {
        let reply = send(&f.app, post(path, Some(&format!("id={token}")))).await;
        token = reply.cookie("id").unwrap();
        secrets.push(token.clone());
    }
    send(&f.app, get("/read", Some(&format!("id={token}")))).await;
    let forged =
        TokenCodec::new(&KeyRing::new(key()), "cookie:id").sign(&SessionId::generate(), T0);
    send(&f.app, get("/read", Some(&format!("id={forged}")))).await;
    secrets.push(forged);
    send(&f.app, post("/logout", Some(&format!("id={token}")))).await;

    let logs = capture.text();
    assert!(
        logs.contains("session rotated"),
        "tracing captured nothing: {logs}"
    );
    let events: Vec<String> = f
        .events
        .lock()
        .unwrap()
        .iter()
        .flat_map(|e| [format!("{e}"), format!("{e:?}")])
        .collect();
    assert!(events.len() > 10);
    for secret in &secrets {
        let id = secret.split('.').nth(1).unwrap();
        let mac = secret.split('.').nth(3).unwrap();
        for needle in [secret.as_str(), id, mac] {
            assert!(!logs.contains(needle), "log leaks {needle}");
            for e in &events {
                assert!(!e.contains(needle), "event leaks {needle}: {e}");
            }
        }
    }
    let _ = std::io::stdout().flush();
}
