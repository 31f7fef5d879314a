//! Scope guards through HTTP: `RequireScopes` / `AnyScope` as extractors and as route layers.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::{
    scope, AnyScope, Authenticated, CookieConfig, Key, Principal, RequireScopes, Session,
    SessionConfig, SessionLayer,
};

use crate::support::send;

scope!(pub Admin = "admin"; pub Billing = "billing"; pub Support = "support");

fn web() -> SessionConfig {
    SessionConfig::web(Key::generate()).cookie(CookieConfig::new("id").secure(false))
}

/// `POST /login` with a body of comma-separated scopes logs in `alice` with them.
async fn login(session: Session, body: String) -> String {
    let scopes = body.split(',').filter(|s| !s.is_empty()).map(str::to_owned);
    session.login(Principal::user("alice").with_scopes(scopes));
    session.token()
}

async fn logout(session: Session) {
    session.logout();
}

async fn ok() -> &'static str {
    "ok"
}

fn routes() -> Router {
    let guarded = |path: &str, layer: axum_tessera::guard::ScopeLayer| {
        Router::new().route(path, get(ok)).route_layer(layer)
    };
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route(
            "/x/all",
            get(|g: RequireScopes<(Admin, Billing)>| async move { g.principal().id().to_owned() }),
        )
        .route("/x/any", get(|_: AnyScope<(Admin, Support)>| ok()))
        .route("/x/auth", get(|_: RequireScopes<(Authenticated,)>| ok()))
        .merge(guarded("/layer/admin", RequireScopes::<(Admin,)>::layer()))
        .merge(guarded("/layer/any", AnyScope::<(Admin, Support)>::layer()))
        .merge(guarded(
            "/layer/redirect",
            RequireScopes::<(Admin,)>::layer().redirect_to("/login"),
        ))
        .merge(guarded(
            "/layer/hidden",
            RequireScopes::<(Admin,)>::layer().status(StatusCode::NOT_FOUND),
        ))
        .merge(guarded(
            "/layer/both",
            RequireScopes::<(Admin,)>::layer()
                .redirect_to("/login?lang=en")
                .status(StatusCode::NOT_FOUND),
        ))
        .nest(
            "/nested",
            guarded(
                "/page",
                RequireScopes::<(Admin,)>::layer().redirect_to("/login"),
            ),
        )
}

