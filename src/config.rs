//! Layer configuration: [`SessionConfig`] with its presets, [`CookieConfig`] and
//! [`TokenSource`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum_tessera::{Key, SessionConfig};
//!
//! let cfg = SessionConfig::web(Key::generate())
//!     .idle_timeout(Duration::from_secs(30 * 60))
//!     .absolute_timeout(Duration::from_secs(12 * 60 * 60));
//! assert!(cfg.validate().is_ok());
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cookie::SameSite;
use http::HeaderName;
/// Networks accepted by [`SessionConfig::trusted_proxies`].
pub use ipnet::IpNet;

use crate::clock::Clock;
use crate::error::{ConfigError, CookieConfigError, TimeoutConfigError};
use crate::event::{Events, SessionEvent};
use crate::key::KeyRing;
use crate::origin::Origin;
use crate::rejection::{RejectionInfo, Renderer};

/// Cookies larger than this are refused by browsers; a configuration that could produce one is
/// an error at start-up.
pub const MAX_COOKIE_BYTES: usize = 4096;

// `Duration::from_mins` / `from_hours` are newer than the crate's `rust-version`.
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(60 * 60);

/// Where the layer looks for a token, in the configured order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// The session cookie named in [`CookieConfig`].
    Cookie,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A custom request header (the api preset uses `X-Session-Token`).
    Header(HeaderName),
}

impl TokenSource {
    /// Whether a browser attaches this source by itself (only cookies): such requests need
    /// CSRF protection, the others do not.
    pub fn is_ambient(&self) -> bool {
        matches!(self, Self::Cookie)
    }
}

/// The header API clients read new tokens from and may send them back in.
pub const SESSION_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-session-token");

/// Attributes of the session cookie.
///
/// Defaults: name `__Host-tessera`, `Secure`, `HttpOnly`, `SameSite=Lax`, `Path=/`, no
/// `Domain`, persistent (`Max-Age` up to the absolute timeout). Settings the cookie rules
/// forbid (a `__Host-` cookie without `Secure`, with a `Domain` or another path;
/// `SameSite=None` without `Secure`) are a start-up error naming the fix.
///
/// ```
/// use axum_tessera::{CookieConfig, Key, SameSite, SessionConfig};
///
/// // An app under /shop that must share its session with a sibling subdomain:
/// let cookie = CookieConfig::new("shop_session")
///     .path("/shop")
///     .domain("example.com")
///     .same_site(SameSite::Strict);
/// let cfg = SessionConfig::web(Key::generate()).cookie(cookie);
/// assert!(cfg.validate().is_ok());
///
/// // `__Host-` needs Secure: the error says what to use for plain-http development.
/// let err = SessionConfig::web(Key::generate())
///     .cookie(CookieConfig::default().secure(false))
///     .validate()
///     .unwrap_err();
/// assert!(err.to_string().contains("insecure_local_development"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CookieConfig {
    name: String,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
    persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self::new("__Host-tessera")
    }
}

