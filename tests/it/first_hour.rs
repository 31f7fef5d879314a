//! The "first hour" of a new user, through HTTP: what someone who follows the docs meets
//! before they know the crate well (bearer APIs on one layer, local development over http,
//! CSRF forms, durations, rejections a client can act on, safe return-to paths).

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::clock::ManualClock;
use axum_tessera::{Key, Principal, Session, SessionConfig, SessionLayer};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `name=value` pair of the first `Set-Cookie`.
    fn cookie(&self) -> Option<String> {
        self.header(header::SET_COOKIE)
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// One duration type: std::time::Duration.

#[tokio::test]
async fn timeouts_take_std_durations() {
    let clock = ManualClock::new(1_700_000_000);
    let cfg = SessionConfig::web(Key::generate())
        .cookie(axum_tessera::CookieConfig::new("sid").secure(false))
        .idle_timeout(Duration::from_secs(10 * 60))
        .absolute_timeout(Duration::from_secs(60 * 60))
        .clock_skew(Duration::from_secs(5))
        .clock(clock.clone());
    let app = Router::new()
        .route(
            "/login",
            post(|s: Session| async move { s.login(Principal::user("alice")) }),
        )
        .route(
            "/who",
            get(|s: Session| async move {
                s.principal().map(|p| p.id().to_owned()).unwrap_or_default()
            }),
        )
        .layer(SessionLayer::new(cfg));
    let login = send(&app, Request::post("/login").body(Body::empty()).unwrap()).await;
    let cookie = login.cookie().expect("a session cookie");
    let who = |cookie: String| {
        Request::get("/who")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };

    clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(
        send(&app, who(cookie.clone())).await.body,
        "alice",
        "inside the idle window"
    );
    clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(
        send(&app, who(cookie)).await.body,
        "",
        "idle for 11 minutes: gone"
    );
}

#[test]
fn sub_second_timeouts_stay_a_config_error() {
    let cfg = SessionConfig::web(Key::generate()).idle_timeout(Duration::from_millis(999));
    let err = SessionLayer::try_new(cfg).expect_err("sub-second idle timeout");
    assert!(err.to_string().contains("at least one second"), "{err}");
}

// ---------------------------------------------------------------------------------------
// One layer serves a bearer-token API end to end; rejections a client can act on.

use axum::response::IntoResponse;
use axum::Json;
use axum_tessera::rejection::RejectionInfo;
use axum_tessera::{Authenticated, RequireScopes};

const NO_TOKEN: &str = r#"Bearer realm="session""#;
const INVALID_TOKEN: &str = r#"Bearer realm="session", error="invalid_token""#;

/// The API a newcomer writes from the docs: one `api()` layer, a login route taking
/// `Session`, the other routes behind a guard (as extractor and as route layer).
fn api(cfg: SessionConfig) -> Router {
    async fn login(session: Session) -> Json<serde_json::Value> {
        session.login(Principal::user("alice"));
        Json(serde_json::json!({ "token": session.token() }))
    }
    async fn me(guard: RequireScopes<(Authenticated,)>) -> String {
        guard.principal().id().to_owned()
    }
    async fn logout(_: RequireScopes<(Authenticated,)>, session: Session) -> StatusCode {
        session.logout();
        StatusCode::NO_CONTENT
    }
    async fn visits(session: Session) -> String {
        let n: u64 = session.get("n").unwrap_or(0) + 1;
        session.insert("n", n).unwrap();
        n.to_string()
    }
    Router::new()
        .route("/orders", get(|| async { "orders" }))
        .route_layer(RequireScopes::<(Authenticated,)>::layer())
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/visits", post(visits))
        .layer(SessionLayer::new(cfg))
}

fn bearer(method: &str, path: &str, token: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::empty()).unwrap()
}

