//! Cookie attacks and hygiene: attributes, prefix rules, browser-session cookies, size limits,
//! duplicate (tossed) cookies, and caching of responses that carry a session cookie.

use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::routing::post;
use axum_tessera::config::MAX_COOKIE_BYTES;
use axum_tessera::{ConfigError, CookieConfig, SameSite, Session, SessionConfig, SessionLayer};
use time::Duration;

use crate::support::harness::{self, key, Harness, COOKIE};

#[tokio::test]
async fn default_cookie_is_host_prefixed_secure_httponly_lax_and_host_only() {
    let h = Harness::web();
    let reply = h.call("POST", "/write/v", None).await;
    let c = reply.set_cookie().unwrap();
    assert_eq!(c.name(), "__Host-tessera");
    assert_eq!(c.secure(), Some(true));
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(c.same_site(), Some(SameSite::Lax));
    assert_eq!(c.path(), Some("/"));
    assert_eq!(c.domain(), None);
    assert_eq!(c.max_age(), Some(Duration::hours(12)), "absolute timeout");
    assert_eq!(c.expires(), None);
    assert!(c.partitioned().is_none_or(|p| !p));
}

#[test]
fn host_prefix_rules_are_enforced_at_start_up() {
    struct Case {
        name: &'static str,
        cookie: CookieConfig,
        expect: &'static str,
    }
    let cases = [
        Case {
            name: "__Host- without Secure",
            cookie: CookieConfig::default().secure(false),
            expect: "must be Secure",
        },
        Case {
            name: "__Host- with Domain",
            cookie: CookieConfig::default().domain("example.com"),
            expect: "must not set Domain",
        },
        Case {
            name: "__Host- with a sub-path",
            cookie: CookieConfig::default().path("/app"),
            expect: "Path=/",
        },
        Case {
            name: "__Secure- without Secure",
            cookie: CookieConfig::new("__Secure-sid").secure(false),
            expect: "must be Secure",
        },
        Case {
            name: "SameSite=None without Secure",
            cookie: CookieConfig::new("sid")
                .secure(false)
                .same_site(SameSite::None),
            expect: "SameSite=None",
        },
        Case {
            name: "name with a separator",
            cookie: CookieConfig::new("sid;evil"),
            expect: "HTTP token",
        },
        Case {
            name: "path with an attribute injection",
            cookie: CookieConfig::new("sid").path("/; Domain=evil.test"),
            expect: "path",
        },
        Case {
            name: "domain with an attribute injection",
            cookie: CookieConfig::new("sid").domain("a.test;Secure"),
            expect: "domain",
        },
    ];
    for case in cases {
        let err = SessionLayer::try_new(SessionConfig::web(key(1)).cookie(case.cookie))
            .expect_err(case.name);
        assert!(matches!(err, ConfigError::Cookie(_)), "{}", case.name);
        assert!(
            err.to_string().contains(case.expect),
            "{}: {err}",
            case.name
        );
    }
}

#[tokio::test]
async fn browser_session_cookie_has_no_max_age_or_expires() {
    let h = Harness::new(SessionConfig::ephemeral(key(1)));
    let reply = h.call("POST", "/write/v", None).await;
    let c = reply.set_cookie().unwrap();
    assert_eq!(c.max_age(), None);
    assert_eq!(c.expires(), None);
    let raw = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(!raw.to_ascii_lowercase().contains("max-age"), "{raw}");
    assert!(!raw.to_ascii_lowercase().contains("expires"), "{raw}");
    // Login re-issues it, still without a lifetime.
    let token = c.value().to_owned();
    let login = h.call("POST", "/login/u", Some(&token)).await;
    assert_eq!(login.set_cookie().unwrap().max_age(), None);
}

#[tokio::test]
async fn logout_clears_the_cookie_with_matching_attributes() {
    let h = Harness::web();
    let token = h.logged_in("u").await;
    let reply = h.call("POST", "/logout", Some(&token)).await;
    let c = reply.set_cookie().unwrap();
    assert_eq!(c.value(), "");
    assert_eq!(c.max_age(), Some(Duration::ZERO));
    // A browser only replaces a cookie with the same name, path and domain (and a __Host-
    // cookie only from a Secure Set-Cookie).
    assert_eq!((c.name(), c.path(), c.domain()), (COOKIE, Some("/"), None));
    assert_eq!(c.secure(), Some(true));
}

#[test]
fn cookie_that_could_exceed_4096_bytes_is_a_config_error() {
    let cfg = SessionConfig::web(key(1))
        .cookie(CookieConfig::new("sid").domain("a".repeat(MAX_COOKIE_BYTES)));
    let err = SessionLayer::try_new(cfg).unwrap_err();
    assert!(err.to_string().contains("4096"), "{err}");
    let cfg = SessionConfig::web(key(1)).cookie(CookieConfig::new("s".repeat(MAX_COOKIE_BYTES)));
    assert!(SessionLayer::try_new(cfg).is_err());
}

