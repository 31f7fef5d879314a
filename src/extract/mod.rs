//! Extractors and guards: [`Session`](crate::Session), [`OptionalSession`], the scope guards
//! and CSRF protection.

mod csrf;
mod scopes;
mod session;

pub use csrf::{CsrfLayer, CsrfProtected, CsrfService, CSRF_FIELD, CSRF_HEADER};
pub use scopes::{AnyScope, RequireScopes, ScopeLayer, ScopeService};
pub use session::OptionalSession;