async fn api_login(app: &Router) -> String {
    let reply = send(app, bearer("POST", "/login", None)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    body["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn one_api_layer_serves_login_guarded_routes_and_logout() {
    let app = api(SessionConfig::api(Key::generate()));

    for path in ["/me", "/orders"] {
        let reply = send(&app, bearer("GET", path, None)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{path} without a token"
        );
        assert_eq!(
            reply.header(header::WWW_AUTHENTICATE),
            Some(NO_TOKEN),
            "{path}"
        );
    }

    let token = api_login(&app).await;
    let reply = send(&app, bearer("GET", "/me", Some(&token))).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "alice")
    );
    assert_eq!(
        send(&app, bearer("GET", "/orders", Some(&token)))
            .await
            .body,
        "orders"
    );
    let by_header = Request::get("/me")
        .header("x-session-token", &token)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, by_header).await.body,
        "alice",
        "X-Session-Token works too"
    );

    let out = send(&app, bearer("POST", "/logout", Some(&token))).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    for path in ["/me", "/orders"] {
        let reply = send(&app, bearer("GET", path, Some(&token))).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{path} after logout"
        );
        assert_eq!(
            reply.header(header::WWW_AUTHENTICATE),
            Some(INVALID_TOKEN),
            "{path}"
        );
    }
    let again = send(&app, bearer("POST", "/logout", Some(&token))).await;
    assert_eq!(
        again.status,
        StatusCode::UNAUTHORIZED,
        "logout needs a live token"
    );
}

#[tokio::test]
async fn tokens_that_do_not_authenticate_are_refused_alike() {
    let clock = ManualClock::new(1_700_000_000);
    let cfg = SessionConfig::api(Key::generate()).clock(clock.clone());
    let app = api(cfg.clone());
    let other_key = api(SessionConfig::api(Key::generate()).clock(clock.clone()));

    let revoked = api_login(&app).await;
    send(&app, bearer("POST", "/logout", Some(&revoked))).await;
    let foreign = api_login(&other_key).await;
    let expired = api_login(&app).await;
    let live = api_login(&app).await;
    // Past the idle timeout of `expired`; `live` is used again just before it would expire.
    clock.advance(Duration::from_secs(50 * 60));
    assert_eq!(
        send(&app, bearer("GET", "/me", Some(&live))).await.body,
        "alice"
    );
    clock.advance(Duration::from_secs(20 * 60));

    struct Case {
        name: &'static str,
        token: String,
    }
    let cases = [
        Case {
            name: "revoked (logged out)",
            token: revoked,
        },
        Case {
            name: "signed by another key",
            token: foreign,
        },
        Case {
            name: "expired",
            token: expired,
        },
        Case {
            name: "malformed",
            token: "garbage".into(),
        },
        Case {
            name: "oversized",
            token: "v1.".to_owned() + &"A".repeat(10_000),
        },
        Case {
            name: "forged",
            token: format!("v1.{}.1.{}", "A".repeat(43), "A".repeat(43)),
        },
    ];
    let mut answers = Vec::new();
    for case in &cases {
        for (method, path) in [("GET", "/me"), ("GET", "/orders"), ("POST", "/visits")] {
            let reply = send(&app, bearer(method, path, Some(&case.token))).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{} {path}",
                case.name
            );
            assert_eq!(
                reply.header(header::WWW_AUTHENTICATE),
                Some(INVALID_TOKEN),
                "{} {path}",
                case.name
            );
            assert!(reply.header(header::SET_COOKIE).is_none(), "{}", case.name);
            assert!(
                reply
                    .header(axum_tessera::config::SESSION_TOKEN_HEADER)
                    .is_none(),
                "{}: no new session",
                case.name
            );
            answers.push((path, reply.body));
        }
    }
    // No oracle: every kind of bad token gets the same answer on a route.
    for path in ["/me", "/orders", "/visits"] {
        let bodies: std::collections::BTreeSet<_> = answers
            .iter()
            .filter(|(p, _)| *p == path)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(bodies.len(), 1, "{path}: {bodies:?}");
    }
    assert_eq!(
        send(&app, bearer("POST", "/visits", Some("garbage")))
            .await
            .body,
        "session token invalid or expired"
    );
    // Without any token, an unguarded handler gets a fresh session as before.
    let reply = send(&app, bearer("POST", "/visits", None)).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "1"));
}

