//! Scope guards: the [`RequireScopes`] and [`AnyScope`] extractors, their route-layer form
//! [`ScopeLayer`], and what they answer with ([`ScopeRejection`]).
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_tessera::{scope, Authenticated, Key, RequireScopes, SessionConfig, SessionLayer};
//!
//! scope!(pub Admin = "admin");
//!
//! // As an extractor: 401 without a login, 403 without the scope.
//! async fn admin(guard: RequireScopes<(Admin,)>) -> String {
//!     format!("hello {}", guard.principal().id())
//! }
//!
//! let app: Router = Router::new()
//!     .route("/admin", get(admin))
//!     // As a route layer: browsers that are not logged in go to /login?next=/account.
//!     .route("/account", get(|| async { "your account" }))
//!     .route_layer(RequireScopes::<(Authenticated,)>::layer().redirect_to("/login"))
//!     .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::response::{IntoResponse, Redirect, Response};
use http::header::ACCEPT;
use http::request::Parts;
use http::{HeaderMap, StatusCode, Uri};
use tower_layer::Layer;

use crate::event::EventKind;
use crate::extract::loaded;
use crate::guard::{safe_return_to, sealed, Guard, GuardService, ScopeService};
use crate::principal::Principal;
use crate::rejection::{
    with_challenge, BearerRequired, Capture, Captures, MissingScope, Scheme, ScopeRejection,
    StatusRefusal, Unauthenticated,
};
use crate::scope::ScopeSet;
use crate::session::{Session, SessionHandle};

/// What a guard checks, as plain functions so [`ScopeLayer`] is not generic.
#[derive(Clone, Copy)]
struct Rule {
    /// Which principals pass.
    check: fn(&Principal) -> bool,
    names: fn() -> Vec<&'static str>,
    missing: fn(&Principal) -> Vec<&'static str>,
    /// How the names combine, for events: `,` (all) or `|` (any).
    join: &'static str,
}

impl Rule {
    fn all<S: ScopeSet>() -> Self {
        Self {
            check: S::all_granted,
            names: S::names,
            missing: S::missing,
            join: ",",
        }
    }

    fn any<S: ScopeSet>() -> Self {
        Self {
            check: S::any_granted,
            names: S::names,
            missing: S::missing,
            join: "|",
        }
    }

    /// The guard decision on a loaded session, shared by the extractors and the layer.
    fn decide(&self, session: &Session) -> Result<Principal, ScopeRejection> {
        let Some(principal) = session.principal() else {
            let challenge = session.challenge();
            return Err(match challenge.scheme {
                Scheme::Bearer => with_challenge(BearerRequired::default(), challenge).into(),
                Scheme::Cookie => with_challenge(Unauthenticated::default(), challenge).into(),
            });
        };
        if !(self.check)(&principal) {
            let missing = (self.missing)(&principal).join(self.join);
            session.report_now(EventKind::ScopeDenied(missing));
            return Err(MissingScope::default().into());
        }
        Ok(principal)
    }
}

/// Requires a logged-in principal holding every scope of `S`, a tuple of 1 to 8
/// [`Scope`](crate::Scope) markers: `RequireScopes<(Admin,)>`, `RequireScopes<(Admin, Billing)>`.
///
/// As an extractor it answers 401 without a logged-in principal (with
/// `WWW-Authenticate: Bearer` when the layer's first token source is a bearer or custom
/// header), 403 when a scope is missing, and hands over the [`Principal`] otherwise. For a
/// guard on a whole set of routes, with optional login redirect, use
/// [`layer`](RequireScopes::layer).
///
/// # Example
///
/// ```
/// use axum_tessera::{scope, RequireScopes};
///
/// scope!(pub Admin = "admin"; pub Billing = "billing");
///
/// async fn invoices(guard: RequireScopes<(Admin, Billing)>) -> String {
///     format!("invoices for {}", guard.principal().id())
/// }
/// ```
pub struct RequireScopes<S> {
    principal: Principal,
    scopes: PhantomData<fn() -> S>,
}

/// Requires a logged-in principal holding at least one scope of `S`, a tuple of 1 to 8
/// [`Scope`](crate::Scope) markers; otherwise as [`RequireScopes`].
///
/// # Example
///
/// ```
/// use axum_tessera::{scope, AnyScope};
///
/// scope!(pub Admin = "admin"; pub Support = "support");
///
/// async fn tickets(_: AnyScope<(Admin, Support)>) -> &'static str {
///     "all tickets"
/// }
/// ```
pub struct AnyScope<S> {
    principal: Principal,
    scopes: PhantomData<fn() -> S>,
}

