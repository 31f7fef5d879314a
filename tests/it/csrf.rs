//! CSRF protection through HTTP: `CsrfProtected` (header only and wrapping body extractors),
//! `CsrfLayer`, token binding and rotation, and the Sec-Fetch-Site / Origin checks.

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, Method, Request, StatusCode};
use axum::routing::{any, get, post};
use axum::Router;
use axum_tessera::config::TokenSource;
use axum_tessera::store::MemoryStore;
use axum_tessera::{CookieConfig, CsrfProtected, Key, Session, SessionConfig, SessionLayer};

use crate::support::{csrf_body_routes, login_alice, send, Reply};

const HOST: &str = "app.test";

/// `GET /token` gives the session a masked CSRF token (and the session a cookie).
async fn token(session: Session) -> String {
    session.csrf_token()
}

async fn logout(session: Session) {
    session.logout();
}

fn routes() -> Router {
    Router::new()
        .route("/token", get(token))
        .route("/login", post(login_alice))
        .route("/logout", post(logout))
        .route("/header", any(|_: CsrfProtected| async { "ok" }))
        .route(
            "/string",
            post(|CsrfProtected(s): CsrfProtected<String>| async move { s }),
        )
        .merge(csrf_body_routes())
        .layer(DefaultBodyLimit::max(1024))
}

fn web() -> SessionConfig {
    SessionConfig::web(Key::generate()).cookie(CookieConfig::new("id").secure(false))
}

fn app(cfg: SessionConfig) -> Router {
    routes().layer(SessionLayer::new(cfg))
}

/// The session cookie a response set, as the client sends it back (`id=...` or `__Host-id=...`).
fn session_cookie(reply: &Reply) -> Option<String> {
    reply
        .cookie_pair("id")
        .or_else(|| reply.cookie_pair("__Host-id"))
}

/// A browser-like client: a session cookie and a CSRF token for it.
struct Client {
    cookie: String,
    token: String,
}

async fn client(app: &Router) -> Client {
    let reply = send(
        app,
        Request::get("/token")
            .header(header::HOST, HOST)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    Client {
        cookie: session_cookie(&reply).expect("a token stores the session"),
        token: reply.body,
    }
}

/// Replaces `{tok}` (this session's token), `{other}` (another session's) and `{cookie}`.
fn fill(text: &str, me: &Client, other: &Client) -> String {
    text.replace("{tok}", &me.token)
        .replace("{other}", &other.token)
        .replace("{cookie}", &me.cookie)
}

struct Case {
    name: &'static str,
    method: &'static str,
    uri: &'static str,
    /// Extra headers; values may use the placeholders of [`fill`]. A `cookie` entry replaces
    /// the session cookie.
    headers: &'static [(&'static str, &'static str)],
    /// `(content type, body)`.
    body: Option<(&'static str, &'static str)>,
    status: StatusCode,
    /// Expected body (exact).
    expect: &'static str,
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
const MISSING: &str =
    "CSRF token missing: send it in the X-CSRF-Token header or the csrf_token field";
/// A header-only check (extractor or layer) refusing a form post without the header.
const HEADER_ONLY: &str = "CSRF token missing: this check reads only the X-CSRF-Token header; \
     send the token there, or take CsrfProtected<Form<T>> to read the csrf_token form field";
const INVALID: &str = "CSRF token invalid for this session";
const CROSS_SITE: &str = "cross-site request refused (Sec-Fetch-Site)";
const ORIGIN: &str = "cross-origin request refused (Origin not allowed)";

fn case(
    name: &'static str,
    method: &'static str,
    uri: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<(&'static str, &'static str)>,
    status: StatusCode,
    expect: &'static str,
) -> Case {
    Case {
        name,
        method,
        uri,
        headers,
        body,
        status,
        expect,
    }
}

async fn run(app: &Router, cases: Vec<Case>) {
    let other = client(app).await;
    for case in cases {
        // A fresh session per case, so no case depends on another's side effects.
        let me = client(app).await;
        let mut req = Request::builder()
            .method(Method::from_bytes(case.method.as_bytes()).unwrap())
            .uri(fill(case.uri, &me, &other))
            .header(header::HOST, HOST);
        if !case
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        {
            req = req.header(header::COOKIE, &me.cookie);
        }
        for (name, value) in case.headers {
            req = req.header(*name, fill(value, &me, &other));
        }
        let body = match case.body {
            Some((content_type, body)) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                Body::from(fill(body, &me, &other))
            }
            None => Body::empty(),
        };
        let reply = send(app, req.body(body).unwrap()).await;
        assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.body);
        assert_eq!(reply.body, case.expect, "{}", case.name);
        assert!(
            !reply.body.contains(&me.token[..20]),
            "{}: never echo a token",
            case.name
        );
    }
}

