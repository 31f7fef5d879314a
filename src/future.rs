//! [`ResponseFuture`]: waits for the inner service, then commits the session and writes the
//! token to the response.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use crate::commit::{CommitFailure, Finish, Running};
use crate::error::{CommitError, StoreErrorKind};
use crate::rejection::{Captures, CommitFailed, SessionLimitReached};
use crate::session::Session;
use crate::transport::{self, Emit};

pin_project! {
    /// Response future of [`SessionService`](crate::service::SessionService).
    pub struct ResponseFuture<F> {
        #[pin]
        step: Step<F>,
        session: Option<Session>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<F> {
        /// Answered without calling the inner service.
        Refused { response: Option<Response<Body>> },
        Inner { #[pin] future: F },
        Commit {
            commit: Running,
            response: Option<Response<Body>>,
            // Kept for the commit's rejections, which answer the way the request asked.
            session: Session,
        },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, session: Session, span: tracing::Span) -> Self {
        Self {
            step: Step::Inner { future },
            session: Some(session),
            span,
        }
    }
}

impl<F> ResponseFuture<F> {
    /// A future that answers `response` at once, without the inner service.
    pub(crate) fn refused(response: Response<Body>) -> Self {
        Self {
            step: Step::Refused {
                response: Some(response),
            },
            session: None,
            span: tracing::Span::none(),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.step.as_mut().project() {
                StepProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response));
                }
                StepProj::Inner { future } => {
                    let mut response = ready!(future.poll(cx))?.map(Body::new);
                    let session = this
                        .session
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let layer = session.layer();
                    if session.accessed() {
                        transport::vary_on_sources(layer, response.headers_mut());
                    }
                    match session.finish(response.status().is_server_error()) {
                        Finish::Done(emit) => {
                            transport::write(layer, emit, response.headers_mut());
                            return Poll::Ready(Ok(response));
                        }
                        Finish::Committed(outcome) => {
                            return Poll::Ready(Ok(answer(outcome, response, &session)));
                        }
                        Finish::Store(commit) => this.step.set(Step::Commit {
                            commit: Running::Here(Some(commit)),
                            response: Some(response),
                            session,
                        }),
                    }
                }
                StepProj::Commit {
                    commit,
                    response,
                    session,
                } => {
                    let outcome = ready!(commit.poll(cx, session.layer().in_flight()));
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(answer(outcome, response, session)));
                }
            }
        }
    }
}

/// The response once the commit ended: with the token, or the rejection its failure makes.
fn answer(
    outcome: Result<Emit, CommitFailure>,
    mut response: Response<Body>,
    session: &Session,
) -> Response<Body> {
    match outcome {
        Ok(emit) => transport::write(session.layer(), emit, response.headers_mut()),
        Err(CommitFailure::Store(err)) if err.kind() == StoreErrorKind::LimitReached => {
            tracing::info!("login refused: per-principal session limit reached");
            response = SessionLimitReached::from_err(err)
                .captured(&session.capture())
                .into_response();
        }
        Err(failure) => {
            let cause = match failure {
                CommitFailure::Store(err) => {
                    tracing::error!(error = ?err, "session commit failed");
                    CommitError::Store(err)
                }
                CommitFailure::Missing => {
                    tracing::info!("session ended by another request before commit");
                    CommitError::SessionEnded
                }
                CommitFailure::Aborted => {
                    tracing::error!("session store panicked mid-commit");
                    CommitError::Aborted
                }
                CommitFailure::Collisions => {
                    tracing::error!("session ID collided three times");
                    CommitError::IdCollisions
                }
            };
            response = CommitFailed::from_err(cause)
                .captured(&session.capture())
                .into_response();
        }
    }
    response
}