macro_rules! guard_type {
    ($name:ident, $rule:ident) => {
        impl<S> $name<S> {
            /// The principal that passed the guard.
            pub fn principal(&self) -> &Principal {
                &self.principal
            }

            /// Takes the principal that passed the guard.
            pub fn into_principal(self) -> Principal {
                self.principal
            }
        }

        impl<S: ScopeSet> $name<S> {
            /// This guard as a route layer, for
            /// `.route_layer(RequireScopes::<(Admin,)>::layer())`: refused requests never
            /// reach the handlers. See [`ScopeLayer`] for the redirect and status options.
            pub fn layer() -> ScopeLayer {
                ScopeLayer {
                    rule: Rule::$rule::<S>(),
                    redirect: None,
                    status: None,
                }
            }
        }

        impl<St: Send + Sync, S: ScopeSet> FromRequestParts<St> for $name<S> {
            type Rejection = ScopeRejection;

            async fn from_request_parts(
                parts: &mut Parts,
                _state: &St,
            ) -> Result<Self, Self::Rejection> {
                let principal = match loaded(parts).await {
                    Ok(session) => Rule::$rule::<S>().decide(&session),
                    Err(rejection) => Err(rejection.into()),
                }
                .map_err(|r: ScopeRejection| r.captured(&Capture::of(parts)))?;
                Ok(Self {
                    principal,
                    scopes: PhantomData,
                })
            }
        }

        impl<S> Clone for $name<S> {
            fn clone(&self) -> Self {
                Self {
                    principal: self.principal.clone(),
                    scopes: PhantomData,
                }
            }
        }

        impl<S> fmt::Debug for $name<S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("principal", &self.principal.id())
                    .finish_non_exhaustive()
            }
        }
    };
}

guard_type!(RequireScopes, all);
guard_type!(AnyScope, any);

/// A scope guard as a route layer, made by [`RequireScopes::layer`] or [`AnyScope::layer`].
///
/// Runs after [`SessionLayer`](crate::SessionLayer) (add it with `.route_layer(..)` below the
/// session layer's `.layer(..)`). Refusals by default: 401 without a logged-in principal (with
/// `WWW-Authenticate: Bearer` for bearer/header layers), 403 without the scope.
///
/// # Example
///
/// ```
/// use axum::{http::StatusCode, routing::get, Router};
/// use axum_tessera::{scope, Key, RequireScopes, SessionConfig, SessionLayer};
///
/// scope!(pub Admin = "admin");
///
/// let app: Router = Router::new()
///     .route("/admin", get(|| async { "admin area" }))
///     .route_layer(
///         RequireScopes::<(Admin,)>::layer()
///             .redirect_to("/login")          // browsers: 303 to /login?next=/admin
///             .status(StatusCode::NOT_FOUND), // others: do not reveal the route
///     )
///     .layer(SessionLayer::new(SessionConfig::web(Key::generate())));
/// ```
#[derive(Clone)]
#[must_use]
pub struct ScopeLayer {
    rule: Rule,
    redirect: Option<Arc<str>>,
    status: Option<StatusCode>,
}

impl fmt::Debug for ScopeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeLayer")
            .field("scopes", &(self.rule.names)().join(self.rule.join))
            .field("redirect", &self.redirect)
            .field("status", &self.status)
            .finish()
    }
}

impl ScopeLayer {
    /// Sends requests without a logged-in principal that accept `text/html` to `login` with a
    /// `303 See Other`, adding `next=<original path and query>` (percent-encoded) to its query
    /// (default: no redirect). Other clients, and principals lacking a scope, still get the
    /// 401 / 403.
    ///
    /// # Security
    ///
    /// `next` is the request's own path (one that [`safe_return_to`] refuses is replaced by
    /// `/`), but the login handler must still only redirect to local paths after login: read
    /// it with [`ReturnTo`](crate::guard::ReturnTo) or pass it through [`safe_return_to`].
    pub fn redirect_to(mut self, login: impl Into<String>) -> Self {
        self.redirect = Some(Arc::from(login.into()));
        self
    }

