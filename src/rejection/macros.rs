//! The macros that declare the rejection types, and the 401 plumbing they share: what
//! every rejection's `IntoResponse` is made of, so `mod.rs` holds only the rejections.

use std::error::Error as StdError;

use axum::response::Response;
use http::StatusCode;

use super::reply::{respond, RejectionParts};
use super::{Challenge, Reply};

/// Declares a rejection type in the style of axum-core's rejections: a `#[non_exhaustive]`
/// struct with a fixed status, code and body, `IntoResponse`, `Display`, `Error` and a
/// tracing event.
///
/// Two forms: `pub struct Name;` has no cause (`Default` builds it), and
/// `pub struct Name(Cause);` holds a typed cause, built with `Name::from_err(cause)` and
/// returned by `Error::source`. Both hold the [`Reply`] captured from the request. An
/// optional `#[challenge = Bearer]` (or `Cookie`) makes it a 401 with that default
/// `WWW-Authenticate` scheme; [`with_challenge`] sets the one the layer calls for.
macro_rules! define_rejection {
    (
        #[status = $status:ident]
        #[code = $code:literal]
        $(#[challenge = $scheme:ident])?
        #[body = $body:literal]
        $(#[$meta:meta])*
        pub struct $name:ident;
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub struct $name {
            reply: $crate::rejection::Reply,
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    reply: $crate::rejection::define_rejection!(@reply $($scheme)?),
                }
            }
        }

        $crate::rejection::define_rejection!(@common $name, $status, $code, $body);

        impl ::std::error::Error for $name {}
    };
    (
        #[status = $status:ident]
        #[code = $code:literal]
        $(#[challenge = $scheme:ident])?
        #[body = $body:literal]
        $(#[$meta:meta])*
        pub struct $name:ident($cause:ty);
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub struct $name {
            cause: $cause,
            reply: $crate::rejection::Reply,
        }

        impl $name {
            /// The rejection, caused by `cause`.
            pub(crate) fn from_err(cause: $cause) -> Self {
                Self {
                    cause,
                    reply: $crate::rejection::define_rejection!(@reply $($scheme)?),
                }
            }
        }

        $crate::rejection::define_rejection!(@common $name, $status, $code, $body);

        impl ::std::error::Error for $name {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                Some(&self.cause)
            }
        }
    };
    (@reply) => {
        $crate::rejection::Reply::default()
    };
    (@reply $scheme:ident) => {
        $crate::rejection::Reply::with_challenge(Some($crate::rejection::Challenge {
            scheme: $crate::rejection::Scheme::$scheme,
            invalid_token: false,
        }))
    };
    (@common $name:ident, $status:ident, $code:literal, $body:literal) => {
        impl $name {
            /// The HTTP status this rejection answers with.
            pub fn status(&self) -> ::http::StatusCode {
                ::http::StatusCode::$status
            }

            /// The stable snake_case code of this rejection: the `error` field of its JSON
            /// body. `invalid_token` for a 401 to a request whose token did not authenticate.
            pub fn code(&self) -> &'static str {
                if self.reply.invalid_token() {
                    "invalid_token"
                } else {
                    $code
                }
            }

            /// The plain-text body this rejection answers with.
            pub fn body_text(&self) -> &'static str {
                $body
            }
        }

        impl $crate::rejection::Captures for $name {
            fn capture_mut(&mut self, capture: &$crate::rejection::Capture) {
                self.reply.capture(capture);
            }
        }

        impl ::axum::response::IntoResponse for $name {
            fn into_response(self) -> ::axum::response::Response {
                $crate::rejection::macros::answer(
                    stringify!($name),
                    self.status(),
                    self.code(),
                    self.body_text(),
                    &self.reply,
                    ::std::error::Error::source(&self),
                )
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($body)
            }
        }
    };
}
pub(crate) use define_rejection;

/// `respond` with the facts spelled out, for the macro.
pub(crate) fn answer(
    rejection: &'static str,
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    reply: &Reply,
    cause: Option<&(dyn StdError + 'static)>,
) -> Response {
    respond(
        rejection,
        RejectionParts {
            status,
            code,
            message,
        },
        reply,
        cause,
    )
}

/// Sets the `WWW-Authenticate` challenge of a 401 rejection.
pub(crate) fn with_challenge<R: Challenged>(mut rejection: R, challenge: Challenge) -> R {
    rejection.reply_mut().set_challenge(challenge);
    rejection
}

/// The 401 rejections, whose challenge the layer decides.
pub(crate) trait Challenged {
    fn reply_mut(&mut self) -> &mut Reply;
}

macro_rules! challenged {
    ($($name:ident),+) => {
        $(impl Challenged for $name {
            fn reply_mut(&mut self) -> &mut Reply {
                &mut self.reply
            }
        })+
    };
}

/// Declares a `#[non_exhaustive]` enum gathering rejections, in the style of axum's composite
/// rejections: `status()`, `code()`, `body_text()`, `IntoResponse`, `Display`,
/// `Error::source` and a `From` impl per variant, all delegating to the variant. `source` is
/// the variant's own `source`, not the variant: its text is already this enum's `Display`.
macro_rules! composite_rejection {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident($inner:ty),
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant($inner),
            )+
        }

        impl $name {
            /// The HTTP status of the inner rejection.
            pub fn status(&self) -> ::http::StatusCode {
                match self {
                    $(Self::$variant(r) => r.status(),)+
                }
            }

            /// The stable code of the inner rejection.
            pub fn code(&self) -> &'static str {
                match self {
                    $(Self::$variant(r) => r.code(),)+
                }
            }

            /// The body text of the inner rejection.
            pub fn body_text(&self) -> &'static str {
                match self {
                    $(Self::$variant(r) => r.body_text(),)+
                }
            }
        }

        impl Captures for $name {
            fn capture_mut(&mut self, capture: &Capture) {
                match self {
                    $(Self::$variant(r) => r.capture_mut(capture),)+
                }
            }
        }

        impl ::axum::response::IntoResponse for $name {
            fn into_response(self) -> ::axum::response::Response {
                match self {
                    $(Self::$variant(r) => r.into_response(),)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.body_text())
            }
        }

        impl ::std::error::Error for $name {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                match self {
                    $(Self::$variant(r) => ::std::error::Error::source(r),)+
                }
            }
        }

        $(
            impl From<$inner> for $name {
                fn from(r: $inner) -> Self {
                    Self::$variant(r)
                }
            }
        )+
    };
}
