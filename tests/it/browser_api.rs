//! The browser session API (`browser::session_api`) and the session features it rests on,
//! through HTTP: `info` / `csrf-token` / `extend` / `clear` / `client.js` with their error
//! paths, `Session::info` for a session created in the same request, flash levels, consent
//! mode and "remember me".

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use axum_tessera::browser::{self, CLIENT_JS};
use axum_tessera::store::{Commit, Record, SessionStore};
use axum_tessera::{
    CookieConfig, CsrfProtected, Flash, FlashLevel, Key, Principal, Session, SessionConfig,
    SessionLayer,
};
use serde_json::{json, Value};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;

use time::OffsetDateTime;

use crate::support::harness::{id_of, Harness, Reply, COOKIE, T0};

const IDLE: i64 = 1800;
const ABSOLUTE: i64 = 12 * 3600;

/// `method path` with the session cookie `token` (if any) and extra headers.
fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::COOKIE, format!("{COOKIE}={t}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::empty()).unwrap()
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The web preset with the session API nested at `/api/session`, plus `extra` routes.
fn app_with(cfg: SessionConfig, extra: Router) -> Harness {
    Harness::with_routes(cfg, extra.nest("/api/session", browser::session_api()))
}

fn app() -> Harness {
    app_with(SessionConfig::web(crate::support::key(1)), Router::new())
}

impl Harness {
    /// A CSRF token of the session `token` names (or of a new anonymous one), and the
    /// cookie token the client holds afterwards.
    async fn csrf_of(&self, token: Option<&str>) -> (String, Option<String>) {
        let reply = self
            .send(request("GET", "/api/session/csrf-token", token, &[]))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let csrf = json_of(&reply)["csrf_token"].as_str().unwrap().to_owned();
        (csrf, reply.token().or_else(|| token.map(str::to_owned)))
    }

    async fn post_csrf(&self, path: &str, token: Option<&str>, csrf: &str) -> Reply {
        self.send(request("POST", path, token, &[("x-csrf-token", csrf)]))
            .await
    }
}

#[tokio::test]
async fn info_without_a_stored_session_is_null_and_creates_nothing() {
    let app = app();
    let reply = app
        .send(request("GET", "/api/session/info", None, &[]))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(json_of(&reply), json!({ "session": null }));
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    assert!(reply.set_cookie().is_none(), "no cookie for a visitor");
    assert_eq!(app.store.len(), 0);
}

#[tokio::test]
async fn info_describes_the_session_without_its_secrets() {
    let app = app();
    let token = app.logged_in("alice").await;
    app.clock.advance(Duration::from_secs(100));
    let reply = app
        .send(request("GET", "/api/session/info", Some(&token), &[]))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    let s = &json_of(&reply)["session"];
    let expect = json!({
        "id_hash": s["id_hash"],
        "authenticated": true,
        "user": "alice",
        "created_at": rfc3339(T0),
        "last_activity": rfc3339(T0),
        "elapsed_seconds": 100,
        "remaining_seconds": IDLE - 100,
        "absolute_remaining_seconds": ABSOLUTE - 100,
        "expires_at": rfc3339(T0 + IDLE),
        "is_active": true,
    });
    assert_eq!(s, &expect);
    assert_eq!(s["id_hash"].as_str().unwrap().len(), 8, "{s}");
    assert!(!reply.body.contains(id_of(&token)), "the raw ID leaked");
    assert!(!reply.body.contains(&token), "the token leaked");
}

#[tokio::test]
async fn reading_info_or_a_csrf_token_is_not_activity() {
    // Refresh on every request: any request of the application's own extends the session.
    let app = app_with(
        SessionConfig::web(crate::support::key(1)).refresh_after(0.0),
        Router::new(),
    );
    let token = app.logged_in("alice").await;
    app.clock.advance(Duration::from_secs(600));
    let before = app.store.commits();
    for path in ["/api/session/info", "/api/session/csrf-token"] {
        let reply = app.send(request("GET", path, Some(&token), &[])).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(reply.set_cookie().is_none(), "{path}");
    }
    assert_eq!(
        app.store.commits(),
        before,
        "a read of the browser API wrote"
    );
    let info = app
        .send(request("GET", "/api/session/info", Some(&token), &[]))
        .await;
    assert_eq!(json_of(&info)["session"]["remaining_seconds"], IDLE - 600);

    // The application's own request is activity.
    assert!(app.call("GET", "/whoami", Some(&token)).await.live());
    assert_eq!(
        app.store.commits(),
        before + 1,
        "the app's request refreshes"
    );
    let info = app
        .send(request("GET", "/api/session/info", Some(&token), &[]))
        .await;
    assert_eq!(json_of(&info)["session"]["remaining_seconds"], IDLE);
}

#[tokio::test]
async fn csrf_token_is_uncacheable_nosniff_and_refused_cross_site() {
    let app = app();
    let token = app.logged_in("alice").await;
    let reply = app
        .send(request("GET", "/api/session/csrf-token", Some(&token), &[]))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    assert_eq!(header(&reply, "x-content-type-options"), Some("nosniff"));
    let csrf = json_of(&reply)["csrf_token"].as_str().unwrap().to_owned();
    let extend = app
        .post_csrf("/api/session/extend", Some(&token), &csrf)
        .await;
    assert_eq!(
        extend.status,
        StatusCode::OK,
        "the token works: {}",
        extend.body
    );

    struct Case {
        name: &'static str,
        site: &'static str,
        expect: StatusCode,
    }
    let cases = [
        Case {
            name: "another site",
            site: "cross-site",
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "a sibling subdomain",
            site: "same-site",
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "the page itself",
            site: "same-origin",
            expect: StatusCode::OK,
        },
        Case {
            name: "typed into the address bar",
            site: "none",
            expect: StatusCode::OK,
        },
    ];
    for case in cases {
        let reply = app
            .send(request(
                "GET",
                "/api/session/csrf-token",
                Some(&token),
                &[("sec-fetch-site", case.site)],
            ))
            .await;
        assert_eq!(reply.status, case.expect, "{}", case.name);
        if case.expect == StatusCode::FORBIDDEN {
            assert!(!reply.body.contains("csrf_token"), "{}", case.name);
        }
    }
}

#[tokio::test]
async fn extend_resets_the_idle_clock() {
    let app = app();
    let token = app.logged_in("alice").await;
    let (csrf, _) = app.csrf_of(Some(&token)).await;
    app.clock.advance(Duration::from_secs(1000));
    let reply = app
        .post_csrf("/api/session/extend", Some(&token), &csrf)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    let s = &json_of(&reply)["session"];
    assert_eq!(s["remaining_seconds"], IDLE, "{s}");
    assert_eq!(s["last_activity"], rfc3339(T0 + 1000));
    assert_eq!(s["created_at"], rfc3339(T0), "creation never moves");
    assert_eq!(s["absolute_remaining_seconds"], ABSOLUTE - 1000);

    // Past the first deadline (T0 + 1800), alive thanks to the extension.
    app.clock.advance(Duration::from_secs((IDLE - 1) as u64));
    assert!(app.call("GET", "/whoami", Some(&token)).await.live());
}

#[tokio::test]
async fn extend_is_capped_by_the_absolute_timeout() {
    let cfg = SessionConfig::web(crate::support::key(1))
        .idle_timeout(Duration::from_secs(1800))
        .absolute_timeout(Duration::from_secs(3600));
    let app = app_with(cfg, Router::new());
    let token = app.logged_in("alice").await;
    let (csrf, _) = app.csrf_of(Some(&token)).await;
    app.clock.advance(Duration::from_secs(1500));
    let first = app
        .post_csrf("/api/session/extend", Some(&token), &csrf)
        .await;
    assert_eq!(json_of(&first)["session"]["remaining_seconds"], 1800);
    app.clock.advance(Duration::from_secs(1500));
    let reply = app
        .post_csrf("/api/session/extend", Some(&token), &csrf)
        .await;
    let s = &json_of(&reply)["session"];
    assert_eq!(s["remaining_seconds"], 600, "{s}");
    assert_eq!(s["absolute_remaining_seconds"], 600);
    assert_eq!(s["expires_at"], rfc3339(T0 + 3600));
    app.clock.advance(Duration::from_secs(600));
    assert!(!app.call("GET", "/whoami", Some(&token)).await.live());
}

#[tokio::test]
async fn extend_and_clear_refuse_without_a_valid_csrf_token() {
    let app = app();
    let alice = app.logged_in("alice").await;
    let bob = app.logged_in("bob").await;
    let (bobs_csrf, _) = app.csrf_of(Some(&bob)).await;
    for path in ["/api/session/extend", "/api/session/clear"] {
        let missing = app.send(request("POST", path, Some(&alice), &[])).await;
        assert_eq!(
            missing.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            missing.body
        );
        assert!(missing.body.contains("missing"), "{path}: {}", missing.body);
        let wrong = app.post_csrf(path, Some(&alice), &bobs_csrf).await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{path}");
        assert!(wrong.body.contains("invalid"), "{path}: {}", wrong.body);
        let garbage = app.post_csrf(path, Some(&alice), "not-a-token").await;
        assert_eq!(garbage.status, StatusCode::FORBIDDEN, "{path}");
        assert!(garbage.set_cookie().is_none(), "{path}");
    }
    assert!(
        app.call("GET", "/whoami", Some(&alice)).await.live(),
        "clear refused"
    );
}

#[tokio::test]
async fn extend_without_a_session_is_401() {
    let app = app();
    // A visitor: the token belongs to an anonymous session that was never stored.
    let (csrf, anon) = app.csrf_of(None).await;
    let reply = app
        .post_csrf("/api/session/extend", anon.as_deref(), &csrf)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(app.store.len(), 0, "nothing created");
}

#[tokio::test]
async fn an_expired_session_is_null_and_cannot_be_extended() {
    let app = app();
    let token = app.logged_in("alice").await;
    let (csrf, _) = app.csrf_of(Some(&token)).await;
    app.clock.advance(Duration::from_secs((IDLE) as u64));
    let info = app
        .send(request("GET", "/api/session/info", Some(&token), &[]))
        .await;
    assert_eq!(json_of(&info), json!({ "session": null }));
    let reply = app
        .post_csrf("/api/session/extend", Some(&token), &csrf)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert!(!app.call("GET", "/whoami", Some(&token)).await.live());
}

#[tokio::test]
async fn clear_destroys_the_session_and_its_cookie() {
    let app = app();
    let token = app.logged_in("alice").await;
    let (csrf, _) = app.csrf_of(Some(&token)).await;
    let reply = app
        .post_csrf("/api/session/clear", Some(&token), &csrf)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(json_of(&reply), json!({ "cleared": true }));
    assert!(reply.clears_cookie(), "{:?}", reply.set_cookie_line());
    assert!(reply.set_cookie_line().unwrap().contains("Max-Age=0"));
    assert_eq!(app.store.len(), 0);
    assert!(!app.call("GET", "/whoami", Some(&token)).await.live());
}

#[tokio::test]
async fn client_js_is_served_with_an_etag() {
    let app = app();
    let reply = app
        .send(request("GET", "/api/session/client.js", None, &[]))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(header(&reply, "content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(reply.body, CLIENT_JS);
    assert!(reply.set_cookie().is_none());
    let etag = header(&reply, "etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let again = app
        .send(request(
            "GET",
            "/api/session/client.js",
            None,
            &[("if-none-match", &etag)],
        ))
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(header(&again, "etag"), Some(etag.as_str()));

    let stale = app
        .send(request(
            "GET",
            "/api/session/client.js",
            None,
            &[("if-none-match", "\"old\"")],
        ))
        .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(
        app.store.calls(),
        0,
        "serving the client touches no session"
    );
}

#[tokio::test]
async fn the_router_needs_the_session_layer() {
    let app: Router = Router::new().nest("/api/session", browser::session_api());
    let reply = crate::support::send(&app, request("GET", "/api/session/info", None, &[])).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.contains("SessionLayer"), "{}", reply.body);
}

/// `{created, last_seen, expires, remaining, absolute_remaining, active}` of `Session::info`
/// as of the request, or `null`.
fn info_json(session: &Session, now: i64) -> Json<Value> {
    let now = OffsetDateTime::from_unix_timestamp(now).unwrap();
    Json(match session.info() {
        None => Value::Null,
        Some(i) => json!({
            "key": i.key().short(),
            "created": i.created().unix_timestamp(),
            "last_seen": i.last_seen().unix_timestamp(),
            "expires": i.expires().unix_timestamp(),
            "elapsed": i.elapsed(now).as_secs(),
            "remaining": i.remaining(now).as_secs(),
            "absolute_remaining": i.absolute_remaining(now).map(|d| d.as_secs()),
            "active": i.is_active(now),
            "extend": session.extend(),
        }),
    })
}

fn info_routes(clock: axum_tessera::clock::ManualClock) -> Router {
    use axum_tessera::clock::Clock as _;
    let (c1, c2, c3, c4) = (clock.clone(), clock.clone(), clock.clone(), clock);
    Router::new()
        .route(
            "/info/login",
            post(move |s: Session| async move {
                s.login(Principal::user("alice"));
                info_json(&s, c1.now())
            }),
        )
        .route(
            "/info/write",
            post(move |s: Session| async move {
                s.csrf_token(); // an unsaved ID first: info must name the one stored
                s.insert("k", 1).unwrap();
                info_json(&s, c2.now())
            }),
        )
        .route(
            "/info/anonymous",
            get(move |s: Session| async move { info_json(&s, c3.now()) }),
        )
        .route(
            "/info/read",
            get(move |s: Session| async move { info_json(&s, c4.now()) }),
        )
}

#[tokio::test]
async fn session_info_covers_a_session_created_in_this_request() {
    let clock = axum_tessera::clock::ManualClock::new(T0);
    let store = crate::support::CountingStore::on(&clock);
    let layer = SessionLayer::new(SessionConfig::web(crate::support::key(1)).clock(clock.clone()))
        .with_store(store.clone());
    let app = Harness {
        app: crate::support::harness::routes()
            .merge(info_routes(clock.clone()))
            .layer(layer),
        store,
        clock: clock.clone(),
    };

    let anon = app.call("GET", "/info/anonymous", None).await;
    assert_eq!(json_of(&anon), Value::Null, "an untouched visitor has none");

    for path in ["/info/login", "/info/write"] {
        use axum_tessera::clock::Clock as _;
        let t = clock.now();
        let reply = app.call("POST", path, None).await;
        let info = json_of(&reply);
        let expect = json!({
            "key": info["key"],
            "created": t,
            "last_seen": t,
            "expires": t + IDLE,
            "elapsed": 0,
            "remaining": IDLE,
            "absolute_remaining": ABSOLUTE,
            "active": true,
            "extend": false,
        });
        assert_eq!(info, expect, "{path}");
        // The key info named is the record the commit wrote.
        let token = reply.token().expect("a new session sends its cookie");
        clock.advance(Duration::from_secs(10));
        let read = json_of(&app.call("GET", "/info/read", Some(&token)).await);
        assert_eq!(read["key"], info["key"], "{path}");
        assert_eq!(read["elapsed"], 10, "{path}");
        assert_eq!(
            read["extend"], true,
            "{path}: a stored session can be extended"
        );
    }
}

#[derive(serde::Deserialize)]
struct FlashForm {
    level: String,
    message: String,
}

fn flash_routes() -> Router {
    Router::new()
        .route(
            "/flash",
            post(|s: Session, Form(f): Form<FlashForm>| async move {
                let level = match f.level.as_str() {
                    "success" => FlashLevel::Success,
                    "warning" => FlashLevel::Warning,
                    "error" => FlashLevel::Error,
                    _ => FlashLevel::Info,
                };
                s.flash(Flash::new(level, f.message));
                "queued"
            }),
        )
        .route(
            "/flash-plain",
            post(|s: Session| async move {
                s.flash("plain text");
                "queued"
            }),
        )
        .route(
            "/flashes",
            get(|s: Session| async move {
                s.take_flashes()
                    .iter()
                    .map(|f| format!("{}:{}", f.level(), f.message()))
                    .collect::<Vec<_>>()
                    .join("|")
            }),
        )
}

#[tokio::test]
async fn flash_messages_keep_their_level_until_shown_once() {
    let app = app_with(SessionConfig::web(crate::support::key(1)), flash_routes());
    let token = app.logged_in("alice").await;
    for (level, message) in [
        ("success", "Signed in."),
        ("warning", "Disk low"),
        ("error", "No"),
    ] {
        let req = Request::post("/flash")
            .header(header::COOKIE, format!("{COOKIE}={token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("level={level}&message={message}")))
            .unwrap();
        assert_eq!(app.send(req).await.status, StatusCode::OK);
    }
    app.call("POST", "/flash-plain", Some(&token)).await;
    let shown = app.call("GET", "/flashes", Some(&token)).await;
    assert_eq!(
        shown.body,
        "success:Signed in.|warning:Disk low|error:No|info:plain text"
    );
    let again = app.call("GET", "/flashes", Some(&token)).await;
    assert_eq!(again.body, "", "each message shows once");
}

#[tokio::test]
async fn flash_of_a_record_from_the_previous_release_loads() {
    let app = app_with(SessionConfig::web(crate::support::key(1)), flash_routes());
    let layer =
        SessionLayer::new(SessionConfig::web(crate::support::key(1)).clock(app.clock.clone()))
            .with_store(app.store.clone());
    let login = layer.test_login(Principal::user("alice")).await.unwrap();
    // The record as the previous release stored it: flash messages as plain strings.
    let old: Record = serde_json::from_value(json!({
        "created": T0,
        "last_seen": T0,
        "expires_at": T0 + IDLE,
        "principal": serde_json::to_value(Principal::user("alice")).unwrap(),
        "flash": ["Signed in.", "Welcome back"],
    }))
    .expect("the old form deserialises");
    let key = login.store_key();
    app.store.commit(Commit::Delete { key }).await.unwrap();
    app.store
        .commit(Commit::Create { key, record: old })
        .await
        .unwrap();
    let req = Request::get("/flashes")
        .header(header::COOKIE, login.cookie())
        .body(Body::empty())
        .unwrap();
    let shown = app.send(req).await;
    assert_eq!(shown.body, "info:Signed in.|info:Welcome back");
}

#[derive(serde::Deserialize)]
struct SignIn {
    user: String,
    #[serde(default)]
    remember: Option<String>,
}

/// Routes of a consent-mode, remember-me application.
fn account_routes() -> Router {
    Router::new()
        .route(
            "/consent",
            post(|s: Session, _: CsrfProtected| async move {
                s.record_consent();
                "thanks"
            }),
        )
        .route(
            "/consented",
            get(|s: Session| async move {
                format!(
                    "{} {:?}",
                    s.has_consent(),
                    s.consented_at().map(|t| t.unix_timestamp())
                )
            }),
        )
        .route(
            "/signin",
            post(
                |s: Session, CsrfProtected(Form(f)): CsrfProtected<Form<SignIn>>| async move {
                    s.login(Principal::user(f.user));
                    if let Some(on) = f.remember {
                        s.remember(on == "on");
                    }
                    "welcome"
                },
            ),
        )
        .route(
            "/remember/{on}",
            post(|s: Session, Path(on): Path<bool>| async move {
                s.remember(on);
                s.is_persistent().to_string()
            }),
        )
        .route(
            "/rotate",
            post(|s: Session| async move {
                s.rotate();
                "rotated"
            }),
        )
}

const SAME_ORIGIN: &[(&str, &str)] = &[
    ("host", "example.com"),
    ("origin", "https://example.com"),
    ("sec-fetch-site", "same-origin"),
];

fn signin(token: Option<&str>, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut req =
        Request::post("/signin").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(t) = token {
        req = req.header(header::COOKIE, format!("{COOKIE}={t}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

fn consent_app() -> Harness {
    app_with(
        SessionConfig::web(crate::support::key(1)).require_consent(true),
        account_routes(),
    )
}

#[tokio::test]
async fn consent_mode_sets_no_cookie_for_a_visitor_before_consent() {
    let app = consent_app();
    for (method, path) in [
        ("POST", "/write/x"),
        ("GET", "/csrf"),
        ("GET", "/api/session/csrf-token"),
        ("GET", "/api/session/info"),
    ] {
        let reply = app.call(method, path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        assert!(
            reply.set_cookie().is_none(),
            "{path}: {:?}",
            reply.set_cookie_line()
        );
    }
    assert_eq!(app.store.len(), 0, "nothing of the visitor is stored");
}

#[tokio::test]
async fn consent_starts_the_session_and_is_kept() {
    let app = consent_app();
    let reply = app
        .send(request("POST", "/consent", None, SAME_ORIGIN))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let token = reply.token().expect("consent sets the cookie");
    assert_eq!(app.store.len(), 1);
    app.clock.advance(Duration::from_secs(5));
    let written = app.call("POST", "/write/kept", Some(&token)).await;
    assert!(
        written.set_cookie().is_none(),
        "the client holds its cookie already"
    );
    let who = app.call("GET", "/whoami", Some(&token)).await;
    assert!(who.body.contains("k=kept"), "{}", who.body);
    let consented = app.call("GET", "/consented", Some(&token)).await;
    assert_eq!(consented.body, format!("true Some({T0})"));
}

#[tokio::test]
async fn consent_mode_login_sets_its_cookie_behind_the_origin_checks() {
    struct Case {
        name: &'static str,
        headers: &'static [(&'static str, &'static str)],
        expect: StatusCode,
    }
    let cases = [
        Case {
            name: "same origin, shown by both headers",
            headers: SAME_ORIGIN,
            expect: StatusCode::OK,
        },
        Case {
            name: "Origin alone (an older browser)",
            headers: &[("host", "example.com"), ("origin", "https://example.com")],
            expect: StatusCode::OK,
        },
        Case {
            name: "Sec-Fetch-Site alone",
            headers: &[("sec-fetch-site", "same-origin")],
            expect: StatusCode::OK,
        },
        Case {
            name: "no origin shown: nothing could be checked",
            headers: &[("host", "example.com")],
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "another site's form",
            headers: &[
                ("host", "example.com"),
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "another origin without fetch metadata",
            headers: &[("host", "example.com"), ("origin", "https://evil.example")],
            expect: StatusCode::FORBIDDEN,
        },
    ];
    for case in cases {
        let app = consent_app();
        let reply = app.send(signin(None, case.headers, "user=alice")).await;
        assert_eq!(reply.status, case.expect, "{}: {}", case.name, reply.body);
        if case.expect == StatusCode::OK {
            let token = reply.token().expect("a login always sets its cookie");
            assert_eq!(
                app.call("GET", "/whoami", Some(&token)).await.user(),
                "alice"
            );
        } else {
            assert!(reply.set_cookie().is_none(), "{}", case.name);
            assert_eq!(app.store.len(), 0, "{}", case.name);
        }
    }
}

#[tokio::test]
async fn consent_mode_still_checks_tokens_of_a_held_session() {
    let app = consent_app();
    let alice = app
        .send(signin(None, SAME_ORIGIN, "user=alice"))
        .await
        .token()
        .unwrap();
    // A client with a session: its unsafe requests need the session's token again.
    let without = app
        .send(signin(Some(&alice), SAME_ORIGIN, "user=bob"))
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN, "{}", without.body);
    // Logout ends consent with the session: the next visit sets no cookie.
    let bye = app.call("POST", "/logout", Some(&alice)).await;
    assert!(bye.clears_cookie(), "{:?}", bye.set_cookie_line());
    let visit = app.call("POST", "/write/x", None).await;
    assert!(visit.set_cookie().is_none());
}

fn max_age(reply: &Reply) -> Option<i64> {
    let cookie = reply.set_cookie().expect("a session cookie");
    cookie.max_age().map(|d| d.whole_seconds())
}

#[tokio::test]
async fn remember_me_chooses_the_cookie_and_keeps_it_on_reissue() {
    struct Case {
        name: &'static str,
        cookie: CookieConfig,
        form: &'static str,
        expect: Option<i64>,
    }
    let cases = [
        Case {
            name: "persistent default, not remembered: browser-session cookie",
            cookie: CookieConfig::default(),
            form: "user=alice&remember=off",
            expect: None,
        },
        Case {
            name: "browser-session default, remembered: Max-Age to the absolute deadline",
            cookie: CookieConfig::default().persistent(false),
            form: "user=alice&remember=on",
            expect: Some(ABSOLUTE),
        },
        Case {
            name: "persistent default, no choice: the default",
            cookie: CookieConfig::default(),
            form: "user=alice",
            expect: Some(ABSOLUTE),
        },
        Case {
            name: "browser-session default, no choice: the default",
            cookie: CookieConfig::default().persistent(false),
            form: "user=alice",
            expect: None,
        },
    ];
    for case in cases {
        let app = app_with(
            SessionConfig::web(crate::support::key(1)).cookie(case.cookie),
            account_routes(),
        );
        // The login form's anonymous session, with its token.
        let (csrf, anon) = app.csrf_of(None).await;
        let body = format!("{}&csrf_token={csrf}", case.form);
        let login = app.send(signin(anon.as_deref(), SAME_ORIGIN, &body)).await;
        assert_eq!(
            login.status,
            StatusCode::OK,
            "{}: {}",
            case.name,
            login.body
        );
        assert_eq!(max_age(&login), case.expect, "{}", case.name);
        // Later tokens of the same session go out the same way (from the stored choice).
        app.clock.advance(Duration::from_secs(100));
        let token = login.token().unwrap();
        let rotated = app.call("POST", "/rotate", Some(&token)).await;
        assert_eq!(
            max_age(&rotated),
            case.expect.map(|s| s - 100),
            "{}: after a rotation",
            case.name
        );
    }
}

#[tokio::test]
async fn remember_me_changed_later_resends_the_cookie_and_logout_forgets_it() {
    let app = app_with(
        SessionConfig::web(crate::support::key(1))
            .cookie(CookieConfig::default().persistent(false)),
        account_routes(),
    );
    let token = app.logged_in("alice").await;
    let reply = app.call("POST", "/remember/true", Some(&token)).await;
    assert_eq!(reply.body, "true");
    assert_eq!(
        max_age(&reply),
        Some(ABSOLUTE),
        "sent again, now persistent"
    );
    assert_eq!(
        id_of(&reply.token().unwrap()),
        id_of(&token),
        "same session"
    );
    let unchanged = app.call("POST", "/remember/true", Some(&token)).await;
    assert!(unchanged.set_cookie().is_none(), "no change, no cookie");

    app.call("POST", "/logout", Some(&token)).await;
    let again = app.logged_in("alice").await;
    let rotated = app.call("POST", "/rotate", Some(&again)).await;
    assert_eq!(
        max_age(&rotated),
        None,
        "a new login starts from the default"
    );
}

#[tokio::test]
async fn bearer_sessions_extend_without_csrf() {
    // The API answers a bearer-token layer too: its sessions are not CSRF-checked.
    let layer = SessionLayer::new(SessionConfig::api(Key::from_bytes(&[3; 32]).unwrap()));
    let app: Router = Router::new()
        .nest("/api/session", browser::session_api())
        .layer(layer.clone());
    let login = layer.test_login(Principal::user("svc")).await.unwrap();
    let req = Request::post("/api/session/extend")
        .header(header::AUTHORIZATION, login.bearer())
        .body(Body::empty())
        .unwrap();
    let reply = crate::support::send(&app, req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(json_of(&reply)["session"]["user"], "svc");
}
