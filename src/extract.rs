//! Extracting [`Session`] (required) and [`OptionalSession`] / `Option<Session>`.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::rejection::{
    with_challenge, Capture, Captures, MissingSessionLayer, SessionRejection, SessionRequired,
    SessionTokenInvalid, SessionUnavailable,
};
use crate::session::Session;

/// The request's session, loaded; no `require_existing` check. A rejection is not yet
/// [captured](Captures): the extractor that answers with it does that.
pub(crate) async fn loaded(parts: &Parts) -> Result<Session, SessionRejection> {
    let session = crate::session::of_parts(parts).ok_or_else(MissingSessionLayer::default)?;
    session
        .load(parts)
        .await
        .map_err(SessionUnavailable::from_err)?;
    Ok(session)
}

/// Whether `Session` may hand this loaded session to a handler.
fn admit(session: &Session) -> Result<(), SessionRejection> {
    if session.is_live() {
        return Ok(());
    }
    // A bearer or header token is sent on purpose: answering it with a fresh anonymous
    // session would let the client believe it is still logged in, and write into a session
    // it never gets the token of. A stale cookie is the browser's doing, and a fresh
    // session is how it recovers.
    if session.presented().explicit {
        return Err(with_challenge(SessionTokenInvalid::default(), session.challenge()).into());
    }
    if session.require_existing() {
        return Err(with_challenge(SessionRequired::default(), session.challenge()).into());
    }
    Ok(())
}

/// Always succeeds under the layer (a fresh anonymous session when the request had no
/// token, or only a cookie that did not authenticate), except: 401
/// ([`SessionTokenInvalid`]) for a bearer or header token that does not authenticate, 401
/// ([`SessionRequired`]) under `require_existing` without a valid session, 503 when the
/// store is unreachable, 500 when the layer is missing.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = loaded(parts)
            .await
            .map_err(|r| r.captured(&Capture::of(parts)))?;
        admit(&session).map_err(|r| r.captured(&Capture::of(parts)))?;
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
        let session = loaded(parts)
            .await
            .map_err(|r| r.captured(&Capture::of(parts)))?;
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