async fn cookie_for(app: &Router, scopes: &str) -> String {
    let reply = send(
        app,
        Request::post("/login")
            .body(Body::from(scopes.to_owned()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "login");
    reply.cookie_pair("id").expect("login sets the cookie")
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    /// Logged in with these comma-separated scopes.
    User(&'static str),
    /// Logged in, then logged out; sends the old cookie.
    LoggedOut,
    /// A cookie value that was never issued.
    Forged,
}

struct Case {
    name: &'static str,
    who: Who,
    path: &'static str,
    accept: Option<&'static str>,
    status: StatusCode,
    body: &'static str,
    location: Option<&'static str>,
}

const HTML: Option<&str> = Some("text/html,application/xhtml+xml,*/*;q=0.8");
const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn guards_answer_by_principal_and_scopes() {
    use StatusCode as S;
    use Who::*;
    let c = |name, who, path, accept, status, body| Case {
        name,
        who,
        path,
        accept,
        status,
        body,
        location: None,
    };
    let redirect = |name, who, path, location| Case {
        name,
        who,
        path,
        accept: HTML,
        status: S::SEE_OTHER,
        body: "",
        location: Some(location),
    };
    let unauth = "authentication required";
    let scope = "missing required scope";
    let cases = [
        c(
            "all: anonymous",
            Anonymous,
            "/x/all",
            None,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "all: logged out cookie",
            LoggedOut,
            "/x/all",
            None,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "all: forged cookie",
            Forged,
            "/x/all",
            None,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "all: no scopes",
            User(""),
            "/x/all",
            None,
            S::FORBIDDEN,
            scope,
        ),
        c(
            "all: one of two",
            User("admin"),
            "/x/all",
            None,
            S::FORBIDDEN,
            scope,
        ),
        c(
            "all: similar name",
            User("admins,billing"),
            "/x/all",
            None,
            S::FORBIDDEN,
            scope,
        ),
        c(
            "all: both",
            User("admin,billing"),
            "/x/all",
            None,
            S::OK,
            "alice",
        ),
        c(
            "all: superset",
            User("admin,billing,x"),
            "/x/all",
            None,
            S::OK,
            "alice",
        ),
        c(
            "any: anonymous",
            Anonymous,
            "/x/any",
            None,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "any: neither",
            User("billing"),
            "/x/any",
            None,
            S::FORBIDDEN,
            scope,
        ),
        c("any: first", User("admin"), "/x/any", None, S::OK, "ok"),
        c("any: second", User("support"), "/x/any", None, S::OK, "ok"),
        c(
            "authenticated: anonymous",
            Anonymous,
            "/x/auth",
            None,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "authenticated: no scopes",
            User(""),
            "/x/auth",
            None,
            S::OK,
            "ok",
        ),
        c(
            "extractor never redirects",
            Anonymous,
            "/x/all",
            HTML,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "layer: anonymous",
            Anonymous,
            "/layer/admin",
            None,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "layer: logged out",
            LoggedOut,
            "/layer/admin",
            None,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "layer: wrong scope",
            User("billing"),
            "/layer/admin",
            None,
            S::FORBIDDEN,
            scope,
        ),
        c(
            "layer: admin",
            User("admin"),
            "/layer/admin",
            None,
            S::OK,
            "ok",
        ),
        c(
            "layer no redirect configured",
            Anonymous,
            "/layer/admin",
            HTML,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "any layer: neither",
            User(""),
            "/layer/any",
            None,
            S::FORBIDDEN,
            scope,
        ),
        c(
            "any layer: second",
            User("support"),
            "/layer/any",
            None,
            S::OK,
            "ok",
        ),
        redirect(
            "redirect: html anonymous",
            Anonymous,
            "/layer/redirect?tab=a&x=%2F",
            "/login?next=%2Flayer%2Fredirect%3Ftab%3Da%26x%3D%252F",
        ),
        redirect(
            "redirect: html logged out",
            LoggedOut,
            "/layer/redirect",
            "/login?next=%2Flayer%2Fredirect",
        ),
        redirect(
            "redirect: nested keeps the full path",
            Anonymous,
            "/nested/page",
            "/login?next=%2Fnested%2Fpage",
        ),
        c(
            "redirect: json client gets 401",
            Anonymous,
            "/layer/redirect",
            JSON,
            S::UNAUTHORIZED,
            // A client that asks for JSON gets the rejection as JSON.
            r#"{"error":"authentication_required","message":"authentication required"}"#,
        ),
        c(
            "redirect: no accept gets 401",
            Anonymous,
            "/layer/redirect",
            None,
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "redirect: html refused with q=0",
            Anonymous,
            "/layer/redirect",
            Some("text/html;q=0"),
            S::UNAUTHORIZED,
            unauth,
        ),
        c(
            "redirect: missing scope is 403",
            User("billing"),
            "/layer/redirect",
            HTML,
            S::FORBIDDEN,
            scope,
        ),
        c(
            "redirect: admin passes",
            User("admin"),
            "/layer/redirect",
            HTML,
            S::OK,
            "ok",
        ),
        c(
            "status: anonymous",
            Anonymous,
            "/layer/hidden",
            None,
            S::NOT_FOUND,
            "Not Found",
        ),
        c(
            "status: wrong scope",
            User("billing"),
            "/layer/hidden",
            HTML,
            S::NOT_FOUND,
            "Not Found",
        ),
        c(
            "status: admin passes",
            User("admin"),
            "/layer/hidden",
            None,
            S::OK,
            "ok",
        ),
        redirect(
            "both: html anonymous redirected",
            Anonymous,
            "/layer/both",
            "/login?lang=en&next=%2Flayer%2Fboth",
        ),
        c(
            "both: json anonymous",
            Anonymous,
            "/layer/both",
            JSON,
            S::NOT_FOUND,
            "Not Found",
        ),
        c(
            "both: wrong scope",
            User(""),
            "/layer/both",
            HTML,
            S::NOT_FOUND,
            "Not Found",
        ),
    ];

    let app = routes().layer(SessionLayer::new(web()));
    for case in cases {
        let cookie = match case.who {
            Who::Anonymous => None,
            Who::User(scopes) => Some(cookie_for(&app, scopes).await),
            Who::LoggedOut => {
                let cookie = cookie_for(&app, "admin,billing,support").await;
                let out = send(
                    &app,
                    Request::post("/logout")
                        .header(header::COOKIE, &cookie)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
                assert_eq!(out.status, StatusCode::OK, "{}: logout", case.name);
                Some(cookie)
            }
            Who::Forged => Some(format!("id=v1.{}.1.AAAA", "A".repeat(43))),
        };
        let mut req = Request::get(case.path);
        if let Some(cookie) = &cookie {
            req = req.header(header::COOKIE, cookie);
        }
        if let Some(accept) = case.accept {
            req = req.header(header::ACCEPT, accept);
        }
        let reply = send(&app, req.body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.body);
        assert_eq!(reply.body, case.body, "{}", case.name);
        let location = reply
            .headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap());
        assert_eq!(location, case.location, "{}", case.name);
        // Every 401 carries a challenge; cookie layers name the `Cookie` scheme, never
        // `Bearer`, and a cookie that no longer authenticates is an invalid token.
        let challenge = (reply.status == StatusCode::UNAUTHORIZED).then_some(match case.who {
            Who::Anonymous => r#"Cookie realm="session""#,
            _ => r#"Cookie realm="session", error="invalid_token""#,
        });
        assert_eq!(
            reply
                .headers
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap()),
            challenge,
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn bearer_layers_challenge_on_401_only() {
    struct Case {
        name: &'static str,
        path: &'static str,
        scopes: Option<&'static str>,
        status: StatusCode,
        challenge: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "extractor without token",
            path: "/x/all",
            scopes: None,
            status: StatusCode::UNAUTHORIZED,
            challenge: Some(r#"Bearer realm="session""#),
        },
        Case {
            name: "layer without token",
            path: "/layer/admin",
            scopes: None,
            status: StatusCode::UNAUTHORIZED,
            challenge: Some(r#"Bearer realm="session""#),
        },
        Case {
            name: "layer redirect is for browsers: API clients get the challenge",
            path: "/layer/redirect",
            scopes: None,
            status: StatusCode::UNAUTHORIZED,
            challenge: Some(r#"Bearer realm="session""#),
        },
        Case {
            name: "missing scope",
            path: "/x/all",
            scopes: Some("admin"),
            status: StatusCode::FORBIDDEN,
            challenge: None,
        },
        Case {
            name: "granted",
            path: "/layer/admin",
            scopes: Some("admin"),
            status: StatusCode::OK,
            challenge: None,
        },
    ];
    let cfg = SessionConfig::api(Key::generate()).require_existing(false);
    let app = routes().layer(SessionLayer::new(cfg));
    for case in cases {
        let mut req = Request::get(case.path).header(header::ACCEPT, "application/json");
        if let Some(scopes) = case.scopes {
            let login = send(
                &app,
                Request::post("/login").body(Body::from(scopes)).unwrap(),
            )
            .await;
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", login.body));
        }
        let reply = send(&app, req.body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.body);
        let challenge = reply
            .headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap());
        assert_eq!(challenge, case.challenge, "{}", case.name);
    }
}

#[tokio::test]
async fn require_existing_layers_still_answer_with_the_guard() {
    // The api preset rejects requests without a session in `Session`; the guards answer for
    // themselves with the same 401 plus the challenge.
    let app = routes().layer(SessionLayer::new(SessionConfig::api(Key::generate())));
    let reply = send(
        &app,
        Request::get("/layer/admin").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers[header::WWW_AUTHENTICATE],
        r#"Bearer realm="session""#
    );
}

#[tokio::test]
async fn guards_without_session_layer_are_a_clear_500() {
    let app = routes();
    for path in ["/x/all", "/layer/admin"] {
        let reply = send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(
            reply.body.contains("SessionLayer"),
            "{path}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn scope_change_takes_effect_on_the_next_request() {
    async fn grant(session: Session) {
        session.set_scopes(["admin"]);
    }
    let app = routes()
        .route("/grant", post(grant))
        .layer(SessionLayer::new(web()));
    let cookie = cookie_for(&app, "").await;
    let get = |cookie: &str| {
        Request::get("/layer/admin")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, get(&cookie)).await.status, StatusCode::FORBIDDEN);
    let granted = send(
        &app,
        Request::post("/grant")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let rotated = granted
        .cookie_pair("id")
        .expect("scope change rotates the ID");
    assert_eq!(send(&app, get(&rotated)).await.status, StatusCode::OK);
    assert_eq!(
        send(&app, get(&cookie)).await.status,
        StatusCode::UNAUTHORIZED,
        "the pre-grant ID is dead"
    );
}

#[tokio::test]
async fn denials_are_reported_as_events_and_counted() {
    use std::sync::{Arc, Mutex};
    /// (missing scopes, principal) of each `ScopeDenied` event.
    type Denials = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let seen: Denials = Arc::default();
    let hook = seen.clone();
    let cfg = web().on_event(move |e| {
        if let axum_tessera::EventKind::ScopeDenied(missing) = e.kind() {
            let principal = e.principal().map(str::to_owned);
            hook.lock().unwrap().push((missing.clone(), principal));
        }
    });
    let layer = SessionLayer::new(cfg);
    let app = routes().layer(layer.clone());

    let billing = cookie_for(&app, "billing").await;
    for (path, cookie) in [
        ("/x/all", Some(&billing)),
        ("/layer/any", Some(&billing)),
        ("/x/all", None),
        ("/x/auth", Some(&billing)),
    ] {
        let mut req = Request::get(path);
        if let Some(cookie) = cookie {
            req = req.header(header::COOKIE, cookie);
        }
        send(&app, req.body(Body::empty()).unwrap()).await;
    }
    let alice = Some("alice".to_owned());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("admin".to_owned(), alice.clone()),
            ("admin|support".to_owned(), alice)
        ],
        "only missing scopes are denials; anonymous requests are 401s"
    );
    assert_eq!(layer.stats().scope_denied, 2);
}