    /// Answers every refusal that is not redirected with `status` and its canonical reason as
    /// the body, instead of 401 / 403 (default: 401 / 403). `StatusCode::NOT_FOUND` hides that
    /// the route exists.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    fn refuse(&self, rejection: ScopeRejection, parts: &Parts, uri: &Uri) -> Response {
        let unauthenticated = matches!(
            rejection,
            ScopeRejection::Unauthenticated(_) | ScopeRejection::BearerRequired(_)
        );
        let capture = Capture::of(parts);
        match (&self.redirect, self.status) {
            (Some(login), _) if unauthenticated && accepts_html(&parts.headers) => {
                Redirect::to(&login_location(login, uri)).into_response()
            }
            (_, Some(status)) if !matches!(rejection, ScopeRejection::Session(_)) => {
                let mut refusal = StatusRefusal::new(status, rejection).captured(&capture);
                if status == StatusCode::UNAUTHORIZED {
                    if let Some(SessionHandle(session)) = parts.extensions.get() {
                        refusal = with_challenge(refusal, session.challenge());
                    }
                }
                refusal.into_response()
            }
            _ => rejection.captured(&capture).into_response(),
        }
    }
}

impl<S> Layer<S> for ScopeLayer {
    type Service = ScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService::new(inner, self.clone())
    }
}

impl sealed::Sealed for ScopeLayer {
    fn exempt(&self, _parts: &Parts) -> bool {
        false
    }

    fn refusal(&self, parts: &Parts, session: &Session) -> Option<Response> {
        self.rule.decide(session).err().map(|rejection| {
            // Under `Router::nest` the URI is the nested one; the browser must come back to
            // the full path.
            let uri = parts
                .extensions
                .get::<OriginalUri>()
                .map_or(&parts.uri, |o| &o.0);
            self.refuse(rejection, parts, uri)
        })
    }
}

impl Guard for ScopeLayer {}

/// Whether `Accept` lists `text/html` with a non-zero quality.
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut params = range.split(';');
            let media = params.next().unwrap_or_default().trim();
            let refused = params.any(|p| {
                let p = p.trim();
                p.get(..2).is_some_and(|k| k.eq_ignore_ascii_case("q="))
                    && p[2..].trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// `login` with `next=<path and query of uri>` added to its query.
fn login_location(login: &str, uri: &Uri) -> String {
    // A path a login handler must not redirect to (`//host`, `/%09/host`...) is not offered
    // as `next` at all: the login page would have to refuse it anyway.
    let target = safe_return_to(uri.path_and_query().map_or("/", |pq| pq.as_str()));
    let next: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
    let sep = if login.contains('?') { '&' } else { '?' };
    format!("{login}{sep}next={next}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn accepts_html_reads_media_ranges() {
        struct Case {
            name: &'static str,
            accept: Option<&'static str>,
            expect: bool,
        }
        let cases = [
            Case {
                name: "browser navigation",
                accept: Some("text/html,application/xhtml+xml,*/*;q=0.8"),
                expect: true,
            },
            Case {
                name: "case and spaces",
                accept: Some("application/json, Text/HTML ;level=1"),
                expect: true,
            },
            Case {
                name: "json only",
                accept: Some("application/json"),
                expect: false,
            },
            Case {
                name: "wildcard is not html",
                accept: Some("*/*"),
                expect: false,
            },
            Case {
                name: "explicitly refused",
                accept: Some("text/html;q=0, application/json"),
                expect: false,
            },
            Case {
                name: "absent",
                accept: None,
                expect: false,
            },
        ];
        for case in cases {
            let mut h = HeaderMap::new();
            if let Some(a) = case.accept {
                h.insert(ACCEPT, HeaderValue::from_static(a));
            }
            assert_eq!(accepts_html(&h), case.expect, "{}", case.name);
        }
    }

    #[test]
    fn login_location_encodes_next_and_refuses_other_hosts() {
        struct Case {
            name: &'static str,
            login: &'static str,
            uri: &'static str,
            expect: &'static str,
        }
        let cases = [
            Case {
                name: "path and query",
                login: "/login",
                uri: "/admin/users?page=2&q=a%20b",
                expect: "/login?next=%2Fadmin%2Fusers%3Fpage%3D2%26q%3Da%2520b",
            },
            Case {
                name: "login with query",
                login: "/login?lang=en",
                uri: "/admin",
                expect: "/login?lang=en&next=%2Fadmin",
            },
            Case {
                name: "scheme-relative path",
                login: "/login",
                uri: "//evil.example/x",
                expect: "/login?next=%2F",
            },
        ];
        for case in cases {
            let uri: Uri = case.uri.parse().expect(case.name);
            assert_eq!(
                login_location(case.login, &uri),
                case.expect,
                "{}",
                case.name
            );
        }
    }
}
