//! The admin listener: health, readiness, metrics, the public JWKS and rules
//! reload. Loopback by default; state-changing calls need the bearer token.
//!
//! The token is compared in constant time (over SHA-256 digests, so the lengths
//! do not leak either).

use crate::app::Handoff;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// The admin HTTP application.
pub struct AdminApp {
    h: Arc<Handoff>,
}

impl AdminApp {
    /// The admin app of one instance.
    pub fn new(h: Arc<Handoff>) -> Self {
        AdminApp { h }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(want) = &self.h.config.admin.token else {
            // No token configured: the config only allows that on loopback.
            return true;
        };
        let got = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let a = ring::digest::digest(&ring::digest::SHA256, got.as_bytes());
        let b = ring::digest::digest(&ring::digest::SHA256, want.expose().as_bytes());
        #[allow(deprecated)]
        let equal = ring::constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok();
        equal
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static response parts are valid")
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", v.to_string())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
            ("GET", "/readyz") => match self.h.store.ping().await {
                Ok(()) => json(StatusCode::OK, serde_json::json!({"status": "ready"})),
                Err(e) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"status": "not ready", "store": e.to_string()}),
                ),
            },
            ("GET", "/metrics") => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.h.metrics.render(),
            ),
            ("GET", p) if p == self.h.config.paths.jwks => reply(
                StatusCode::OK,
                "application/json",
                self.h.jwks_json.to_vec(),
            ),
            ("POST", "/rules/reload") => {
                if !self.authorized(session) {
                    return json(
                        StatusCode::UNAUTHORIZED,
                        serde_json::json!({"error": "unauthorized"}),
                    );
                }
                match self.h.reload_rules() {
                    Ok(()) => json(StatusCode::OK, serde_json::json!({"status": "reloaded"})),
                    Err(e) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        serde_json::json!({"status": "rejected", "diagnostics": e}),
                    ),
                }
            }
            _ => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not found"}),
            ),
        }
    }
}
