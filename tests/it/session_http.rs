//! The session layer seen through HTTP: DESIGN.md section 7, rotation, expiry, lazy loading
//! and the commit rules.

use axum::http::StatusCode;
use axum::routing;
use axum::Router;
use axum_tessera::__fuzz::{SessionId, TokenCodec};
use axum_tessera::clock::ManualClock;
use axum_tessera::store::MemoryStore;
use axum_tessera::{
    CookieConfig, Key, KeyRing, OptionalSession, Principal, Session, SessionConfig, SessionLayer,
};
use std::time::Duration;

use crate::support::{get, post, send, whoami, CountingStore};

const T0: i64 = 1_800_000_000;

fn key() -> Key {
    Key::from_bytes(&[7u8; 32]).unwrap()
}

fn config(clock: &ManualClock) -> SessionConfig {
    SessionConfig::web(key())
        .cookie(CookieConfig::new("id").secure(false))
        .clock(clock.clone())
}

fn routes() -> Router {
    async fn read(session: Session) -> String {
        match session.get::<u64>("n") {
            Some(n) => n.to_string(),
            None => "none".into(),
        }
    }
    async fn write(session: Session) -> String {
        let n = session.get::<u64>("n").unwrap_or(0) + 1;
        session.insert("n", n).unwrap();
        n.to_string()
    }
    async fn login(session: Session) -> String {
        session.login(Principal::user("u1").with_scopes(["a"]));
        session.token()
    }
    async fn logout(session: Session) -> &'static str {
        session.logout();
        "bye"
    }
    async fn optional(OptionalSession(s): OptionalSession) -> &'static str {
        if s.is_some() {
            "some"
        } else {
            "none"
        }
    }
    async fn fail(session: Session) -> StatusCode {
        session.insert("n", 99).unwrap();
        StatusCode::INTERNAL_SERVER_ERROR
    }
    async fn token(session: Session) -> String {
        session.token()
    }
    Router::new()
        .route("/plain", routing::get(|| async { "ok" }))
        .route("/read", routing::get(read))
        .route("/write", routing::post(write))
        .route("/login", routing::post(login))
        .route("/whoami", routing::get(whoami))
        .route("/logout", routing::post(logout))
        .route("/optional", routing::get(optional))
        .route("/fail", routing::post(fail))
        .route("/token", routing::get(token))
}

struct Fixture {
    app: Router,
    store: CountingStore,
    clock: ManualClock,
}

fn fixture() -> Fixture {
    fixture_with(|c| c)
}

fn fixture_with(adjust: impl FnOnce(SessionConfig) -> SessionConfig) -> Fixture {
    let clock = ManualClock::new(T0);
    let store = CountingStore::on(&clock);
    let layer = SessionLayer::new(adjust(config(&clock))).with_store(store.clone());
    Fixture {
        app: routes().layer(layer),
        store,
        clock,
    }
}

impl Fixture {
    /// Writes once and returns the `id=<token>` cookie pair.
    async fn session(&self) -> String {
        let reply = send(&self.app, post("/write", None)).await;
        assert_eq!(reply.status, StatusCode::OK);
        format!(
            "id={}",
            reply.cookie("id").expect("a write sets the cookie")
        )
    }
}

#[tokio::test]
async fn anonymous_read_stores_nothing_and_sets_no_cookie() {
    let f = fixture();
    let reply = send(&f.app, get("/read", None)).await;
    assert_eq!(reply.body, "none");
    assert!(reply.set_cookie_line().is_none());
    assert_eq!(f.store.calls(), 0, "no token: no load, nothing written");
    assert!(f.store.inner.is_empty());
}

#[tokio::test]
async fn first_write_creates_a_session_with_a_hardened_cookie() {
    let f = fixture();
    let reply = send(&f.app, post("/write", None)).await;
    let line = reply.set_cookie_line().unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(line.contains(attr), "{attr} missing from {line}");
    }
    assert_eq!(reply.headers["vary"], "Cookie");
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(f.store.inner.len(), 1);
    assert_eq!(f.store.commits(), 1);
}

#[tokio::test]
async fn web_preset_cookie_is_host_prefixed_and_secure() {
    let clock = ManualClock::new(T0);
    let app = routes().layer(SessionLayer::new(SessionConfig::web(key()).clock(clock)));
    let reply = send(&app, post("/write", None)).await;
    let line = reply.set_cookie_line().unwrap();
    assert!(line.starts_with("__Host-tessera=v1."), "{line}");
    assert!(line.contains("Secure") && line.contains("HttpOnly") && line.contains("Path=/"));
    assert!(!line.contains("Domain"), "{line}");
}

