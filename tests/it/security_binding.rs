//! Optional client binding: a stolen cookie replayed from another user agent or address is
//! anonymous, and `X-Forwarded-For` counts only through configured trusted proxies.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request};
use axum_tessera::config::IpNet;
use axum_tessera::{EventKind, SessionConfig};

use crate::support::harness::{key, Harness, Reply, COOKIE};
use crate::support::LogCapture;

struct Req<'a> {
    path: &'a str,
    method: &'a str,
    token: Option<&'a str>,
    user_agent: Option<&'a str>,
    peer: Option<&'a str>,
    forwarded_for: &'a [&'a str],
}

impl Default for Req<'_> {
    fn default() -> Self {
        Self {
            path: "/whoami",
            method: "GET",
            token: None,
            user_agent: Some("Firefox/140"),
            peer: Some("203.0.113.5"),
            forwarded_for: &[],
        }
    }
}

async fn send(h: &Harness, r: Req<'_>) -> Reply {
    let mut req = Request::builder().method(r.method).uri(r.path);
    if let Some(t) = r.token {
        req = req.header(header::COOKIE, format!("{COOKIE}={t}"));
    }
    if let Some(ua) = r.user_agent {
        req = req.header(header::USER_AGENT, ua);
    }
    for xff in r.forwarded_for {
        req = req.header("x-forwarded-for", *xff);
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(peer) = r.peer {
        let addr = SocketAddr::new(peer.parse().unwrap(), 40000);
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    h.send(req).await
}

/// Creates a session (`k=v`) with the request shape `r` and returns its token.
async fn create(h: &Harness, r: Req<'_>) -> String {
    let reply = send(
        h,
        Req {
            path: "/write/v",
            method: "POST",
            ..r
        },
    )
    .await;
    reply.token().expect("a new session")
}

#[tokio::test]
async fn binding_is_off_by_default() {
    let h = Harness::web();
    let token = create(&h, Req::default()).await;
    let moved = send(
        &h,
        Req {
            token: Some(&token),
            user_agent: Some("curl/8"),
            peer: Some("198.51.100.99"),
            ..Req::default()
        },
    )
    .await;
    assert!(moved.live());
}

#[tokio::test]
async fn stolen_cookie_replayed_with_another_user_agent_is_anonymous() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let h = Harness::new(
        SessionConfig::web(key(1))
            .bind_user_agent(true)
            .on_event(move |e| seen.lock().unwrap().push(e.clone())),
    );
    let token = create(&h, Req::default()).await;
    let captured = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let c = captured.clone();
            move || c.clone()
        })
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for ua in [Some("curl/8"), Some("Firefox/141"), Some(""), None] {
        let reply = send(
            &h,
            Req {
                token: Some(&token),
                user_agent: ua,
                ..Req::default()
            },
        )
        .await;
        assert!(!reply.live(), "{ua:?}");
        assert!(reply.body.contains("k=-"), "{ua:?}: no data leaks");
    }
    let log = captured.text();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("session binding mismatch"), "{log}");
    assert!(!log.contains(&token[3..46]), "the token is never logged");
    let mismatches: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| *e.kind() == EventKind::BindingMismatch)
        .map(|e| e.session_hash().map(str::len))
        .collect();
    assert_eq!(
        mismatches,
        [Some(8); 4],
        "one event per replay, naming a short hash"
    );

    // The owner is unaffected.
    let owner = send(
        &h,
        Req {
            token: Some(&token),
            ..Req::default()
        },
    )
    .await;
    assert!(owner.live());
}

#[tokio::test]
async fn stolen_cookie_replayed_from_another_address_is_anonymous() {
    let h = Harness::new(SessionConfig::web(key(1)).bind_client_ip(true));
    let token = create(&h, Req::default()).await;
    let thief = send(
        &h,
        Req {
            token: Some(&token),
            peer: Some("198.51.100.99"),
            ..Req::default()
        },
    )
    .await;
    assert!(!thief.live());
    let owner = send(
        &h,
        Req {
            token: Some(&token),
            ..Req::default()
        },
    )
    .await;
    assert!(owner.live());
    // Logging in from the bound address keeps working and keeps the binding.
    let login = send(
        &h,
        Req {
            path: "/login/u",
            method: "POST",
            token: Some(&token),
            ..Req::default()
        },
    )
    .await;
    let after = login.token().unwrap();
    let thief = send(
        &h,
        Req {
            token: Some(&after),
            peer: Some("198.51.100.99"),
            ..Req::default()
        },
    )
    .await;
    assert!(!thief.live());
}

#[tokio::test]
async fn ip_binding_without_connection_info_refuses_sessions() {
    // Fail closed: a server that forgot `into_make_service_with_connect_info` must not
    // silently accept every session.
    let h = Harness::new(SessionConfig::web(key(1)).bind_client_ip(true));
    let token = create(
        &h,
        Req {
            peer: None,
            ..Req::default()
        },
    )
    .await;
    let reply = send(
        &h,
        Req {
            token: Some(&token),
            peer: None,
            ..Req::default()
        },
    )
    .await;
    assert!(!reply.live());
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let h = Harness::new(SessionConfig::web(key(1)).bind_client_ip(true));
    let token = create(
        &h,
        Req {
            peer: Some("203.0.113.5"),
            ..Req::default()
        },
    )
    .await;
    for xff in [
        &["203.0.113.5"][..],
        &["203.0.113.5", "203.0.113.5"],
        &["1.1.1.1, 203.0.113.5"],
    ] {
        let thief = send(
            &h,
            Req {
                token: Some(&token),
                peer: Some("198.51.100.99"),
                forwarded_for: xff,
                ..Req::default()
            },
        )
        .await;
        assert!(!thief.live(), "{xff:?}");
    }
}

#[tokio::test]
async fn spoofed_forwarded_for_behind_a_trusted_proxy_is_ignored() {
    let proxies: [IpNet; 1] = ["10.0.0.0/8".parse().unwrap()];
    let h = Harness::new(
        SessionConfig::web(key(1))
            .bind_client_ip(true)
            .trusted_proxies(proxies),
    );
    let via_proxy = |xff| Req {
        peer: Some("10.0.0.1"),
        forwarded_for: xff,
        ..Req::default()
    };
    let token = create(&h, via_proxy(&["203.0.113.5"])).await;
    // The owner again, through another proxy of the fleet.
    let owner = send(
        &h,
        Req {
            token: Some(&token),
            peer: Some("10.9.9.9"),
            forwarded_for: &["203.0.113.5"],
            ..Req::default()
        },
    )
    .await;
    assert!(owner.live());
    // The thief claims the owner's address; the proxy appends the thief's real one.
    let thief = send(
        &h,
        Req {
            token: Some(&token),
            ..via_proxy(&["203.0.113.5, 198.51.100.99"])
        },
    )
    .await;
    assert!(!thief.live());
    // The thief bypasses the proxy and sends the header directly.
    let direct = send(
        &h,
        Req {
            token: Some(&token),
            peer: Some("198.51.100.99"),
            forwarded_for: &["203.0.113.5"],
            ..Req::default()
        },
    )
    .await;
    assert!(!direct.live());
}
