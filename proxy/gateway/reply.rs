//! Small reply helpers: answers handoff writes itself.

use crate::mint::OAuthError;
use crate::token;
use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Writes a whole response.
pub(super) async fn respond(
    session: &mut Session,
    status: u16,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (k, v) in headers {
        resp.append_header(k.to_string(), v.as_str())?;
    }
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    session
        .write_response_header(Box::new(resp), body.is_empty())
        .await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// A JSON answer that no cache keeps (RFC 6749 §5.1).
pub(super) async fn json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
) -> Result<()> {
    let headers = [
        ("content-type", "application/json".to_string()),
        ("cache-control", "no-store".to_string()),
        ("pragma", "no-cache".to_string()),
    ];
    respond(session, status, &headers, Bytes::from(body.to_string())).await
}

/// `413` with an RFC 6749 error body.
pub(super) async fn too_large(session: &mut Session, limit: usize) -> Result<()> {
    let e = OAuthError {
        status: 413,
        error: "invalid_request",
        description: format!("the body is larger than {limit} bytes"),
    };
    json(session, 413, &e.body()).await
}

/// Refuses a request with `status` and a short plain-text reason; `Ok(true)` for
/// pingora (answered).
pub(super) async fn refuse(session: &mut Session, status: u16) -> Result<bool> {
    let why = match status {
        421 => "this host is not served here\n",
        431 => "the Cookie header is too large\n",
        _ => "this request cannot be read unambiguously\n",
    };
    let headers = [
        ("content-type", "text/plain".to_string()),
        ("cache-control", "no-store".to_string()),
    ];
    respond(
        session,
        status,
        &headers,
        Bytes::from_static(why.as_bytes()),
    )
    .await?;
    Ok(true)
}

/// Writes a mediation answer; `Ok(false)` lets pingora proxy the request.
pub(super) async fn action(session: &mut Session, action: token::Action) -> Result<bool> {
    match action {
        token::Action::Pass => Ok(false),
        token::Action::Answer {
            status,
            body,
            content_type,
        } => {
            let headers = [
                ("content-type", content_type),
                ("cache-control", "no-store".to_string()),
                ("pragma", "no-cache".to_string()),
            ];
            respond(session, status, &headers, body).await?;
            Ok(true)
        }
    }
}

/// Whatever a body-reading step concluded: go on, or the request was answered.
pub(super) enum Read<T> {
    /// Read; go on with it.
    Ok(T),
    /// Answered already (413, 400).
    Answered,
}
