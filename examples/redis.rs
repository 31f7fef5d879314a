//! Two instances of one service sharing sessions through Redis: log in on one, be known on
//! the other. This is how a service grows from one server to a fleet.
//!
//! ```text
//! redis-server --port 6379 &
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example redis --features redis
//!
//! T=$(curl -s -X POST 'http://127.0.0.1:3000/login?user=alice')
//! curl -H "Authorization: Bearer $T" http://127.0.0.1:3001/me       # alice, from the other instance
//! curl -H "Authorization: Bearer $T" -X POST http://127.0.0.1:3001/visit
//! curl -H "Authorization: Bearer $T" -X POST http://127.0.0.1:3000/visit   # counts on, atomically
//! curl -H "Authorization: Bearer $T" http://127.0.0.1:3000/sessions
//! ```
//!
//! Every instance must use the same secret (`TESSERA_SECRET`, at least 32 bytes) and the same
//! store prefix; this example falls back to a fixed demo secret so it runs as is.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::{get, post};
use axum::Router;
use axum_tessera::store::{LimitPolicy, RedisStore};
use axum_tessera::{Key, Principal, Session, SessionConfig, SessionLayer};

async fn login(session: Session, Query(q): Query<HashMap<String, String>>) -> String {
    // A real service checks a password here.
    let user = q.get("user").map_or("alice", String::as_str);
    session.login(Principal::user(user));
    session.token()
}

async fn me(session: Session) -> String {
    match session.principal() {
        Some(p) => format!("{}\n", p.id()),
        None => "anonymous\n".into(),
    }
}

async fn visit(session: Session) -> String {
    // Applied by Redis itself (one script, HINCRBY): concurrent visits through both
    // instances all count, where get + insert would let one overwrite the other.
    match session.increment("visits", 1).await {
        Ok(n) => format!("visit {n}\n"),
        Err(err) => format!("store error: {err}\n"),
    }
}

async fn sessions(session: Session) -> String {
    match session.sessions_of_principal().await {
        Ok(list) => list
            .iter()
            .map(|s| format!("{} last seen {}\n", s.key().short(), s.last_seen()))
            .collect(),
        Err(err) => format!("store error: {err}\n"),
    }
}

async fn logout(session: Session) -> &'static str {
    session.logout();
    "bye\n"
}

fn app(name: &'static str, key: Key, store: RedisStore) -> Router {
    let config = SessionConfig::api(key);
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/visit", post(visit))
        .route("/sessions", get(sessions))
        .route(
            "/",
            get(move || async move { format!("instance {name}\n") }),
        )
        .layer(SessionLayer::new(config).with_store(store))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = Key::from_env("TESSERA_SECRET").unwrap_or_else(|_| {
        eprintln!("TESSERA_SECRET unset: using the demo secret, never do this in production");
        Key::from_bytes(b"demo secret: replace me, 32 bytes at least").expect("long enough")
    });

    let mut servers = Vec::new();
    for (name, port) in [("A", 3000), ("B", 3001)] {
        // Each instance has its own connection, as separate processes would.
        let store = RedisStore::connect(&url)
            .await?
            .prefix("example:")
            .command_timeout(Duration::from_secs(1))
            .max_sessions_per_principal(5, LimitPolicy::EvictOldest);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("instance {name} on http://127.0.0.1:{port}, sessions in {url}");
        let app = app(name, key.clone(), store);
        servers.push(tokio::spawn(
            async move { axum::serve(listener, app).await },
        ));
    }
    for server in servers {
        server.await??;
    }
    Ok(())
}
