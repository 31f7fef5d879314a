//! A cookie goes out only when the client's token or its attributes change: a valid session
//! that is read or written keeps its cookie, and no `Set-Cookie` is re-sent.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use axum_tessera::{Key, Session, SessionConfig, SessionLayer};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request};
use tower::ServiceExt as _;

fn app() -> Router {
    async fn read(session: Session) -> String {
        session.get::<u64>("n").unwrap_or(0).to_string()
    }
    async fn write(session: Session) -> String {
        let n = session.get::<u64>("n").unwrap_or(0) + 1;
        session.insert("n", n).unwrap();
        n.to_string()
    }
    let cfg = SessionConfig::web(Key::from_bytes(&[9; 32]).unwrap());
    Router::new()
        .route("/read", get(read))
        .route("/write", get(write))
        .layer(SessionLayer::new(cfg))
}

async fn call(app: &Router, path: &str, cookie: Option<&HeaderValue>) -> (String, Vec<String>) {
    let mut req = Request::get(path);
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    let set: Vec<String> = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    (String::from_utf8(body.to_vec()).unwrap(), set)
}

#[tokio::test]
async fn set_cookie_only_when_the_token_changes() {
    struct Case {
        name: &'static str,
        path: &'static str,
        with_cookie: bool,
        expect_body: &'static str,
        expect_set_cookie: bool,
    }
    let app = app();
    let (_, set) = call(&app, "/write", None).await;
    assert_eq!(
        set.len(),
        1,
        "a new session that was written gets its cookie"
    );
    let pair = set[0].split(';').next().unwrap();
    let cookie = HeaderValue::from_str(pair).unwrap();

    let cases = [
        Case {
            name: "valid session, read",
            path: "/read",
            with_cookie: true,
            expect_body: "1",
            expect_set_cookie: false,
        },
        Case {
            name: "valid session, written",
            path: "/write",
            with_cookie: true,
            expect_body: "2",
            expect_set_cookie: false,
        },
        Case {
            name: "valid session, read after the write",
            path: "/read",
            with_cookie: true,
            expect_body: "2",
            expect_set_cookie: false,
        },
        Case {
            name: "no session, read only",
            path: "/read",
            with_cookie: false,
            expect_body: "0",
            expect_set_cookie: false,
        },
        Case {
            name: "no session, written",
            path: "/write",
            with_cookie: false,
            expect_body: "1",
            expect_set_cookie: true,
        },
    ];
    for case in cases {
        let (body, set) = call(&app, case.path, case.with_cookie.then_some(&cookie)).await;
        assert_eq!(body, case.expect_body, "{}", case.name);
        assert_eq!(
            !set.is_empty(),
            case.expect_set_cookie,
            "{}: {set:?}",
            case.name
        );
    }
}
