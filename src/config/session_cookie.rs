//! [`CookieConfig`]: the session cookie's name and attributes, and the cookie rules they are
//! checked against at start-up.

use cookie::SameSite;

use super::MAX_COOKIE_BYTES;
use crate::error::{ConfigError, CookieConfigError};

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

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
