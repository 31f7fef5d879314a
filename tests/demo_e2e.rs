//! The demo app on a real loopback server, driven over HTTP as a newcomer would with curl.

#[path = "../examples/demo/app.rs"]
mod app;

use axum_tessera::store::MemoryStore;
use axum_tessera::Key;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start() -> String {
    let (web, api) = app::dev_configs(Key::generate());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app::router(web, api, MemoryStore::new()))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let pair = v.split(';').next()?;
        pair.starts_with("tessera=").then(|| pair.to_owned())
    })
}

#[tokio::test]
async fn browser_flow_login_counter_admin_logout() {
    let base = start().await;
    let http = client();

    let res = http.get(format!("{base}/")).send().await.unwrap();
    let anon = session_cookie(&res).expect("the login form's CSRF token needs a session");
    let page = res.text().await.unwrap();
    assert!(page.contains("name=\"csrf_token\""), "{page}");
    assert!(page.contains("action=\"/login\""));

    let res = http
        .post(format!("{base}/login"))
        .header(COOKIE, &anon)
        .form(&[("username", "alice"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = http
        .post(format!("{base}/login"))
        .header(COOKIE, &anon)
        .form(&[("username", "alice"), ("password", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/");
    let alice = session_cookie(&res).expect("login rotates the session");
    assert_ne!(alice, anon);

    for _ in 0..2 {
        let res = http
            .post(format!("{base}/counter"))
            .header(COOKIE, &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    let me: Value = http
        .get(format!("{base}/me"))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["authenticated"], true);
    assert_eq!(me["user"], "alice");
    assert_eq!(me["counter"], 2);
    assert_eq!(me["scopes"], json!([]));
    assert!(me["csrf_token"].as_str().is_some_and(|t| !t.is_empty()));

    let page = http
        .get(format!("{base}/"))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Hello, alice!"), "{page}");
    assert!(page.contains("<span id=\"counter\">2</span>"));

    let res = http
        .get(format!("{base}/admin"))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = http.get(format!("{base}/admin")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let old = http
        .get(format!("{base}/me"))
        .header(COOKIE, &anon)
        .send()
        .await
        .unwrap();
    let old: Value = old.json().await.unwrap();
    assert_eq!(old["authenticated"], false, "the pre-login session is dead");

    let res = http
        .post(format!("{base}/logout"))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cleared = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cleared.starts_with("tessera=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let me: Value = http
        .get(format!("{base}/me"))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["authenticated"], false, "logged-out cookie is dead");
}

#[tokio::test]
async fn admin_sees_the_admin_page() {
    let base = start().await;
    let http = client();
    let res = http
        .post(format!("{base}/login"))
        .form(&[("username", "admin"), ("password", "admin")])
        .send()
        .await
        .unwrap();
    let admin = session_cookie(&res).unwrap();
    let res = http
        .get(format!("{base}/admin"))
        .header(COOKIE, &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_flow_token_login_me_logout() {
    let base = start().await;
    let http = client();
    let res = http
        .post(format!("{base}/api/login"))
        .json(&json!({"username": "admin", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = http
        .post(format!("{base}/api/login"))
        .json(&json!({"username": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get(SET_COOKIE).is_none(),
        "API clients get no cookie"
    );
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();

    let me: Value = http
        .get(format!("{base}/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["authenticated"], true);
    assert_eq!(me["user"], "admin");
    assert_eq!(me["scopes"], json!(["admin"]));
    assert_eq!(me["counter"], 0);

    let res = http
        .get(format!("{base}/me"))
        .header(COOKIE, format!("tessera={token}"))
        .send()
        .await
        .unwrap();
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["authenticated"], false, "an API token is not a cookie");

    let res = http
        .post(format!("{base}/api/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = http
        .get(format!("{base}/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the token is dead");
}

async fn login_as(http: &reqwest::Client, base: &str, user: &str, agent: &str) -> String {
    let res = http
        .post(format!("{base}/login"))
        .header("user-agent", agent)
        .form(&[("username", user), ("password", user)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    session_cookie(&res).unwrap()
}

async fn authenticated(http: &reqwest::Client, base: &str, cookie: &str) -> bool {
    let me: Value = http
        .get(format!("{base}/me"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["authenticated"] == true
}

#[tokio::test]
async fn sessions_page_lists_and_ends_a_users_own_sessions() {
    let base = start().await;
    let http = client();
    let laptop = login_as(&http, &base, "alice", "Laptop/1.0").await;
    let phone = login_as(&http, &base, "alice", "Phone/2.0").await;
    let admin = login_as(&http, &base, "admin", "Desk/3.0").await;

    let page = http
        .get(format!("{base}/sessions"))
        .header(COOKIE, &laptop)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("class=\"session\"").count(), 2, "{page}");
    assert!(page.contains("Laptop/1.0") && page.contains("Phone/2.0"));
    assert!(
        !page.contains("Desk/3.0"),
        "another user's session is not listed"
    );
    assert_eq!(page.matches("(this one)").count(), 1);

    // The phone row's key, taken from its form.
    let row = page
        .split("<tr class=\"session\">")
        .find(|r| r.contains("Phone/2.0"))
        .unwrap();
    let key = row
        .split("name=\"session\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let res = http
        .post(format!("{base}/sessions/logout"))
        .header(COOKIE, &admin)
        .form(&[("session", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "admin cannot end alice's session"
    );
    assert!(authenticated(&http, &base, &phone).await);

    let res = http
        .post(format!("{base}/sessions/logout"))
        .header(COOKIE, &laptop)
        .form(&[("session", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        !authenticated(&http, &base, &phone).await,
        "the phone is logged out"
    );
    assert!(authenticated(&http, &base, &laptop).await);

    let phone = login_as(&http, &base, "alice", "Phone/2.0").await;
    let res = http
        .post(format!("{base}/sessions/logout-all"))
        .header(COOKIE, &laptop)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(!authenticated(&http, &base, &phone).await);
    assert!(!authenticated(&http, &base, &laptop).await);
    assert!(
        authenticated(&http, &base, &admin).await,
        "other users are untouched"
    );
}
