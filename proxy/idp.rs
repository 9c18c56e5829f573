//! handoff's own calls to the identity provider.
//!
//! Minting needs to ask the IdP two things: is this refresh token good (an ordinary
//! refresh grant, forwarded without handoff's special audience), and who is the
//! user (the `id_token`, verified against the IdP's JWKS, or else the userinfo
//! endpoint). This module is that client: discovery and JWKS are fetched from the
//! IdP's own address (never through the public host, which may be handoff itself)
//! and cached; an id_token signed with an unknown `kid` triggers one JWKS refetch,
//! at most every 10 seconds, so key rotation at the IdP works without a restart
//! and a flood of bad tokens cannot turn into a flood of JWKS requests.

use crate::clock::SharedClock;
use crate::config::{Config, Upstream};
use crate::jws::{self, Alg, JwkSet};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Responses from the IdP larger than this are refused.
const MAX_RESPONSE: usize = 256 * 1024;

/// A failure talking to the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdpError {
    /// Could not connect, timed out, or got a 5xx: the IdP is down.
    Unavailable(String),
    /// The IdP answered something handoff cannot use (bad JSON, bad id_token).
    Invalid(String),
}

impl fmt::Display for IdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdpError::Unavailable(e) => write!(f, "identity provider unavailable: {e}"),
            IdpError::Invalid(e) => write!(f, "identity provider answer unusable: {e}"),
        }
    }
}

impl std::error::Error for IdpError {}

/// A response from the IdP.
#[derive(Debug, Clone)]
pub struct IdpResponse {
    /// HTTP status.
    pub status: u16,
    /// Body (at most 256 KiB).
    pub body: Bytes,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

#[derive(Debug, Default)]
struct Cache {
    discovery: Option<Discovery>,
    jwks: Option<(JwkSet, u64)>,
    last_refetch_ms: u64,
}

/// The IdP client. Cheap to share (`Arc`).
pub struct IdpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    upstream: Upstream,
    host: String,
    cache: Mutex<Cache>,
    clock: SharedClock,
}

impl fmt::Debug for IdpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpClient")
            .field("upstream", &self.upstream.address)
            .finish_non_exhaustive()
    }
}

/// The path (and query) of a URL: `https://idp/x/y?z` → `/x/y?z`.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

impl IdpClient {
    /// A client for the IdP of `config`.
    pub fn new(config: &Config, clock: SharedClock) -> Result<Arc<Self>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &config.upstream.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("upstream.ca_file {}: {e}", ca.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("upstream.ca_file {}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("upstream.ca_file {}: {e}", ca.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.upstream.timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .with_server_name_resolver(FixedServerName(config.upstream.sni.clone()))
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Arc::new(IdpClient {
            client,
            upstream: config.upstream.clone(),
            host: config.public_host.clone(),
            cache: Mutex::new(Cache::default()),
            clock,
        }))
    }

