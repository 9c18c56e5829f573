//! Minting (SPEC §2.1): a native app trades its refresh token for a session
//! transfer token.
//!
//! The request arrives at the IdP's token endpoint, which handoff fronts; what marks
//! it as a mint is `audience = urn:{public host}:session_transfer`. In order:
//! 1. parse the body (JSON or form) — malformed → `invalid_request`;
//! 2. the client must be a native client allowed to mint → else `unauthorized_client`;
//! 3. a refresh token that came out of a transfer session may not mint (no nesting);
//!    its lineage is looked up (or a new one is started) — store down → 503;
//! 4. the refresh grant goes to the IdP without the special audience: the IdP, not
//!    handoff, decides whether the token is good; rejection → `invalid_grant`;
//! 5. the user is the verified id_token's `sub`, or userinfo's;
//! 6. the STT is minted and recorded (only its hash), and the answer has Auth0's shape,
//!    with the IdP's rotated refresh token passed through.
//!
//! After step 4 the IdP may have rotated the refresh token: from then on, every
//! answer — error or not — carries the new `refresh_token`, because a native app
//! that loses it is logged out.

use crate::app::{Handoff, LINEAGE_TTL};
use crate::secret::{LineageId, Secret, TransferToken};
use crate::store::{MintContext, MintWrite, RefreshKind};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// The `issued_token_type` of an STT (Auth0's).
pub const ISSUED_TOKEN_TYPE: &str = "urn:auth0:params:oauth:token-type:session_transfer_token";

/// Parameters of a token-endpoint request, in order, as strings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenParams(pub Vec<(String, String)>);

impl std::fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values include refresh tokens and client secrets.
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl TokenParams {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Form-encodes every parameter except those in `except`.
    pub fn to_form(&self, except: &[&str]) -> String {
        let kept: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(k, _)| !except.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        serde_urlencoded::to_string(kept).expect("string pairs always encode")
    }
}

/// An OAuth error answer (RFC 6749 §5.2) — never with a token in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// HTTP status.
    pub status: u16,
    /// `error`.
    pub error: &'static str,
    /// `error_description`.
    pub description: String,
}

