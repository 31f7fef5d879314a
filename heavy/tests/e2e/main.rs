//! The end-to-end tests, in one binary: the demo on a real loopback server driven over HTTP
//! (`demo`) and in headless Chromium (`browser`, and `session_api` for the browser client),
//! and client-IP binding read from a real connection (`real_connection`). The `oneshot` tests of the root crate are its `tests/it`.

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
mod http;
mod live;
#[cfg(feature = "redis")]
mod live_redis;
mod real_connection;
mod return_to;
mod session_api;
