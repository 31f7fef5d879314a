//! [`LayerState`]: what a [`SessionLayer`](crate::SessionLayer) derives from its configuration
//! once, shared by the service, the session handles, the extractors and the guards.

use std::sync::Arc;

use crate::binding::Binding;
use crate::clock::{default_clock, Clock};
use crate::commit::InFlight;
use crate::config::{CookieConfig, SessionConfig, TokenSource};
use crate::csrf::CsrfKeys;
use crate::event::Events;
use crate::live::Registry;
use crate::origin::Origin;
use crate::rejection::{Renderer, Scheme};
use crate::store::{LayerStore, MemoryStore, SessionStore};
use crate::token::TokenCodec;
use crate::transport::Transport;

/// Everything derived from a [`SessionConfig`] at start-up and shared by all requests.
///
/// Fields are private: readers go through the methods, so what a derived value means is
/// said in one place.
#[derive(Clone)]
pub(crate) struct LayerState {
    store: LayerStore,
    /// The store is the default MemoryStore, built on this layer's clock: it may be handed
    /// the request's time instead of reading the clock again.
    store_on_layer_clock: bool,
    clock: Arc<dyn Clock>,
    sources: Vec<TokenSource>,
    cookie: CookieConfig,
    /// `cookie`'s attributes rendered once (see [`cookie_attributes`]).
    cookie_attributes: String,
    cookie_codec: TokenCodec,
    header_codec: TokenCodec,
    csrf: CsrfKeys,
    timeouts: Timeouts,
    skew: i64,
    require_existing: bool,
    require_consent: bool,
    default_transport: Transport,
    binding: Binding,
    events: Events,
    /// Configured CSRF origins; empty means "the request's own origin".
    trusted_origins: Vec<Origin>,
    /// Commits running on their own task; shared by clones of the layer.
    in_flight: Arc<InFlight>,
    /// The application's rendering of rejections, if any.
    render: Option<Renderer>,
    /// The `WWW-Authenticate` scheme of this layer's 401s.
    scheme: Scheme,
    /// [`SessionConfig::insecure_local_development`]: loopback hosts only, plain http.
    local_development: bool,
    /// The open live handles: the store's own registry when it notifies, else one of this
    /// layer's, which only expiry ends.
    live: Arc<Registry>,
}

/// The expiry rules in whole seconds: what the commit decision needs of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) idle: i64,
    pub(crate) absolute: i64,
    /// Seconds since `last_seen` after which a read writes a sliding refresh.
    pub(crate) refresh_after: i64,
}

impl Timeouts {
    /// The earlier of the idle and the absolute deadline.
    pub(crate) fn expires_at(&self, created: i64, last_seen: i64) -> i64 {
        last_seen
            .saturating_add(self.idle)
            .min(created.saturating_add(self.absolute))
    }
}

impl LayerState {
    /// Derives the state from a configuration that [`SessionConfig::validate`] accepted. The
    /// store is a [`MemoryStore`] on the configuration's clock.
    pub(crate) fn new(config: SessionConfig) -> Self {
        let store = if Arc::ptr_eq(&config.clock, &default_clock()) {
            MemoryStore::shared_default(config.keys.fingerprint())
        } else {
            MemoryStore::new().with_clock(ClockRef(config.clock.clone()))
        };
        let default_transport = match config.sources.first() {
            Some(TokenSource::Cookie) => Transport::Cookie,
            _ => Transport::Header,
        };
        // RFC 6750's challenge as soon as a bearer or header token is read: that is what an
        // API client on this layer sends.
        let scheme = if config.sources.iter().all(TokenSource::is_ambient) {
            Scheme::Cookie
        } else {
            Scheme::Bearer
        };
        let cookie = config.cookie_in_effect();
        Self {
            scheme,
            local_development: config.insecure_local_development,
            render: config.render.clone(),
            binding: Binding::new(&config),
            store: LayerStore::Memory(store.clone()),
            store_on_layer_clock: true,
            clock: config.clock.clone(),
            cookie_codec: TokenCodec::new(
                &config.keys,
                &format!("cookie:{}", cookie.cookie_name()),
            ),
            header_codec: TokenCodec::new(&config.keys, "header"),
            csrf: CsrfKeys::new(&config.keys),
            sources: config.sources,
            cookie_attributes: cookie_attributes(&cookie),
            cookie,
            timeouts: Timeouts {
                idle: whole_seconds(config.idle),
                absolute: whole_seconds(config.absolute),
                refresh_after: (config.idle.as_secs_f64() * config.refresh_fraction) as i64,
            },
            skew: whole_seconds(config.skew),
            require_existing: config.require_existing,
            require_consent: config.require_consent,
            default_transport,
            events: config.events,
            // `validate` has checked every origin parses.
            trusted_origins: config
                .trusted_origins
                .iter()
                .filter_map(|o| Origin::parse(o))
                .collect(),
            in_flight: Arc::default(),
            live: store.live_registry().clone(),
        }
    }

