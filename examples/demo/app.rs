//! The demo application: a cookie-based web UI and a bearer-token JSON API over one store.
//!
//! Kept apart from `main.rs` so the end-to-end tests serve exactly this router.

use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_tessera::store::MemoryStore;
use axum_tessera::{Key, Principal, Session, SessionConfig, SessionLayer};
use serde::Deserialize;
use serde_json::json;

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
        .route("/admin", get(admin))
        .layer(SessionLayer::new(web).with_store(store.clone()));
    let api_login = Router::new()
        .route("/api/login", post(api_login))
        .layer(SessionLayer::new(api.clone().require_existing(false)).with_store(store.clone()));
    let api = Router::new()
        .route("/api/me", get(me))
        .route("/api/logout", post(api_logout))
        .layer(SessionLayer::new(api).with_store(store));
    browser.merge(api_login).merge(api)
}

/// Development settings: a plain cookie name without `Secure`, so the demo works over http on
/// localhost. Production keeps the `web()` defaults (`__Host-` name, `Secure`).
pub fn dev_configs(key: Key) -> (SessionConfig, SessionConfig) {
    let web = SessionConfig::web(key.clone())
        .cookie(axum_tessera::CookieConfig::new("tessera").secure(false));
    (web, SessionConfig::api(key))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn home(session: Session) -> Html<String> {
    let csrf = escape(&session.csrf_token());
    let flashes: String = session
        .take_flashes()
        .iter()
        .map(|m| format!("<p class=\"flash\">{}</p>", escape(m)))
        .collect();
    let body = match session.principal() {
        Some(p) => {
            let counter: u64 = session.get("counter").unwrap_or(0);
            format!(
                r#"<h1 id="greeting">Hello, {user}!</h1>
<p>Counter: <span id="counter">{counter}</span></p>
<form method="post" action="/counter"><input type="hidden" name="csrf_token" value="{csrf}"><button id="increment" type="submit">Increment</button></form>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{csrf}"><button id="logout" type="submit">Log out</button></form>"#,
                user = escape(p.id()),
            )
        }
        None => format!(
            r#"<h1>Sign in</h1>
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{csrf}">
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
}

async fn login(session: Session, Form(form): Form<Credentials>) -> Response {
    match authenticate(&form.username, &form.password) {
        Some(principal) => {
            session.login(principal);
            session.flash("Signed in.");
            Redirect::to("/").into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Html("<!doctype html><title>Sign-in failed</title><h1>Wrong user name or password</h1><a href=\"/\">Try again</a>"),
        )
            .into_response(),
    }
}

async fn logout(session: Session) -> Redirect {
    session.logout();
    Redirect::to("/")
}

async fn counter(session: Session) -> Redirect {
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

async fn admin(session: Session) -> Response {
    if !session.is_authenticated() {
        (StatusCode::UNAUTHORIZED, "login required").into_response()
    } else if !session.has_scope("admin") {
        (StatusCode::FORBIDDEN, "admin scope required").into_response()
    } else {
        "welcome, administrator".into_response()
    }
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