#[tokio::test]
async fn a_session_reads_back_without_rewriting_the_cookie() {
    let f = fixture();
    let cookie = f.session().await;
    let commits = f.store.commits();
    let reply = send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(reply.body, "1");
    assert!(
        reply.set_cookie_line().is_none(),
        "unchanged ID: no Set-Cookie"
    );
    assert_eq!(
        f.store.commits(),
        commits,
        "read inside the refresh window: no write"
    );
    let reply = send(&f.app, post("/write", Some(&cookie))).await;
    assert_eq!(reply.body, "2");
    assert!(
        reply.set_cookie_line().is_none(),
        "a patch keeps the ID: no Set-Cookie"
    );
}

#[tokio::test]
async fn routes_that_never_touch_the_session_make_no_store_call() {
    let f = fixture();
    let cookie = f.session().await;
    let before = f.store.calls();
    let reply = send(&f.app, get("/plain", Some(&cookie))).await;
    assert_eq!(reply.body, "ok");
    assert_eq!(f.store.calls(), before);
    assert!(reply.set_cookie_line().is_none());
}

#[tokio::test]
async fn invalid_tokens_give_an_anonymous_session_without_a_store_call() {
    let f = fixture();
    let good = f.session().await;
    let token = good.strip_prefix("id=").unwrap().to_owned();
    let other_purpose =
        TokenCodec::new(&KeyRing::new(key()), "cookie:other").sign(&SessionId::generate(), T0);
    let other_key = TokenCodec::new(&KeyRing::new(Key::generate()), "cookie:id")
        .sign(&SessionId::generate(), T0);
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    struct Case {
        name: &'static str,
        cookie: String,
    }
    let cases = [
        Case {
            name: "missing",
            cookie: String::new(),
        },
        Case {
            name: "empty",
            cookie: "id=".into(),
        },
        Case {
            name: "malformed",
            cookie: "id=not-a-token".into(),
        },
        Case {
            name: "tampered",
            cookie: format!("id={tampered}"),
        },
        Case {
            name: "truncated",
            cookie: format!("id={}", &token[..token.len() - 3]),
        },
        Case {
            name: "wrong purpose",
            cookie: format!("id={other_purpose}"),
        },
        Case {
            name: "wrong key",
            cookie: format!("id={other_key}"),
        },
        Case {
            name: "oversized",
            cookie: format!("id={}", "v1.".repeat(2000)),
        },
    ];
    for case in cases {
        let loads = f.store.loads();
        let cookie = (!case.cookie.is_empty()).then_some(case.cookie.as_str());
        let reply = send(&f.app, get("/read", cookie)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", case.name);
        assert_eq!(reply.body, "none", "{}", case.name);
        assert_eq!(
            f.store.loads(),
            loads,
            "{}: rejected before the store",
            case.name
        );
        let reply = send(&f.app, get("/optional", cookie)).await;
        assert_eq!(reply.body, "none", "{}", case.name);
    }
}

#[tokio::test]
async fn an_expired_token_is_rejected_before_the_store() {
    let f = fixture_with(|c| {
        c.idle_timeout(Duration::from_secs(60 * 60))
            .absolute_timeout(Duration::from_secs(2 * 60 * 60))
    });
    let cookie = f.session().await;
    f.clock
        .advance(Duration::from_secs(2 * 60 * 60) + Duration::from_secs(1));
    let loads = f.store.loads();
    assert_eq!(send(&f.app, get("/read", Some(&cookie))).await.body, "none");
    assert_eq!(f.store.loads(), loads);
}

#[tokio::test]
async fn an_unknown_id_is_anonymous_and_creates_nothing() {
    let f = fixture();
    let forged =
        TokenCodec::new(&KeyRing::new(key()), "cookie:id").sign(&SessionId::generate(), T0);
    let cookie = format!("id={forged}");
    let reply = send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(reply.body, "none");
    assert_eq!(f.store.loads(), 1);
    assert_eq!(f.store.commits(), 0);
    assert!(f.store.inner.is_empty());
    assert!(reply.set_cookie_line().is_none());
}

#[tokio::test]
async fn require_existing_rejects_requests_without_a_live_session() {
    let f = fixture_with(|c| c.require_existing(true));
    for cookie in [None, Some("id=garbage")] {
        let reply = send(&f.app, get("/read", cookie)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{cookie:?}");
        assert_eq!(reply.body, "a valid session is required");
    }
    assert_eq!(
        send(&f.app, get("/plain", None)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_unreachable_store_gives_503_only_where_the_session_is_needed() {
    let f = fixture();
    let cookie = f.session().await;
    f.store.fail_loads(true);
    let reply = send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "session store unavailable");
    assert_eq!(
        send(&f.app, get("/plain", Some(&cookie))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_failed_commit_becomes_503_and_writes_nothing() {
    let f = fixture();
    let cookie = f.session().await;
    f.store.fail_commits(true);
    let reply = send(&f.app, post("/write", Some(&cookie))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "session could not be saved; please retry");
    assert!(reply.set_cookie_line().is_none());
    let reply = send(&f.app, post("/write", None)).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a failed create is not hidden"
    );
    assert!(
        reply.set_cookie_line().is_none(),
        "no cookie for a session that was not saved"
    );
    f.store.fail_commits(false);
    assert_eq!(send(&f.app, get("/read", Some(&cookie))).await.body, "1");
    assert_eq!(f.store.inner.len(), 1);
}

#[tokio::test]
async fn a_server_error_response_is_not_committed() {
    let f = fixture();
    let cookie = f.session().await;
    let commits = f.store.commits();
    let reply = send(&f.app, post("/fail", Some(&cookie))).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookie_line().is_none());
    assert_eq!(f.store.commits(), commits);
    assert_eq!(send(&f.app, get("/read", Some(&cookie))).await.body, "1");
    let reply = send(&f.app, post("/fail", None)).await;
    assert!(reply.set_cookie_line().is_none());
    assert_eq!(f.store.inner.len(), 1);
}

#[tokio::test]
async fn login_rotates_the_id_keeps_data_and_kills_the_old_one() {
    let f = fixture();
    let before = f.session().await;
    let reply = send(&f.app, post("/login", Some(&before))).await;
    let new_token = reply.cookie("id").expect("login re-issues the cookie");
    assert_eq!(
        reply.body, new_token,
        "token() in the handler is the token that is sent"
    );
    let after = format!("id={new_token}");
    assert_ne!(before, after);
    assert_eq!(send(&f.app, get("/whoami", Some(&after))).await.body, "u1");
    assert_eq!(
        send(&f.app, get("/read", Some(&after))).await.body,
        "1",
        "data moved"
    );
    assert_eq!(
        send(&f.app, get("/whoami", Some(&before))).await.body,
        "anonymous"
    );
    assert_eq!(
        send(&f.app, get("/read", Some(&before))).await.body,
        "none",
        "old ID dead"
    );
    assert_eq!(f.store.inner.len(), 1);
}

#[tokio::test]
async fn logout_clears_the_cookie_and_the_old_token_stops_working() {
    let f = fixture();
    let anon = f.session().await;
    let reply = send(&f.app, post("/login", Some(&anon))).await;
    let cookie = format!("id={}", reply.cookie("id").unwrap());
    let reply = send(&f.app, post("/logout", Some(&cookie))).await;
    let line = reply.set_cookie_line().unwrap();
    assert!(
        line.starts_with("id=;") && line.contains("Max-Age=0"),
        "{line}"
    );
    assert_eq!(
        send(&f.app, get("/whoami", Some(&cookie))).await.body,
        "anonymous"
    );
    assert!(f.store.inner.is_empty());
}

#[tokio::test]
async fn idle_timeout_is_enforced_server_side() {
    let f = fixture_with(|c| {
        c.idle_timeout(Duration::from_secs(10 * 60))
            .refresh_after(0.5)
    });
    let cookie = f.session().await;
    f.clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(
        send(&f.app, get("/read", Some(&cookie))).await.body,
        "1",
        "refreshes last seen"
    );
    f.clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(
        send(&f.app, get("/read", Some(&cookie))).await.body,
        "1",
        "refreshed, alive"
    );
    f.clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(
        send(&f.app, get("/read", Some(&cookie))).await.body,
        "none",
        "idle too long"
    );
}

#[tokio::test]
async fn absolute_timeout_ends_even_an_active_session() {
    let f = fixture_with(|c| {
        c.idle_timeout(Duration::from_secs(10 * 60))
            .absolute_timeout(Duration::from_secs(30 * 60))
            .refresh_after(0.0)
    });
    let cookie = f.session().await;
    for _ in 0..5 {
        f.clock.advance(Duration::from_secs(5 * 60));
        assert_eq!(send(&f.app, get("/read", Some(&cookie))).await.body, "1");
    }
    f.clock.advance(Duration::from_secs(5 * 60));
    assert_eq!(
        send(&f.app, get("/read", Some(&cookie))).await.body,
        "none",
        "30 min since creation"
    );
}

#[tokio::test]
async fn sliding_refresh_writes_only_after_the_configured_fraction() {
    let f = fixture_with(|c| {
        c.idle_timeout(Duration::from_secs(20 * 60))
            .refresh_after(0.25)
    });
    let cookie = f.session().await;
    let commits = f.store.commits();
    f.clock.advance(Duration::from_secs(4 * 60));
    let reply = send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(f.store.commits(), commits, "4 of 20 minutes: no write");
    assert!(reply.set_cookie_line().is_none());
    f.clock.advance(Duration::from_secs(60));
    let reply = send(&f.app, get("/read", Some(&cookie))).await;
    assert_eq!(
        f.store.commits(),
        commits + 1,
        "5 of 20 minutes: last seen written"
    );
    assert!(
        reply.set_cookie_line().is_none(),
        "a refresh does not resend the cookie"
    );
}

#[tokio::test]
async fn a_fallback_key_still_verifies_and_the_token_is_reissued() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new().with_clock(clock.clone());
    let old = Key::from_bytes(&[1u8; 32]).unwrap();
    let new = Key::from_bytes(&[2u8; 32]).unwrap();
    let cookie = CookieConfig::new("id").secure(false);
    let old_app = routes().layer(
        SessionLayer::new(
            SessionConfig::web(old.clone())
                .cookie(cookie.clone())
                .clock(clock.clone()),
        )
        .with_store(store.clone()),
    );
    let ring = KeyRing::new(new).with_fallback(old);
    let new_app = routes().layer(
        SessionLayer::new(SessionConfig::web(ring).cookie(cookie).clock(clock.clone()))
            .with_store(store.clone()),
    );
    let reply = send(&old_app, post("/write", None)).await;
    let old_cookie = format!("id={}", reply.cookie("id").unwrap());
    let reply = send(&new_app, get("/read", Some(&old_cookie))).await;
    assert_eq!(reply.body, "1");
    let reissued = format!(
        "id={}",
        reply.cookie("id").expect("re-issued under the current key")
    );
    assert_ne!(reissued, old_cookie);
    let reply = send(&new_app, get("/read", Some(&reissued))).await;
    assert_eq!(reply.body, "1");
    assert!(
        reply.set_cookie_line().is_none(),
        "current key: no further re-issue"
    );
    assert_eq!(
        send(&old_app, get("/read", Some(&reissued))).await.body,
        "none"
    );
}

#[tokio::test]
async fn token_on_an_anonymous_session_persists_it() {
    let f = fixture();
    let reply = send(&f.app, get("/token", None)).await;
    let sent = reply
        .cookie("id")
        .expect("the handed-out token is also sent");
    assert_eq!(reply.body, sent);
    assert_eq!(f.store.inner.len(), 1);
    let reply = send(&f.app, get("/optional", Some(&format!("id={sent}")))).await;
    assert_eq!(reply.body, "some");
}

#[tokio::test]
async fn an_extractor_without_the_layer_is_a_clear_500() {
    let app = routes();
    let reply = send(&app, get("/read", None)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains("was SessionLayer added"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn duplicate_cookies_resolve_to_the_first_valid_one() {
    let f = fixture();
    let cookie = f.session().await;
    let mixed = format!("id=forged; {cookie}; id=also-junk");
    assert_eq!(send(&f.app, get("/read", Some(&mixed))).await.body, "1");
}

#[tokio::test]
async fn api_preset_issues_tokens_in_a_header_and_reads_bearer() {
    let clock = ManualClock::new(T0);
    let app = routes().layer(SessionLayer::new(
        SessionConfig::api(key())
            .require_existing(false)
            .clock(clock),
    ));
    let reply = send(&app, post("/login", None)).await;
    assert!(reply.set_cookie_line().is_none());
    let token = reply.headers["x-session-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(reply.body, token);
    let req = http::Request::get("/whoami")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.body, "u1");
    let req = http::Request::get("/whoami")
        .header("x-session-token", &token)
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.body, "u1");
    let req = http::Request::get("/whoami")
        .header("cookie", format!("id={token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, req).await.body,
        "anonymous",
        "cookies are not a source for the api preset"
    );
}

#[tokio::test]
async fn anonymous_csrf_tokens_cost_no_store_space_and_still_verify() {
    async fn form(session: Session) -> String {
        session.csrf_token()
    }
    async fn submit(session: Session, body: String) -> String {
        session.verify_csrf_token(&body).to_string()
    }
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new()
        .max_sessions(10)
        .with_clock(clock.clone());
    let app = routes()
        .route("/form", routing::get(form))
        .route("/submit", routing::post(submit))
        .layer(SessionLayer::new(config(&clock)).with_store(store.clone()));
    let reply = send(&app, post("/login", None)).await;
    let user = format!("id={}", reply.cookie("id").unwrap());

    // A crawler storm of form renders: each gets a token and a cookie, none a record, so
    // nothing can evict the logged-in user from a bounded store.
    for _ in 0..50 {
        let reply = send(&app, get("/form", None)).await;
        assert!(
            reply.cookie("id").is_some(),
            "the form's ID is sent to the client"
        );
    }
    assert_eq!(store.len(), 1);
    assert_eq!(send(&app, get("/whoami", Some(&user))).await.body, "u1");

    // The unsaved ID comes back with the form post and its token verifies.
    let reply = send(&app, get("/form", None)).await;
    let cookie = format!("id={}", reply.cookie("id").unwrap());
    let req = http::Request::post("/submit")
        .header("cookie", &cookie)
        .body(axum::body::Body::from(reply.body))
        .unwrap();
    assert_eq!(send(&app, req).await.body, "true");
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn the_unloaded_handle_is_not_reachable_through_extensions() {
    async fn sneaky(session: Option<axum::Extension<Session>>) -> &'static str {
        if session.is_some() {
            "reachable"
        } else {
            "hidden"
        }
    }
    let f = fixture();
    let app = f.app.clone().route("/sneaky", routing::get(sneaky));
    let app = app.layer(SessionLayer::new(config(&f.clock)));
    assert_eq!(send(&app, get("/sneaky", None)).await.body, "hidden");
}

#[tokio::test]
async fn logout_of_an_already_expired_session_still_clears_the_cookie() {
    let f = fixture_with(|c| c.idle_timeout(Duration::from_secs(10 * 60)));
    let reply = send(&f.app, post("/login", None)).await;
    let cookie = format!("id={}", reply.cookie("id").unwrap());
    f.clock.advance(Duration::from_secs(11 * 60));
    let reply = send(&f.app, post("/logout", Some(&cookie))).await;
    let line = reply.set_cookie_line().expect("the dead cookie is cleared");
    assert!(
        line.starts_with("id=;") && line.contains("Max-Age=0"),
        "{line}"
    );
}

#[tokio::test]
async fn principals_of_different_kinds_with_one_id_are_different_principals() {
    async fn login_as(session: Session, kind: String) -> &'static str {
        session.login(Principal::new(kind, "42"));
        "in"
    }
    async fn everywhere(session: Session) -> String {
        session.logout_everywhere().await.unwrap().to_string()
    }
    async fn count(session: Session) -> String {
        session
            .sessions_of_principal()
            .await
            .unwrap()
            .len()
            .to_string()
    }
    let f = fixture();
    let app = Router::new()
        .route(
            "/as/{kind}",
            routing::post(
                |s: Session, axum::extract::Path(k): axum::extract::Path<String>| login_as(s, k),
            ),
        )
        .route("/everywhere", routing::post(everywhere))
        .route("/count", routing::get(count))
        .route(
            "/whoami",
            routing::get(|s: Session| async move {
                s.principal()
                    .map(|p| format!("{}:{}", p.kind(), p.id()))
                    .unwrap_or_default()
            }),
        )
        .layer(SessionLayer::new(config(&f.clock)).with_store(f.store.clone()));
    let user = format!(
        "id={}",
        send(&app, post("/as/user", None))
            .await
            .cookie("id")
            .unwrap()
    );
    let service = format!(
        "id={}",
        send(&app, post("/as/service", None))
            .await
            .cookie("id")
            .unwrap()
    );
    assert_eq!(
        send(&app, get("/count", Some(&service))).await.body,
        "1",
        "only its own session"
    );
    assert_eq!(
        send(&app, post("/everywhere", Some(&service))).await.body,
        "1"
    );
    assert_eq!(
        send(&app, get("/whoami", Some(&user))).await.body,
        "user:42",
        "the user is untouched"
    );
    assert_eq!(send(&app, get("/whoami", Some(&service))).await.body, "");
}