#[tokio::test]
async fn cookie_layers_give_stale_cookies_a_fresh_session_and_a_cookie_challenge() {
    let cfg = SessionConfig::web(Key::generate())
        .cookie(axum_tessera::CookieConfig::new("sid").secure(false));
    let app = api(cfg);
    let login = send(&app, bearer("POST", "/login", None)).await;
    let cookie = login.cookie().unwrap();
    let with_cookie = |method: &str, path: &str, cookie: Option<&str>| {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(cookie) = cookie {
            req = req.header(header::COOKIE, cookie);
        }
        req.body(Body::empty()).unwrap()
    };
    let reply = send(&app, with_cookie("GET", "/me", None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header(header::WWW_AUTHENTICATE),
        Some(r#"Cookie realm="session""#)
    );
    send(&app, with_cookie("POST", "/logout", Some(&cookie))).await;

    let reply = send(&app, with_cookie("GET", "/me", Some(&cookie))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header(header::WWW_AUTHENTICATE),
        Some(r#"Cookie realm="session", error="invalid_token""#)
    );
    let reply = send(&app, with_cookie("POST", "/visits", Some(&cookie))).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "1"),
        "fresh session"
    );
    assert!(reply.cookie().is_some_and(|c| c != cookie), "a new cookie");
}

#[tokio::test]
async fn require_existing_401s_carry_a_challenge() {
    let app = api(SessionConfig::api(Key::generate()).require_existing(true));
    let reply = send(&app, bearer("POST", "/visits", None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, "a valid session is required");
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some(NO_TOKEN));
}

#[tokio::test]
async fn json_clients_get_json_rejections_others_plain_text() {
    let app = api(SessionConfig::api(Key::generate()));
    struct Case {
        name: &'static str,
        accept: Option<&'static str>,
        token: Option<&'static str>,
        path: &'static str,
        content_type: &'static str,
        body: &'static str,
    }
    let json = "application/json";
    let text = "text/plain; charset=utf-8";
    let cases = [
        Case {
            name: "json, no token, guard",
            accept: Some("application/json"),
            token: None,
            path: "/me",
            content_type: json,
            body: r#"{"error":"authentication_required","message":"authentication required"}"#,
        },
        Case {
            name: "json, bad token, guard layer",
            accept: Some("application/json, text/plain, */*"),
            token: Some("garbage"),
            path: "/orders",
            content_type: json,
            body: r#"{"error":"invalid_token","message":"authentication required"}"#,
        },
        Case {
            name: "json, bad token, Session",
            accept: Some("application/problem+json"),
            token: Some("garbage"),
            path: "/visits",
            content_type: json,
            body: r#"{"error":"invalid_token","message":"session token invalid or expired"}"#,
        },
        Case {
            name: "browser",
            accept: Some("text/html,application/xhtml+xml,*/*;q=0.8"),
            token: Some("garbage"),
            path: "/visits",
            content_type: text,
            body: "session token invalid or expired",
        },
        Case {
            name: "curl",
            accept: Some("*/*"),
            token: None,
            path: "/me",
            content_type: text,
            body: "authentication required",
        },
        Case {
            name: "no accept",
            accept: None,
            token: None,
            path: "/orders",
            content_type: text,
            body: "authentication required",
        },
    ];
    for case in cases {
        let method = if case.path == "/visits" {
            "POST"
        } else {
            "GET"
        };
        let mut req = bearer(method, case.path, case.token);
        if let Some(accept) = case.accept {
            req.headers_mut()
                .insert(header::ACCEPT, accept.parse().unwrap());
        }
        let reply = send(&app, req).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", case.name);
        assert_eq!(
            reply.header(header::CONTENT_TYPE),
            Some(case.content_type),
            "{}",
            case.name
        );
        assert_eq!(reply.body, case.body, "{}", case.name);
        assert!(
            reply.header(header::WWW_AUTHENTICATE).is_some(),
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn the_render_hook_answers_every_rejection_its_way() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let cfg = SessionConfig::api(Key::generate()).render_rejection(move |info: &RejectionInfo| {
        log.lock()
            .unwrap()
            .push((info.status(), info.code(), info.wants_json()));
        if info.code() == "insufficient_scope" {
            return info.default_response();
        }
        (info.status(), format!("custom: {}", info.message())).into_response()
    });
    let app = api(cfg);

    let reply = send(&app, bearer("GET", "/orders", Some("garbage"))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, "custom: authentication required");
    assert_eq!(
        reply.header(header::WWW_AUTHENTICATE),
        Some(INVALID_TOKEN),
        "the challenge is added to the hook's response"
    );
    let mut req = bearer("POST", "/visits", Some("garbage"));
    req.headers_mut()
        .insert(header::ACCEPT, "application/json".parse().unwrap());
    let reply = send(&app, req).await;
    assert_eq!(reply.body, "custom: session token invalid or expired");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (StatusCode::UNAUTHORIZED, "invalid_token", false),
            (StatusCode::UNAUTHORIZED, "invalid_token", true),
        ]
    );
}

#[tokio::test]
async fn a_guard_outside_the_layer_names_the_order_to_use() {
    let wrong: Router = Router::new()
        .route("/me", get(|| async { "me" }))
        .layer(SessionLayer::new(SessionConfig::api(Key::generate())))
        .route_layer(RequireScopes::<(Authenticated,)>::layer());
    let reply = send(&wrong, bearer("GET", "/me", None)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains(
            "add .route_layer(guard) before .layer(SessionLayer::new(..)): layers added later run first"
        ),
        "{}",
        reply.body
    );
}

// ---------------------------------------------------------------------------------------
// Local development over plain http: one switch, loopback hosts only.

use axum_tessera::{CookieConfig, CsrfProtected};

/// `GET /token` hands out a CSRF token (and the session cookie); `POST /act` is protected.
fn browser_app(cfg: SessionConfig) -> Router {
    Router::new()
        .route("/token", get(|s: Session| async move { s.csrf_token() }))
        .route("/act", post(|_: CsrfProtected| async { "done" }))
        .layer(SessionLayer::new(cfg))
}

fn to_host(method: &str, path: &str, host: Option<&str>) -> axum::http::request::Builder {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(host) = host {
        req = req.header(header::HOST, host);
    }
    req
}

#[tokio::test]
async fn insecure_local_development_serves_plain_http_on_loopback() {
    let app = browser_app(SessionConfig::web(Key::generate()).insecure_local_development());
    let reply = send(
        &app,
        to_host("GET", "/token", Some("localhost:3000"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let set_cookie = reply.header(header::SET_COOKIE).unwrap().to_owned();
    assert!(set_cookie.starts_with("tessera="), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let cookie = reply.cookie().unwrap();
    let token = reply.body;

    struct Case {
        name: &'static str,
        origin: &'static str,
        fetch_site: Option<&'static str>,
        expect: StatusCode,
    }
    let cases = [
        Case {
            name: "own origin",
            origin: "http://localhost:3000",
            fetch_site: Some("same-origin"),
            expect: StatusCode::OK,
        },
        Case {
            name: "dev server on another port",
            origin: "http://localhost:5173",
            fetch_site: Some("same-site"),
            expect: StatusCode::OK,
        },
        Case {
            name: "127.0.0.1, any port",
            origin: "http://127.0.0.1:8080",
            fetch_site: Some("cross-site"),
            expect: StatusCode::OK,
        },
        Case {
            name: "[::1], any port",
            origin: "http://[::1]:1",
            fetch_site: None,
            expect: StatusCode::OK,
        },
        Case {
            name: "another host",
            origin: "http://evil.example",
            fetch_site: Some("cross-site"),
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "a look-alike",
            origin: "http://localhost.evil.example:3000",
            fetch_site: None,
            expect: StatusCode::FORBIDDEN,
        },
        Case {
            name: "https loopback is not widened",
            origin: "https://localhost:5173",
            fetch_site: None,
            expect: StatusCode::FORBIDDEN,
        },
    ];
    for case in cases {
        let mut req = to_host("POST", "/act", Some("localhost:3000"))
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, case.origin)
            .header("x-csrf-token", &token);
        if let Some(site) = case.fetch_site {
            req = req.header("sec-fetch-site", site);
        }
        let reply = send(&app, req.body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, case.expect, "{}: {}", case.name, reply.body);
    }
    let no_token = to_host("POST", "/act", Some("localhost:3000"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, "http://localhost:5173")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, no_token).await.status,
        StatusCode::FORBIDDEN,
        "the token is still required"
    );
}

#[tokio::test]
async fn insecure_local_development_refuses_every_other_host() {
    let app = browser_app(SessionConfig::web(Key::generate()).insecure_local_development());
    let loopback = [
        "localhost",
        "LocalHost:8080",
        "127.0.0.1",
        "127.0.0.1:3000",
        "[::1]",
        "[::1]:3000",
    ];
    for host in loopback {
        let reply = send(
            &app,
            to_host("GET", "/token", Some(host))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
    }
    let others = [
        Some("example.com"),
        Some("app.example:443"),
        Some("192.168.1.10:3000"),
        Some("10.0.0.1"),
        Some("localhost.evil.example"),
        Some("127.0.0.1.nip.io"),
        Some("[::2]:3000"),
        None,
    ];
    for host in others {
        let reply = send(
            &app,
            to_host("GET", "/token", host).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{host:?}");
        assert!(
            reply.body.contains("insecure local-development mode"),
            "{host:?}: {}",
            reply.body
        );
        assert!(
            reply
                .body
                .contains("remove SessionConfig::insecure_local_development() in production"),
            "{host:?}: {}",
            reply.body
        );
        assert!(
            reply.header(header::SET_COOKIE).is_none(),
            "{host:?}: nothing is handed out"
        );
    }
    // Absolute-form targets name the host too: `GET http://example.com/` with a loopback Host.
    let req = Request::get("http://example.com/token")
        .header(header::HOST, "localhost")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, req).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let json = to_host("GET", "/token", Some("example.com"))
        .header(header::ACCEPT, "application/json")
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, json).await;
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"], "insecure_local_development");
}

#[test]
fn conflicting_cookie_settings_name_the_call_to_make() {
    let cfg = SessionConfig::web(Key::generate()).cookie(CookieConfig::default().secure(false));
    let err = SessionLayer::try_new(cfg.clone()).expect_err("a __Host- cookie without Secure");
    assert!(
        err.to_string().ends_with(
            "a __Host- cookie must be Secure; for plain-http development on localhost use SessionConfig::insecure_local_development()"
        ),
        "{err}"
    );
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SessionLayer::new(cfg)))
        .expect_err("panics");
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("use SessionConfig::insecure_local_development()"),
        "{message}"
    );
    // The switch fixes exactly that configuration, in either order.
    let fixed = SessionConfig::web(Key::generate())
        .insecure_local_development()
        .cookie(CookieConfig::default().secure(false));
    assert!(SessionLayer::try_new(fixed).is_ok());
}

