//! The token endpoint (RFC 6749 §4.1.3, §6): refresh-token and authorization-code
//! grants, their ES256 id_tokens; and `/userinfo` for the access tokens it issued.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use ring::digest;
use serde_json::{json, Value};

use super::jwt::{b64e, now_secs};
use super::params::{bearer_token, client_identity, is_form, normalize_scope, parse_params};
use super::reply::{json_response, response};
use super::state::{AccessGrant, Inner, RefreshGrant, State};
use super::{Body, ACCESS_TOKEN_TTL, ID_TOKEN_TTL};

/// An RFC 6749 §5.2 error.
pub(super) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    pub(super) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
    pub(super) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    pub(super) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }
    pub(super) fn into_response(self) -> Response<Body> {
        let mut headers = vec![];
        if self.status == StatusCode::UNAUTHORIZED {
            headers.push(("www-authenticate", r#"Basic realm="test-idp""#.to_string()));
        }
        json_response(
            self.status,
            &json!({"error": self.error, "error_description": self.description}),
            headers,
        )
    }
}

impl Inner {
    pub(super) fn token(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
        if !is_form(headers) {
            return Err(OAuthError::invalid_request(
                "content type must be application/x-www-form-urlencoded",
            ));
        }
        let params = parse_params(body).map_err(OAuthError::invalid_request)?;
        let client_id = client_identity(headers, &params)?;
        if params.contains_key("audience") {
            return Err(OAuthError::invalid_request("unknown audience"));
        }
        let grant_type = params
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("missing grant_type"))?;
        let client_id =
            client_id.ok_or_else(|| OAuthError::invalid_request("missing client_id"))?;
        match grant_type.as_str() {
            "refresh_token" => self.refresh_grant(&client_id, &params),
            "authorization_code" => self.code_grant(&client_id, &params),
            _ => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type not supported",
            )),
        }
    }

    fn refresh_grant(
        &self,
        client_id: &str,
        params: &HashMap<String, String>,
    ) -> Result<Value, OAuthError> {
        let token = params
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("missing refresh_token"))?;
        let mut st = self.lock();
        let grant = st.refresh.get(token).cloned().ok_or_else(|| {
            OAuthError::invalid_grant("refresh token is invalid, expired or revoked")
        })?;
        if grant.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "refresh token was issued to another client",
            ));
        }
        let scope = match params.get("scope") {
            None => grant.scope.clone(),
            Some(requested) => {
                let granted: HashSet<&str> = grant.scope.split_whitespace().collect();
                if requested.split_whitespace().any(|s| !granted.contains(s)) {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "requested scope exceeds the granted scope",
                    ));
                }
                normalize_scope(requested)
            }
        };
        let new_refresh = if self.opts.rotate_refresh_tokens {
            st.refresh.remove(token);
            let fresh = self.random_token();
            st.refresh.insert(fresh.clone(), grant.clone());
            Some(fresh)
        } else {
            None
        };
        let access = self.new_access_token(&mut st, &grant.sub);
        drop(st);
        Ok(self.token_json(&access, &scope, new_refresh, &grant.sub, client_id, None))
    }

    fn code_grant(
        &self,
        client_id: &str,
        params: &HashMap<String, String>,
    ) -> Result<Value, OAuthError> {
        let code = params
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("missing code"))?;
        let mut st = self.lock();
        // A code is single-use whatever the outcome.
        let grant = st.codes.remove(code).ok_or_else(|| {
            OAuthError::invalid_grant("authorization code is invalid, expired or used")
        })?;
        if grant.expires_at <= now_secs() {
            return Err(OAuthError::invalid_grant(
                "authorization code is invalid, expired or used",
            ));
        }
        if grant.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "authorization code was issued to another client",
            ));
        }
        if params.get("redirect_uri") != Some(&grant.redirect_uri) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        if let Some((challenge, method)) = &grant.code_challenge {
            let verifier = params
                .get("code_verifier")
                .ok_or_else(|| OAuthError::invalid_grant("missing code_verifier"))?;
            let computed = if method == "S256" {
                b64e(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
            } else {
                verifier.clone()
            };
            if &computed != challenge {
                return Err(OAuthError::invalid_grant("PKCE verification failed"));
            }
        }
        let refresh = self.random_token();
        st.refresh.insert(
            refresh.clone(),
            RefreshGrant {
                sub: grant.sub.clone(),
                client_id: client_id.to_string(),
                scope: grant.scope.clone(),
            },
        );
        let access = self.new_access_token(&mut st, &grant.sub);
        st.paired_access.insert(refresh.clone(), access.clone());
        drop(st);
        let mut v = self.token_json(
            &access,
            &grant.scope,
            Some(refresh),
            &grant.sub,
            client_id,
            grant.nonce.as_deref(),
        );
        if let (Some(sid), true) = (&grant.sid, self.opts.id_token) {
            let iat = now_secs();
            let mut claims = json!({"iss": self.issuer, "sub": grant.sub, "aud": client_id, "iat": iat, "exp": iat + ID_TOKEN_TTL, "sid": sid, "amr": [grant.amr]});
            if let Some(n) = &grant.nonce {
                claims["nonce"] = json!(n);
            }
            v["id_token"] = json!(self.sign_claims(&claims));
        }
        Ok(v)
    }

    fn new_access_token(&self, st: &mut State, sub: &str) -> String {
        let token = self.random_token();
        st.access.insert(
            token.clone(),
            AccessGrant {
                sub: sub.to_string(),
                expires_at: now_secs() + ACCESS_TOKEN_TTL,
            },
        );
        token
    }

    fn token_json(
        &self,
        access: &str,
        scope: &str,
        refresh: Option<String>,
        sub: &str,
        client_id: &str,
        nonce: Option<&str>,
    ) -> Value {
        let mut v = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL,
            "scope": scope,
        });
        if let Some(refresh) = refresh {
            v["refresh_token"] = json!(refresh);
        }
        if self.opts.id_token {
            v["id_token"] = json!(self.id_token(sub, client_id, nonce));
        }
        v
    }

    fn id_token(&self, sub: &str, client_id: &str, nonce: Option<&str>) -> String {
        let iat = now_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": client_id,
            "iat": iat,
            "exp": iat + ID_TOKEN_TTL,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign_claims(&claims)
    }

    pub(super) fn userinfo(&self, headers: &HeaderMap) -> Response<Body> {
        let Some(token) = bearer_token(headers) else {
            return response(
                StatusCode::UNAUTHORIZED,
                vec![("www-authenticate", r#"Bearer realm="test-idp""#.into())],
                Bytes::new(),
            );
        };
        let sub = {
            let st = self.lock();
            st.access
                .get(&token)
                .filter(|g| g.expires_at > now_secs())
                .map(|g| g.sub.clone())
        };
        match sub {
            Some(sub) => json_response(StatusCode::OK, &json!({"sub": sub}), vec![]),
            None => response(
                StatusCode::UNAUTHORIZED,
                vec![(
                    "www-authenticate",
                    r#"Bearer realm="test-idp", error="invalid_token""#.into(),
                )],
                Bytes::new(),
            ),
        }
    }

    // ---- revocation (RFC 7009) ----
}
