//! The end-to-end tests, in one binary: the demo on a real loopback server driven over HTTP
//! (`demo`), the demo as real processes on the SQL stores (`demo_sql`), in headless Chromium (`browser`, and `session_api` for the browser client),
//! its live sockets with a real WebSocket client (`live`, `live_fleet`) and in two Chromium
//! tabs (`live_browser`), the demo process's graceful shutdown (`live_shutdown`), and
//! client-IP binding read from a real connection (`real_connection`). The `oneshot` tests of
//! the root crate are its `tests/it`.

/// The demo's application, exactly as `cargo run --example demo` serves it.
#[path = "../../../examples/demo/app.rs"]
mod app;

/// The root crate's test helpers, shared rather than copied; these tests use a small part.
/// Its modules gated on the root crate's features (store tests) stay out: this crate has none.
#[allow(dead_code, unexpected_cfgs)]
#[path = "../../../tests/it/support/mod.rs"]
mod support;

mod browser;
mod demo;
mod demo_process;
mod demo_sql;
mod http;
mod live;
mod live_browser;
mod live_client;
mod live_fleet;
mod live_postgres;
#[cfg(feature = "redis")]
mod live_redis;
mod live_shutdown;
mod real_connection;
mod return_to;
mod session_api;