impl CookieConfig {
    /// Defaults as above under the name `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            persistent: true,
        }
    }

    /// Cookie name (default `__Host-tessera`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// `Secure` attribute (default on). Turn off only for plain-http development.
    #[must_use]
    pub fn secure(mut self, on: bool) -> Self {
        self.secure = on;
        self
    }

    /// `HttpOnly` attribute (default on).
    #[must_use]
    pub fn http_only(mut self, on: bool) -> Self {
        self.http_only = on;
        self
    }

    /// `SameSite` attribute (default `Lax`). `None` requires `Secure`.
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// `Path` attribute (default `/`).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// `Domain` attribute (default none: host-only, which is safer).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Persistent cookie with `Max-Age` (default on), or a browser-session cookie without it.
    #[must_use]
    pub fn persistent(mut self, on: bool) -> Self {
        self.persistent = on;
        self
    }

    /// The cookie name.
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_secure(&self) -> bool {
        self.secure
    }
    pub(crate) fn is_http_only(&self) -> bool {
        self.http_only
    }
    pub(crate) fn same_site_value(&self) -> SameSite {
        self.same_site
    }
    pub(crate) fn path_value(&self) -> &str {
        &self.path
    }
    pub(crate) fn domain_value(&self) -> Option<&str> {
        self.domain.as_deref()
    }
    pub(crate) fn is_persistent(&self) -> bool {
        self.persistent
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let valid_token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.name.is_empty() || !self.name.chars().all(valid_token_char) {
            return Err(ConfigError::Cookie(CookieConfigError::InvalidName));
        }
        if self.name.starts_with("__Host-") {
            if !self.secure {
                return Err(ConfigError::Cookie(
                    CookieConfigError::HostPrefixNeedsSecure,
                ));
            }
            if self.domain.is_some() {
                return Err(ConfigError::Cookie(CookieConfigError::HostPrefixWithDomain));
            }
            if self.path != "/" {
                return Err(ConfigError::Cookie(
                    CookieConfigError::HostPrefixNeedsRootPath,
                ));
            }
        }
        if self.name.starts_with("__Secure-") && !self.secure {
            return Err(ConfigError::Cookie(
                CookieConfigError::SecurePrefixNeedsSecure,
            ));
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::Cookie(
                CookieConfigError::SameSiteNoneNeedsSecure,
            ));
        }
        let attr_ok =
            |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic() && c != ';');
        if !attr_ok(&self.path) || !self.path.starts_with('/') {
            return Err(ConfigError::Cookie(CookieConfigError::InvalidPath));
        }
        if self.domain.as_deref().is_some_and(|d| !attr_ok(d)) {
            return Err(ConfigError::Cookie(CookieConfigError::InvalidDomain));
        }
        // name=value plus the longest attribute set we write.
        let longest = self.name.len()
            + crate::token::MAX_TOKEN_LEN
            + self.path.len()
            + self.domain.as_ref().map_or(0, String::len)
            + 96;
        if longest > MAX_COOKIE_BYTES {
            return Err(ConfigError::Cookie(CookieConfigError::TooLarge));
        }
        Ok(())
    }
}