    /// Sends a request to the IdP at `path` and reads the whole answer.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<IdpResponse, IdpError> {
        let uri = format!("{}{}", self.upstream.base_url(), path);
        let mut req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::HOST, &self.host);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| IdpError::Invalid(format!("cannot build request: {e}")))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| IdpError::Unavailable(format!("{path}: {e}")))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| IdpError::Unavailable(format!("{path}: reading body: {e}")))?
                .to_bytes();
            Ok(IdpResponse { status, body })
        };
        let resp = tokio::time::timeout(self.upstream.timeout, fut)
            .await
            .map_err(|_| {
                IdpError::Unavailable(format!(
                    "{path}: timed out after {:?}",
                    self.upstream.timeout
                ))
            })??;
        if resp.status >= 500 {
            return Err(IdpError::Unavailable(format!(
                "{path}: HTTP {}",
                resp.status
            )));
        }
        Ok(resp)
    }

    async fn get_json(&self, path: &str) -> Result<Value, IdpError> {
        let r = self
            .send(
                http::Method::GET,
                path,
                &[("accept", "application/json".into())],
                Bytes::new(),
            )
            .await?;
        if r.status != 200 {
            return Err(IdpError::Invalid(format!("{path}: HTTP {}", r.status)));
        }
        serde_json::from_slice(&r.body)
            .map_err(|e| IdpError::Invalid(format!("{path}: not JSON: {e}")))
    }

    async fn discovery(&self) -> Result<Discovery, IdpError> {
        if let Some(d) = self.cache.lock().await.discovery.clone() {
            return Ok(d);
        }
        let v = self.get_json(&self.upstream.discovery_path).await?;
        let d: Discovery = serde_json::from_value(v)
            .map_err(|e| IdpError::Invalid(format!("discovery document: {e}")))?;
        self.cache.lock().await.discovery = Some(d.clone());
        Ok(d)
    }

    async fn jwks(&self, force: bool) -> Result<JwkSet, IdpError> {
        let now = self.clock.now_ms();
        {
            let c = self.cache.lock().await;
            if let Some((set, at)) = &c.jwks {
                let fresh =
                    now.saturating_sub(*at) < self.upstream.jwks_cache_ttl.as_millis() as u64;
                let may_refetch = now.saturating_sub(c.last_refetch_ms) >= 10_000;
                if fresh && !(force && may_refetch) {
                    return Ok(set.clone());
                }
            }
        }
        if force {
            // Count the attempt, not the success: a flood of unknown `kid`s (or a
            // failing IdP) costs at most one JWKS request per 10 s.
            let mut c = self.cache.lock().await;
            if c.jwks.is_some() && now.saturating_sub(c.last_refetch_ms) < 10_000 {
                return Ok(c.jwks.as_ref().map(|(s, _)| s.clone()).unwrap_or_default());
            }
            c.last_refetch_ms = now;
        }
        let d = self.discovery().await?;
        let v = self.get_json(path_of(&d.jwks_uri)).await?;
        let set: JwkSet =
            serde_json::from_value(v).map_err(|e| IdpError::Invalid(format!("JWKS: {e}")))?;
        let mut c = self.cache.lock().await;
        c.jwks = Some((set.clone(), now));
        if force {
            c.last_refetch_ms = now;
        }
        Ok(set)
    }

    /// The issuer id_tokens must carry.
    async fn issuer(&self) -> Result<String, IdpError> {
        match &self.upstream.issuer {
            Some(i) => Ok(i.clone()),
            None => Ok(self.discovery().await?.issuer),
        }
    }

    /// Verifies a JWS from the IdP (signature against its JWKS, refetched once on
    /// an unknown key) and returns its claims; `iss` must be the IdP's.
    pub(crate) async fn verify_jws(&self, token: &str) -> Result<Value, IdpError> {
        const ALGS: &[Alg] = &[Alg::Rs256, Alg::Es256, Alg::EdDsa];
        let set = self.jwks(false).await?;
        let claims = match jws::verify(token, &set, ALGS) {
            Err(jws::JwsError::UnknownKey) => {
                let set = self.jwks(true).await?;
                jws::verify(token, &set, ALGS)
            }
            other => other,
        }
        .map_err(|e| IdpError::Invalid(format!("token from the IdP: {e}")))?;
        let iss = self.issuer().await?;
        if claims.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
            return Err(IdpError::Invalid("token from the IdP: wrong iss".into()));
        }
        Ok(claims)
    }

    /// Verifies an id_token issued to `client_id` and returns its `sub`.
    pub(crate) async fn id_token_subject(
        &self,
        id_token: &str,
        client_id: &str,
    ) -> Result<String, IdpError> {
        let claims = self.verify_jws(id_token).await?;
        if !audience_contains(&claims, client_id) {
            return Err(IdpError::Invalid(
                "id_token: aud does not name the client".into(),
            ));
        }
        let now = self.clock.now_secs();
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        if exp + 60 < now {
            return Err(IdpError::Invalid("id_token: expired".into()));
        }
        subject(&claims).ok_or_else(|| IdpError::Invalid("id_token: no sub".into()))
    }

    /// Asks the userinfo endpoint who holds `access_token`.
    pub(crate) async fn userinfo_subject(&self, access_token: &str) -> Result<String, IdpError> {
        let d = self.discovery().await?;
        let path = d
            .userinfo_endpoint
            .as_deref()
            .map(path_of)
            .ok_or_else(|| IdpError::Invalid("no id_token and no userinfo endpoint".into()))?
            .to_string();
        let r = self
            .send(
                http::Method::GET,
                &path,
                &[
                    ("authorization", format!("Bearer {access_token}")),
                    ("accept", "application/json".into()),
                ],
                Bytes::new(),
            )
            .await?;
        if r.status != 200 {
            return Err(IdpError::Invalid(format!("userinfo: HTTP {}", r.status)));
        }
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| IdpError::Invalid(format!("userinfo: {e}")))?;
        subject(&v).ok_or_else(|| IdpError::Invalid("userinfo: no sub".into()))
    }
}

fn subject(v: &Value) -> Option<String> {
    v.get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .map(str::to_owned)
}

/// Whether a JWT's `aud` (string or array) contains `want`.
pub fn audience_contains(claims: &Value, want: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
        _ => false,
    }
}

/// Resolves every TLS connection to the IdP to the configured SNI name.
#[derive(Debug, Clone)]
struct FixedServerName(String);

impl hyper_rustls::ResolveServerName for FixedServerName {
    fn resolve(
        &self,
        _uri: &http::Uri,
    ) -> Result<rustls::pki_types::ServerName<'static>, Box<dyn std::error::Error + Sync + Send>>
    {
        Ok(rustls::pki_types::ServerName::try_from(self.0.clone())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_urls() {
        assert_eq!(path_of("https://idp.example/jwks?x=1"), "/jwks?x=1");
        assert_eq!(path_of("http://127.0.0.1:3000"), "/");
        assert_eq!(path_of("/already"), "/already");
    }

    #[test]
    fn audiences() {
        assert!(audience_contains(&serde_json::json!({"aud": "a"}), "a"));
        assert!(audience_contains(
            &serde_json::json!({"aud": ["b", "a"]}),
            "a"
        ));
        assert!(!audience_contains(&serde_json::json!({"aud": ["b"]}), "a"));
        assert!(!audience_contains(&serde_json::json!({}), "a"));
    }
}