#[tokio::test]
async fn an_http_page_on_a_secure_site_is_told_about_the_switch() {
    let app = browser_app(SessionConfig::web(Key::generate()));
    let reply = send(
        &app,
        to_host("GET", "/token", Some("app.localtest:3000"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let (cookie, token) = (reply.cookie().unwrap(), reply.body);
    let req = to_host("POST", "/act", Some("app.localtest:3000"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, "http://app.localtest:3000")
        .header("x-csrf-token", &token)
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply
            .body
            .contains("loaded over http but the session cookie is Secure"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains("SessionConfig::insecure_local_development()"),
        "{}",
        reply.body
    );
    assert!(
        !reply.body.contains("app.localtest"),
        "the Origin is not echoed: {}",
        reply.body
    );
}

// ---------------------------------------------------------------------------------------
// CSRF that works the first time.

use axum::Form;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    title: String,
}

#[derive(Deserialize)]
struct Optional {
    #[serde(default)]
    title: Option<String>,
}

fn csrf_app() -> Router {
    Router::new()
        .route("/token", get(|s: Session| async move { s.csrf_token() }))
        .route(
            "/strict",
            post(|CsrfProtected(Form(f)): CsrfProtected<Form<Strict>>| async move { f.title }),
        )
        .route(
            "/strict-json",
            post(|CsrfProtected(Json(f)): CsrfProtected<Json<Strict>>| async move { f.title }),
        )
        .route(
            "/nothing",
            post(|_: CsrfProtected<Form<()>>| async { "nothing" }),
        )
        .route(
            "/optional",
            post(
                |CsrfProtected(Form(f)): CsrfProtected<Form<Optional>>| async move {
                    f.title.unwrap_or_else(|| "-".into())
                },
            ),
        )
        .route("/header-only", post(|_: CsrfProtected| async { "ok" }))
        .layer(SessionLayer::new(
            SessionConfig::web(Key::generate()).cookie(CookieConfig::new("sid").secure(false)),
        ))
}

#[tokio::test]
async fn csrf_forms_and_json_work_the_first_time() {
    const FORM: &str = "application/x-www-form-urlencoded";
    let app = csrf_app();
    let reply = send(&app, Request::get("/token").body(Body::empty()).unwrap()).await;
    let (cookie, token) = (reply.cookie().unwrap(), reply.body);
    let header_only = "CSRF token missing: this check reads only the X-CSRF-Token header; send \
                       the token there, or take CsrfProtected<Form<T>> to read the csrf_token form field";
    struct Case {
        name: &'static str,
        path: &'static str,
        content_type: Option<&'static str>,
        /// `{tok}` is replaced by the session's token.
        body: &'static str,
        header_token: bool,
        status: StatusCode,
        expect: &'static str,
    }
    let cases = [
        Case {
            name: "form field, deny_unknown_fields",
            path: "/strict",
            content_type: Some(FORM),
            body: "title=hi&csrf_token={tok}",
            header_token: false,
            status: StatusCode::OK,
            expect: "hi",
        },
        Case {
            name: "json member, deny_unknown_fields",
            path: "/strict-json",
            content_type: Some("application/json"),
            body: r#"{"csrf_token":"{tok}","title":"hi"}"#,
            header_token: false,
            status: StatusCode::OK,
            expect: "hi",
        },
        Case {
            name: "field-less form: Form<()>",
            path: "/nothing",
            content_type: Some(FORM),
            body: "csrf_token={tok}",
            header_token: false,
            status: StatusCode::OK,
            expect: "nothing",
        },
        Case {
            name: "Form<()> with the header and no body or Content-Type",
            path: "/nothing",
            content_type: None,
            body: "",
            header_token: true,
            status: StatusCode::OK,
            expect: "nothing",
        },
        Case {
            name: "header token, empty form body",
            path: "/optional",
            content_type: Some(FORM),
            body: "",
            header_token: true,
            status: StatusCode::OK,
            expect: "-",
        },
        Case {
            name: "header token, empty text/plain body (fetch with body '')",
            path: "/optional",
            content_type: Some("text/plain;charset=UTF-8"),
            body: "",
            header_token: true,
            status: StatusCode::OK,
            expect: "-",
        },
        Case {
            name: "header token and a field: both fine, field removed",
            path: "/strict",
            content_type: Some(FORM),
            body: "csrf_token={tok}&title=both",
            header_token: true,
            status: StatusCode::OK,
            expect: "both",
        },
        Case {
            name: "an empty form still needs the fields T requires",
            path: "/strict",
            content_type: None,
            body: "",
            header_token: true,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            expect: "Failed to deserialize form body: missing field `title`",
        },
        Case {
            name: "unknown fields other than the token still refused by deny_unknown_fields",
            path: "/strict",
            content_type: Some(FORM),
            body: "title=hi&extra=1&csrf_token={tok}",
            header_token: false,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            expect:
                "Failed to deserialize form body: extra: unknown field `extra`, expected `title`",
        },
        Case {
            name: "no token at all",
            path: "/nothing",
            content_type: None,
            body: "",
            header_token: false,
            status: StatusCode::FORBIDDEN,
            expect:
                "CSRF token missing: send it in the X-CSRF-Token header or the csrf_token field",
        },
        Case {
            name: "header-only extractor on a form post with the field",
            path: "/header-only",
            content_type: Some(FORM),
            body: "csrf_token={tok}",
            header_token: false,
            status: StatusCode::FORBIDDEN,
            expect: header_only,
        },
        Case {
            name: "header-only extractor, not a form: the usual text",
            path: "/header-only",
            content_type: None,
            body: "",
            header_token: false,
            status: StatusCode::FORBIDDEN,
            expect:
                "CSRF token missing: send it in the X-CSRF-Token header or the csrf_token field",
        },
    ];
    for case in cases {
        let mut req = Request::post(case.path).header(header::COOKIE, &cookie);
        if let Some(ct) = case.content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if case.header_token {
            req = req.header("x-csrf-token", &token);
        }
        let body = case.body.replace("{tok}", &token);
        let reply = send(&app, req.body(Body::from(body)).unwrap()).await;
        assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.body);
        assert_eq!(reply.body, case.expect, "{}", case.name);
    }
}

// ---------------------------------------------------------------------------------------
// Safe return-to paths for `?next=`.

use axum::response::Redirect;
use axum_tessera::guard::ReturnTo;

#[tokio::test]
async fn the_return_to_extractor_reads_next_from_the_query() {
    let app: Router = Router::new().route(
        "/done",
        get(|next: ReturnTo| async move { Redirect::to(next.as_str()) }),
    );
    struct Case {
        query: &'static str,
        expect: &'static str,
    }
    let cases = [
        Case {
            query: "",
            expect: "/",
        },
        Case {
            query: "?next=%2Fadmin%3Ftab%3D1",
            expect: "/admin?tab=1",
        },
        Case {
            query: "?next=%2F%2Fevil.example",
            expect: "/",
        },
        Case {
            query: "?next=%2F%2509%2Fevil.example%2F",
            expect: "/",
        },
        Case {
            query: "?next=/%09/evil.example/",
            expect: "/",
        },
        Case {
            query: "?next=%2F%0D%0ASet-Cookie:%20x",
            expect: "/",
        },
        Case {
            query: "?next=https://evil.example",
            expect: "/",
        },
        Case {
            query: "?other=1&next=/ok&next=//evil",
            expect: "/ok",
        },
    ];
    for case in cases {
        let reply = send(
            &app,
            Request::get(format!("/done{}", case.query))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", case.query);
        assert_eq!(
            reply.header(header::LOCATION),
            Some(case.expect),
            "{}",
            case.query
        );
    }
}

// ---------------------------------------------------------------------------------------
// The demo, driven in-process.

#[path = "../../examples/demo/app.rs"]
mod app;

/// The demo router as `cargo run --example demo` serves it, and a helper that sends a
/// request to it as a browser on `localhost:3000` would.
fn demo() -> Router {
    let (web, api) = app::dev_configs(Key::generate());
    app::router(web, api, axum_tessera::store::MemoryStore::new())
}

fn to_demo(method: &str, path: &str) -> axum::http::request::Builder {
    to_host(method, path, Some("localhost:3000"))
}

/// Opens the sign-in page: the anonymous session's cookie and the form's CSRF token.
async fn sign_in_page(app: &Router) -> (String, String) {
    let reply = send(app, to_demo("GET", "/").body(Body::empty()).unwrap()).await;
    let token = reply
        .body
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    (reply.cookie().unwrap(), token)
}

#[tokio::test]
async fn demo_login_returns_only_to_local_paths() {
    let app = demo();
    struct Case {
        name: &'static str,
        /// The `next` field as posted (form-encoded here).
        next: &'static str,
        expect: &'static str,
    }
    let cases = [
        Case {
            name: "local",
            next: "/admin",
            expect: "/admin",
        },
        Case {
            name: "encoded tab",
            next: "/%09/evil.example/",
            expect: "/",
        },
        Case {
            name: "raw tab",
            next: "/\t/evil.example/",
            expect: "/",
        },
        Case {
            name: "CR LF is not a 500",
            next: "/\r\nSet-Cookie: x=y",
            expect: "/",
        },
        Case {
            name: "scheme-relative",
            next: "//evil.example",
            expect: "/",
        },
        Case {
            name: "backslash",
            next: "/\\evil.example",
            expect: "/",
        },
    ];
    for case in cases {
        let (cookie, token) = sign_in_page(&app).await;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", "alice")
            .append_pair("password", "alice")
            .append_pair("next", case.next)
            .append_pair("csrf_token", &token)
            .finish();
        let req = to_demo("POST", "/login")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let reply = send(&app, req).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{}: {}",
            case.name,
            reply.body
        );
        assert_eq!(
            reply.header(header::LOCATION),
            Some(case.expect),
            "{}",
            case.name
        );
    }
    // The sign-in page does not carry an unsafe `next` into its form either.
    let reply = send(
        &app,
        to_demo("GET", "/?next=%2F%2509%2Fevil.example%2F")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!reply.body.contains("evil.example"), "{}", reply.body);
}

#[tokio::test]
async fn demo_field_less_forms_take_a_header_token() {
    let app = demo();
    let (cookie, token) = sign_in_page(&app).await;
    let body = format!("username=alice&password=alice&csrf_token={token}");
    let login = to_demo("POST", "/login")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let cookie = send(&app, login)
        .await
        .cookie()
        .expect("a logged-in cookie");
    let me = send(
        &app,
        to_demo("GET", "/me")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let me: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    let token = me["csrf_token"].as_str().unwrap().to_owned();

    // fetch('/counter', {method: 'POST', headers: {'X-CSRF-Token': token}}): no body, no type.
    let counter = to_demo("POST", "/counter")
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &token)
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, counter).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    // And the form itself, which posts only its token field.
    let counter = to_demo("POST", "/counter")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf_token={token}")))
        .unwrap();
    assert_eq!(send(&app, counter).await.status, StatusCode::SEE_OTHER);
    let me = send(
        &app,
        to_demo("GET", "/me")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(me.body.contains("\"counter\":2"), "{}", me.body);

    let logout = to_demo("POST", "/logout")
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &token)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, logout).await.status, StatusCode::SEE_OTHER);
    let me = send(
        &app,
        to_demo("GET", "/me")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(me.body.contains("\"authenticated\":false"), "{}", me.body);
}

