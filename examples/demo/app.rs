//! The demo application: a cookie-based web UI and a bearer-token JSON API over one store.
//!
//! Kept apart from `main.rs` so the end-to-end tests serve exactly this router.

use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_tessera::store::{MemoryStore, StoreKey};
use axum_tessera::{
    scope, CsrfProtected, Key, Principal, RequireScopes, Session, SessionConfig, SessionEvent,
    SessionLayer,
};
use serde::Deserialize;
use serde_json::json;

scope!(pub Admin = "admin");

/// Demo users: (name, password, scopes). Real applications check hashed passwords.
const USERS: &[(&str, &str, &[&str])] = &[("alice", "alice", &[]), ("admin", "admin", &["admin"])];

fn authenticate(username: &str, password: &str) -> Option<Principal> {
    USERS
        .iter()
        .find(|(u, p, _)| *u == username && *p == password)
        .map(|(u, _, scopes)| Principal::user(*u).with_scopes(scopes.iter().copied()))
}

/// Builds the demo router. `web` configures the browser routes, `api` the `/api` routes; both
/// share `store`, so a fleet of these would share sessions through a shared store.
pub fn router(web: SessionConfig, api: SessionConfig, store: MemoryStore) -> Router {
    let browser = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/counter", post(counter))
        .route("/me", get(me))
        .route("/sessions", get(sessions))
        .route("/sessions/logout", post(logout_one))
        .route("/sessions/logout-all", post(logout_all))
        .merge(admin_routes())
        .layer(SessionLayer::new(web).with_store(store.clone()));
    let api_login = Router::new()
        .route("/api/login", post(api_login))
        .layer(SessionLayer::new(api.clone().require_existing(false)).with_store(store.clone()));
    let api = Router::new()
        .route("/api/me", get(me))
        .route("/api/logout", post(api_logout))
        .route("/api/logout-all", post(api_logout_all))
        .layer(SessionLayer::new(api).with_store(store));
    browser.merge(api_login).merge(api)
}

/// `/admin`: the route layer refuses before the handler runs (401 / 403, and browsers that
/// are not logged in go to the sign-in page with `?next=/admin`).
fn admin_routes() -> Router {
    Router::new()
        .route("/admin", get(admin))
        .route_layer(RequireScopes::<(Admin,)>::layer().redirect_to("/"))
}

/// Development settings: a plain cookie name without `Secure`, so the demo works over http on
/// localhost. Production keeps the `web()` defaults (`__Host-` name, `Secure`).
pub fn dev_configs(key: Key) -> (SessionConfig, SessionConfig) {
    let web = SessionConfig::web(key.clone())
        .cookie(axum_tessera::CookieConfig::new("tessera").secure(false))
        .on_event(log_event);
    (web, SessionConfig::api(key).on_event(log_event))
}

