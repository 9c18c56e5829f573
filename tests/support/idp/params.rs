//! Reading requests: form and query parameters, client authentication, bearer
//! tokens, cookies, redirect URIs.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, StatusCode};

use super::token::OAuthError;

pub(super) fn normalize_scope(scope: &str) -> String {
    scope.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Form / query parameters per RFC 6749 §3.1: empty values count as omitted,
/// repeated parameters are an error.
pub(super) fn parse_params(input: &[u8]) -> Result<HashMap<String, String>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(input).map_err(|_| "malformed parameters".to_string())?;
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if v.is_empty() {
            continue;
        }
        if map.contains_key(&k) {
            return Err(format!("parameter {k} repeated"));
        }
        map.insert(k, v);
    }
    Ok(map)
}

pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|media| media.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The client identifier from HTTP Basic (RFC 6749 §2.3.1) and/or the `client_id`
/// parameter. Secrets are not checked: the stand-in has no client registry.
pub(super) fn client_identity(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Option<String>, OAuthError> {
    let from_body = params.get("client_id").cloned();
    let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(from_body);
    };
    let invalid_client = || {
        OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "malformed client authentication",
        )
    };
    let auth = auth.to_str().map_err(|_| invalid_client())?;
    let (scheme, creds) = auth.split_once(' ').ok_or_else(invalid_client)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client());
    }
    let decoded = STANDARD
        .decode(creds.trim())
        .map_err(|_| invalid_client())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid_client())?;
    let (id, _secret) = decoded.split_once(':').ok_or_else(invalid_client)?;
    let id = form_decode(id).ok_or_else(invalid_client)?;
    if id.is_empty() {
        return Err(invalid_client());
    }
    match from_body {
        Some(body_id) if body_id != id => Err(OAuthError::invalid_request(
            "client_id does not match client authentication",
        )),
        _ => Ok(Some(id)),
    }
}

/// application/x-www-form-urlencoded decoding of one component.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

pub(super) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

pub(super) fn cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// Absolute http(s) URL, visible ASCII only, no fragment (RFC 6749 §3.1.2).
pub(super) fn valid_redirect_uri(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://") {
        rest
    } else {
        return false;
    };
    !rest.is_empty()
        && !rest.starts_with('/')
        && !uri.contains('#')
        && uri.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

pub(super) fn append_query(uri: &str, params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}