    /// The same state on another store.
    pub(crate) fn with_store(&self, store: impl SessionStore) -> Self {
        let store = LayerStore::new(store);
        let live = store.live_registry().unwrap_or_default();
        Self {
            store,
            live,
            store_on_layer_clock: false,
            ..self.clone()
        }
    }

    pub(crate) fn store(&self) -> &LayerStore {
        &self.store
    }

    /// The time to hand the store with a call made at `now`: `Some(now)` when the store runs
    /// on this layer's clock (saving it a clock read), `None` when it reads its own.
    pub(crate) fn store_time(&self, now: i64) -> Option<i64> {
        self.store_on_layer_clock.then_some(now)
    }

    /// The current time on the layer's clock (Unix seconds).
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The layer's clock, for live handles' deadlines.
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Where live handles of this layer's sessions register.
    pub(crate) fn live_registry(&self) -> &Arc<Registry> {
        &self.live
    }

    /// Where tokens are looked for, in order.
    pub(crate) fn sources(&self) -> &[TokenSource] {
        &self.sources
    }

    pub(crate) fn cookie(&self) -> &CookieConfig {
        &self.cookie
    }

    /// The fixed part of every `Set-Cookie` after `name=value`.
    pub(crate) fn cookie_attributes(&self) -> &str {
        &self.cookie_attributes
    }

    /// The codec of the tokens that travel by `transport`.
    pub(crate) fn codec(&self, transport: Transport) -> &TokenCodec {
        match transport {
            Transport::Cookie => &self.cookie_codec,
            Transport::Header => &self.header_codec,
        }
    }

    pub(crate) fn csrf(&self) -> &CsrfKeys {
        &self.csrf
    }

    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// How far in the future a token's issue time may be (clock skew between instances).
    pub(crate) fn skew(&self) -> i64 {
        self.skew
    }

    pub(crate) fn require_existing(&self) -> bool {
        self.require_existing
    }

    /// Consent mode: no cookie for an anonymous visitor before consent.
    pub(crate) fn require_consent(&self) -> bool {
        self.require_consent
    }

    /// How a session that arrived without a token sends its new one.
    pub(crate) fn default_transport(&self) -> Transport {
        self.default_transport
    }

    pub(crate) fn binding(&self) -> &Binding {
        &self.binding
    }

    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    pub(crate) fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }

    /// How the application renders rejections, if it said.
    pub(crate) fn renderer(&self) -> Option<&Renderer> {
        self.render.as_ref()
    }

    /// The `WWW-Authenticate` scheme of this layer's 401s.
    pub(crate) fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether the layer runs in insecure local-development mode (loopback hosts only; the
    /// CSRF checks also accept plain-http loopback origins).
    pub(crate) fn local_development(&self) -> bool {
        self.local_development
    }

    /// Origins the CSRF checks accept besides the request's own; empty means only its own.
    pub(crate) fn trusted_origins(&self) -> &[Origin] {
        &self.trusted_origins
    }
}

/// `d` in whole seconds, saturating: a `Duration` can hold more seconds than an `i64`, and
/// "longer than the clock can count" means "never" either way.
fn whole_seconds(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The attributes every session cookie carries (`; HttpOnly; SameSite=Lax; Path=/`...),
/// rendered once by the `cookie` crate when the layer is built: only the value and
/// `Max-Age` change per response.
pub(crate) fn cookie_attributes(cfg: &CookieConfig) -> String {
    let mut builder = cookie::Cookie::build((cfg.cookie_name(), ""))
        .path(cfg.path_value())
        .secure(cfg.is_secure())
        .http_only(cfg.is_http_only())
        .same_site(cfg.same_site_value());
    if let Some(domain) = cfg.domain_value() {
        builder = builder.domain(domain);
    }
    let rendered = builder.build().to_string();
    // `name=` comes first; the cookie crate writes `Max-Age` after every attribute set here.
    rendered[cfg.cookie_name().len() + 1..].to_owned()
}

/// Lets the default store share the configuration's clock.
struct ClockRef(Arc<dyn Clock>);

impl Clock for ClockRef {
    fn now(&self) -> i64 {
        self.0.now()
    }
}
