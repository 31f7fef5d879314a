//! [`SessionLayer`]: validates the configuration once and prepares the shared state every
//! request uses.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::binding::Binding;
use crate::clock::Clock;
use crate::config::{CookieConfig, SessionConfig, TokenSource};
use crate::csrf::CsrfKeys;
use crate::error::ConfigError;
use crate::event::{Events, Stats};
use crate::origin::Origin;
use crate::service::SessionService;
use crate::store::{LayerStore, MemoryStore, SessionStore};
use crate::token::TokenCodec;
use crate::transport;

/// How new tokens leave the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Cookie,
    Header,
}

/// Everything derived from a [`SessionConfig`] at start-up and shared by all requests.
#[derive(Clone)]
pub(crate) struct LayerState {
    pub(crate) store: LayerStore,
    /// The store is the default MemoryStore, built on this layer's clock: it may be handed
    /// the request's time instead of reading the clock again.
    pub(crate) store_on_layer_clock: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sources: Vec<TokenSource>,
    pub(crate) cookie: CookieConfig,
    /// `cookie`'s attributes rendered once (`transport::cookie_attributes`).
    pub(crate) cookie_attributes: String,
    pub(crate) cookie_codec: TokenCodec,
    pub(crate) header_codec: TokenCodec,
    pub(crate) csrf: CsrfKeys,
    pub(crate) idle: i64,
    pub(crate) absolute: i64,
    pub(crate) refresh_after: i64,
    pub(crate) skew: i64,
    pub(crate) require_existing: bool,
    pub(crate) default_transport: Transport,
    pub(crate) binding: Binding,
    pub(crate) events: Events,
    /// Configured CSRF origins; empty means "the request's own origin".
    pub(crate) trusted_origins: Vec<Origin>,
}

impl LayerState {
    pub(crate) fn codec(&self, transport: Transport) -> &TokenCodec {
        match transport {
            Transport::Cookie => &self.cookie_codec,
            Transport::Header => &self.header_codec,
        }
    }

    /// The earlier of the idle and the absolute deadline.
    pub(crate) fn expires_at(&self, created: i64, last_seen: i64) -> i64 {
        last_seen
            .saturating_add(self.idle)
            .min(created.saturating_add(self.absolute))
    }
}

/// Applies [`SessionService`] to a service: recognises the client, hands its session to
/// extractors, commits the changes after the response.
///
/// Defaults to a [`MemoryStore`] on the configuration's clock; use
/// [`SessionLayer::with_store`] for another store.
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
            .field("sources", &self.state.sources)
            .field("cookie", &self.state.cookie)
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
        let store = MemoryStore::new().with_clock(ClockRef(config.clock.clone()));
        let default_transport = match config.sources.first() {
            Some(TokenSource::Cookie) => Transport::Cookie,
            _ => Transport::Header,
        };
        let state = LayerState {
            binding: Binding::new(&config),
            store: LayerStore::Memory(store),
            store_on_layer_clock: true,
            clock: config.clock.clone(),
            cookie_codec: TokenCodec::new(
                &config.keys,
                &format!("cookie:{}", config.cookie.cookie_name()),
            ),
            header_codec: TokenCodec::new(&config.keys, "header"),
            csrf: CsrfKeys::new(&config.keys),
            sources: config.sources,
            cookie_attributes: transport::cookie_attributes(&config.cookie),
            cookie: config.cookie,
            idle: config.idle.whole_seconds(),
            absolute: config.absolute.whole_seconds(),
            refresh_after: (config.idle.as_seconds_f64() * config.refresh_fraction) as i64,
            skew: config.skew.whole_seconds(),
            require_existing: config.require_existing,
            default_transport,
            events: config.events,
            // `validate` has checked every origin parses.
            trusted_origins: config
                .trusted_origins
                .iter()
                .filter_map(|o| Origin::parse(o))
                .collect(),
        };
        Ok(Self {
            state: Arc::new(state),
        })
    }

    /// Counters since the layer was built: sessions created, rotated, expired, tokens
    /// rejected by reason, store errors... Lock-free; cheap enough to scrape often. Clones of
    /// the layer share them.
    pub fn stats(&self) -> Stats {
        self.state.events.snapshot(self.state.store.session_count())
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> &LayerState {
        &self.state
    }

    /// Keeps sessions in `store` instead of the default [`MemoryStore`].
    pub fn with_store(self, store: impl SessionStore) -> Self {
        let mut state = (*self.state).clone();
        state.store = LayerStore::new(store);
        state.store_on_layer_clock = false;
        Self {
            state: Arc::new(state),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.state.clone())
    }
}

/// Lets the default store share the configuration's clock.
struct ClockRef(Arc<dyn Clock>);

impl Clock for ClockRef {
    fn now(&self) -> i64 {
        self.0.now()
    }
}