impl OAuthError {
    /// A 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError {
            status: 400,
            error: "invalid_request",
            description: description.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

/// Parses a token-endpoint body: `application/json` (an object of strings) or
/// `application/x-www-form-urlencoded`. Repeated parameters are refused (RFC 6749 §3.2).
pub fn parse_token_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenParams, OAuthError> {
    let ct = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    let pairs: Vec<(String, String)> = match ct.as_str() {
        "application/json" => {
            let v: Value = serde_json::from_str(text).map_err(|_| OAuthError::invalid_request("the body is not valid JSON"))?;
            let Value::Object(obj) = v else {
                return Err(OAuthError::invalid_request("the JSON body must be an object"));
            };
            let mut out = Vec::with_capacity(obj.len());
            for (k, v) in obj {
                let s = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(OAuthError::invalid_request(format!("parameter {:?} must be a string", k.chars().take(64).collect::<String>()))),
                };
                out.push((k, s));
            }
            out
        }
        "application/x-www-form-urlencoded" | "" => serde_urlencoded::from_str(text)
            .map_err(|_| OAuthError::invalid_request("the body is not valid application/x-www-form-urlencoded"))?,
        other => {
            return Err(OAuthError::invalid_request(format!(
                "unsupported content type {:?}: use application/x-www-form-urlencoded or application/json",
                other.chars().take(64).collect::<String>()
            )))
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.as_str()) {
            return Err(OAuthError::invalid_request(format!(
                "parameter {:?} is repeated",
                k.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(TokenParams(pairs))
}

/// The answer to a mint request: status and JSON body.
#[derive(Debug)]
pub struct MintAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl MintAnswer {
    fn error(e: OAuthError, rotated: Option<&str>) -> Self {
        let mut body = e.body();
        if let Some(rt) = rotated {
            // The IdP already rotated the native refresh token: hand the new one back
            // even on failure, or the app is logged out.
            body["refresh_token"] = Value::String(rt.to_string());
        }
        MintAnswer {
            status: e.status,
            body,
        }
    }
}

fn unavailable(what: &str) -> OAuthError {
    OAuthError {
        status: 503,
        error: "temporarily_unavailable",
        description: format!("{what}; try again"),
    }
}

/// Runs a mint for the request `params` from `client_ip` with device `fingerprint`.
pub async fn mint(
    h: &Handoff,
    params: &TokenParams,
    client_ip: IpAddr,
    fingerprint: Option<[u8; 32]>,
) -> MintAnswer {
    let answer = mint_inner(h, params, client_ip, fingerprint).await;
    let outcome = match answer.status {
        200 => "minted",
        503 => "unavailable",
        _ => match answer.body.get("error").and_then(Value::as_str) {
            Some("invalid_grant") => "invalid_grant",
            Some("unauthorized_client") => "unauthorized_client",
            Some("invalid_client") => "invalid_client",
            _ => "invalid_request",
        },
    };
    h.metrics.mints.with_label_values(&[outcome]).inc();
    answer
}

async fn mint_inner(
    h: &Handoff,
    params: &TokenParams,
    client_ip: IpAddr,
    fingerprint: Option<[u8; 32]>,
) -> MintAnswer {
    // 1. shape
    if params.get("grant_type") != Some("refresh_token") {
        return MintAnswer::error(
            OAuthError::invalid_request(
                "a session transfer token is minted with grant_type=refresh_token",
            ),
            None,
        );
    }
    let Some(client_id) = params
        .get("client_id")
        .filter(|c| !c.is_empty() && c.len() <= 256)
    else {
        return MintAnswer::error(OAuthError::invalid_request("client_id is required"), None);
    };
    let Some(refresh_token) = params
        .get("refresh_token")
        .filter(|t| !t.is_empty() && t.len() <= 4096)
        .map(Secret::new)
    else {
        return MintAnswer::error(
            OAuthError::invalid_request("refresh_token is required"),
            None,
        );
    };

    // 2. policy
    let (ttl, asn) = {
        let policy = h.policy.load();
        match policy.native_client(client_id) {
            Some(n) if policy.may_mint(client_id, client_ip) => {
                (n.transfer_token_ttl, policy.asn_of(client_ip))
            }
            _ => {
                tracing::info!(
                    client_id,
                    "mint refused: client may not create session transfer tokens"
                );
                return MintAnswer::error(
                    OAuthError {
                        status: 400,
                        error: "unauthorized_client",
                        description: "this client may not create session transfer tokens".into(),
                    },
                    None,
                );
            }
        }
    };

    // 3. lineage and nesting
    let presented = refresh_token.hash();
    let lineage = match h.store.refresh_token_info(&presented).await {
        Err(e) => {
            h.metrics
                .store_errors
                .with_label_values(&["refresh_token_info"])
                .inc();
            tracing::warn!(error = %e, "mint: store unavailable");
            return MintAnswer::error(unavailable("the session store is unavailable"), None);
        }
        Ok(Some(info)) if info.kind == RefreshKind::Web => {
            tracing::warn!(client_id, lineage = %info.lineage, "mint refused: refresh token came from a session transfer");
            return MintAnswer::error(
                OAuthError {
                    status: 400,
                    error: "unauthorized_client",
                    description: "a refresh token from a session transfer cannot mint another"
                        .into(),
                },
                None,
            );
        }
        Ok(Some(info)) => info.lineage,
        Ok(None) => LineageId::generate(),
    };

    // 4. the IdP decides whether the refresh token is good
    let form = params.to_form(&["audience"]);
    let upstream = h
        .idp
        .send(
            http::Method::POST,
            &h.config.paths.token,
            &[
                ("content-type", "application/x-www-form-urlencoded".into()),
                ("accept", "application/json".into()),
                ("x-forwarded-for", client_ip.to_string()),
            ],
            Bytes::from(form),
        )
        .await;
    let resp = match upstream {
        Err(e) => {
            tracing::warn!(error = %e, "mint: identity provider unavailable");
            return MintAnswer::error(unavailable("the identity provider is unavailable"), None);
        }
        Ok(r) => r,
    };
    let body: Option<Map<String, Value>> = serde_json::from_slice(&resp.body).ok();
    if resp.status != 200 {
        let idp_error = body
            .as_ref()
            .and_then(|b| b.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("");
        tracing::info!(
            client_id,
            status = resp.status,
            idp_error,
            "mint: identity provider rejected the refresh grant"
        );
        let (status, error) = match idp_error {
            "invalid_client" => (401, "invalid_client"),
            "invalid_scope" => (400, "invalid_scope"),
            "unauthorized_client" => (400, "unauthorized_client"),
            _ => (400, "invalid_grant"),
        };
        return MintAnswer::error(
            OAuthError {
                status,
                error,
                description: "the identity provider rejected the refresh token".into(),
            },
            None,
        );
    }
    let Some(body) = body else {
        tracing::error!("mint: the identity provider's token response is not a JSON object");
        return MintAnswer::error(
            unavailable("the identity provider answered unexpectedly"),
            None,
        );
    };
    let rotated = body
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    let rotated_text = rotated.as_ref().map(|s| s.expose());
    let id_token = body.get("id_token").and_then(Value::as_str);

    // 5. who is the user
    let sub = match (id_token, body.get("access_token").and_then(Value::as_str)) {
        (Some(t), _) => h.idp.id_token_subject(t, client_id).await,
        (None, Some(at)) => h.idp.userinfo_subject(at).await,
        (None, None) => Err(crate::idp::IdpError::Invalid(
            "neither id_token nor access_token".into(),
        )),
    };
    let sub = match sub {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, client_id, "mint: cannot establish the user");
            return MintAnswer::error(unavailable("the user could not be verified"), rotated_text);
        }
    };

    // 6. mint and record
    let now = h.clock.now_secs();
    let exp = now + ttl.as_secs();
    let stt = TransferToken::generate(&lineage, exp);
    let ctx = MintContext {
        sub,
        native_client_id: client_id.to_string(),
        lineage: lineage.clone(),
        scope: body
            .get("scope")
            .and_then(Value::as_str)
            .or(params.get("scope"))
            .unwrap_or("")
            .to_string(),
        ip: client_ip,
        asn,
        fingerprint: fingerprint.map(|f| crate::secret::hex(&f)),
        iat: now,
        exp,
    };
    let mut refresh_hashes = vec![presented];
    if let Some(r) = &rotated {
        refresh_hashes.push(r.hash());
    }
    match h
        .store
        .record_mint(stt.hash(), &ctx, &refresh_hashes, LINEAGE_TTL)
        .await
    {
        Err(e) => {
            h.metrics
                .store_errors
                .with_label_values(&["record_mint"])
                .inc();
            tracing::warn!(error = %e, "mint: store unavailable");
            return MintAnswer::error(
                unavailable("the session store is unavailable"),
                rotated_text,
            );
        }
        Ok(MintWrite::LineageRevoked) => {
            tracing::warn!(%lineage, client_id, "mint refused: lineage revoked");
            return MintAnswer::error(
                OAuthError {
                    status: 400,
                    error: "invalid_grant",
                    description: "the refresh token has been revoked".into(),
                },
                rotated_text,
            );
        }
        Ok(MintWrite::Stored) => {}
    }
    if rotated.as_ref().is_some_and(|r| r.hash() != presented) {
        // Rotated out: its mapping need not outlive the rotation for long.
        if let Err(e) = h
            .store
            .expire_refresh_token(&presented, crate::store::ROTATED_REFRESH_TTL)
            .await
        {
            tracing::warn!(error = %e, "mint: could not shorten the rotated-out refresh token's mapping");
        }
    }
    tracing::info!(token = %stt, %lineage, client_id, %client_ip, expires_in = ttl.as_secs(), "session transfer token minted");

    let mut out = json!({
        "access_token": stt.expose(),
        "issued_token_type": ISSUED_TOKEN_TYPE,
        "token_type": "N_A",
        "expires_in": ttl.as_secs(),
    });
    if let Some(r) = rotated_text {
        out["refresh_token"] = Value::String(r.to_string());
    }
    if let Some(t) = id_token {
        out["id_token"] = Value::String(t.to_string());
    }
    MintAnswer {
        status: 200,
        body: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_or_fail_clearly() {
        let p = parse_token_body(
            Some("application/json"),
            br#"{"grant_type":"refresh_token","client_id":"a","n":1}"#,
        )
        .unwrap();
        assert_eq!(p.get("client_id"), Some("a"));
        assert_eq!(p.get("n"), Some("1"));
        let p = parse_token_body(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"a=1&b=x%20y",
        )
        .unwrap();
        assert_eq!(p.get("b"), Some("x y"));
        for (ct, body) in [
            (Some("application/json"), &b"{"[..]),
            (Some("application/json"), b"[1]"),
            (Some("application/json"), br#"{"a":{"b":1}}"#),
            (Some("application/x-www-form-urlencoded"), b"\xff\xfe"),
            (Some("application/x-www-form-urlencoded"), b"a=1&a=2"),
            (Some("text/plain"), b"a=1"),
        ] {
            let e = parse_token_body(ct, body).unwrap_err();
            assert_eq!(e.error, "invalid_request");
        }
    }

    #[test]
    fn params_debug_hides_values() {
        let p = TokenParams(vec![("refresh_token".into(), "secret-value".into())]);
        assert!(!format!("{p:?}").contains("secret-value"));
        assert_eq!(p.to_form(&["refresh_token"]), "");
    }
}
