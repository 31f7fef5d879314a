//! Extractors and guards: [`Session`](crate::Session), [`OptionalSession`], the scope guards
//! and CSRF protection.

mod csrf;
mod scopes;
mod session;

pub use csrf::{
    CrossSiteRequest, CsrfBodyRejection, CsrfLayer, CsrfProtected, CsrfRejection, CsrfService,
    CsrfTokenInvalid, CsrfTokenMissing, OriginNotAllowed, CSRF_FIELD, CSRF_HEADER,
};
pub use scopes::{
    AnyScope, BearerRequired, MissingScope, RequireScopes, ScopeLayer, ScopeRejection,
    ScopeService, Unauthenticated,
};
pub use session::OptionalSession;
