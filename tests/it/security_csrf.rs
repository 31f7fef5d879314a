//! CSRF attacks, through HTTP: one test per attack against `CsrfProtected` and `CsrfLayer`.
//!
//! The site runs the web preset (`__Host-tessera`, `Secure`) on `site.example`, so its own
//! origin is `https://site.example`. Every refusal must be a 403 with one of the four fixed
//! bodies, emit exactly one `CsrfRejected` event, and never echo a token; no request here may
//! get a 5xx. The table-driven rule checks live in `csrf.rs`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::routing::{any, get, post};
use axum::{Form, Router};
use axum_tessera::config::TokenSource;
use axum_tessera::{
    CookieConfig, CsrfProtected, EventKind, KeyRing, Principal, Session, SessionConfig,
    SessionEvent, SessionLayer,
};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;

use crate::support::csrf_body_routes;
use crate::support::harness::{self, key, Harness, Reply};

const HOST: &str = "site.example";
const OWN_ORIGIN: &str = "https://site.example";

/// Why a request was refused: the fixed body the client sees and the event's reason.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Missing,
    /// A header-only guard saw a form post without the header: told to send the header.
    HeaderRequired,
    Invalid,
    CrossSite,
    Origin,
    /// The allowed origin's host over http while the cookie is Secure: the body says so.
    InsecureOrigin,
}

impl Refusal {
    fn body(self) -> &'static str {
        match self {
            Self::Missing => {
                "CSRF token missing: send it in the X-CSRF-Token header or the csrf_token field"
            }
            Self::HeaderRequired => {
                "CSRF token missing: this check reads only the X-CSRF-Token header; send the \
                 token there, or take CsrfProtected<Form<T>> to read the csrf_token form field"
            }
            Self::Invalid => "CSRF token invalid for this session",
            Self::CrossSite => "cross-site request refused (Sec-Fetch-Site)",
            Self::Origin => "cross-origin request refused (Origin not allowed)",
            Self::InsecureOrigin => {
                "cross-origin request refused: the page was loaded over http but the session \
                 cookie is Secure; serve the site over https, or for plain-http development \
                 on localhost use SessionConfig::insecure_local_development()"
            }
        }
    }

    fn event(self) -> &'static str {
        match self {
            Self::Missing | Self::HeaderRequired => "token missing",
            Self::Invalid => "token invalid",
            Self::CrossSite => "cross-site (Sec-Fetch-Site)",
            Self::Origin | Self::InsecureOrigin => "origin not allowed",
        }
    }
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
}

/// Who the handler acted for: the principal of the session it was given.
fn acted_as(session: &Session) -> String {
    let user = session
        .principal()
        .map_or("-".into(), |p| p.id().to_owned());
    format!("acted as {user}")
}

/// The routes under attack, besides the harness's (`GET /csrf` hands out a token).
fn guarded() -> Router {
    Router::new()
        .route(
            "/act",
            any(|_: CsrfProtected, session: Session| async move { acted_as(&session) }),
        )
        .route(
            "/signin",
            post(
                |session: Session, CsrfProtected(Form(c)): CsrfProtected<Form<Credentials>>| async move {
                    session.login(Principal::user(c.user));
                    "welcome"
                },
            ),
        )
        .route("/me", get(|session: Session| async move { acted_as(&session) }))
        .merge(csrf_body_routes())
}

/// A browser of this site: its session cookie (`name=value`) and a CSRF token for it.
#[derive(Clone)]
struct Client {
    cookie: String,
    token: String,
}

/// `cfg` with a hook that records its `CsrfRejected` events.
fn recording(cfg: SessionConfig) -> (SessionConfig, Arc<Mutex<Vec<SessionEvent>>>) {
    let events: Arc<Mutex<Vec<SessionEvent>>> = Arc::default();
    let hook = events.clone();
    let cfg = cfg.on_event(move |e| {
        if matches!(e.kind(), EventKind::CsrfRejected(_)) {
            hook.lock().unwrap().push(e.clone());
        }
    });
    (cfg, events)
}

/// The site under attack, recording every `CsrfRejected` event.
struct Site {
    h: Harness,
    events: Arc<Mutex<Vec<SessionEvent>>>,
}

impl Site {
    /// The web preset: `Secure` `__Host-tessera` cookie, own origin `https://site.example`.
    fn web() -> Self {
        Self::new(SessionConfig::web(key(1)))
    }

    fn new(cfg: SessionConfig) -> Self {
        let (cfg, events) = recording(cfg);
        Self {
            h: Harness::with_routes(cfg, guarded()),
            events,
        }
    }

    /// The same routes under `cfg`, over this site's store and clock.
    fn sharing(&self, cfg: SessionConfig) -> Self {
        let (cfg, events) = recording(cfg);
        let layer =
            SessionLayer::new(cfg.clock(self.h.clock.clone())).with_store(self.h.store.clone());
        let h = Harness {
            app: harness::routes().merge(guarded()).layer(layer),
            store: self.h.store.clone(),
            clock: self.h.clock.clone(),
        };
        Self { h, events }
    }

