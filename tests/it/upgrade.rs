//! Rolling upgrades: a token and a record written by the previous release (0.1.0 at commit
//! 7726908, printed by its own `TokenCodec` and `Record` serialiser) still verify and load.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use axum_tessera::clock::ManualClock;
use axum_tessera::store::{Commit, CommitOutcome, MemoryStore, Record, SessionStore, StoreKey};
use axum_tessera::{Key, Session, SessionConfig, SessionLayer};

use crate::support::send;

const ISSUED: i64 = 1_700_000_000;
const COOKIE_TOKEN: &str =
    "v1.CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk.1r31eq.K_LUH8pMsOfsHz3_qKrrY9wQ2urg2xbSBb7TQcdiUUE";
const HEADER_TOKEN: &str =
    "v1.CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk.1r31eq.dJFO1pYQmO4VPTvgNIjEUyU7f1vlhMhGiMoGcSc0_y0";
const STORE_KEY: &str = "8c0cc17a04942cc4f8e0fe0b302606d3108860c126428ba2ceeb5f9ed41c2b05";
const RECORD: &str = r#"{"created":1700000000,"last_seen":1700000000,"expires_at":1700001800,"principal":{"kind":"user","id":"alice","scopes":["admin"]},"data":{"cart":["tea","milk"],"visits":3},"flash":["welcome back"],"user_agent":"fixture/1"}"#;

async fn describe(session: Session) -> String {
    let user = session.principal().map(|p| p.id().to_owned());
    let visits: Option<u64> = session.get("visits");
    let cart: Option<Vec<String>> = session.get("cart");
    format!(
        "{user:?} {visits:?} {cart:?} admin={}",
        session.has_scope("admin")
    )
}

async fn app(config: SessionConfig, clock: &ManualClock) -> Router {
    let store = MemoryStore::new().with_clock(clock.clone());
    let record: Record = serde_json::from_str(RECORD).expect("the old record decodes");
    let key = StoreKey::from_hex(STORE_KEY).unwrap();
    let created = store.commit(Commit::Create { key, record }).await.unwrap();
    assert_eq!(created, CommitOutcome::Applied);
    Router::new()
        .route("/", get(describe))
        .layer(SessionLayer::new(config.clock(clock.clone())).with_store(store))
}

#[tokio::test]
async fn a_previous_release_cookie_token_and_record_load() {
    let clock = ManualClock::new(ISSUED + 60);
    let key = Key::from_bytes(&[7; 32]).unwrap();
    let app = app(SessionConfig::web(key), &clock).await;
    let req = Request::get("/")
        .header(header::COOKIE, format!("__Host-tessera={COOKIE_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        r#"Some("alice") Some(3) Some(["tea", "milk"]) admin=true"#
    );
}

#[tokio::test]
async fn a_previous_release_bearer_token_loads() {
    let clock = ManualClock::new(ISSUED + 60);
    let key = Key::from_bytes(&[7; 32]).unwrap();
    let app = app(SessionConfig::api(key), &clock).await;
    let req = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {HEADER_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body.starts_with(r#"Some("alice") Some(3)"#),
        "{}",
        reply.body
    );
}