/// Session events go to the log at `info`: what an operator would ship to their SIEM.
fn log_event(event: &SessionEvent) {
    tracing::info!(target: "demo::session_events", "{event}");
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Where to go after signing in: only a path on this site, never `//host` or `/\host`.
fn local_path(next: Option<&str>) -> Option<&str> {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\"))
}

#[derive(Deserialize)]
struct HomeQuery {
    next: Option<String>,
}

async fn home(session: Session, Query(query): Query<HomeQuery>) -> Html<String> {
    let csrf = escape(&session.csrf_token());
    let next = local_path(query.next.as_deref())
        .map(|n| format!(r#"<input type="hidden" name="next" value="{}">"#, escape(n)))
        .unwrap_or_default();
    let flashes: String = session
        .take_flashes()
        .iter()
        .map(|m| format!("<p class=\"flash\">{}</p>", escape(m.message())))
        .collect();
    let body = match session.principal() {
        Some(p) => {
            let counter: u64 = session.get("counter").unwrap_or(0);
            format!(
                r#"<h1 id="greeting">Hello, {user}!</h1>
<p>Counter: <span id="counter">{counter}</span></p>
<form method="post" action="/counter"><input type="hidden" name="csrf_token" value="{csrf}"><button id="increment" type="submit">Increment</button></form>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{csrf}"><button id="logout" type="submit">Log out</button></form>
<p><a href="/sessions">Your sessions</a></p>"#,
                user = escape(p.id()),
            )
        }
        None => format!(
            r#"<h1>Sign in</h1>
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{csrf}">{next}
<label>User <input id="username" name="username" autocomplete="username"></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label>
<button id="login" type="submit">Log in</button>
</form>
<p>Try alice/alice or admin/admin.</p>"#
        ),
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>axum-tessera demo</title></head><body>{flashes}{body}</body></html>"
    ))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// A form that carries nothing but its CSRF token.
#[derive(Deserialize)]
struct NoFields {}

async fn login(
    session: Session,
    CsrfProtected(Form(form)): CsrfProtected<Form<Credentials>>,
) -> Response {
    match authenticate(&form.username, &form.password) {
        Some(principal) => {
            session.login(principal);
            session.flash("Signed in.");
            Redirect::to(local_path(form.next.as_deref()).unwrap_or("/")).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Html("<!doctype html><title>Sign-in failed</title><h1>Wrong user name or password</h1><a href=\"/\">Try again</a>"),
        )
            .into_response(),
    }
}

async fn logout(session: Session, _: CsrfProtected<Form<NoFields>>) -> Redirect {
    session.logout();
    Redirect::to("/")
}

async fn counter(session: Session, _: CsrfProtected<Form<NoFields>>) -> Redirect {
    let n: u64 = session.get("counter").unwrap_or(0);
    session
        .insert("counter", n + 1)
        .expect("a number always serialises");
    Redirect::to("/")
}

async fn me(session: Session) -> Json<serde_json::Value> {
    let principal = session.principal();
    Json(json!({
        "authenticated": principal.is_some(),
        "user": principal.as_ref().map(Principal::id),
        "scopes": session.scopes(),
        "counter": session.get::<u64>("counter").unwrap_or(0),
        "csrf_token": session.csrf_token(),
    }))
}

/// The layer has already checked; the extractor hands over who passed.
async fn admin(guard: RequireScopes<(Admin,)>) -> String {
    format!("welcome, administrator {}", guard.principal().id())
}

async fn api_login(session: Session, Json(creds): Json<Credentials>) -> Response {
    match authenticate(&creds.username, &creds.password) {
        Some(principal) => {
            session.login(principal);
            Json(json!({ "token": session.token() })).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid credentials" })),
        )
            .into_response(),
    }
}

async fn api_logout(session: Session) -> StatusCode {
    session.logout();
    StatusCode::NO_CONTENT
}

/// Ends every session of the caller's principal, browser sessions included.
async fn api_logout_all(session: Session) -> Response {
    match session.logout_everywhere().await {
        Ok(ended) => Json(json!({ "ended": ended })).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable").into_response(),
    }
}

fn when(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&f).unwrap_or_default()
}

async fn sessions(session: Session) -> Response {
    if !session.is_authenticated() {
        return Redirect::to("/").into_response();
    }
    let list = match session.sessions_of_principal().await {
        Ok(list) => list,
        Err(_) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable").into_response()
        }
    };
    let current = session.info().map(|i| i.key());
    let csrf = escape(&session.csrf_token());
    let rows: String = list
        .iter()
        .map(|info| {
            let this = Some(info.key()) == current;
            format!(
                r#"<tr class="session"><td>{hash}{this}</td><td>{created}</td><td>{seen}</td><td>{ua}</td><td><form method="post" action="/sessions/logout"><input type="hidden" name="csrf_token" value="{csrf}"><input type="hidden" name="session" value="{key}"><button type="submit">Log out this session</button></form></td></tr>"#,
                hash = info.key().short(),
                this = if this { " (this one)" } else { "" },
                created = when(info.created()),
                seen = when(info.last_seen()),
                ua = escape(info.user_agent().unwrap_or("unknown")),
                key = info.key().to_hex(),
            )
        })
        .collect();
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Your sessions</title></head><body>
<h1>Your sessions</h1>
<table><tr><th>Session</th><th>Created</th><th>Last seen</th><th>Browser</th><th></th></tr>{rows}</table>
<form method="post" action="/sessions/logout-all"><input type="hidden" name="csrf_token" value="{csrf}"><button id="logout-all" type="submit">Log out everywhere</button></form>
<p><a href="/">Back</a></p></body></html>"#
    ))
    .into_response()
}

#[derive(Deserialize)]
struct EndSession {
    session: String,
}

async fn logout_one(
    session: Session,
    CsrfProtected(Form(form)): CsrfProtected<Form<EndSession>>,
) -> Response {
    let Some(key) = StoreKey::from_hex(&form.session) else {
        return (StatusCode::BAD_REQUEST, "malformed session reference").into_response();
    };
    match session.logout_session(key).await {
        Ok(true) => Redirect::to("/sessions").into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, "no such session of yours").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable").into_response(),
    }
}

async fn logout_all(session: Session, _: CsrfProtected<Form<NoFields>>) -> Response {
    match session.logout_everywhere().await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable").into_response(),
    }
}