    fn rejections(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Any request; none may ever be answered with a 5xx.
    async fn send(&self, req: Request<Body>) -> Reply {
        let what = format!("{} {}", req.method(), req.uri());
        let reply = self.h.send(req).await;
        assert!(
            !reply.status.is_server_error(),
            "{what}: {} {}",
            reply.status,
            reply.body
        );
        reply
    }

    /// A new visitor: `GET /csrf` stores an anonymous session and hands out its token.
    async fn visitor(&self) -> Client {
        let reply = self
            .send(request("GET", "/csrf", None).body(Body::empty()).unwrap())
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        let cookie = reply.set_cookie().expect("a CSRF token stores the session");
        Client {
            cookie: format!("{}={}", cookie.name(), cookie.value()),
            token: reply.body,
        }
    }

    /// Another token for `client`'s session.
    async fn token_for(&self, client: &Client) -> String {
        let reply = self
            .send(
                request("GET", "/csrf", Some(client))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.body
    }

    /// Asserts `req` is refused for `why`: a 403 with the fixed body, one event, and no
    /// trace of `victim`'s token or cookie in the response.
    async fn refused(&self, req: Request<Body>, why: Refusal, victim: &Client, case: &str) {
        let before = self.rejections();
        let reply = self.send(req).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{case}: {}",
            reply.body
        );
        assert_eq!(reply.body, why.body(), "{case}");
        let events: Vec<_> = self.events.lock().unwrap()[before..]
            .iter()
            .map(|e| e.kind().clone())
            .collect();
        assert_eq!(events, [EventKind::CsrfRejected(why.event())], "{case}");
        let value = victim.cookie.split_once('=').map_or("", |(_, v)| v);
        for secret in [victim.token.as_str(), value] {
            assert!(!reply.body.contains(secret), "{case}: body echoes a secret");
            for (name, v) in &reply.headers {
                let v = String::from_utf8_lossy(v.as_bytes());
                assert!(!v.contains(secret), "{case}: header {name} echoes a secret");
            }
        }
    }

    /// Asserts `req` passes the guard (200) without a `CsrfRejected` event; returns the body.
    async fn accepted(&self, req: Request<Body>, case: &str) -> String {
        let before = self.rejections();
        let reply = self.send(req).await;
        assert_eq!(reply.status, StatusCode::OK, "{case}: {}", reply.body);
        assert_eq!(self.rejections(), before, "{case}: event on success");
        reply.body
    }
}

/// `method path` to `site.example`, with `client`'s session cookie.
fn request(method: &str, path: &str, client: Option<&Client>) -> axum::http::request::Builder {
    let method = Method::from_bytes(method.as_bytes()).expect("a method token");
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(c) = client {
        req = req.header(header::COOKIE, &c.cookie);
    }
    req
}

/// `POST /act` with `client`'s cookie and, if given, `token` in `X-CSRF-Token`.
fn post_act(client: &Client, token: Option<&str>) -> Request<Body> {
    let mut req = request("POST", "/act", Some(client));
    if let Some(t) = token {
        req = req.header("x-csrf-token", t);
    }
    req.body(Body::empty()).unwrap()
}

/// `POST path` with a body of `content_type`.
fn post_body(path: &str, client: &Client, content_type: &str, body: String) -> Request<Body> {
    request("POST", path, Some(client))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

// ---- methods ----------------------------------------------------------------------------

#[tokio::test]
async fn unsafe_and_unknown_methods_without_a_token_are_refused() {
    let site = Site::web();
    let me = site.visitor().await;
    for method in [
        "POST", "PUT", "PATCH", "DELETE", "PROPFIND", "post", "get", "FOO",
    ] {
        for path in ["/act", "/layer"] {
            let case = format!("{method} {path}");
            let req = request(method, path, Some(&me))
                .body(Body::empty())
                .unwrap();
            site.refused(req, Refusal::Missing, &me, &case).await;
            // The refusal is about the token alone: with it the same method passes.
            let req = request(method, path, Some(&me))
                .header("x-csrf-token", &me.token)
                .body(Body::empty())
                .unwrap();
            site.accepted(req, &format!("{case} with token")).await;
        }
    }
}

#[tokio::test]
async fn safe_methods_pass_without_a_token() {
    let site = Site::web();
    let me = site.visitor().await;
    for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
        for path in ["/act", "/layer"] {
            let req = request(method, path, Some(&me))
                .body(Body::empty())
                .unwrap();
            site.accepted(req, &format!("{method} {path}")).await;
        }
    }
}

#[tokio::test]
async fn method_override_headers_never_exempt_a_post() {
    let site = Site::web();
    let me = site.visitor().await;
    for name in [
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
    ] {
        for value in ["GET", "HEAD", "OPTIONS"] {
            for path in ["/act", "/layer"] {
                let req = request("POST", path, Some(&me))
                    .header(name, value)
                    .body(Body::empty())
                    .unwrap();
                let case = format!("{name}: {value} on {path}");
                site.refused(req, Refusal::Missing, &me, &case).await;
            }
        }
    }
}

#[tokio::test]
async fn method_override_field_or_query_never_exempts_a_post() {
    let site = Site::web();
    let me = site.visitor().await;
    let cases = [
        ("form field", "/form", FORM, "_method=GET&text=hi"),
        ("query", "/form?_method=GET", FORM, "text=hi"),
        (
            "json field",
            "/json",
            JSON,
            r#"{"_method":"GET","text":"hi"}"#,
        ),
        ("query, no body", "/act?_method=GET", "text/plain", ""),
    ];
    for (name, path, content_type, body) in cases {
        let req = post_body(path, &me, content_type, body.into());
        site.refused(req, Refusal::Missing, &me, name).await;
    }
}

// ---- tokens -------------------------------------------------------------------------------

#[tokio::test]
async fn missing_token_is_refused_naming_the_token() {
    let site = Site::web();
    let me = site.visitor().await;
    site.refused(post_act(&me, None), Refusal::Missing, &me, "header route")
        .await;
    let req = post_body("/form", &me, FORM, "text=hi".into());
    site.refused(req, Refusal::Missing, &me, "form route").await;
    let req = post_body("/json", &me, JSON, r#"{"text":"hi"}"#.into());
    site.refused(req, Refusal::Missing, &me, "json route").await;
}

#[tokio::test]
async fn empty_and_whitespace_tokens_are_refused() {
    // A present but empty value is a wrong token, not an absent one.
    let site = Site::web();
    let me = site.visitor().await;
    for value in ["", " ", "   ", "\t"] {
        let case = format!("header {value:?}");
        site.refused(post_act(&me, Some(value)), Refusal::Invalid, &me, &case)
            .await;
    }
    for field in ["csrf_token=", "csrf_token=%20%20", "csrf_token=+"] {
        let req = post_body("/form", &me, FORM, format!("text=hi&{field}"));
        site.refused(req, Refusal::Invalid, &me, field).await;
    }
    let req = post_body(
        "/json",
        &me,
        JSON,
        r#"{"text":"hi","csrf_token":""}"#.into(),
    );
    site.refused(req, Refusal::Invalid, &me, "json empty").await;
}

#[tokio::test]
async fn ten_kilobyte_token_is_refused() {
    let site = Site::web();
    let me = site.visitor().await;
    let long = "A".repeat(10 * 1024);
    site.refused(post_act(&me, Some(&long)), Refusal::Invalid, &me, "header")
        .await;
    // The valid token with 10 KB appended is no better.
    let padded = format!("{}{long}", me.token);
    site.refused(
        post_act(&me, Some(&padded)),
        Refusal::Invalid,
        &me,
        "padded",
    )
    .await;
    let req = post_body("/form", &me, FORM, format!("text=hi&csrf_token={long}"));
    site.refused(req, Refusal::Invalid, &me, "form field").await;
}

#[tokio::test]
async fn garbage_tokens_are_refused() {
    let site = Site::web();
    let me = site.visitor().await;
    let session_token = me.cookie.split_once('=').unwrap().1.to_owned();
    let garbage = [
        "abc".to_owned(),
        "null".to_owned(),
        "undefined".to_owned(),
        "<script>alert(1)</script>".to_owned(),
        // Right length and alphabet, wrong secret.
        "A".repeat(86),
        // Right length, not base64url.
        "!".repeat(86),
        // The session token itself is not a CSRF token.
        session_token,
    ];
    for value in &garbage {
        site.refused(post_act(&me, Some(value)), Refusal::Invalid, &me, value)
            .await;
    }
    // A header value that is not ASCII text cannot be read at all: it counts as absent.
    let latin1 = [me.token.as_bytes(), &[0xe9]].concat();
    let req = request("POST", "/act", Some(&me))
        .header("x-csrf-token", latin1.as_slice())
        .body(Body::empty())
        .unwrap();
    site.refused(req, Refusal::Missing, &me, "non-ASCII header")
        .await;
    let field = format!("text=hi&csrf_token={}%C3%A9", me.token);
    let req = post_body("/form", &me, FORM, field);
    site.refused(req, Refusal::Invalid, &me, "non-ASCII field")
        .await;
}

/// Base64url alphabet index of `c`.
fn b64_index(c: u8) -> u8 {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ALPHABET.iter().position(|&a| a == c).expect("base64url") as u8
}

fn b64_char(i: u8) -> char {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ALPHABET[usize::from(i)] as char
}

#[tokio::test]
async fn non_canonical_base64_token_is_refused() {
    let site = Site::web();
    let me = site.visitor().await;
    site.accepted(post_act(&me, Some(&me.token)), "canonical baseline")
        .await;
    // A lenient decoder maps every variant below to the same 64 bytes as the real token: only
    // the encoding differs, and only the canonical one is accepted.
    let lenient = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = lenient.decode(&me.token).unwrap();
    // 64 bytes take 86 characters: the last one carries 2 bits and 4 unused low bits.
    let (head, last) = me.token.split_at(85);
    let last = b64_index(last.as_bytes()[0]);
    let mut variants: Vec<(String, String)> = (0..4)
        .map(|bit| {
            let v = format!("{head}{}", b64_char(last ^ (1 << bit)));
            (format!("unused bit {bit} set"), v)
        })
        .collect();
    variants.push(("padded".into(), format!("{}==", me.token)));
    for (name, variant) in &variants {
        assert_eq!(lenient.decode(variant).unwrap(), bytes, "{name}");
        site.refused(post_act(&me, Some(variant)), Refusal::Invalid, &me, name)
            .await;
    }
    // Standard base64 (`+/`) of the same bytes: fetch tokens until one uses `-` or `_`.
    let mut token = me.token.clone();
    for _ in 0..32 {
        if token.contains(['-', '_']) {
            break;
        }
        token = site.token_for(&me).await;
    }
    let standard = token.replace('-', "+").replace('_', "/");
    assert_ne!(standard, token, "no token with - or _ in 32 tries");
    site.refused(
        post_act(&me, Some(&standard)),
        Refusal::Invalid,
        &me,
        "standard alphabet",
    )
    .await;
}

#[tokio::test]
async fn truncated_or_extended_valid_token_is_refused() {
    let site = Site::web();
    let me = site.visitor().await;
    for cut in 1..me.token.len() {
        let short = &me.token[..me.token.len() - cut];
        let case = format!("cut {cut}");
        site.refused(post_act(&me, Some(short)), Refusal::Invalid, &me, &case)
            .await;
    }
    for extra in ["A", "=", "."] {
        let long = format!("{}{extra}", me.token);
        site.refused(post_act(&me, Some(&long)), Refusal::Invalid, &me, extra)
            .await;
    }
}

#[tokio::test]
async fn another_sessions_valid_token_is_refused() {
    let site = Site::web();
    let victim = site.visitor().await;
    let attacker = site.visitor().await;
    let stolen = Some(attacker.token.as_str());
    site.accepted(post_act(&attacker, stolen), "valid for its own session")
        .await;
    site.refused(
        post_act(&victim, stolen),
        Refusal::Invalid,
        &victim,
        "header",
    )
    .await;
    let req = post_body(
        "/form",
        &victim,
        FORM,
        format!("text=hi&csrf_token={}", attacker.token),
    );
    site.refused(req, Refusal::Invalid, &victim, "form field")
        .await;
    let body = format!(r#"{{"text":"hi","csrf_token":"{}"}}"#, attacker.token);
    let req = post_body("/json", &victim, JSON, body);
    site.refused(req, Refusal::Invalid, &victim, "json field")
        .await;
}

#[tokio::test]
async fn pre_login_token_is_dead_after_login() {
    let site = Site::web();
    let before = site.visitor().await;
    let req = post_body(
        "/signin",
        &before,
        FORM,
        format!("user=alice&csrf_token={}", before.token),
    );
    let login = site.send(req).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let cookie = login.set_cookie().expect("login rotates the session");
    let after = Client {
        cookie: format!("{}={}", cookie.name(), cookie.value()),
        token: before.token.clone(),
    };
    let old = Some(before.token.as_str());
    site.refused(
        post_act(&after, old),
        Refusal::Invalid,
        &after,
        "new cookie",
    )
    .await;
    // The pre-login pair never reaches alice's session: its ID is dead in the store, and
    // the layer keeps it only as the ID of an empty anonymous session (so unsaved login
    // forms keep working without a record per visitor).
    let body = site
        .accepted(post_act(&before, old), "old cookie and old token")
        .await;
    assert_eq!(body, "acted as -", "the pre-login pair acts anonymously");
    let fresh = site.token_for(&after).await;
    let body = site
        .accepted(post_act(&after, Some(&fresh)), "fresh token")
        .await;
    assert_eq!(body, "acted as alice");
}

#[tokio::test]
async fn token_minted_under_another_key_is_refused() {
    let site = Site::web();
    let me = site.visitor().await;
    // A layer whose current key is key(2) accepts the session cookie (key(1) is its fallback)
    // and mints the CSRF token for the same session under key(2), which the site never had.
    let other = site.sharing(SessionConfig::web(
        KeyRing::new(key(2)).with_fallback(key(1)),
    ));
    let req = request("GET", "/csrf", Some(&me))
        .body(Body::empty())
        .unwrap();
    let foreign = other.send(req).await;
    assert_eq!(foreign.status, StatusCode::OK);
    let foreign = foreign.body;
    site.refused(
        post_act(&me, Some(&foreign)),
        Refusal::Invalid,
        &me,
        "key(2)",
    )
    .await;
    // The reverse is key rotation: a form rendered before the rotation still posts.
    let rotated = site.sharing(SessionConfig::web(
        KeyRing::new(key(2)).with_fallback(key(1)),
    ));
    let body = rotated
        .accepted(post_act(&me, Some(&me.token)), "fallback key")
        .await;
    assert_eq!(body, "acted as -");
}

#[tokio::test]
async fn differently_masked_tokens_of_one_session_both_verify() {
    let site = Site::web();
    let me = site.visitor().await;
    let second = site.token_for(&me).await;
    assert_ne!(second, me.token, "each token is masked afresh (BREACH)");
    for (name, token) in [("first", &me.token), ("second", &second)] {
        site.accepted(post_act(&me, Some(token)), name).await;
        let req = post_body("/form", &me, FORM, format!("text=hi&csrf_token={token}"));
        site.accepted(req, name).await;
    }
}

#[tokio::test]
async fn token_only_in_the_query_string_is_refused() {
    let site = Site::web();
    let me = site.visitor().await;
    for query in ["csrf_token", "x-csrf-token", "X-CSRF-Token", "_csrf"] {
        let path = format!("/act?{query}={}", me.token);
        let req = request("POST", &path, Some(&me))
            .body(Body::empty())
            .unwrap();
        site.refused(req, Refusal::Missing, &me, query).await;
        let path = format!("/form?{query}={}", me.token);
        let req = post_body(&path, &me, FORM, "text=hi".into());
        site.refused(req, Refusal::Missing, &me, query).await;
    }
}

#[tokio::test]
async fn token_only_in_a_cookie_is_refused() {
    // Double-submit cookies are not this library's scheme: a cookie can be planted by a
    // sibling subdomain, so a token in one proves nothing.
    let site = Site::web();
    let me = site.visitor().await;
    for name in ["csrf_token", "x-csrf-token", "XSRF-TOKEN", "__Host-csrf"] {
        let cookie = format!("{}; {name}={}", me.cookie, me.token);
        let client = Client {
            cookie,
            token: me.token.clone(),
        };
        site.refused(post_act(&client, None), Refusal::Missing, &me, name)
            .await;
        let req = post_body("/form", &client, FORM, "text=hi".into());
        site.refused(req, Refusal::Missing, &me, name).await;
    }
}

// ---- origin -------------------------------------------------------------------------------

/// `POST /act` with a valid token and `Origin: origin`.
fn from_origin(client: &Client, origin: &str) -> Request<Body> {
    request("POST", "/act", Some(client))
        .header("x-csrf-token", &client.token)
        .header(header::ORIGIN, origin.as_bytes())
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn foreign_origins_are_refused_by_exact_match() {
    let site = Site::web();
    let me = site.visitor().await;
    let foreign = [
        "https://evil.test",
        "https://site.example.evil.test",
        "https://evil.test/site.example",
        "null",
        "http://site.example",
        "https://site.example:8443",
        "https://site.example:80",
        // Not a port: `u16::from_str` would read 443.
        "https://site.example:+443",
        "https://site.example:443 ",
        // Look-alike hosts: Cyrillic `і` as raw bytes, and its punycode form.
        "https://s\u{456}te.example",
        "https://xn--ste-fcd.example",
        "https://notsite.example",
        "https://sub.site.example",
        "https://site.example.",
        "https://site.example@evil.test",
        "https://evil.test@site.example",
        "https://site.example:443@evil.test",
        "https://site.example:443.evil.test",
        "https://site.example/",
        "https://site.example#",
        "https://site.example\\@evil.test",
        "https://site.example ",
        "https://site.example, https://evil.test",
        "https://site.example https://evil.test",
        "site.example",
        "//site.example",
        "https:site.example",
        "wss://site.example",
        "",
    ];
    for origin in foreign {
        let why = if origin == "http://site.example" {
            Refusal::InsecureOrigin
        } else {
            Refusal::Origin
        };
        site.refused(from_origin(&me, origin), why, &me, origin)
            .await;
    }
    // Two Origin headers, one of them ours.
    let req = request("POST", "/act", Some(&me))
        .header("x-csrf-token", &me.token)
        .header(header::ORIGIN, OWN_ORIGIN)
        .header(header::ORIGIN, "https://evil.test")
        .body(Body::empty())
        .unwrap();
    site.refused(req, Refusal::Origin, &me, "two origins").await;
}

#[tokio::test]
async fn own_origin_in_another_case_or_with_its_default_port_passes() {
    // Scheme and host are case-insensitive and 443 is https's port: each of these is the same
    // origin as `https://site.example` (browsers send the lowercase, portless form).
    let site = Site::web();
    let me = site.visitor().await;
    for origin in [
        OWN_ORIGIN,
        "https://SITE.EXAMPLE",
        "HTTPS://Site.Example",
        "https://site.example:443",
    ] {
        site.accepted(from_origin(&me, origin), origin).await;
    }
}

#[tokio::test]
async fn scheme_downgrade_and_upgrade_origins_are_refused() {
    // A `Secure` cookie means the site is served over https: an http page is another origin.
    let site = Site::web();
    let me = site.visitor().await;
    site.refused(
        from_origin(&me, "http://site.example"),
        Refusal::InsecureOrigin,
        &me,
        "http page, secure site",
    )
    .await;
    // A plain-http site (`secure(false)`): its origin is http, and an https page is foreign.
    let plain = Site::new(SessionConfig::web(key(1)).cookie(CookieConfig::new("id").secure(false)));
    let me = plain.visitor().await;
    assert!(me.cookie.starts_with("id="));
    for origin in ["http://site.example", "http://site.example:80"] {
        plain.accepted(from_origin(&me, origin), origin).await;
    }
    for origin in ["https://site.example", "http://site.example:443"] {
        plain
            .refused(from_origin(&me, origin), Refusal::Origin, &me, origin)
            .await;
    }
}

#[tokio::test]
async fn configured_trusted_origins_match_exactly() {
    let site = Site::new(
        SessionConfig::web(key(1)).trusted_origins([OWN_ORIGIN, "https://partner.example:8443"]),
    );
    let me = site.visitor().await;
    for origin in [OWN_ORIGIN, "https://partner.example:8443"] {
        site.accepted(from_origin(&me, origin), origin).await;
    }
    for origin in [
        "https://partner.example",
        "http://partner.example:8443",
        "https://partner.example:8443.evil.test",
        "https://evil-partner.example:8443",
        "https://partner.example.evil.test:8443",
        "https://partner.example:8443@evil.test",
    ] {
        let why = if origin == "http://partner.example:8443" {
            Refusal::InsecureOrigin
        } else {
            Refusal::Origin
        };
        site.refused(from_origin(&me, origin), why, &me, origin)
            .await;
    }
    // A trusted partner may post cross-site, but still needs the session's token.
    let partner = |token: Option<&str>| {
        let mut req = request("POST", "/act", Some(&me))
            .header(header::ORIGIN, "https://partner.example:8443")
            .header("sec-fetch-site", "cross-site");
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.body(Body::empty()).unwrap()
    };
    site.accepted(partner(Some(&me.token)), "partner, cross-site")
        .await;
    site.refused(
        partner(None),
        Refusal::Missing,
        &me,
        "partner without token",
    )
    .await;
    let req = request("POST", "/act", Some(&me))
        .header("x-csrf-token", &me.token)
        .header(header::ORIGIN, "https://evil.test")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    site.refused(req, Refusal::CrossSite, &me, "untrusted cross-site")
        .await;
}

// ---- fetch metadata -----------------------------------------------------------------------

/// `POST /act` with a valid token, `Sec-Fetch-Site: site` and, if given, `Origin`.
fn fetched(client: &Client, site: &str, origin: Option<&str>) -> Request<Body> {
    let mut req = request("POST", "/act", Some(client))
        .header("x-csrf-token", &client.token)
        .header("sec-fetch-site", site);
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn same_origin_and_user_initiated_requests_pass() {
    let site = Site::web();
    let me = site.visitor().await;
    site.accepted(fetched(&me, "same-origin", Some(OWN_ORIGIN)), "same-origin")
        .await;
    site.accepted(fetched(&me, "none", None), "none").await;
    // Metadata vouches for nothing by itself: the token is still required.
    let req = request("POST", "/act", Some(&me))
        .header("sec-fetch-site", "same-origin")
        .header(header::ORIGIN, OWN_ORIGIN)
        .body(Body::empty())
        .unwrap();
    site.refused(req, Refusal::Missing, &me, "same-origin without token")
        .await;
}

#[tokio::test]
async fn cross_site_request_is_refused_even_with_a_valid_token() {
    let site = Site::web();
    let me = site.visitor().await;
    for (case, origin) in [
        ("no origin", None),
        ("foreign origin", Some("https://evil.test")),
        ("claims our origin", Some(OWN_ORIGIN)),
    ] {
        site.refused(
            fetched(&me, "cross-site", origin),
            Refusal::CrossSite,
            &me,
            case,
        )
        .await;
    }
    // Only the exact lowercase values pass.
    for value in [
        "SAME-ORIGIN",
        "same-origin, cross-site",
        "cross-site, same-origin",
        "",
    ] {
        site.refused(fetched(&me, value, None), Refusal::CrossSite, &me, value)
            .await;
    }
}

#[tokio::test]
async fn same_site_sibling_subdomain_is_refused() {
    // Chosen behaviour: `same-site` is refused like `cross-site`. A sibling subdomain
    // (`blog.site.example`) shares the site but may be run by someone else; only the
    // configured trusted origins may post from elsewhere.
    let site = Site::web();
    let me = site.visitor().await;
    let req = fetched(&me, "same-site", Some("https://blog.site.example"));
    site.refused(req, Refusal::CrossSite, &me, "sibling").await;
    let trusted = Site::new(
        SessionConfig::web(key(1)).trusted_origins([OWN_ORIGIN, "https://blog.site.example"]),
    );
    let me = trusted.visitor().await;
    let req = fetched(&me, "same-site", Some("https://blog.site.example"));
    trusted.accepted(req, "trusted sibling").await;
}

#[tokio::test]
async fn missing_fetch_metadata_falls_back_to_origin() {
    // Older browsers send no Sec-Fetch-Site: the Origin header decides, then the token.
    let site = Site::web();
    let me = site.visitor().await;
    site.refused(
        from_origin(&me, "https://evil.test"),
        Refusal::Origin,
        &me,
        "foreign origin",
    )
    .await;
    site.accepted(from_origin(&me, OWN_ORIGIN), "own origin")
        .await;
    site.accepted(post_act(&me, Some(&me.token)), "no origin, token")
        .await;
    site.refused(
        post_act(&me, None),
        Refusal::Missing,
        &me,
        "no origin, no token",
    )
    .await;
}

// ---- content types ------------------------------------------------------------------------

#[tokio::test]
async fn text_plain_post_is_still_checked() {
    // `<form enctype="text/plain">` and `fetch` with a text body need no preflight. The guard
    // reads the token field only from urlencoded and JSON bodies, so text needs the header.
    let site = Site::web();
    let me = site.visitor().await;
    let json_in_text = format!(r#"{{"text":"hi","csrf_token":"{}"}}"#, me.token);
    let form_in_text = format!("text=hi&csrf_token={}", me.token);
    for (path, body) in [
        ("/json", "{\"text\":\"hi\"}".to_owned()),
        ("/json", json_in_text),
        ("/form", form_in_text.clone()),
        ("/bytes", form_in_text),
    ] {
        let req = post_body(path, &me, "text/plain", body);
        site.refused(req, Refusal::Missing, &me, path).await;
    }
    let req = request("POST", "/bytes", Some(&me))
        .header(header::CONTENT_TYPE, "text/plain")
        .header("x-csrf-token", &me.token)
        .body(Body::from("hello"))
        .unwrap();
    assert_eq!(site.accepted(req, "header token").await, "5");
}

#[tokio::test]
async fn multipart_post_is_still_checked_and_needs_the_header_token() {
    // Multipart bodies are not searched for a `csrf_token` part: the header carries it.
    let site = Site::web();
    let me = site.visitor().await;
    let content_type = "multipart/form-data; boundary=XB";
    let body = format!(
        "--XB\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{}\r\n\
         --XB\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhi\r\n--XB--\r\n",
        me.token
    );
    for path in ["/bytes", "/form", "/act"] {
        let req = post_body(path, &me, content_type, body.clone());
        site.refused(req, Refusal::Missing, &me, path).await;
    }
    let req = request("POST", "/bytes", Some(&me))
        .header(header::CONTENT_TYPE, content_type)
        .header("x-csrf-token", &me.token)
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(
        site.accepted(req, "header token").await,
        body.len().to_string()
    );
}

#[tokio::test]
async fn urlencoded_form_post_is_checked() {
    let site = Site::web();
    let me = site.visitor().await;
    let other = site.visitor().await;
    let req = post_body("/form", &me, FORM, "text=hi".into());
    site.refused(req, Refusal::Missing, &me, "no field").await;
    let req = post_body(
        "/form",
        &me,
        FORM,
        format!("text=hi&csrf_token={}", other.token),
    );
    site.refused(req, Refusal::Invalid, &me, "foreign field")
        .await;
    // Only the first field counts: an attacker cannot append a second one to try its luck.
    let req = post_body(
        "/form",
        &me,
        FORM,
        format!("text=hi&csrf_token={}&csrf_token={}", other.token, me.token),
    );
    site.refused(req, Refusal::Invalid, &me, "second field")
        .await;
    let ct = "application/x-www-form-urlencoded; charset=UTF-8";
    let req = post_body("/form", &me, ct, format!("text=hi&csrf_token={}", me.token));
    assert_eq!(site.accepted(req, "own field").await, "hi");
    // The header-only guard does not read bodies, and says what to do instead.
    let req = post_body("/act", &me, FORM, format!("csrf_token={}", me.token));
    site.refused(req, Refusal::HeaderRequired, &me, "header-only route")
        .await;
}

#[tokio::test]
async fn json_post_is_checked() {
    let site = Site::web();
    let me = site.visitor().await;
    let other = site.visitor().await;
    let req = post_body("/json", &me, JSON, r#"{"text":"hi"}"#.into());
    site.refused(req, Refusal::Missing, &me, "no field").await;
    let foreign = format!(r#"{{"text":"hi","csrf_token":"{}"}}"#, other.token);
    let req = post_body("/json", &me, JSON, foreign);
    site.refused(req, Refusal::Invalid, &me, "foreign field")
        .await;
    let own = format!(r#"{{"text":"hi","csrf_token":"{}"}}"#, me.token);
    for ct in [
        JSON,
        "application/json; charset=utf-8",
        "application/vnd.api+json",
    ] {
        let req = post_body("/json", &me, ct, own.clone());
        // `Json` accepts `+json` types too; the guard reads the field from all of them.
        assert_eq!(site.accepted(req, ct).await, "hi");
    }
    // A token nested deeper, or in an array, is not the field.
    for body in [
        format!(r#"{{"text":"hi","x":{{"csrf_token":"{}"}}}}"#, me.token),
        format!(r#"[{{"csrf_token":"{}"}}]"#, me.token),
    ] {
        let req = post_body("/json", &me, JSON, body.clone());
        site.refused(req, Refusal::Missing, &me, &body).await;
    }
}

#[tokio::test]
async fn deeply_nested_json_body_is_refused_without_a_crash() {
    // The guard parses JSON bodies to find the field: nesting must not exhaust the stack.
    let site = Site::web();
    let me = site.visitor().await;
    let depth = 100_000;
    let body = format!("{}{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let req = post_body("/json", &me, JSON, body);
    site.refused(req, Refusal::Missing, &me, "nested").await;
}

// ---- header-authenticated requests --------------------------------------------------------

/// A site accepting cookies and bearer tokens in `order`, and a bearer token for `user` from an
/// API layer over the same store.
async fn mixed(order: [TokenSource; 2], user: &str) -> (Site, String) {
    let site = Site::new(SessionConfig::web(key(1)).token_sources(order));
    let api = site.sharing(SessionConfig::api(key(1)).require_existing(false));
    let reply = api
        .send(
            request("POST", &format!("/login/{user}"), None)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    (site, reply.body)
}

/// `POST /act` with `client`'s cookie (if any), an `Authorization: Bearer`, and no CSRF token.
fn with_bearer(client: Option<&Client>, bearer: &str) -> Request<Body> {
    request("POST", "/act", client)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .body(Body::empty())
        .unwrap()
}

/// A visitor of `site` logged in as `user` (through the unguarded harness route).
async fn logged_in(site: &Site, user: &str) -> Client {
    let reply = site
        .send(
            request("POST", &format!("/login/{user}"), None)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let cookie = reply.set_cookie().expect("login sets a cookie");
    let client = Client {
        cookie: format!("{}={}", cookie.name(), cookie.value()),
        token: String::new(),
    };
    let token = site.token_for(&client).await;
    Client { token, ..client }
}

#[tokio::test]
async fn bearer_authenticated_request_is_exempt() {
    // Browsers never attach `Authorization` on their own, so a bearer request is not forgeable.
    let (site, bearer) = mixed([TokenSource::Cookie, TokenSource::Bearer], "bob").await;
    let body = site.accepted(with_bearer(None, &bearer), "bearer").await;
    assert_eq!(body, "acted as bob");
    // A forged bearer buys no exemption.
    let me = site.visitor().await;
    let forged = with_bearer(Some(&me), "v1.forged.1.x");
    site.refused(forged, Refusal::Missing, &me, "forged bearer")
        .await;
}

#[tokio::test]
async fn cookie_and_bearer_together_the_source_that_authenticated_decides() {
    // The first configured source with a valid token supplies the session; the CSRF check
    // follows that source. The cookie's session is never acted on without a CSRF token.
    let (site, bearer) = mixed([TokenSource::Cookie, TokenSource::Bearer], "bob").await;
    let alice = logged_in(&site, "alice").await;
    site.refused(
        with_bearer(Some(&alice), &bearer),
        Refusal::Missing,
        &alice,
        "cookie first: the cookie session is checked",
    )
    .await;
    let mut req = with_bearer(Some(&alice), &bearer);
    req.headers_mut()
        .insert("x-csrf-token", alice.token.parse().unwrap());
    assert_eq!(
        site.accepted(req, "cookie first, token").await,
        "acted as alice"
    );

    let (site, bearer) = mixed([TokenSource::Bearer, TokenSource::Cookie], "bob").await;
    // This layer answers new sessions in a header (its first source); alice logs in through
    // the cookie-only site over the same store, as a browser UI beside an API would.
    let alice = logged_in(&site.sharing(SessionConfig::web(key(1))), "alice").await;
    let body = site
        .accepted(with_bearer(Some(&alice), &bearer), "bearer first")
        .await;
    assert_eq!(
        body, "acted as bob",
        "the exempt request is bob's, not alice's"
    );
    site.refused(
        with_bearer(Some(&alice), "v1.forged.1.x"),
        Refusal::Missing,
        &alice,
        "bearer first, forged bearer: the cookie session is checked",
    )
    .await;
    // A bearer token whose session has ended still decides the source, and alice's cookie
    // session is not used: `Session` refuses the dead bearer token with 401 rather than
    // hand the request an anonymous session.
    let api = site.sharing(SessionConfig::api(key(1)).require_existing(false));
    let out = api
        .send(
            request("POST", "/logout", None)
                .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(out.status, StatusCode::OK);
    let before = site.rejections();
    let reply = site.send(with_bearer(Some(&alice), &bearer)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "dead bearer first");
    assert!(!reply.body.contains("acted as"), "{}", reply.body);
    assert_eq!(site.rejections(), before, "not a CSRF refusal");
}

// ---- login CSRF ---------------------------------------------------------------------------

#[tokio::test]
async fn login_csrf_needs_the_anonymous_sessions_token() {
    // The attacker posts its own credentials from its page so the victim ends up logged in as
    // the attacker. Its own token is bound to its own session and useless to the victim.
    let site = Site::web();
    let attacker = site.visitor().await;
    let victim = site.visitor().await;
    let signin = |client: Option<&Client>, token: Option<&str>| {
        let body = match token {
            Some(t) => format!("user=mallory&csrf_token={t}"),
            None => "user=mallory".to_owned(),
        };
        request("POST", "/signin", client)
            .header(header::CONTENT_TYPE, FORM)
            .body(Body::from(body))
            .unwrap()
    };
    let stolen = Some(attacker.token.as_str());
    site.refused(
        signin(None, None),
        Refusal::Missing,
        &victim,
        "no cookie, no token",
    )
    .await;
    site.refused(signin(None, stolen), Refusal::Invalid, &victim, "no cookie")
        .await;
    site.refused(
        signin(Some(&victim), None),
        Refusal::Missing,
        &victim,
        "no token",
    )
    .await;
    site.refused(
        signin(Some(&victim), stolen),
        Refusal::Invalid,
        &victim,
        "attacker's token",
    )
    .await;
    let me = request("GET", "/me", Some(&victim))
        .body(Body::empty())
        .unwrap();
    assert_eq!(site.accepted(me, "victim").await, "acted as -");

    // The real login form posts the anonymous session's own token.
    let login = site.send(signin(Some(&victim), Some(&victim.token))).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let cookie = login.set_cookie().expect("login rotates the session");
    let logged_in = Client {
        cookie: format!("{}={}", cookie.name(), cookie.value()),
        token: String::new(),
    };
    let me = request("GET", "/me", Some(&logged_in))
        .body(Body::empty())
        .unwrap();
    assert_eq!(site.accepted(me, "logged in").await, "acted as mallory");
}

// ---- reporting ----------------------------------------------------------------------------

#[tokio::test]
async fn refusal_events_name_the_request_but_never_the_token() {
    let site = Site::web();
    let me = site.visitor().await;
    let other = site.visitor().await;
    site.refused(
        post_act(&me, Some(&other.token)),
        Refusal::Invalid,
        &me,
        "foreign token",
    )
    .await;
    let events = site.events.lock().unwrap().clone();
    let [event] = events.as_slice() else {
        panic!("one event: {events:?}");
    };
    assert_eq!(event.method(), Method::POST);
    assert_eq!(event.path(), "/act");
    assert!(event.session_hash().is_some(), "names the session by hash");
    let shown = format!("{event} {event:?}");
    for secret in [&me.token, &other.token, &me.cookie] {
        let value = secret.split_once('=').map_or(secret.as_str(), |(_, v)| v);
        assert!(!shown.contains(value), "event shows a secret: {shown}");
    }
}
