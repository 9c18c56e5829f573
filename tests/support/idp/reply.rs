//! Building responses: plain, JSON (no-store), the login page, error pages and
//! error redirects.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use super::params::append_query;
use super::{Body, LOGIN_PAGE_MARKER};

pub fn response(status: StatusCode, headers: Vec<(&str, String)>, body: Bytes) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(body)).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::from_static(b"internal error\n")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

pub(super) fn text_response(
    status: StatusCode,
    content_type: &str,
    body: &'static str,
) -> Response<Body> {
    response(
        status,
        vec![("content-type", content_type.to_string())],
        Bytes::from_static(body.as_bytes()),
    )
}

pub(super) fn json_response(
    status: StatusCode,
    value: &Value,
    mut headers: Vec<(&str, String)>,
) -> Response<Body> {
    headers.push(("content-type", "application/json".into()));
    headers.push(("cache-control", "no-store".into()));
    headers.push(("pragma", "no-cache".into()));
    response(status, headers, Bytes::from(value.to_string()))
}

pub(super) fn method_not_allowed(allow: &str) -> Response<Body> {
    response(
        StatusCode::METHOD_NOT_ALLOWED,
        vec![
            ("allow", allow.to_string()),
            ("content-type", "text/plain".into()),
        ],
        Bytes::from_static(b"method not allowed\n"),
    )
}

pub(super) fn login_page() -> Response<Body> {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>IdP login</title></head>\n\
         <body><!-- {LOGIN_PAGE_MARKER} --><h1>Sign in</h1>\n\
         <form method=\"post\"><input name=\"login\"><input name=\"password\" type=\"password\">\
         <button type=\"submit\">Sign in</button></form></body></html>\n"
    );
    response(
        StatusCode::OK,
        vec![
            ("content-type", "text/html; charset=utf-8".into()),
            ("cache-control", "no-store".into()),
        ],
        Bytes::from(body),
    )
}

/// Errors that must not be redirected (bad client_id / redirect_uri): shown to the user.
pub(super) fn authorize_error_page(reason: &str) -> Response<Body> {
    let reason: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || " _-".contains(*c))
        .collect();
    response(
        StatusCode::BAD_REQUEST,
        vec![
            ("content-type", "text/html; charset=utf-8".into()),
            ("cache-control", "no-store".into()),
        ],
        Bytes::from(format!(
            "<!DOCTYPE html>\n<html><head><title>IdP error</title></head><body>invalid_request: {reason}</body></html>\n"
        )),
    )
}

pub(super) fn redirect_error(
    redirect_uri: &str,
    error: &str,
    state: Option<&str>,
) -> Response<Body> {
    let mut query = vec![("error", error)];
    if let Some(state) = state {
        query.push(("state", state));
    }
    response(
        StatusCode::FOUND,
        vec![
            ("location", append_query(redirect_uri, &query)),
            ("cache-control", "no-store".into()),
        ],
        Bytes::new(),
    )
}
