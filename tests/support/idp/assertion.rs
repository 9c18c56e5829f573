//! handoff's identity assertion: one header, an EdDSA compact JWS verified against
//! handoff's JWKS (fetched once, refetched for an unknown `kid`), its claims
//! checked, its `jti` used once. Independent of handoff's own JWS code.

use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use ring::signature::{self, UnparsedPublicKey};
use serde_json::Value;

use super::jwt::{b64d, now_secs};
use super::state::Inner;
use super::{LoginRecord, ASSERTION_LEEWAY, ASSERTION_MAX_LIFETIME, JWKS_FETCH_TIMEOUT, MAX_BODY};

#[derive(Clone, Debug)]
pub(super) struct AssertionKey {
    kid: Option<String>,
    x: [u8; 32],
}

impl Inner {
    /// Verifies the assertion and, when valid, creates the session and records the
    /// login. Returns (sub, session cookie value) or the reason for rejection.
    pub(super) async fn assertion_login(
        &self,
        values: &[&HeaderValue],
        client_id: &str,
    ) -> Result<(String, String), String> {
        if values.len() != 1 {
            return Err(format!(
                "{} assertion headers (exactly one expected)",
                values.len()
            ));
        }
        let token = values[0]
            .to_str()
            .map_err(|_| "assertion header is not visible ASCII".to_string())?
            .trim();
        let claims = self.verify_assertion(token).await?;
        let sub = self.check_assertion_claims(&claims, client_id)?;
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();

        let session = self.random_token();
        let mut st = self.lock();
        if !st.seen_jti.insert(jti) {
            return Err("replayed assertion (jti already used)".to_string());
        }
        st.sessions.insert(session.clone(), sub.clone());
        st.logins.push(LoginRecord {
            sub: sub.clone(),
            client_id: client_id.to_string(),
            claims,
            session: session.clone(),
        });
        Ok((sub, session))
    }

    /// Checks the compact JWS's structure and EdDSA signature; returns its claims.
    async fn verify_assertion(&self, token: &str) -> Result<Value, String> {
        let segments: Vec<&str> = token.split('.').collect();
        let [h, p, s] = segments[..] else {
            return Err("assertion is not a compact JWS".to_string());
        };
        let header: Value = b64d(h)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(Value::is_object)
            .ok_or("assertion header is not base64url JSON object")?;
        if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
            return Err("assertion alg is not EdDSA".to_string());
        }
        if header.get("crit").is_some() {
            return Err("assertion header has unsupported crit".to_string());
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err("assertion kid is not a string".to_string()),
        };
        let payload = b64d(p).ok_or("assertion payload is not base64url")?;
        let sig = b64d(s).ok_or("assertion signature is not base64url")?;
        let signing_input = &token[..h.len() + 1 + p.len()];

        let keys = self.assertion_keys(kid).await?;
        let verified = keys.iter().any(|k| {
            UnparsedPublicKey::new(&signature::ED25519, &k.x[..])
                .verify(signing_input.as_bytes(), &sig)
                .is_ok()
        });
        if !verified {
            return Err("assertion signature does not verify".to_string());
        }
        serde_json::from_slice::<Value>(&payload)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| "assertion payload is not a JSON object".to_string())
    }

    /// Validates the assertion's claims; returns its `sub`.
    fn check_assertion_claims(&self, claims: &Value, client_id: &str) -> Result<String, String> {
        let str_claim = |name: &str| claims.get(name).and_then(Value::as_str);
        let num_claim = |name: &str| -> Result<f64, String> {
            claims
                .get(name)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("assertion {name} missing or not a number"))
        };
        let now = now_secs() as f64;

        if str_claim("iss") != Some(self.opts.assertion_issuer.as_str()) {
            return Err("assertion iss mismatch".to_string());
        }
        let expected_aud = self.opts.assertion_audience.as_str();
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == expected_aud,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(expected_aud)),
            _ => false,
        };
        if !aud_ok {
            return Err("assertion aud mismatch".to_string());
        }
        let exp = num_claim("exp")?;
        let iat = num_claim("iat")?;
        if exp <= now {
            return Err("assertion expired".to_string());
        }
        if iat > now + ASSERTION_LEEWAY {
            return Err("assertion iat in the future".to_string());
        }
        if exp - iat > ASSERTION_MAX_LIFETIME {
            return Err("assertion lifetime exceeds 60 s".to_string());
        }
        if claims.get("nbf").is_some() && num_claim("nbf")? > now + ASSERTION_LEEWAY {
            return Err("assertion not yet valid (nbf)".to_string());
        }
        let amr_ok = claims
            .get("amr")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("session_transfer")));
        if !amr_ok {
            return Err("assertion amr lacks session_transfer".to_string());
        }
        if str_claim("client_id") != Some(client_id) {
            return Err("assertion client_id does not match the authorize request".to_string());
        }
        let sub = str_claim("sub")
            .filter(|s| !s.is_empty())
            .ok_or("assertion sub missing or empty")?;
        if str_claim("jti").filter(|j| !j.is_empty()).is_none() {
            return Err("assertion jti missing or empty".to_string());
        }
        Ok(sub.to_string())
    }

    /// Keys that may have signed an assertion with this `kid`: from the cache, or
    /// from one fresh fetch of handoff's JWKS when the cache has none.
    async fn assertion_keys(&self, kid: Option<&str>) -> Result<Vec<AssertionKey>, String> {
        let (url, cached) = {
            let st = self.lock();
            (st.jwks_url.clone(), matching_keys(&st.jwks_cache, kid))
        };
        if !cached.is_empty() {
            return Ok(cached);
        }
        let url = url.ok_or("no handoff JWKS URL configured")?;
        let fetched = self.fetch_jwks(&url).await?;
        let found = matching_keys(&fetched, kid);
        {
            let mut st = self.lock();
            if st.jwks_url.as_deref() == Some(url.as_str()) {
                st.jwks_cache = fetched;
            }
        }
        if found.is_empty() {
            Err(format!("no Ed25519 key for kid {kid:?} in handoff's JWKS"))
        } else {
            Ok(found)
        }
    }

    async fn fetch_jwks(&self, url: &str) -> Result<Vec<AssertionKey>, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad JWKS URL: {e}"))?;
        let resp = tokio::time::timeout(JWKS_FETCH_TIMEOUT, self.client.get(uri))
            .await
            .map_err(|_| "JWKS fetch timed out".to_string())?
            .map_err(|e| format!("JWKS fetch failed: {e}"))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("JWKS fetch answered {}", resp.status()));
        }
        let body = tokio::time::timeout(
            JWKS_FETCH_TIMEOUT,
            Limited::new(resp.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_| "JWKS body timed out".to_string())?
        .map_err(|e| format!("JWKS body: {e}"))?
        .to_bytes();
        let jwks: Value =
            serde_json::from_slice(&body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no keys array")?;
        let mut out = vec![];
        for k in keys {
            let field = |name: &str| k.get(name).and_then(Value::as_str);
            if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
                continue;
            }
            if !matches!(field("alg"), None | Some("EdDSA"))
                || !matches!(field("use"), None | Some("sig"))
            {
                continue;
            }
            let Some(x) = field("x")
                .and_then(b64d)
                .and_then(|x| <[u8; 32]>::try_from(x).ok())
            else {
                continue;
            };
            out.push(AssertionKey {
                kid: field("kid").map(str::to_string),
                x,
            });
        }
        Ok(out)
    }
}

fn matching_keys(keys: &[AssertionKey], kid: Option<&str>) -> Vec<AssertionKey> {
    keys.iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .cloned()
        .collect()
}
