//! Extracting [`Session`] (required) and [`OptionalSession`] / `Option<Session>`.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::rejection::{
    MissingSessionLayer, SessionRejection, SessionRequired, SessionUnavailable,
};
use crate::session::{Session, SessionHandle};

/// The request's session, loaded; no `require_existing` check.
pub(crate) async fn loaded(parts: &Parts) -> Result<Session, SessionRejection> {
    let session = parts
        .extensions
        .get::<SessionHandle>()
        .map(|handle| handle.0.clone())
        .ok_or_else(MissingSessionLayer::default)?;
    session.load().await.map_err(SessionUnavailable::from_err)?;
    Ok(session)
}

/// Always succeeds under the layer (a fresh anonymous session when the request had none),
/// except: 401 under `require_existing` without a valid session, 503 when the store is
/// unreachable, 500 when the layer is missing.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = loaded(parts).await?;
        if session.require_existing() && !session.is_live() {
            return Err(SessionRequired::default().into());
        }
        Ok(session)
    }
}

/// `Option<Session>`: `Some` only when the request carried a valid, live session.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let session = loaded(parts).await?;
        Ok(session.is_live().then_some(session))
    }
}

/// The session if the request carried a valid, live one; `None` otherwise.
///
/// Rejects only when the store is unreachable (503) or the layer is missing (500).
///
/// # Example
///
/// ```
/// use axum_tessera::OptionalSession;
///
/// async fn greet(OptionalSession(session): OptionalSession) -> String {
///     match session.and_then(|s| s.principal()) {
///         Some(p) => format!("hello {}", p.id()),
///         None => "hello stranger".into(),
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct OptionalSession(pub Option<Session>);

impl<S: Send + Sync> FromRequestParts<S> for OptionalSession {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Session as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(OptionalSession)
    }
}
