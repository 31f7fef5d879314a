//! Extractors: [`Session`](crate::Session), [`OptionalSession`].

mod session;

pub use session::OptionalSession;
