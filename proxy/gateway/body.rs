//! Request bodies: the ones handoff reads (token, revocation and logout endpoints;
//! a non-GET request inside a transfer context), and the stream of every other one,
//! watched for session transfer tokens.

use super::reply::{self, Read};
use crate::hygiene;
use crate::mint::{parse_token_body, TokenParams};
use crate::token;
use bytes::Bytes;
use http::header;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::net::IpAddr;

/// A body read whole and parsed as token-endpoint parameters.
pub(super) struct Form {
    body: Bytes,
    content_type: Option<String>,
    authorization: Option<String>,
    /// The parameters.
    pub params: TokenParams,
}

impl Form {
    /// The request as handoff forwards it to the IdP itself.
    pub fn forward(&self, client_ip: IpAddr) -> token::Forward<'_> {
        token::Forward {
            body: &self.body,
            content_type: self.content_type.as_deref(),
            authorization: self.authorization.as_deref(),
            client_ip,
        }
    }
}

fn header_str(session: &Session, name: http::HeaderName) -> Option<String> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads the whole request body, up to `limit` (a `413` past it). What is read
/// stays in pingora's retry buffer and is replayed to the IdP when the request goes
/// on (through [`scan_chunk`] like any other body).
pub(super) async fn read(session: &mut Session, limit: usize) -> Result<Read<Bytes>> {
    let declared = header_str(session, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        reply::too_large(session, limit).await?;
        return Ok(Read::Answered);
    }
    session.enable_retry_buffering();
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            reply::too_large(session, limit).await?;
            return Ok(Read::Answered);
        }
    }
    Ok(Read::Ok(Bytes::from(body)))
}

/// Reads and parses a form or JSON body (token, revocation, logout endpoints); a
/// body that does not parse is answered with its RFC 6749 error.
pub(super) async fn form(session: &mut Session, limit: usize) -> Result<Read<Form>> {
    let Read::Ok(body) = read(session, limit).await? else {
        return Ok(Read::Answered);
    };
    let content_type = header_str(session, header::CONTENT_TYPE);
    match parse_token_body(content_type.as_deref(), &body) {
        Ok(params) => Ok(Read::Ok(Form {
            body,
            content_type,
            authorization: header_str(session, header::AUTHORIZATION),
            params,
        })),
        Err(e) => {
            reply::json(session, e.status, &e.body()).await?;
            Ok(Read::Answered)
        }
    }
}

/// A non-GET request inside a transfer context: can handoff see every authorize
/// parameter the IdP may read from its body? An unreadable body counts as no; a
/// token in the body is a `400`.
pub(super) async fn mediatable(session: &mut Session, limit: usize) -> Result<Read<bool>> {
    let Read::Ok(body) = read(session, limit).await? else {
        return Ok(Read::Answered);
    };
    if hygiene::contains_stt(&body) {
        reply::refuse(session, 400).await?;
        return Ok(Read::Answered);
    }
    if body.is_empty() {
        return Ok(Read::Ok(true));
    }
    let ct = header_str(session, header::CONTENT_TYPE);
    Ok(Read::Ok(match parse_token_body(ct.as_deref(), &body) {
        Ok(p) => {
            let lower: Vec<(String, &str)> =
                p.0.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
                    .collect();
            !hygiene::unmediatable(lower.iter().map(|(k, v)| (k.as_str(), *v)))
        }
        // Not a form handoff can read (or a repeated parameter): unsafe.
        Err(_) => false,
    }))
}

/// Invariant 4 for bodies on their way to the IdP: a token split across chunks is
/// seen whole before any of it goes on, so the tail of each chunk (`held`) is held
/// back until the next one. An error aborts the request before the chunk is sent.
pub(super) fn scan_chunk(
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    held: &mut Vec<u8>,
) -> Result<()> {
    let chunk = body.take().unwrap_or_default();
    if held.is_empty() && end_of_stream {
        if hygiene::contains_stt(&chunk) {
            return stt_in_body();
        }
        *body = Some(chunk);
        return Ok(());
    }
    let mut joined = std::mem::take(held);
    joined.extend_from_slice(&chunk);
    if hygiene::contains_stt(&joined) {
        return stt_in_body();
    }
    if !end_of_stream {
        let keep = joined.len().saturating_sub(hygiene::STT_WINDOW);
        *held = joined.split_off(keep);
    }
    *body = Some(Bytes::from(joined));
    Ok(())
}

fn stt_in_body() -> Result<()> {
    Error::e_explain(
        ErrorType::HTTPStatus(400),
        "a session transfer token in a request body is never forwarded",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STT: &[u8] =
        b"AAAAAAAAAAAAAAAAAAAAAA.1800000000.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn a_token_split_across_chunks_is_stopped_before_any_of_it_goes_on() {
        let mut held = Vec::new();
        let (a, b) = STT.split_at(40);
        let mut first = Some(Bytes::from([b"x=".as_slice(), a].concat()));
        scan_chunk(&mut first, false, &mut held).unwrap();
        assert!(first.unwrap().is_empty(), "everything held back");
        let mut second = Some(Bytes::copy_from_slice(b));
        assert!(scan_chunk(&mut second, true, &mut held).is_err());
    }

    #[test]
    fn ordinary_bodies_go_on_whole() {
        let mut held = Vec::new();
        let mut out = Vec::new();
        for (i, part) in [&b"a=1&b="[..], &[b'z'; 300], b"&c=3"].iter().enumerate() {
            let mut c = Some(Bytes::copy_from_slice(part));
            scan_chunk(&mut c, i == 2, &mut held).unwrap();
            out.extend_from_slice(&c.unwrap());
        }
        assert_eq!(out.len(), 6 + 300 + 4);
        assert!(held.is_empty());
    }
}
