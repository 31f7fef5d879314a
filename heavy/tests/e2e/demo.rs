//! The demo app on a real loopback server, driven over HTTP as a newcomer would with curl.

use axum_tessera::store::MemoryStore;
use axum_tessera::Key;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::app;
use crate::http::{client, csrf, html, serve, session_cookie};

async fn start() -> String {
    let (web, api) = app::dev_configs(Key::generate());
    let addr = serve(app::router(web, api, MemoryStore::new())).await;
    format!("http://{addr}")
}

/// The hidden `csrf_token` field of a page's first form.
fn form_token(page: &str) -> String {
    page.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf_token field")
        .to_owned()
}

/// Opens the sign-in page as `agent` (which starts the anonymous session the form's token
/// belongs to) and submits the form.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
    agent: &str,
) -> reqwest::Response {
    let res = http
        .get(format!("{base}/"))
        .header("user-agent", agent)
        .send()
        .await
        .unwrap();
    let anon = session_cookie(&res).unwrap();
    let token = form_token(&res.text().await.unwrap());
    http.post(format!("{base}/login"))
        .header(COOKIE, &anon)
        .header("user-agent", agent)
        .form(&[
            ("username", user),
            ("password", password),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap()
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
    let anon_token = form_token(&page);

    let res = http
        .post(format!("{base}/login"))
        .header(COOKIE, &anon)
        .form(&[
            ("username", "alice"),
            ("password", "wrong"),
            ("csrf_token", &anon_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = http
        .post(format!("{base}/login"))
        .header(COOKIE, &anon)
        .form(&[
            ("username", "alice"),
            ("password", "alice"),
            ("csrf_token", &anon_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/");
    let alice = session_cookie(&res).expect("login rotates the session");
    assert_ne!(alice, anon);

    let token = csrf(&http, &base, &alice).await;
    for _ in 0..2 {
        let res = http
            .post(format!("{base}/counter"))
            .header(COOKIE, &alice)
            .form(&[("csrf_token", &token)])
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

    let page = html(&http, &base, "/", &alice).await;
    assert!(page.contains("Hello, alice!"), "{page}");
    assert!(
        page.contains(r#"<p class="flash success" role="status">Signed in.</p>"#),
        "the first page after login shows the success flash: {page}"
    );
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
        .form(&[("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The signed-in session is deleted; the cookie now names a fresh anonymous session that
    // carries the "Signed out." flash to the next page.
    let after = session_cookie(&res).expect("the cookie is replaced");
    assert_ne!(after, alice);
    let page = html(&http, &base, "/", &after).await;
    assert!(
        page.contains(r#"class="flash info""#) && page.contains("Signed out."),
        "{page}"
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
    let res = sign_in(&http, &base, "admin", "admin", "test").await;
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
    let res = sign_in(http, base, user, user, agent).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    session_cookie(&res).unwrap()
}

async fn authenticated(http: &reqwest::Client, base: &str, cookie: &str) -> bool {
    crate::http::me(http, base, cookie).await["authenticated"] == true
}

#[tokio::test]
async fn sessions_page_lists_and_ends_a_users_own_sessions() {
    let base = start().await;
    let http = client();
    let laptop = login_as(&http, &base, "alice", "Laptop/1.0").await;
    let phone = login_as(&http, &base, "alice", "Phone/2.0").await;
    let admin = login_as(&http, &base, "admin", "Desk/3.0").await;

    let page = html(&http, &base, "/sessions", &laptop).await;
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
    let admin_token = csrf(&http, &base, &admin).await;
    let res = http
        .post(format!("{base}/sessions/logout"))
        .header(COOKIE, &admin)
        .form(&[("session", key), ("csrf_token", &admin_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "admin cannot end alice's session"
    );
    assert!(authenticated(&http, &base, &phone).await);

    let laptop_token = form_token(&page);
    let res = http
        .post(format!("{base}/sessions/logout"))
        .header(COOKIE, &laptop)
        .form(&[("session", key), ("csrf_token", &laptop_token)])
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
        .form(&[("csrf_token", &laptop_token)])
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

#[tokio::test]
async fn every_form_post_requires_the_csrf_token() {
    let base = start().await;
    let http = client();
    let alice = session_cookie(&sign_in(&http, &base, "alice", "alice", "test").await).unwrap();
    let token = csrf(&http, &base, &alice).await;
    struct Case {
        name: &'static str,
        path: &'static str,
        form: &'static [(&'static str, &'static str)],
    }
    let cases = [
        Case {
            name: "login",
            path: "/login",
            form: &[("username", "alice"), ("password", "alice")],
        },
        Case {
            name: "logout",
            path: "/logout",
            form: &[],
        },
        Case {
            name: "counter",
            path: "/counter",
            form: &[],
        },
        Case {
            name: "end one session",
            path: "/sessions/logout",
            form: &[("session", "00")],
        },
        Case {
            name: "log out everywhere",
            path: "/sessions/logout-all",
            form: &[],
        },
    ];
    for case in cases {
        for (variant, token) in [("no token", None), ("forged token", Some("x".repeat(86)))] {
            let mut form: Vec<(&str, &str)> = case.form.to_vec();
            if let Some(token) = &token {
                form.push(("csrf_token", token));
            }
            let res = http
                .post(format!("{base}{}", case.path))
                .header(COOKIE, &alice)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                StatusCode::FORBIDDEN,
                "{} ({variant})",
                case.name
            );
        }
    }
    let res = http
        .post(format!("{base}/counter"))
        .header(COOKIE, &alice)
        .header("origin", "http://evil.example")
        .form(&[("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "foreign Origin");
    assert!(
        authenticated(&http, &base, &alice).await,
        "nothing was done"
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
    assert_eq!(me["counter"], 0, "no refused post changed the session");
}

#[tokio::test]
async fn admin_page_guard_redirects_browsers_and_returns_after_sign_in() {
    let base = start().await;
    let http = client();
    let res = http
        .get(format!("{base}/admin"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/?next=%2Fadmin");

    let res = http
        .get(format!("{base}/?next=%2Fadmin"))
        .send()
        .await
        .unwrap();
    let anon = session_cookie(&res).unwrap();
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"name="next" value="/admin""#), "{page}");
    let token = form_token(&page);
    let res = http
        .post(format!("{base}/login"))
        .header(COOKIE, &anon)
        .form(&[
            ("username", "admin"),
            ("password", "admin"),
            ("next", "/admin"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/admin");
    let admin = session_cookie(&res).unwrap();
    let res = http
        .get(format!("{base}/admin"))
        .header(COOKIE, &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "welcome, administrator admin");

    // `next` never leaves the site.
    let res = http
        .get(format!("{base}/?next=//evil.example/"))
        .send()
        .await
        .unwrap();
    assert!(!res.text().await.unwrap().contains("evil.example"));
}

#[tokio::test]
async fn api_logout_all_ends_every_session_of_the_principal() {
    let base = start().await;
    let http = client();
    let browser = session_cookie(&sign_in(&http, &base, "admin", "admin", "test").await).unwrap();
    let alice = session_cookie(&sign_in(&http, &base, "alice", "alice", "test").await).unwrap();
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let body: Value = http
            .post(format!("{base}/api/login"))
            .json(&json!({"username": "admin", "password": "admin"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }

    let res = http
        .post(format!("{base}/api/logout-all"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "needs a token");

    let res = http
        .post(format!("{base}/api/logout-all"))
        .bearer_auth(&tokens[0])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ended"], 3, "two API sessions and one browser session");
    for token in &tokens {
        let res = http
            .get(format!("{base}/api/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(!authenticated(&http, &base, &browser).await);
    assert!(
        authenticated(&http, &base, &alice).await,
        "other users are untouched"
    );
}
