//! [`SessionLayer`]: validates the configuration once and prepares the shared state every
//! request uses.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::config::SessionConfig;
use crate::error::ConfigError;
use crate::event::Stats;
use crate::service::SessionService;
use crate::state::LayerState;
use crate::store::SessionStore;

/// Applies [`SessionService`] to a service: recognises the client, hands its session to
/// extractors, commits the changes after the response.
///
/// Defaults to a [`MemoryStore`](crate::store::MemoryStore), shared by every layer of the
/// process whose key signs with the same key (on the system clock), so a cookie layer for
/// pages and an API layer built from one key see the same sessions without wiring; a layer
/// given its own clock (tests) gets a store of its own. Use [`SessionLayer::with_store`] for
/// another store, and a persistent one (`RedisStore`) for sessions that survive a restart.
///
/// # Example
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_tessera::{Key, Session, SessionConfig, SessionLayer};
///
/// async fn visits(session: Session) -> String {
///     let n: u64 = session.get("visits").unwrap_or(0) + 1;
///     session.insert("visits", n).expect("a u64 serialises");
///     format!("visit {n}")
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(visits))
///     .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
/// ```
#[derive(Clone)]
#[must_use]
pub struct SessionLayer {
    state: Arc<LayerState>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("sources", &self.state.sources())
            .field("cookie", &self.state.cookie())
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Builds the layer from `config`.
    ///
    /// # Panics
    ///
    /// When [`SessionConfig::validate`] fails, with its message. Call this at start-up, or use
    /// [`SessionLayer::try_new`] to handle the error.
    pub fn new(config: SessionConfig) -> Self {
        match Self::try_new(config) {
            Ok(layer) => layer,
            Err(err) => panic!("invalid SessionConfig: {err}"),
        }
    }

    /// Builds the layer from `config`.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] from [`SessionConfig::validate`].
    pub fn try_new(config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        if config.insecure_local_development {
            tracing::warn!(
                "SessionLayer in insecure local-development mode: cookie without Secure, \
                 plain-http loopback origins allowed, loopback hosts only; remove \
                 SessionConfig::insecure_local_development() in production"
            );
        }
        Ok(Self {
            state: Arc::new(LayerState::new(config)),
        })
    }

    /// Counters since the layer was built: sessions created, rotated, expired, tokens
    /// rejected by reason, store errors... Lock-free; cheap enough to scrape often. Clones of
    /// the layer share them.
    pub fn stats(&self) -> Stats {
        self.state
            .events()
            .snapshot(self.state.store().session_count())
    }

    /// Waits until every commit that has started has finished, including those of clients
    /// that went away before their response (a commit runs to the end on its own task
    /// then). Call it after the server stops accepting requests, so a graceful shutdown
    /// loses no acknowledged write:
    ///
    /// ```no_run
    /// # use axum::{routing::get, Router};
    /// # use axum_tessera::{Key, SessionConfig, SessionLayer};
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let layer = SessionLayer::new(SessionConfig::web(Key::generate()));
    /// let app = Router::new().route("/", get(|| async { "hi" })).layer(layer.clone());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app)
    ///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
    ///     .await?;
    /// layer.drain().await; // in-flight commits are done: now exit
    /// # Ok(()) }
    /// ```
    pub async fn drain(&self) {
        self.state.in_flight().idle().await;
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn state(&self) -> &LayerState {
        &self.state
    }

    #[cfg(feature = "test-util")]
    pub(crate) fn state_arc(&self) -> Arc<LayerState> {
        self.state.clone()
    }

    /// Keeps sessions in `store` instead of the default [`MemoryStore`](crate::store::MemoryStore).
    pub fn with_store(self, store: impl SessionStore) -> Self {
        Self {
            state: Arc::new(self.state.with_store(store)),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.state.clone())
    }
}
