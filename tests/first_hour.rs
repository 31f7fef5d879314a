//! The "first hour" of a new user, through HTTP: what someone who follows the docs meets
//! before they know the crate well (bearer APIs on one layer, local development over http,
//! CSRF forms, durations, rejections a client can act on, safe return-to paths).

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::{Key, ManualClock, Principal, Session, SessionConfig, SessionLayer};
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
