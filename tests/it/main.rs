//! The integration tests, in one binary: every module drives the crate through its public API
//! (mostly a `Router` under `oneshot`), sharing the helpers in `support`. The Redis and PostgreSQL
//! modules start their own servers; the SQLite module uses temporary database files.

mod support;

mod browser_api;
mod csrf;
mod events;
mod first_hour;
mod guards;
mod live;
#[cfg(all(feature = "postgres", feature = "test-util"))]
mod live_postgres;
#[cfg(all(feature = "redis", feature = "test-util"))]
mod live_redis;
mod memory_store_bounds;
#[cfg(all(feature = "redis", feature = "test-util"))]
mod redis_faults;
mod reliability;
mod security_binding;
mod security_cookies;
mod security_csrf;
mod security_ids;
mod security_lifecycle;
mod security_time;
mod security_tokens;
mod session_http;
mod set_cookie;
#[cfg(feature = "test-util")]
mod store_memory;
#[cfg(all(feature = "postgres", feature = "test-util"))]
mod store_postgres;
#[cfg(all(feature = "redis", feature = "test-util"))]
mod store_redis;
#[cfg(all(feature = "redis", feature = "test-util"))]
mod store_redis_cluster;
#[cfg(all(feature = "sqlite", feature = "test-util"))]
mod store_sqlite;
mod token_props;
mod upgrade;