#[tokio::test]
async fn largest_accepted_cookie_configuration_fits_in_4096_bytes() {
    // Grow the domain until the configuration is refused; the last accepted one, with every
    // attribute at its longest, must still produce a Set-Cookie within the limit.
    let cfg = |n: usize| {
        SessionConfig::web(key(1))
            .cookie(
                CookieConfig::new("sid")
                    .domain("d".repeat(n))
                    .path(format!("/{}", "p".repeat(64)))
                    .same_site(SameSite::None),
            )
            .absolute_timeout(std::time::Duration::MAX)
            .idle_timeout(std::time::Duration::MAX)
    };
    let largest = (1..MAX_COOKIE_BYTES)
        .take_while(|&n| SessionLayer::try_new(cfg(n)).is_ok())
        .last()
        .unwrap();
    let path = format!("/{}", "p".repeat(64));
    let extra = axum::Router::new().route(
        &path,
        post(|s: Session| async move { s.insert("k", 1).unwrap() }),
    );
    let h = Harness::with_routes(cfg(largest), extra);
    let reply = h.call("POST", &path, None).await;
    let raw = reply.headers[header::SET_COOKIE].as_bytes();
    assert!(raw.len() <= MAX_COOKIE_BYTES, "{} bytes", raw.len());
    assert!(
        raw.len() > MAX_COOKIE_BYTES - 200,
        "the limit is not far too strict"
    );
}

#[tokio::test]
async fn duplicate_cookie_names_resolve_to_the_first_valid_token() {
    let h = Harness::web();
    let a = h.new_session("a").await;
    let b = h.new_session("b").await;
    struct Case {
        name: &'static str,
        lines: Vec<String>,
        expect: &'static str,
    }
    let cases = [
        Case {
            name: "garbage first",
            lines: vec![format!("{COOKIE}=garbage; {COOKIE}={a}")],
            expect: "k=a",
        },
        Case {
            name: "a then b",
            lines: vec![format!("{COOKIE}={a}; {COOKIE}={b}")],
            expect: "k=a",
        },
        Case {
            name: "b then a",
            lines: vec![format!("{COOKIE}={b}; {COOKIE}={a}")],
            expect: "k=b",
        },
        Case {
            name: "separate header lines (HTTP/2)",
            lines: vec![format!("{COOKIE}=x"), format!("{COOKIE}={b}")],
            expect: "k=b",
        },
        Case {
            name: "similar names do not count",
            lines: vec![format!("x{COOKIE}={a}; {COOKIE}x={a}; {COOKIE}={b}")],
            expect: "k=b",
        },
        Case {
            name: "names are case-sensitive",
            lines: vec![format!("__host-tessera={a}; {COOKIE}={b}")],
            expect: "k=b",
        },
    ];
    for case in cases {
        let mut req = Request::builder().uri("/whoami");
        for line in &case.lines {
            req = req.header(header::COOKIE, line);
        }
        let reply = h.send(req.body(Default::default()).unwrap()).await;
        assert!(reply.live(), "{}", case.name);
        assert!(
            reply.body.contains(case.expect),
            "{}: {}",
            case.name,
            reply.body
        );
    }
}

#[tokio::test]
async fn non_ascii_cookie_planted_beside_the_session_cookie_does_not_log_the_user_out() {
    // Another app on the same site (or an attacker on a sibling subdomain) can set a cookie
    // with non-ASCII bytes; browsers send it in the same Cookie header line.
    let h = Harness::web();
    let token = h.new_session("v").await;
    for planted in ["pref=caf\u{e9}", "x=\u{1f36a}"] {
        for line in [
            format!("{planted}; {COOKIE}={token}"),
            format!("{COOKIE}={token}; {planted}"),
        ] {
            let value = HeaderValue::from_bytes(line.as_bytes()).unwrap();
            assert!(h.whoami_raw(value).await.live(), "{line}");
        }
    }
    let latin1 = [
        b"pref=caf\xe9; ".as_slice(),
        format!("{COOKIE}={token}").as_bytes(),
    ]
    .concat();
    assert!(h
        .whoami_raw(HeaderValue::from_bytes(&latin1).unwrap())
        .await
        .live());
}

async fn assert_not_cacheable(reply: &harness::Reply, what: &str) {
    let vary: Vec<_> = reply.headers.get_all(header::VARY).iter().collect();
    assert!(
        vary.iter()
            .any(|v| v.to_str().unwrap().eq_ignore_ascii_case("cookie")),
        "{what}: Vary {vary:?}"
    );
    let cc: Vec<_> = reply
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(cc, [HeaderValue::from_static("no-store")], "{what}");
}

#[tokio::test]
async fn responses_that_set_or_clear_a_cookie_vary_on_cookie_and_are_not_stored() {
    let h = Harness::web();
    let reply = h.call("POST", "/write/v", None).await;
    assert_not_cacheable(&reply, "new session").await;
    let token = reply.token().unwrap();
    let login = h.call("POST", "/login/u", Some(&token)).await;
    assert_not_cacheable(&login, "login").await;
    let logout = h
        .call("POST", "/logout", Some(&login.token().unwrap()))
        .await;
    assert!(logout.clears_cookie());
    assert_not_cacheable(&logout, "logout").await;
}