/// Everything a [`SessionLayer`](crate::SessionLayer) needs to know.
///
/// Start from a preset and adjust with the builder methods:
///
/// | preset | token sources | cookie | idle / absolute | no token | invalid token |
/// |---|---|---|---|---|---|
/// | [`web`](Self::web) | cookie | `__Host-tessera`, persistent | 30 min / 12 h | anonymous session | anonymous session |
/// | [`api`](Self::api) | bearer, then `X-Session-Token` | none | 1 h / 24 h | anonymous session | 401 `invalid_token` |
/// | [`ephemeral`](Self::ephemeral) | cookie | browser-session (no `Max-Age`) | 15 min / 8 h | anonymous session | anonymous session |
///
/// "No token" and "invalid token" say what the [`Session`](crate::Session) extractor does.
/// Under every preset a handler taking `Session` can create a session (a login route), and
/// the routes that need a logged-in caller say so with a guard
/// ([`RequireScopes<(Authenticated,)>`](crate::RequireScopes), as an extractor or
/// route layer), which answers 401 with a `WWW-Authenticate` challenge. A bearer or header
/// token that does not authenticate (forged, expired, revoked, malformed) is refused by
/// `Session` too rather than silently replaced by a new session; a stale cookie is not,
/// so a browser recovers by itself.
///
/// # Example: a bearer-token API on one layer
///
/// ```
/// use axum::{routing::{get, post}, Json, Router};
/// use axum_tessera::{Authenticated, Key, Principal, RequireScopes, Session, SessionConfig,
///                    SessionLayer};
///
/// async fn login(session: Session) -> Json<serde_json::Value> {
///     // check the credentials first, then:
///     session.login(Principal::user("alice"));
///     Json(serde_json::json!({ "token": session.token() }))
/// }
///
/// async fn me(guard: RequireScopes<(Authenticated,)>) -> String {
///     guard.principal().id().to_owned()
/// }
///
/// async fn logout(_: RequireScopes<(Authenticated,)>, session: Session) {
///     session.logout();
/// }
///
/// let app: Router = Router::new()
///     .route("/login", post(login))
///     .route("/me", get(me))
///     .route("/logout", post(logout))
///     .layer(SessionLayer::new(SessionConfig::api(Key::generate())));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    pub(crate) keys: KeyRing,
    pub(crate) sources: Vec<TokenSource>,
    pub(crate) cookie: CookieConfig,
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
    pub(crate) refresh_fraction: f64,
    pub(crate) skew: Duration,
    pub(crate) require_existing: bool,
    pub(crate) trusted_origins: Vec<String>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) bind_user_agent: bool,
    pub(crate) bind_client_ip: bool,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) events: Events,
    pub(crate) render: Option<Renderer>,
    pub(crate) insecure_local_development: bool,
    pub(crate) require_consent: bool,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("keys", &self.keys)
            .field("sources", &self.sources)
            .field("cookie", &self.cookie)
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .field("refresh_fraction", &self.refresh_fraction)
            .field("skew", &self.skew)
            .field("require_existing", &self.require_existing)
            .field("bind_user_agent", &self.bind_user_agent)
            .field("bind_client_ip", &self.bind_client_ip)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("trusted_origins", &self.trusted_origins)
            .field("render_rejection", &self.render.is_some())
            .field(
                "insecure_local_development",
                &self.insecure_local_development,
            )
            .field("require_consent", &self.require_consent)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    fn base(keys: KeyRing) -> Self {
        Self {
            keys,
            sources: vec![TokenSource::Cookie],
            cookie: CookieConfig::default(),
            idle: MINUTE * 30,
            absolute: HOUR * 12,
            refresh_fraction: 0.25,
            skew: MINUTE,
            require_existing: false,
            trusted_origins: Vec::new(),
            clock: crate::clock::default_clock(),
            bind_user_agent: false,
            bind_client_ip: false,
            trusted_proxies: Vec::new(),
            events: Events::default(),
            render: None,
            insecure_local_development: false,
            require_consent: false,
        }
    }

    /// Browser sessions: a `__Host-tessera` cookie (Secure, HttpOnly, SameSite=Lax, Path=/),
    /// idle timeout 30 minutes, absolute timeout 12 hours; clients without a session get an
    /// anonymous one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum_tessera::{Key, SessionConfig};
    ///
    /// let cfg = SessionConfig::web(Key::from_env("TESSERA_SECRET").unwrap_or_else(|_| Key::generate()))
    ///     .idle_timeout(Duration::from_secs(15 * 60)) // shorter for a high-value site
    ///     .trusted_origins(["https://app.example.com"]); // behind a Host-rewriting proxy
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub fn web(keys: impl Into<KeyRing>) -> Self {
        Self::base(keys.into())
    }

    /// API clients: tokens in `Authorization: Bearer`, then `X-Session-Token`; new tokens are
    /// returned in the `X-Session-Token` response header; idle 1 hour, absolute 24 hours.
    ///
    /// A request without a token gets an anonymous session, so a login route on the same
    /// layer works; guard the other routes with
    /// [`RequireScopes<(Authenticated,)>`](crate::RequireScopes). A token that does not
    /// authenticate is a 401 `invalid_token` from [`Session`](crate::Session) and every guard.
    ///
    /// ```
    /// use axum_tessera::{Key, SessionConfig, SessionLayer};
    ///
    /// let layer = SessionLayer::new(SessionConfig::api(Key::generate()));
    /// # let _ = layer;
    /// ```
    pub fn api(keys: impl Into<KeyRing>) -> Self {
        Self {
            sources: vec![
                TokenSource::Bearer,
                TokenSource::Header(SESSION_TOKEN_HEADER),
            ],
            idle: HOUR,
            absolute: HOUR * 24,
            ..Self::base(keys.into())
        }
    }

    /// Short-lived browser sessions: like [`web`](Self::web) but the cookie dies with the
    /// browser (no `Max-Age`), idle 15 minutes, absolute 8 hours.
    ///
    /// ```
    /// use axum_tessera::{Key, SessionConfig, SessionLayer};
    ///
    /// // A kiosk: the session ends when the browser closes, or after 15 idle minutes.
    /// let layer = SessionLayer::new(SessionConfig::ephemeral(Key::generate()));
    /// # let _ = layer;
    /// ```
    pub fn ephemeral(keys: impl Into<KeyRing>) -> Self {
        Self {
            cookie: CookieConfig::default().persistent(false),
            idle: MINUTE * 15,
            absolute: HOUR * 8,
            ..Self::base(keys.into())
        }
    }

    /// Idle timeout: a session unused this long is dead (preset default). Kept in whole
    /// seconds; below one second is a configuration error.
    #[must_use]
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Absolute timeout since creation, never extended (preset default). Kept in whole
    /// seconds; below one second is a configuration error.
    #[must_use]
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.absolute = absolute;
        self
    }

    /// Fraction of the idle timeout that must pass before a read-only request writes a new
    /// last-seen time (default 0.25). `0.0` refreshes on every request.
    #[must_use]
    pub fn refresh_after(mut self, fraction: f64) -> Self {
        self.refresh_fraction = fraction;
        self
    }

    /// How far in the future a token's issue time may lie, for clock skew between servers
    /// (default 60 seconds; whole seconds).
    #[must_use]
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Cookie attributes (preset default).
    #[must_use]
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }

    /// Where to look for tokens, in order (preset default). The first source also decides how
    /// new tokens are sent: `Set-Cookie` for [`TokenSource::Cookie`], the `X-Session-Token`
    /// response header otherwise.
    #[must_use]
    pub fn token_sources(mut self, sources: impl IntoIterator<Item = TokenSource>) -> Self {
        self.sources = sources.into_iter().collect();
        self
    }

    /// Whether [`Session`](crate::Session) rejects every request without a valid, live
    /// session with 401 [`SessionRequired`](crate::rejection::SessionRequired) (default off, in every
    /// preset).
    ///
    /// On, no handler can create a session, so a login route needs a layer of its own. The
    /// usual shape is one layer with this off and a guard
    /// ([`RequireScopes<(Authenticated,)>`](crate::RequireScopes)) on the routes that need a
    /// logged-in caller.
    #[must_use]
    pub fn require_existing(mut self, on: bool) -> Self {
        self.require_existing = on;
        self
    }

    /// The origins (`scheme://host[:port]`) that cookie-authenticated unsafe requests may come
    /// from, checked by [`CsrfProtected`](crate::CsrfProtected) against the `Origin` header
    /// (default: none configured, which allows only the request's own origin, derived from its
    /// `Host` with `https` when the cookie is `Secure` and `http` otherwise).
    ///
    /// Once any origin is configured, only the configured ones are accepted: list the site's
    /// own public origin too, which is also the fix when a proxy rewrites `Host`. An origin
    /// listed here is also let through when `Sec-Fetch-Site` says `cross-site`, as Go's
    /// `CrossOriginProtection` does for its trusted origins; the CSRF token is still required.
    #[must_use]
    pub fn trusted_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.trusted_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The time source (default: system clock). Tests inject a [`ManualClock`](crate::clock::ManualClock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Ties each session to the `User-Agent` of the request that created it (default off).
    ///
    /// A request whose user agent differs is treated as anonymous and logged as a `warn`
    /// event; the session itself stays intact for its owner. The record keeps only a SHA-256
    /// of the header. Turning this on ends sessions created while it was off.
    ///
    /// # Security
    ///
    /// Defence in depth only: a thief who can steal the cookie can usually copy the user agent.
    #[must_use]
    pub fn bind_user_agent(mut self, on: bool) -> Self {
        self.bind_user_agent = on;
        self
    }

    /// Ties each session to the client IP of the request that created it (default off).
    ///
    /// A request from another IP is treated as anonymous and logged as a `warn` event. The
    /// client IP is the connection's peer address, from axum's
    /// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo): serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`. Without it the client IP is
    /// unknown and every session is refused. `X-Forwarded-For` counts only through
    /// [`trusted_proxies`](Self::trusted_proxies).
    ///
    /// # Security
    ///
    /// Clients that legitimately change address (mobile networks, dual-stack, some corporate
    /// proxies) lose their session; weigh that before turning it on.
    #[must_use]
    pub fn bind_client_ip(mut self, on: bool) -> Self {
        self.bind_client_ip = on;
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` entries are believed (default none).
    ///
    /// Accepts addresses and networks (`IpAddr`, `IpNet`). The client IP is found by walking
    /// `X-Forwarded-For` from the right, starting at the connection's peer, for as long as the
    /// current hop is trusted; the first untrusted hop is the client. Entries to its left are
    /// client-supplied and ignored, so a spoofed header changes nothing.
    ///
    /// # Example
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use axum_tessera::config::IpNet;
    /// use axum_tessera::{Key, SessionConfig};
    ///
    /// let cfg = SessionConfig::web(Key::generate())
    ///     .bind_client_ip(true)
    ///     .trusted_proxies([
    ///         "10.0.0.0/8".parse::<IpNet>().unwrap(),
    ///         IpAddr::V4(Ipv4Addr::LOCALHOST).into(),
    ///     ]);
    /// assert!(cfg.validate().is_ok());
    /// ```
    #[must_use]
    pub fn trusted_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<IpNet>,
    {
        self.trusted_proxies = proxies.into_iter().map(Into::into).collect();
        self
    }

    /// Consent mode (default off): no session cookie is set for an anonymous visitor, and
    /// nothing of theirs is stored, until the application records their consent with
    /// [`Session::record_consent`](crate::Session::record_consent). What an anonymous
    /// visitor writes before that lasts only for its request.
    ///
    /// A login always sets its cookie: a signed-in session is strictly necessary for the
    /// service the user asked for. Sessions already stored (logged in, or consented) are
    /// unaffected.
    ///
    /// # Security
    ///
    /// Before consent there is no session to bind a CSRF token to, so
    /// [`CsrfProtected`](crate::CsrfProtected) checks an unsafe request that arrives without
    /// a session token (the login form, the consent button) by its origin alone, and
    /// requires proof of it: `Sec-Fetch-Site: same-origin` (or `none`) or an allowed
    /// `Origin`. A request with neither header is refused there, since its token could not
    /// be checked. Every browser of the last years sends both on a form post.
    ///
    /// # Example
    ///
    /// ```
    /// use axum_tessera::{Key, SessionConfig};
    ///
    /// let cfg = SessionConfig::web(Key::generate()).require_consent(true);
    /// assert!(cfg.validate().is_ok());
    /// ```
    #[must_use]
    pub fn require_consent(mut self, on: bool) -> Self {
        self.require_consent = on;
        self
    }

    /// Calls `hook` for every [`SessionEvent`]; may be called several times to add hooks.
    /// Hooks run inline on the request path, so keep them cheap (send to a channel for slow
    /// work). A hook that panics is caught and logged; the request is unaffected.
    #[must_use]
    pub fn on_event(mut self, hook: impl Fn(&SessionEvent) + Send + Sync + 'static) -> Self {
        self.events.add_hook(Arc::new(hook));
        self
    }

    /// Renders every rejection of this layer's extractors, guards and commit step (401, 403,
    /// 503...) with `render` instead of the built-in short text or JSON body (default: built
    /// in, see [`rejection`](crate::rejection#responses)).
    ///
    /// The hook gets a [`RejectionInfo`]: status, stable code, message, and whether the
    /// client prefers JSON; [`RejectionInfo::default_response`] is the built-in answer, for
    /// the cases the hook leaves alone. A 401's `WWW-Authenticate` challenge is added to the
    /// hook's response unless it sets one. The hook runs on the request path: keep it cheap,
    /// and do not panic. Rejections of axum's own extractors (a form that fails to
    /// deserialise) and a missing layer (there is no layer to ask) keep their answer.
    ///
    /// # Example
    ///
    /// ```
    /// use axum::response::{Html, IntoResponse};
    /// use axum_tessera::{Key, SessionConfig};
    ///
    /// let cfg = SessionConfig::web(Key::generate()).render_rejection(|info| {
    ///     let page = format!("<h1>Sorry</h1><p>{}</p>", info.message());
    ///     (info.status(), Html(page)).into_response()
    /// });
    /// # let _ = cfg;
    /// ```
    #[must_use]
    pub fn render_rejection(
        mut self,
        render: impl Fn(&RejectionInfo) -> axum::response::Response + Send + Sync + 'static,
    ) -> Self {
        self.render = Some(Arc::new(render));
        self
    }

    /// **Insecure**: serves plain-http development on localhost, and nothing else (default
    /// off). The one switch a local setup needs; remove it for production.
    ///
    /// What it gives up, for requests to a loopback host only:
    ///
    /// * the session cookie loses its `__Host-` / `__Secure-` prefix (`__Host-tessera`
    ///   becomes `tessera`) and its `Secure` attribute, so a browser sends it over http and
    ///   any process on the machine can read it on the wire;
    /// * the CSRF `Origin` check (rule 3 of [`CsrfProtected`](crate::CsrfProtected)) also
    ///   accepts `http://localhost`, `http://127.0.0.1` and `http://[::1]` on any port, so a
    ///   front-end dev server on another port can post; the CSRF token is still required.
    ///
    /// The layer never sees the address it is bound to, and production apps behind a proxy
    /// often bind 127.0.0.1, so the switch is tied to the request instead: it serves only
    /// requests whose `Host` (or HTTP/2 `:authority`) is `localhost`, `127.0.0.1` or
    /// `[::1]`, any port. Every other request is refused with a 500
    /// [`InsecureLocalDevelopment`](crate::rejection::InsecureLocalDevelopment) naming this call, so
    /// the switch cannot ship to production silently. The layer also logs a warning when it
    /// is built.
    ///
    /// # Example
    ///
    /// ```
    /// use axum_tessera::{Key, SessionConfig};
    ///
    /// let cfg = SessionConfig::web(Key::generate());
    /// // Only in a development build:
    /// let cfg = if cfg!(debug_assertions) { cfg.insecure_local_development() } else { cfg };
    /// assert!(cfg.validate().is_ok());
    /// ```
    #[must_use]
    pub fn insecure_local_development(mut self) -> Self {
        self.insecure_local_development = true;
        self
    }

    /// The cookie settings the layer runs with: as configured, unless
    /// [`insecure_local_development`](Self::insecure_local_development) takes `Secure` and the
    /// prefix that requires it away (whatever order the builders were called in).
    pub(crate) fn cookie_in_effect(&self) -> CookieConfig {
        if !self.insecure_local_development {
            return self.cookie.clone();
        }
        let name = self.cookie.cookie_name();
        let bare = name
            .strip_prefix("__Host-")
            .or_else(|| name.strip_prefix("__Secure-"))
            .unwrap_or(name)
            .to_owned();
        self.cookie.clone().name(bare).secure(false)
    }

    /// Checks the settings together.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first problem: `__Host-` rules, `SameSite=None` without
    /// `Secure`, non-positive timeouts, idle longer than absolute, a refresh fraction outside
    /// 0..=1, no token source, or a trusted origin that is not `scheme://host[:port]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sources.is_empty() {
            return Err(ConfigError::NoTokenSource);
        }
        if self.sources.contains(&TokenSource::Cookie) {
            self.cookie_in_effect().validate()?;
        }
        // Expiry is kept in whole seconds: a sub-second timeout would end every session at birth.
        if self.idle < SECOND || self.absolute < SECOND {
            return Err(ConfigError::Timeouts(TimeoutConfigError::BelowOneSecond));
        }
        if self.idle > self.absolute {
            return Err(ConfigError::Timeouts(
                TimeoutConfigError::IdleExceedsAbsolute,
            ));
        }
        if !(0.0..=1.0).contains(&self.refresh_fraction) {
            return Err(ConfigError::Timeouts(TimeoutConfigError::RefreshOutOfRange));
        }
        if let Some(bad) = self
            .trusted_origins
            .iter()
            .find(|o| Origin::parse(o).is_none())
        {
            return Err(ConfigError::InvalidOrigin {
                origin: bad.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn web() -> SessionConfig {
        SessionConfig::web(Key::from_bytes(&[1u8; 32]).unwrap())
    }

    #[test]
    fn invalid_combinations_fail_with_a_reason() {
        struct Case {
            name: &'static str,
            cfg: SessionConfig,
            expect: &'static str,
        }
        let cases = [
            Case {
                name: "host without secure",
                cfg: web().cookie(CookieConfig::default().secure(false)),
                expect: "a __Host- cookie must be Secure; for plain-http development on localhost use SessionConfig::insecure_local_development()",
            },
            Case {
                name: "host with domain",
                cfg: web().cookie(CookieConfig::default().domain("example.com")),
                expect: "must not set Domain",
            },
            Case {
                name: "host with path",
                cfg: web().cookie(CookieConfig::default().path("/app")),
                expect: "Path=/",
            },
            Case {
                name: "samesite none insecure",
                cfg: web().cookie(
                    CookieConfig::new("sid")
                        .secure(false)
                        .same_site(SameSite::None),
                ),
                expect: "SameSite=None",
            },
            Case {
                name: "bad name",
                cfg: web().cookie(CookieConfig::new("a b")),
                expect: "HTTP token",
            },
            Case {
                name: "idle over absolute",
                cfg: web().idle_timeout(HOUR * 13),
                expect: "exceeds",
            },
            Case {
                name: "zero idle",
                cfg: web().idle_timeout(Duration::ZERO),
                expect: "at least one second",
            },
            Case {
                name: "sub-second idle",
                cfg: web().idle_timeout(Duration::from_millis(500)),
                expect: "at least one second",
            },
            Case {
                name: "fraction",
                cfg: web().refresh_after(1.5),
                expect: "between 0 and 1",
            },
            Case {
                name: "no source",
                cfg: web().token_sources([]),
                expect: "no session token source",
            },
            Case {
                name: "origin with path",
                cfg: web().trusted_origins(["https://example.com/app"]),
                expect: "scheme://host[:port]",
            },
            Case {
                name: "null origin",
                cfg: web().trusted_origins(["null"]),
                expect: "\"null\"",
            },
            Case {
                name: "huge cookie",
                cfg: web().cookie(CookieConfig::new("sid").domain("a".repeat(4000))),
                expect: "4096",
            },
        ];
        for case in cases {
            let err = case.cfg.validate().expect_err(case.name).to_string();
            assert!(err.contains(case.expect), "{}: {err}", case.name);
        }
    }

    #[test]
    fn each_refusal_names_its_case() {
        struct Case {
            name: &'static str,
            cfg: SessionConfig,
            expect: ConfigError,
        }
        let cases = [
            Case {
                name: "host without secure",
                cfg: web().cookie(CookieConfig::default().secure(false)),
                expect: ConfigError::Cookie(CookieConfigError::HostPrefixNeedsSecure),
            },
            Case {
                name: "secure prefix without secure",
                cfg: web().cookie(CookieConfig::new("__Secure-sid").secure(false)),
                expect: ConfigError::Cookie(CookieConfigError::SecurePrefixNeedsSecure),
            },
            Case {
                name: "bad path",
                cfg: web().cookie(CookieConfig::new("sid").path("app")),
                expect: ConfigError::Cookie(CookieConfigError::InvalidPath),
            },
            Case {
                name: "idle over absolute",
                cfg: web().idle_timeout(HOUR * 13),
                expect: ConfigError::Timeouts(TimeoutConfigError::IdleExceedsAbsolute),
            },
        ];
        for case in cases {
            assert_eq!(case.cfg.validate(), Err(case.expect), "{}", case.name);
        }
    }

    #[test]
    fn local_development_drops_secure_and_its_prefixes_in_any_order() {
        struct Case {
            name: &'static str,
            cfg: SessionConfig,
            expect: &'static str,
        }
        let cases = [
            Case {
                name: "default cookie",
                cfg: web().insecure_local_development(),
                expect: "tessera",
            },
            Case {
                name: "cookie set afterwards",
                cfg: web()
                    .insecure_local_development()
                    .cookie(CookieConfig::new("__Secure-app")),
                expect: "app",
            },
            Case {
                name: "plain name kept",
                cfg: web()
                    .cookie(CookieConfig::new("sid"))
                    .insecure_local_development(),
                expect: "sid",
            },
        ];
        for case in cases {
            let cookie = case.cfg.cookie_in_effect();
            assert_eq!(cookie.cookie_name(), case.expect, "{}", case.name);
            assert!(!cookie.is_secure(), "{}", case.name);
            assert_eq!(case.cfg.validate(), Ok(()), "{}", case.name);
        }
    }

    #[test]
    fn presets_are_valid() {
        let key = Key::from_bytes(&[1u8; 32]).unwrap();
        for cfg in [
            SessionConfig::web(key.clone()),
            SessionConfig::api(key.clone()),
            SessionConfig::ephemeral(key.clone()),
            SessionConfig::web(key.clone()).cookie(CookieConfig::new("dev").secure(false)),
            SessionConfig::web(key.clone()).insecure_local_development(),
            SessionConfig::ephemeral(key).insecure_local_development(),
        ] {
            assert_eq!(cfg.validate(), Ok(()), "{cfg:?}");
        }
    }
}
