//! The store tests' view of a service: calls carrying a bearer token.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;

use super::send;

/// `method uri` carrying `token` as a bearer token, if any.
pub fn bearer(method: &str, uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    b.body(Body::empty()).unwrap()
}

/// `method uri` with `token` as a bearer token through `app`: the status and the body.
pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let reply = send(app, bearer(method, uri, token)).await;
    (reply.status, reply.body)
}