#[tokio::test]
async fn handler_cache_headers_cannot_make_a_cookie_response_cacheable() {
    let extra = axum::Router::new().route(
        "/cached",
        post(|s: Session| async move {
            s.insert("k", 1).unwrap();
            (
                [
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                    (header::VARY, "Accept-Encoding"),
                ],
                "cached?",
            )
        }),
    );
    let h = Harness::with_routes(SessionConfig::web(key(1)), extra);
    let reply = h.call("POST", "/cached", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_not_cacheable(&reply, "handler asked for caching").await;
    let vary: Vec<_> = reply.headers.get_all(header::VARY).iter().collect();
    assert!(
        vary.contains(&&HeaderValue::from_static("Accept-Encoding")),
        "{vary:?}"
    );
}

#[tokio::test]
async fn header_transport_token_responses_are_not_stored() {
    let h = Harness::new(SessionConfig::web(key(1)).token_sources([
        axum_tessera::config::TokenSource::Header(axum_tessera::config::SESSION_TOKEN_HEADER),
    ]));
    let reply = h.call("POST", "/write/v", None).await;
    assert!(reply
        .headers
        .contains_key(axum_tessera::config::SESSION_TOKEN_HEADER));
    assert!(reply.set_cookie().is_none());
    let cc: Vec<_> = reply
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(cc, [HeaderValue::from_static("no-store")]);
}

#[tokio::test]
async fn custom_cookie_name_and_narrow_path_are_emitted_as_configured() {
    // Several applications on one host: each narrows its session cookie to its own path.
    let h = Harness::new(
        SessionConfig::web(key(1)).cookie(
            CookieConfig::new("__Secure-app")
                .path("/app")
                .same_site(SameSite::Strict),
        ),
    );
    let reply = h.call("POST", "/write/v", None).await;
    let c = reply.set_cookie().unwrap();
    assert_eq!(c.name(), "__Secure-app");
    assert_eq!(c.path(), Some("/app"));
    assert_eq!(c.same_site(), Some(SameSite::Strict));
    assert_eq!((c.secure(), c.http_only()), (Some(true), Some(true)));
}

#[tokio::test]
async fn packed_duplicates_are_capped_before_any_signature_work() {
    // A Cookie header packed with forged but well-formed tokens would otherwise cost one HMAC
    // each. The first 8 well-formed candidates are checked; malformed ones cost nothing and
    // do not count.
    let h = Harness::web();
    let valid = h.new_session("v").await;
    let other = h.with_config(SessionConfig::web(key(2)));
    let forged = other.new_session("forged").await;
    struct Case {
        name: &'static str,
        forged: usize,
        garbage: usize,
        live: bool,
    }
    let cases = [
        Case {
            name: "7 forged first",
            forged: 7,
            garbage: 0,
            live: true,
        },
        Case {
            name: "8 forged first",
            forged: 8,
            garbage: 0,
            live: false,
        },
        Case {
            name: "500 malformed first",
            forged: 0,
            garbage: 500,
            live: true,
        },
    ];
    for case in cases {
        let mut pairs = vec![format!("{COOKIE}={forged}"); case.forged];
        pairs.extend(vec![format!("{COOKIE}=v1.junk"); case.garbage]);
        pairs.push(format!("{COOKIE}={valid}"));
        let cookie = HeaderValue::from_str(&pairs.join("; ")).unwrap();
        assert_eq!(
            h.whoami_raw(cookie).await.live(),
            case.live,
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn responses_that_depend_on_the_session_vary_on_its_token_headers() {
    // A page rendered from the session must not be served by a shared cache to someone else,
    // even when no cookie is set.
    let h = Harness::web();
    let token = h.new_session("v").await;
    for (what, token) in [("live", Some(token.as_str())), ("anonymous", None)] {
        let reply = h.call("GET", "/whoami", token).await;
        assert!(reply.set_cookie().is_none(), "{what}");
        let vary: Vec<_> = reply.headers.get_all(header::VARY).iter().collect();
        assert_eq!(vary, [HeaderValue::from_static("Cookie")], "{what}");
    }
    let untouched = h.call("GET", "/untouched", None).await;
    assert!(
        untouched.headers.get(header::VARY).is_none(),
        "no session, no Vary"
    );

    let api = Harness::new(axum_tessera::SessionConfig::api(key(1)));
    let reply = api.call("GET", "/whoami", None).await;
    let vary: Vec<_> = reply.headers.get_all(header::VARY).iter().collect();
    assert_eq!(
        vary,
        [
            HeaderValue::from_static("Authorization"),
            HeaderValue::from_static("x-session-token")
        ],
        "{}",
        reply.status
    );
}