#[tokio::test]
async fn a_guard_answering_a_chosen_401_still_challenges() {
    let app: Router = Router::new()
        .route("/x", get(|| async { "x" }))
        .route_layer(RequireScopes::<(Authenticated,)>::layer().status(StatusCode::UNAUTHORIZED))
        .layer(SessionLayer::new(SessionConfig::api(Key::generate())));
    let reply = send(&app, bearer("GET", "/x", None)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::UNAUTHORIZED, "Unauthorized")
    );
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some(NO_TOKEN));
    let reply = send(&app, bearer("GET", "/x", Some("garbage"))).await;
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some(INVALID_TOKEN));
}

#[tokio::test]
async fn csrf_and_commit_rejections_answer_json_clients_in_json() {
    use axum_tessera::store::StoreKey;
    use axum_tessera::store::{Commit, CommitOutcome, MemoryStore, SessionStore};
    use axum_tessera::store::{Record, StoreErrorKind};
    use axum_tessera::{SessionInfo, StoreError};

    /// A store whose commits fail: the layer must answer 503 instead of the handler's 200.
    #[derive(Clone, Default)]
    struct Unwritable(MemoryStore);

    impl SessionStore for Unwritable {
        async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
            self.0.load(key).await
        }
        async fn commit(&self, _: Commit) -> Result<CommitOutcome, StoreError> {
            Err(StoreError::from_kind(StoreErrorKind::Unavailable))
        }
        async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
            self.0.sessions_of(principal).await
        }
        async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
            self.0.delete_sessions_of(principal).await
        }
    }

    let app = csrf_app();
    let reply = send(&app, Request::get("/token").body(Body::empty()).unwrap()).await;
    let req = Request::post("/header-only")
        .header(header::COOKIE, reply.cookie().unwrap())
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf_token={}", reply.body)))
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"], "csrf_header_required");

    let app: Router = Router::new()
        .route(
            "/write",
            post(|s: Session| async move { s.insert("k", 1).unwrap() }),
        )
        .layer(
            SessionLayer::new(SessionConfig::api(Key::generate()))
                .with_store(Unwritable::default()),
        );
    let req = Request::post("/write")
        .header(header::ACCEPT, "application/json")
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.body,
        r#"{"error":"session_not_saved","message":"session could not be saved; please retry"}"#
    );
    let reply = send(&app, Request::post("/write").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.body, "session could not be saved; please retry");
}