#[tokio::test]
async fn methods_and_token_placement() {
    use StatusCode as S;
    let long_body: &'static str = Box::leak(format!("text={}", "a".repeat(2048)).into_boxed_str());
    let cases = vec![
        case("GET passes", "GET", "/header", &[], None, S::OK, "ok"),
        case("HEAD passes", "HEAD", "/header", &[], None, S::OK, ""),
        case(
            "OPTIONS passes",
            "OPTIONS",
            "/header",
            &[],
            None,
            S::OK,
            "ok",
        ),
        case("TRACE passes", "TRACE", "/header", &[], None, S::OK, "ok"),
        case(
            "POST without token",
            "POST",
            "/header",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "PUT without token",
            "PUT",
            "/header",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "PATCH without token",
            "PATCH",
            "/header",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "DELETE without token",
            "DELETE",
            "/header",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "lowercase post",
            "post",
            "/header",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "lowercase get is not GET",
            "get",
            "/header",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "unknown method",
            "PURGE",
            "/header",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "method override header is ignored",
            "POST",
            "/header",
            &[("x-http-method-override", "GET")],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "_method field is ignored",
            "POST",
            "/form?_method=GET",
            &[],
            Some((FORM, "_method=GET&text=hi")),
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "header token",
            "POST",
            "/header",
            &[("x-csrf-token", "{tok}")],
            None,
            S::OK,
            "ok",
        ),
        case(
            "lowercase method with header token",
            "delete",
            "/header",
            &[("x-csrf-token", "{tok}")],
            None,
            S::OK,
            "ok",
        ),
        case(
            "another session's token",
            "POST",
            "/header",
            &[("x-csrf-token", "{other}")],
            None,
            S::FORBIDDEN,
            INVALID,
        ),
        case(
            "garbage token",
            "POST",
            "/header",
            &[("x-csrf-token", "abc")],
            None,
            S::FORBIDDEN,
            INVALID,
        ),
        case(
            "token in the query string is not read",
            "POST",
            "/header?csrf_token={tok}",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "token in a cookie is not read",
            "POST",
            "/header",
            &[("cookie", "{cookie}; csrf_token={tok}; x-csrf-token={tok}")],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "header-only extractor ignores body fields, and says so",
            "POST",
            "/header",
            &[],
            Some((FORM, "csrf_token={tok}")),
            S::FORBIDDEN,
            HEADER_ONLY,
        ),
        case(
            "form field",
            "POST",
            "/form",
            &[],
            Some((FORM, "text=hi&csrf_token={tok}")),
            S::OK,
            "hi",
        ),
        case(
            "form with header token",
            "POST",
            "/form",
            &[("x-csrf-token", "{tok}")],
            Some((FORM, "text=hi")),
            S::OK,
            "hi",
        ),
        case(
            "form field of another session",
            "POST",
            "/form",
            &[],
            Some((FORM, "text=hi&csrf_token={other}")),
            S::FORBIDDEN,
            INVALID,
        ),
        case(
            "bad header, good field",
            "POST",
            "/form",
            &[("x-csrf-token", "{other}")],
            Some((FORM, "text=hi&csrf_token={tok}")),
            S::OK,
            "hi",
        ),
        case(
            "form token in query only",
            "POST",
            "/form?csrf_token={tok}",
            &[],
            Some((FORM, "text=hi")),
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "body goes to the inner extractor",
            "POST",
            "/form",
            &[],
            Some((FORM, "csrf_token={tok}")),
            S::UNPROCESSABLE_ENTITY,
            "Failed to deserialize form body: missing field `text`",
        ),
        case(
            "json field",
            "POST",
            "/json",
            &[],
            Some((JSON, r#"{"text":"hi","csrf_token":"{tok}"}"#)),
            S::OK,
            "hi",
        ),
        case(
            "json with header token",
            "POST",
            "/json",
            &[("x-csrf-token", "{tok}")],
            Some((JSON, r#"{"text":"hi"}"#)),
            S::OK,
            "hi",
        ),
        case(
            "json array is not an object",
            "POST",
            "/json",
            &[],
            Some((JSON, r#"["{tok}"]"#)),
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "json field of another session",
            "POST",
            "/json",
            &[],
            Some((JSON, r#"{"text":"hi","csrf_token":"{other}"}"#)),
            S::FORBIDDEN,
            INVALID,
        ),
        case(
            "bytes with form field",
            "POST",
            "/bytes",
            &[],
            Some((FORM, "csrf_token={tok}")),
            S::OK,
            "97",
        ),
        case(
            "bytes: plain text is not searched",
            "POST",
            "/bytes",
            &[],
            Some(("text/plain", "csrf_token={tok}")),
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "string with json field",
            "POST",
            "/string",
            &[],
            Some((JSON, r#"{"csrf_token":"{tok}"}"#)),
            S::OK,
            // the body is handed on untouched; a token is 86 characters
            "",
        ),
        case(
            "body over the limit",
            "POST",
            "/form",
            &[],
            Some((FORM, long_body)),
            S::PAYLOAD_TOO_LARGE,
            "Failed to buffer the request body: length limit exceeded",
        ),
        case("layer: GET passes", "GET", "/layer", &[], None, S::OK, "ok"),
        case(
            "layer: POST without token",
            "POST",
            "/layer",
            &[],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "layer: header token",
            "PUT",
            "/layer",
            &[("x-csrf-token", "{tok}")],
            None,
            S::OK,
            "ok",
        ),
        case(
            "layer: other session's token",
            "POST",
            "/layer",
            &[("x-csrf-token", "{other}")],
            None,
            S::FORBIDDEN,
            INVALID,
        ),
        case(
            "layer: form field is not read, and says so",
            "POST",
            "/layer",
            &[],
            Some((FORM, "csrf_token={tok}")),
            S::FORBIDDEN,
            HEADER_ONLY,
        ),
    ];
    // The string route echoes its body, which holds the token: check it separately.
    let (string_case, cases): (Vec<_>, Vec<_>) =
        cases.into_iter().partition(|c| c.uri == "/string");
    let app = app(web());
    run(&app, cases).await;

    let me = client(&app).await;
    for c in string_case {
        let body = format!(r#"{{"csrf_token":"{}"}}"#, me.token);
        let reply = send(
            &app,
            Request::post(c.uri)
                .header(header::HOST, HOST)
                .header(header::COOKIE, &me.cookie)
                .header(header::CONTENT_TYPE, JSON)
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, c.status, "{}", c.name);
        assert_eq!(reply.body, body, "{}: String gets the whole body", c.name);
    }
}

#[tokio::test]
async fn fetch_metadata_and_origin() {
    use StatusCode as S;
    let tok: &[(&str, &str)] = &[("x-csrf-token", "{tok}")];
    let with = |extra: &'static [(&'static str, &'static str)]| -> &'static [(&'static str, &'static str)] {
        let mut v: Vec<(&str, &str)> = vec![("x-csrf-token", "{tok}")];
        v.extend_from_slice(extra);
        Box::leak(v.into_boxed_slice())
    };
    let cases = vec![
        case(
            "no metadata, token",
            "POST",
            "/header",
            tok,
            None,
            S::OK,
            "ok",
        ),
        case(
            "same-origin",
            "POST",
            "/header",
            with(&[("sec-fetch-site", "same-origin")]),
            None,
            S::OK,
            "ok",
        ),
        case(
            "none",
            "POST",
            "/header",
            with(&[("sec-fetch-site", "none")]),
            None,
            S::OK,
            "ok",
        ),
        case(
            "cross-site with a valid token",
            "POST",
            "/header",
            with(&[("sec-fetch-site", "cross-site")]),
            None,
            S::FORBIDDEN,
            CROSS_SITE,
        ),
        case(
            "same-site sibling",
            "POST",
            "/header",
            with(&[("sec-fetch-site", "same-site")]),
            None,
            S::FORBIDDEN,
            CROSS_SITE,
        ),
        case(
            "cross-site without token names the cross-site",
            "POST",
            "/form",
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.test"),
            ],
            Some((FORM, "text=hi")),
            S::FORBIDDEN,
            CROSS_SITE,
        ),
        case(
            "cross-site form post carrying a stolen-shape field",
            "POST",
            "/form",
            &[("sec-fetch-site", "cross-site")],
            Some((FORM, "text=hi&csrf_token={tok}")),
            S::FORBIDDEN,
            CROSS_SITE,
        ),
        case(
            "cross-site GET passes",
            "GET",
            "/header",
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.test"),
            ],
            None,
            S::OK,
            "ok",
        ),
        case(
            "own origin",
            "POST",
            "/header",
            with(&[("origin", "http://app.test")]),
            None,
            S::OK,
            "ok",
        ),
        case(
            "own origin, other case",
            "POST",
            "/header",
            with(&[("origin", "HTTP://App.Test:80")]),
            None,
            S::OK,
            "ok",
        ),
        case(
            "other host",
            "POST",
            "/header",
            with(&[("origin", "http://evil.test")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "other scheme",
            "POST",
            "/header",
            with(&[("origin", "https://app.test")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "other port",
            "POST",
            "/header",
            with(&[("origin", "http://app.test:8080")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "suffix host",
            "POST",
            "/header",
            with(&[("origin", "http://app.test.evil.test")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "null origin",
            "POST",
            "/header",
            with(&[("origin", "null")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "origin with a path",
            "POST",
            "/header",
            with(&[("origin", "http://app.test/")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "two origins",
            "POST",
            "/header",
            with(&[("origin", "http://app.test"), ("origin", "http://app.test")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "same-origin metadata cannot vouch for a foreign Origin",
            "POST",
            "/header",
            with(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://evil.test"),
            ]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "good origin still needs the token",
            "POST",
            "/header",
            &[
                ("origin", "http://app.test"),
                ("sec-fetch-site", "same-origin"),
            ],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "layer checks origin too",
            "POST",
            "/layer",
            with(&[("origin", "http://evil.test")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
    ];
    run(&app(web()), cases).await;
}

#[tokio::test]
async fn configured_origins_replace_the_host_default() {
    use StatusCode as S;
    let with = |extra: &'static [(&'static str, &'static str)]| -> &'static [(&'static str, &'static str)] {
        let mut v: Vec<(&str, &str)> = vec![("x-csrf-token", "{tok}")];
        v.extend_from_slice(extra);
        Box::leak(v.into_boxed_slice())
    };
    let cases = vec![
        case(
            "public origin behind a proxy",
            "POST",
            "/header",
            with(&[("origin", "https://www.example.com")]),
            None,
            S::OK,
            "ok",
        ),
        case(
            "trusted partner, cross-site",
            "POST",
            "/header",
            with(&[
                ("origin", "https://partner.example:8443"),
                ("sec-fetch-site", "cross-site"),
            ]),
            None,
            S::OK,
            "ok",
        ),
        case(
            "trusted partner still needs the token",
            "POST",
            "/header",
            &[
                ("origin", "https://partner.example:8443"),
                ("sec-fetch-site", "cross-site"),
            ],
            None,
            S::FORBIDDEN,
            MISSING,
        ),
        case(
            "partner on another port",
            "POST",
            "/header",
            with(&[("origin", "https://partner.example")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "the Host-derived origin is no longer implied",
            "POST",
            "/header",
            with(&[("origin", "http://app.test")]),
            None,
            S::FORBIDDEN,
            ORIGIN,
        ),
        case(
            "untrusted cross-site",
            "POST",
            "/header",
            with(&[
                ("origin", "https://evil.test"),
                ("sec-fetch-site", "cross-site"),
            ]),
            None,
            S::FORBIDDEN,
            CROSS_SITE,
        ),
    ];
    let cfg = web().trusted_origins([
        "https://WWW.example.com:443",
        "https://partner.example:8443",
    ]);
    run(&app(cfg), cases).await;
}

#[tokio::test]
async fn secure_cookies_imply_an_https_origin() {
    use StatusCode as S;
    let cases = vec![
        case(
            "https origin",
            "POST",
            "/header",
            &[("x-csrf-token", "{tok}"), ("origin", "https://app.test")],
            None,
            S::OK,
            "ok",
        ),
        case(
            "http origin: refused, and told why",
            "POST",
            "/header",
            &[("x-csrf-token", "{tok}"), ("origin", "http://app.test")],
            None,
            S::FORBIDDEN,
            "cross-origin request refused: the page was loaded over http but the session \
             cookie is Secure; serve the site over https, or for plain-http development on \
             localhost use SessionConfig::insecure_local_development()",
        ),
    ];
    let cfg = SessionConfig::web(Key::generate()).cookie(CookieConfig::new("__Host-id"));
    run(&app(cfg), cases).await;
}

#[test]
fn malformed_trusted_origins_fail_at_start_up() {
    for bad in [
        "null",
        "example.com",
        "https://example.com/",
        "https://u@example.com",
    ] {
        let err = SessionLayer::try_new(web().trusted_origins([bad])).expect_err(bad);
        assert!(
            err.to_string().contains("scheme://host[:port]"),
            "{bad}: {err}"
        );
    }
}

fn post_header(client: &Client, token: &str) -> Request<Body> {
    Request::post("/header")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &client.cookie)
        .header("x-csrf-token", token)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn tokens_are_masked_per_call_and_rotate_with_the_session() {
    let app = app(web());
    let me = client(&app).await;
    let again = send(
        &app,
        Request::get("/token")
            .header(header::COOKIE, &me.cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_ne!(again.body, me.token, "every call masks afresh");
    for token in [&me.token, &again.body] {
        assert_eq!(
            send(&app, post_header(&me, token)).await.status,
            StatusCode::OK
        );
    }

    // Login rotates the session ID, and with it the CSRF secret.
    let login = send(
        &app,
        Request::post("/login")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &me.cookie)
            .header("x-csrf-token", &me.token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK);
    let logged_in = Client {
        cookie: session_cookie(&login).expect("login rotates the cookie"),
        token: me.token.clone(),
    };
    let reply = send(&app, post_header(&logged_in, &me.token)).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "pre-login token is dead"
    );
    assert_eq!(reply.body, INVALID);
    let fresh = send(
        &app,
        Request::get("/token")
            .header(header::COOKIE, &logged_in.cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .body;
    assert_eq!(
        send(&app, post_header(&logged_in, &fresh)).await.status,
        StatusCode::OK
    );

    // Logout: the next session is a new one, and the old token does not carry over.
    let out = send(
        &app,
        Request::post("/logout")
            .header(header::COOKIE, &logged_in.cookie)
            .header("x-csrf-token", &fresh)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK);
    let next = client(&app).await;
    let reply = send(&app, post_header(&next, &fresh)).await;
    assert_eq!(reply.body, INVALID, "logged-out token is dead");
}

#[tokio::test]
async fn requests_without_a_session_have_no_valid_token() {
    let app = app(web());
    let me = client(&app).await;
    let req = Request::post("/header")
        .header("x-csrf-token", &me.token)
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body, INVALID);
}

#[tokio::test]
async fn bearer_and_header_sessions_are_exempt() {
    // One store, two layers: an API layer (bearer, then X-Session-Token) and a mixed layer that
    // also accepts the cookie, as a site with both a browser UI and an API would run.
    let store = MemoryStore::new();
    let key = Key::generate();
    let api = SessionConfig::api(key.clone()).require_existing(false);
    let mixed = SessionConfig::web(key.clone())
        .cookie(CookieConfig::new("id").secure(false))
        .token_sources([
            TokenSource::Cookie,
            TokenSource::Bearer,
            TokenSource::Header(axum_tessera::config::SESSION_TOKEN_HEADER),
        ]);
    let api_app = routes().layer(SessionLayer::new(api).with_store(store.clone()));
    let mixed_app = routes().layer(SessionLayer::new(mixed).with_store(store));

    let login = send(
        &api_app,
        Request::post("/login").body(Body::empty()).unwrap(),
    )
    .await;
    let bearer = login.body;

    struct Case {
        name: &'static str,
        app: &'static str,
        header: Option<(&'static str, String)>,
        status: StatusCode,
    }
    let cases = [
        Case {
            name: "bearer on the api layer",
            app: "api",
            header: Some(("authorization", format!("Bearer {bearer}"))),
            status: StatusCode::OK,
        },
        Case {
            name: "custom header on the api layer",
            app: "api",
            header: Some(("x-session-token", bearer.clone())),
            status: StatusCode::OK,
        },
        Case {
            name: "no token on a layer without cookies",
            app: "api",
            header: None,
            status: StatusCode::OK,
        },
        Case {
            name: "bearer on the mixed layer",
            app: "mixed",
            header: Some(("authorization", format!("Bearer {bearer}"))),
            status: StatusCode::OK,
        },
        Case {
            name: "no token on the mixed layer",
            app: "mixed",
            header: None,
            status: StatusCode::FORBIDDEN,
        },
        Case {
            name: "forged bearer on the mixed layer is not an exemption",
            app: "mixed",
            header: Some(("authorization", "Bearer v1.forged.1.x".to_owned())),
            status: StatusCode::FORBIDDEN,
        },
    ];
    for case in cases {
        let app = if case.app == "api" {
            &api_app
        } else {
            &mixed_app
        };
        for path in ["/header", "/layer"] {
            let mut req = Request::post(path)
                .header(header::HOST, HOST)
                .header("sec-fetch-site", "same-origin");
            if let Some((name, value)) = &case.header {
                req = req.header(*name, value);
            }
            let reply = send(app, req.body(Body::empty()).unwrap()).await;
            assert_eq!(
                reply.status, case.status,
                "{} {path}: {}",
                case.name, reply.body
            );
        }
    }

    // A cookie session on the mixed layer is checked.
    let me = client(&mixed_app).await;
    let req = Request::post("/header")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &me.cookie)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&mixed_app, req).await.body, MISSING);
}

#[tokio::test]
async fn missing_session_layer_is_a_clear_500() {
    let reply = send(
        &routes(),
        Request::post("/header").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.contains("SessionLayer"), "{}", reply.body);
}

#[tokio::test]
async fn refusals_are_reported_as_events_and_counted() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let hook = seen.clone();
    let layer = SessionLayer::new(web().on_event(move |e| {
        if let axum_tessera::EventKind::CsrfRejected(why) = e.kind() {
            hook.lock().unwrap().push(why);
        }
    }));
    let app = routes().layer(layer.clone());
    let me = client(&app).await;
    let other = client(&app).await;
    struct Case {
        name: &'static str,
        headers: &'static [(&'static str, &'static str)],
        expect: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "missing",
            headers: &[],
            expect: Some("token missing"),
        },
        Case {
            name: "invalid",
            headers: &[("x-csrf-token", "{other}")],
            expect: Some("token invalid"),
        },
        Case {
            name: "cross-site",
            headers: &[("x-csrf-token", "{tok}"), ("sec-fetch-site", "cross-site")],
            expect: Some("cross-site (Sec-Fetch-Site)"),
        },
        Case {
            name: "origin",
            headers: &[("x-csrf-token", "{tok}"), ("origin", "http://evil.test")],
            expect: Some("origin not allowed"),
        },
        Case {
            name: "accepted",
            headers: &[("x-csrf-token", "{tok}")],
            expect: None,
        },
    ];
    for case in &cases {
        let mut req = Request::post("/header")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &me.cookie);
        for (name, value) in case.headers {
            req = req.header(*name, fill(value, &me, &other));
        }
        let before = seen.lock().unwrap().len();
        send(&app, req.body(Body::empty()).unwrap()).await;
        let got = seen.lock().unwrap()[before..].to_vec();
        assert_eq!(
            got,
            case.expect.into_iter().collect::<Vec<_>>(),
            "{}",
            case.name
        );
    }
    assert_eq!(layer.stats().csrf_rejected, 4);
}
