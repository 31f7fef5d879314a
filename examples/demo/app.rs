//! The demo application: a cookie-based web UI and a bearer-token JSON API over one store.
//!
//! Kept apart from `main.rs` so the end-to-end tests serve exactly this router; the HTML is
//! rendered in `pages.rs`.

#[path = "live.rs"]
mod live;
#[path = "pages.rs"]
mod pages;

#[allow(unused_imports)] // `main` uses it; the end-to-end tests do not
pub use live::close_sockets as close_live_sockets;

use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_tessera::config::TokenSource;
use axum_tessera::guard::safe_return_to;
use axum_tessera::store::{MemoryStore, SessionStore, StoreKey};
use axum_tessera::{
    browser, scope, Authenticated, CsrfProtected, Flash, Key, Principal, RequireScopes, Session,
    SessionConfig, SessionEvent, SessionLayer,
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
// The tests' entry point; `main` builds the layers itself to drain them at shutdown.
#[allow(dead_code)]
pub fn router(web: SessionConfig, api: SessionConfig, store: MemoryStore) -> Router {
    let (web, api) = layers(web, api, store);
    routes(web, api)
}

/// The two layers over one store, handed to `main` as well so it can wait for their commits
/// at shutdown ([`SessionLayer::drain`]).
pub fn layers(
    web: SessionConfig,
    api: SessionConfig,
    store: impl SessionStore + Clone,
) -> (SessionLayer, SessionLayer) {
    (
        SessionLayer::new(web).with_store(store.clone()),
        SessionLayer::new(api).with_store(store),
    )
}

/// The demo's routes under the browser layer `web` and the API layer `api`.
pub fn routes(web: SessionLayer, api: SessionLayer) -> Router {
    let browser = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/counter", post(counter))
        .route("/me", get(me))
        .route("/sessions", get(sessions))
        .route("/sessions/logout", post(logout_one))
        .route("/sessions/logout-all", post(logout_all))
        .route("/scopes/beta", post(toggle_beta))
        .merge(live::routes())
        .nest("/api/session", browser::session_api())
        .merge(admin_routes())
        .layer(web);
    // One layer serves the whole API: `/api/login` creates the session, the guard refuses
    // the other routes without a valid token (401 with `WWW-Authenticate: Bearer`).
    let api = Router::new()
        .route("/api/me", get(me))
        .route("/api/logout", post(api_logout))
        .route("/api/logout-all", post(api_logout_all))
        .route_layer(RequireScopes::<(Authenticated,)>::layer())
        .route("/api/login", post(api_login))
        .layer(api);
    browser.merge(api)
}

/// `/admin`: the route layer refuses before the handler runs (401 / 403, and browsers that
/// are not logged in go to the sign-in page with `?next=/admin`).
fn admin_routes() -> Router {
    Router::new()
        .route("/admin", get(admin))
        .route_layer(RequireScopes::<(Admin,)>::layer().redirect_to("/"))
}

/// Development settings: the one switch for plain http on localhost (cookie `tessera`
/// without `Secure`, loopback origins allowed, loopback hosts only). Production drops the
/// `insecure_local_development()` line and keeps the `web()` defaults.
pub fn dev_configs(key: Key) -> (SessionConfig, SessionConfig) {
    let web = SessionConfig::web(key.clone())
        .insecure_local_development()
        .idle_timeout(idle_timeout())
        .on_event(log_event);
    (web, SessionConfig::api(key).on_event(log_event))
}

/// The browser idle timeout: `DEMO_IDLE_SECS` seconds (default 1800), so the expiry banner
/// can be watched without waiting half an hour.
pub fn idle_timeout() -> std::time::Duration {
    let secs = std::env::var("DEMO_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(1800);
    std::time::Duration::from_secs(secs)
}

/// Session events go to the log at `info`: what an operator would ship to their SIEM.
fn log_event(event: &SessionEvent) {
    tracing::info!(target: "demo::session_events", "{event}");
}

#[derive(Deserialize)]
struct HomeQuery {
    next: Option<String>,
}

async fn home(session: Session, Query(query): Query<HomeQuery>) -> Html<String> {
    let csrf = session.csrf_token();
    let flashes = session.take_flashes();
    let Some(p) = session.principal() else {
        let form = pages::login_form(
            &csrf,
            query
                .next
                .as_deref()
                .map(safe_return_to)
                .filter(|n| *n != "/"),
        );
        return pages::layout("Sign in", None, &flashes, 0, &form);
    };
    let counter: u64 = session.get("counter").unwrap_or(0);
    let panel = panel(&session, &p).await;
    let viewer = pages::Viewer {
        user: p.id(),
        csrf: &csrf,
    };
    let body = pages::dashboard(p.id(), counter, &csrf, &panel);
    pages::layout("Home", Some(&viewer), &flashes, idle_secs(&session), &body)
}

/// The idle timeout as this session sees it (the expiry is at most that far after the last
/// activity), for the client's warning and extension pace.
fn idle_secs(session: &Session) -> i64 {
    session
        .info()
        .map(|i| (i.expires() - i.last_seen()).whole_seconds())
        .unwrap_or(0)
}

/// What the layer knows about `session`, for the page's session panel.
async fn panel(session: &Session, p: &Principal) -> pages::Panel {
    let now = time::OffsetDateTime::now_utc();
    let info = session.info();
    let devices = session.sessions_of_principal().await.unwrap_or_default();
    let this = info.as_ref().map(|i| i.key());
    let position = devices.iter().position(|d| Some(d.key()) == this);
    let token_source = match session.token_source() {
        Some(TokenSource::Cookie) => "cookie tessera (HttpOnly, SameSite=Lax)",
        Some(TokenSource::Bearer) => "Authorization: Bearer",
        Some(_) => "request header",
        None => "new: set by this response",
    };
    pages::Panel {
        principal: format!("{} ({})", p.id(), p.kind()),
        scopes: p.scopes().iter().cloned().collect(),
        created: info.as_ref().map(|i| when(i.created())).unwrap_or_default(),
        last_activity: info
            .as_ref()
            .map(|i| when(i.last_seen()))
            .unwrap_or_default(),
        expires_in: info.as_ref().map_or(0, |i| i.remaining(now).as_secs()),
        absolute_in: info
            .as_ref()
            .and_then(|i| i.absolute_remaining(now))
            .map_or(0, |d| d.as_secs()),
        token_source: token_source.to_owned(),
        persistent: session.is_persistent(),
        id_hash: session.id_hash().unwrap_or_default(),
        devices: (position.map_or(1, |i| i + 1), devices.len().max(1)),
    }
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
    /// The "keep me signed in" checkbox: sent only when ticked.
    #[serde(default)]
    remember: Option<String>,
}

async fn login(
    session: Session,
    CsrfProtected(Form(form)): CsrfProtected<Form<Credentials>>,
) -> Response {
    match authenticate(&form.username, &form.password) {
        Some(principal) => {
            session.login(principal);
            session.remember(form.remember.is_some());
            session.flash(Flash::success("Signed in."));
            Redirect::to(safe_return_to(form.next.as_deref().unwrap_or("/"))).into_response()
        }
        None => {
            // Shown at once rather than flashed: a failed sign-in stores nothing.
            let failed = [Flash::error("Wrong user name or password.")];
            let form = pages::login_form(
                &session.csrf_token(),
                form.next
                    .as_deref()
                    .map(safe_return_to)
                    .filter(|n| *n != "/"),
            );
            let page = pages::layout("Sign in", None, &failed, 0, &form);
            (StatusCode::UNAUTHORIZED, page).into_response()
        }
    }
}

async fn logout(session: Session, _: CsrfProtected<Form<()>>) -> Redirect {
    session.logout();
    session.flash(Flash::info("Signed out."));
    Redirect::to("/")
}

/// Grants or withdraws the scope `beta`: a privilege change that keeps the session (the
/// live page shows the new scopes without reconnecting).
async fn toggle_beta(session: Session, _: CsrfProtected<Form<()>>) -> Redirect {
    let mut scopes = session.scopes();
    if !scopes.remove("beta") {
        scopes.insert("beta".to_owned());
    }
    session.set_scopes(scopes);
    Redirect::to("/live")
}

async fn counter(session: Session, _: CsrfProtected<Form<()>>) -> Redirect {
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
    let devices: Vec<pages::Device> = list
        .iter()
        .map(|info| pages::Device {
            hash: info.key().short(),
            this: Some(info.key()) == current,
            created: when(info.created()),
            last_seen: when(info.last_seen()),
            user_agent: info.user_agent().unwrap_or("unknown").to_owned(),
            key: info.key().to_hex(),
        })
        .collect();
    let csrf = session.csrf_token();
    let user = session
        .principal()
        .map(|p| p.id().to_owned())
        .unwrap_or_default();
    let viewer = pages::Viewer {
        user: &user,
        csrf: &csrf,
    };
    let body = pages::sessions(&devices, &csrf);
    pages::layout(
        "Your devices",
        Some(&viewer),
        &[],
        idle_secs(&session),
        &body,
    )
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

async fn logout_all(session: Session, _: CsrfProtected<Form<()>>) -> Response {
    match session.logout_everywhere().await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable").into_response(),
    }
}
