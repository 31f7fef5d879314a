//! Scope markers: the [`Scope`] trait, the [`scope!`](crate::scope!) macro that declares one,
//! the built-in [`Authenticated`], and [`ScopeSet`] for tuples of them.
//!
//! # Example
//!
//! ```
//! use axum_tessera::guard::ScopeSet;
//! use axum_tessera::{scope, Principal, Scope};
//!
//! scope!(pub Admin = "admin");
//! scope! {
//!     /// May read invoices.
//!     pub BillingRead = "billing:read";
//! }
//!
//! let p = Principal::user("ada").with_scopes(["admin"]);
//! assert_eq!(Admin::NAME, "admin");
//! assert!(<(Admin,)>::all_granted(&p));
//! assert!(!<(Admin, BillingRead)>::all_granted(&p));
//! assert!(<(Admin, BillingRead)>::any_granted(&p));
//! ```

use crate::principal::Principal;

/// A scope a principal can hold, as a type, so guards name it in their signature:
/// `RequireScopes<(Admin,)>`. Declare one with [`scope!`](crate::scope!).
pub trait Scope: Send + Sync + 'static {
    /// The scope's name as stored on the [`Principal`].
    const NAME: &'static str;

    /// Whether `principal` holds this scope (default: [`Principal::has_scope`] of
    /// [`NAME`](Self::NAME)).
    fn is_granted(principal: &Principal) -> bool {
        principal.has_scope(Self::NAME)
    }
}

/// Any logged-in principal, whatever its scopes: `RequireScopes<(Authenticated,)>` only asks
/// for a login.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Authenticated;

impl Scope for Authenticated {
    const NAME: &'static str = "authenticated";

    fn is_granted(_: &Principal) -> bool {
        true
    }
}

/// A tuple of 1 to 8 [`Scope`]s, as [`RequireScopes`](crate::RequireScopes) (all of them) and
/// [`AnyScope`](crate::AnyScope) (one of them) take it.
pub trait ScopeSet: Send + Sync + 'static {
    /// Whether `principal` holds every scope of the set.
    fn all_granted(principal: &Principal) -> bool;

    /// Whether `principal` holds at least one scope of the set.
    fn any_granted(principal: &Principal) -> bool;

    /// The scope names, for logs.
    fn names() -> Vec<&'static str>;

    /// The names of the scopes `principal` does not hold, for logs and events.
    fn missing(principal: &Principal) -> Vec<&'static str>;
}

macro_rules! impl_scope_set {
    ($($s:ident),+) => {
        impl<$($s: Scope),+> ScopeSet for ($($s,)+) {
            fn all_granted(principal: &Principal) -> bool {
                $($s::is_granted(principal))&&+
            }

            fn any_granted(principal: &Principal) -> bool {
                $($s::is_granted(principal))||+
            }

            fn names() -> Vec<&'static str> {
                vec![$($s::NAME),+]
            }

            fn missing(principal: &Principal) -> Vec<&'static str> {
                let mut missing = Vec::new();
                $(
                    if !$s::is_granted(principal) {
                        missing.push($s::NAME);
                    }
                )+
                missing
            }
        }
    };
}

impl_scope_set!(A);
impl_scope_set!(A, B);
impl_scope_set!(A, B, C);
impl_scope_set!(A, B, C, D);
impl_scope_set!(A, B, C, D, E);
impl_scope_set!(A, B, C, D, E, F);
impl_scope_set!(A, B, C, D, E, F, G);
impl_scope_set!(A, B, C, D, E, F, G, H);

/// Declares scope marker types: `scope!(pub Admin = "admin");` defines a unit struct `Admin`
/// implementing [`Scope`] with the name `"admin"`. Several may be declared at once, separated
/// by `;`, each with its own doc comment and visibility.
///
/// ```
/// use axum_tessera::{scope, Scope};
///
/// scope! {
///     /// Full control.
///     pub Admin = "admin";
///     pub(crate) Audit = "audit";
/// }
/// assert_eq!(Audit::NAME, "audit");
/// ```
#[macro_export]
macro_rules! scope {
    ($($(#[$meta:meta])* $vis:vis $name:ident = $value:literal);+ $(;)?) => {
        $(
            $(#[$meta])*
            #[doc = concat!("Scope marker for `", $value, "`.")]
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            $vis struct $name;

            impl $crate::Scope for $name {
                const NAME: &'static str = $value;
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::scope!(Admin = "admin"; Billing = "billing");

    #[test]
    fn sets_check_all_or_any() {
        struct Case {
            name: &'static str,
            scopes: &'static [&'static str],
            all: bool,
            any: bool,
        }
        let cases = [
            Case {
                name: "none",
                scopes: &[],
                all: false,
                any: false,
            },
            Case {
                name: "one of two",
                scopes: &["billing"],
                all: false,
                any: true,
            },
            Case {
                name: "both",
                scopes: &["admin", "billing"],
                all: true,
                any: true,
            },
            Case {
                name: "similar name",
                scopes: &["admins", "Billing"],
                all: false,
                any: false,
            },
        ];
        for case in cases {
            let p = Principal::user("u").with_scopes(case.scopes.iter().copied());
            assert_eq!(
                <(Admin, Billing)>::all_granted(&p),
                case.all,
                "{}",
                case.name
            );
            assert_eq!(
                <(Admin, Billing)>::any_granted(&p),
                case.any,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn authenticated_needs_no_scope_and_eight_tuples_work() {
        let p = Principal::user("u").with_scopes(["admin"]);
        assert!(<(Authenticated,)>::all_granted(&p));
        assert!(<(
            Authenticated,
            Admin,
            Admin,
            Admin,
            Admin,
            Admin,
            Admin,
            Admin
        )>::all_granted(&p));
        assert_eq!(<(Admin, Billing)>::names(), ["admin", "billing"]);
        assert_eq!(
            <(Authenticated, Admin, Billing)>::missing(&p),
            ["billing"],
            "Authenticated is never missing for a principal"
        );
    }
}
