//! `cargo run --example demo`: the axum-tessera demo on http://127.0.0.1:3000 (or `DEMO_ADDR`).
//!
//! `DEMO_STORE` picks the store: unset or `memory` (the embedded MemoryStore),
//! `redis://host:port` (`--features redis`), `sqlite://<path>` (`--features sqlite`; the
//! file is created when missing) or `postgres://...` (`--features postgres`).
//!
//! Uses `SessionConfig::insecure_local_development()` (cookie
//! `tessera` without `Secure`) so it works over http on localhost, and only there: requests
//! for any other host are refused. Set `TESSERA_SECRET` (32+ bytes, raw or
//! base64) so tokens stay valid across restarts (and, with a persistent `DEMO_STORE`, the
//! sessions too; in memory they end with the process); otherwise a random key is generated.
//! Ctrl-C or SIGTERM shuts down gracefully: requests in flight and their commits finish
//! first, and live sockets close with 1001 (going away).

mod app;
mod store_from_url;

use axum_tessera::store::MemoryStore;

/// How often a store drops expired sessions.
const SWEEP: std::time::Duration = std::time::Duration::from_secs(60);
use axum_tessera::Key;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,axum_tessera=debug".into()),
        )
        .init();

    let key = match std::env::var_os("TESSERA_SECRET") {
        Some(_) => Key::from_env("TESSERA_SECRET")?,
        None => {
            println!("TESSERA_SECRET not set: using a random key (sessions end with the process)");
            Key::generate()
        }
    };
    let (web, api) = app::dev_configs(key);
    println!(
        "insecure local development: cookie `tessera`, Secure OFF, loopback hosts only \
         (open http://localhost:3000, not the machine's LAN address); idle {} s (DEMO_IDLE_SECS), \
         absolute 12 h",
        app::idle_timeout().as_secs()
    );
    println!("production drops insecure_local_development(): `__Host-tessera`, Secure");
    let (web, api) = match std::env::var("DEMO_STORE").as_deref() {
        Err(_) | Ok("") | Ok("memory") => {
            let store = MemoryStore::new();
            let _sweeper = store.spawn_sweeper(SWEEP);
            app::layers(web, api, store)
        }
        Ok(url) => store_from_url::layers(url, web, api).await?,
    };

    let addr = std::env::var("DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("demo listening on http://{}", listener.local_addr()?);
    println!("users: alice/alice (no scopes), admin/admin (scope `admin`)");
    let app = app::routes(web.clone(), api.clone());
    // Ctrl-C or SIGTERM: stop accepting, let requests in flight finish, then wait for the
    // commits of clients that went away mid-request, so no acknowledged write is lost.
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    web.drain().await;
    api.drain().await;
    println!("demo stopped: every commit finished");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    // WebSockets first: the graceful shutdown does not wait for upgraded connections.
    app::close_live_sockets().await;
}
