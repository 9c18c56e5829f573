//! Every request: recorded first, then 503 while down, then dispatched by path
//! (as received, or as a Java router reads it); discovery and the IdP's `/jwks`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::java_router::java_route;
use super::reply::{json_response, method_not_allowed, response, text_response};
use super::state::Inner;
use super::{Body, RecordedRequest, MAX_BODY};

impl Inner {
    pub(super) async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let (body, body_ok) = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => (collected.to_bytes(), true),
            Err(_) => (Bytes::new(), false),
        };
        let down = {
            let mut st = self.lock();
            st.requests.push(RecordedRequest {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body: body.to_vec(),
            });
            st.down
        };
        if down {
            return text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "identity provider unavailable\n",
            );
        }
        if !body_ok {
            return text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                "request body unreadable or too large\n",
            );
        }

        let method = &parts.method;
        let path = if self.opts.java_router {
            java_route(parts.uri.path())
        } else {
            parts.uri.path().to_string()
        };
        match path.as_str() {
            "/.well-known/openid-configuration" => {
                if method != Method::GET {
                    return method_not_allowed("GET");
                }
                json_response(StatusCode::OK, &self.discovery(), vec![])
            }
            "/jwks" => {
                if method != Method::GET {
                    return method_not_allowed("GET");
                }
                json_response(
                    StatusCode::OK,
                    &json!({"keys": [self.public_jwk.clone()]}),
                    vec![],
                )
            }
            "/oauth/token" => {
                if method != Method::POST {
                    return method_not_allowed("POST");
                }
                match self.token(&parts.headers, &body) {
                    Ok(v) => json_response(StatusCode::OK, &v, vec![]),
                    Err(e) => e.into_response(),
                }
            }
            "/userinfo" => {
                if method != Method::GET && method != Method::POST {
                    return method_not_allowed("GET, POST");
                }
                self.userinfo(&parts.headers)
            }
            "/oauth/revoke" => {
                if method != Method::POST {
                    return method_not_allowed("POST");
                }
                self.revoke(&parts.headers, &body);
                response(
                    StatusCode::OK,
                    vec![("cache-control", "no-store".into())],
                    Bytes::new(),
                )
            }
            "/authorize" => {
                if method != Method::GET {
                    return method_not_allowed("GET");
                }
                self.authorize(&parts).await
            }
            "/resume" => self.resume(&parts.headers),
            _ => text_response(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }

    fn discovery(&self) -> Value {
        let iss = &self.issuer;
        json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/oauth/token"),
            "userinfo_endpoint": format!("{iss}/userinfo"),
            "jwks_uri": format!("{iss}/jwks"),
            "revocation_endpoint": format!("{iss}/oauth/revoke"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "claims_supported": ["sub", "iss", "aud", "iat", "exp", "nonce"],
        })
    }
}
