//! The admin listener (SPEC §2.6): health, readiness, metrics, the public JWKS,
//! rules reload, revocation and listing. Loopback by default.
//!
//! | call | auth | what |
//! |---|---|---|
//! | `GET /healthz` | — | liveness |
//! | `GET /readyz` | — | 503 while the store is unreachable |
//! | `GET /metrics` | — | Prometheus text |
//! | `GET /.well-known/handoff/jwks.json` | — | public keys of the assertion |
//! | `GET /sessions?subject=S` | bearer | a subject's lineages and web sessions |
//! | `POST /revoke` | bearer | `{"lineage"}`, `{"lineage","session"}` or `{"subject"[,"lineages":true]}` |
//! | `POST /rules/reload` | bearer | re-read the rules file |
//! | `GET /rules` | — | the loaded rules' file, hash, load time and last reload outcome |
//! | `POST {backchannel_logout.path}` | logout token | OIDC back-channel logout |
//!
//! The bearer token is compared in constant time (over SHA-256 digests, so the
//! lengths do not leak either). Without a configured token the calls are open —
//! which the config only allows on a loopback address.
//!
//! A web page the operator happens to have open must not drive this API: a
//! "simple" cross-site `POST` (a `text/plain` body needs no CORS preflight) or a
//! DNS-rebinding page (its own host name resolving to 127.0.0.1) reaches a
//! loopback listener like any local client. So every call is refused (`403`) when
//! it carries an `Origin` or a cross-site `Sec-Fetch-Site`; without a token, one
//! whose `Host` is not a loopback address or `localhost` on the admin port; and a
//! write call whose body is not `application/json`.

use crate::app::Handoff;
use crate::revocation;
use crate::secret::LineageId;
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

/// The largest admin request body read.
const MAX_BODY: usize = 16 * 1024;

/// Reads the request body up to [`MAX_BODY`]: `Err` is the `413` answer; the flag is
/// false when reading failed part way (what came so far is returned).
async fn read_body(session: &mut ServerSession) -> Result<(Vec<u8>, bool), Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(json(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        serde_json::json!({"error": "body too large"}),
                    ));
                }
            }
            Ok(None) => return Ok((body, true)),
            Err(_) => return Ok((body, false)),
        }
    }
}

async fn read_json(session: &mut ServerSession) -> Result<serde_json::Value, Response<Vec<u8>>> {
    let (body, complete) = read_body(session).await?;
    if !complete {
        return Err(json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "cannot read the body"}),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": format!("the body is not JSON: {e}")}),
        )
    })
}

fn store_error(e: crate::store::StoreError) -> Response<Vec<u8>> {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"error": "store unavailable", "detail": e.to_string()}),
    )
}

impl AdminApp {
    async fn list(&self, subject: &str) -> Response<Vec<u8>> {
        let h = &self.h;
        let lineages = match h.store.subject_lineages(subject).await {
            Ok(l) => l,
            Err(e) => return store_error(e),
        };
        let now = h.clock.now_secs();
        let mut out = Vec::new();
        for l in lineages {
            let revoked = match h.store.is_lineage_revoked(&l).await {
                Ok(r) => r,
                Err(e) => return store_error(e),
            };
            let sessions = match h.store.lineage_sessions(&l).await {
                Ok(s) => s,
                Err(e) => return store_error(e),
            };
            // A record the IdP's cookie rotation replaced is history: the session is
            // listed once, by its current record.
            let sessions: Vec<serde_json::Value> = sessions
                .iter()
                .filter(|(_, s)| s.moved_to.is_none())
                .map(|(_, s)| {
                    serde_json::json!({
                        "session": s.sid, "web_client": s.web_client, "native_client": s.native_client,
                        "created": s.created, "absolute_exp": s.absolute_exp, "idle_exp": s.idle_exp(),
                        "ip": s.ip.to_string(),
                        "state": if s.revoked { "revoked" } else if now >= s.expires_at() { "expired" } else { "active" },
                    })
                })
                .collect();
            out.push(serde_json::json!({"lineage": l.as_str(), "revoked": revoked, "sessions": sessions}));
        }
        json(
            StatusCode::OK,
            serde_json::json!({"subject": subject, "lineages": out}),
        )
    }

    async fn revoke(&self, body: serde_json::Value) -> Response<Vec<u8>> {
        let h = &self.h;
        let s = |k: &str| body.get(k).and_then(|v| v.as_str());
        let lineage = s("lineage").map(|l| LineageId::parse(l).ok_or(()));
        match (lineage, s("session"), s("subject")) {
            (Some(Err(())), _, _) => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "lineage is not a lineage id"}),
            ),
            (Some(Ok(l)), Some(sid), None) => {
                match revocation::revoke_session(h, &l, sid, "admin").await {
                    Ok(true) => json(
                        StatusCode::OK,
                        serde_json::json!({"revoked": "session", "lineage": l.as_str(), "session": sid}),
                    ),
                    Ok(false) => json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"error": "no such session in that lineage"}),
                    ),
                    Err(e) => store_error(e),
                }
            }
            (Some(Ok(l)), None, None) => match revocation::revoke_lineage(h, &l, "admin").await {
                Ok(n) => json(
                    StatusCode::OK,
                    serde_json::json!({"revoked": "lineage", "lineage": l.as_str(), "sessions": n}),
                ),
                Err(e) => store_error(e),
            },
            (None, None, Some(sub)) => {
                let lineages = body
                    .get("lineages")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                match revocation::revoke_subject(h, sub, lineages, "admin").await {
                    Ok(n) => json(
                        StatusCode::OK,
                        serde_json::json!({"revoked": "subject", "sessions": n, "lineages": lineages}),
                    ),
                    Err(e) => store_error(e),
                }
            }
            _ => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "expected {\"lineage\"}, {\"lineage\", \"session\"} or {\"subject\"[, \"lineages\": true]}"}),
            ),
        }
    }
}

/// Why a request may not reach the admin API, if it may not (see the module doc).
pub fn browser_guard(
    req: &pingora::http::RequestHeader,
    listen: Option<&str>,
    token_configured: bool,
    write: bool,
) -> Option<&'static str> {
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    if req.headers.contains_key(http::header::ORIGIN) {
        return Some("requests from web pages (with an Origin) are refused");
    }
    if header("sec-fetch-site").is_some_and(|s| s != "none") {
        return Some("requests from web pages are refused");
    }
    if !token_configured {
        let port = listen.and_then(|l| l.rsplit_once(':')).map(|(_, p)| p);
        let host = header("host").unwrap_or("");
        let (name, got_port) = match host.rsplit_once(':') {
            Some((n, p)) if !p.contains(']') => (n, Some(p)),
            _ => (host, None),
        };
        let loopback = name.eq_ignore_ascii_case("localhost")
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback || got_port != port {
            return Some("the Host is not the admin listener's (DNS rebinding?)");
        }
    }
    if write {
        let json = header("content-type")
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        let has_body = header("content-length").is_some_and(|l| l != "0")
            || req.headers.contains_key(http::header::TRANSFER_ENCODING);
        if has_body && !json {
            return Some("write calls take an application/json body");
        }
    }
    None
}

/// One admin call, sorted once from the request line (mini-redis's
/// `Command::from_frame`); [`ServeHttp::response`] dispatches on it with one `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `GET /healthz`
    Healthz,
    /// `GET /readyz`
    Readyz,
    /// `GET /metrics`
    Metrics,
    /// `GET {paths.jwks}`
    Jwks,
    /// `GET /rules`
    Rules,
    /// `GET /sessions?subject=S`
    Sessions,
    /// `POST /revoke`
    Revoke,
    /// `POST {backchannel_logout.path}`
    BackchannelLogout,
    /// `POST /rules/reload`
    RulesReload,
    /// Anything else.
    NotFound,
}

impl Call {
    /// The call `method` and `path` make, in the order the table matches them.
    fn from_request(method: &str, path: &str, config: &crate::config::Config) -> Call {
        match (method, path) {
            ("GET", "/healthz") => Call::Healthz,
            ("GET", "/readyz") => Call::Readyz,
            ("GET", "/metrics") => Call::Metrics,
            ("GET", p) if p == config.paths.jwks => Call::Jwks,
            ("GET", "/rules") => Call::Rules,
            ("GET", "/sessions") => Call::Sessions,
            ("POST", "/revoke") => Call::Revoke,
            ("POST", p) if p == config.backchannel_logout.path => Call::BackchannelLogout,
            ("POST", "/rules/reload") => Call::RulesReload,
            _ => Call::NotFound,
        }
    }

    /// Whether the call takes the bearer token.
    fn needs_token(self) -> bool {
        matches!(self, Call::Sessions | Call::Revoke | Call::RulesReload)
    }
}

/// The request's `Content-Type`, if readable.
fn content_type(session: &ServerSession) -> Option<&str> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

impl AdminApp {
    /// The `403` for a request a web page may have sent ([`browser_guard`]). Back-channel
    /// logout is the IdP's call (a form body, a logout token that proves itself), and
    /// the probes are anyone's; everything else is the operator's.
    fn browser_refusal(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let req = session.req_header();
        let path = req.uri.path();
        let logout = path == self.h.config.backchannel_logout.path;
        let probe = req.method == http::Method::GET && (path == "/healthz" || path == "/readyz");
        if logout || probe {
            return None;
        }
        let write = req.method != http::Method::GET && req.method != http::Method::HEAD;
        let why = browser_guard(
            req,
            self.h.config.admin.listen.as_deref(),
            self.h.config.admin.token.is_some(),
            write,
        )?;
        tracing::warn!(why, "admin request refused");
        Some(json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": why}),
        ))
    }

    async fn readyz(&self) -> Response<Vec<u8>> {
        match self.h.store.ping().await {
            Ok(()) => json(StatusCode::OK, serde_json::json!({"status": "ready"})),
            Err(e) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "not ready", "store": e.to_string()}),
            ),
        }
    }

    fn rules(&self) -> Response<Vec<u8>> {
        let r = self.h.policy.load();
        let status = self
            .h
            .reload_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json(
            StatusCode::OK,
            serde_json::json!({
                "file": self.h.config.rules_file.as_ref().map(|p| p.display().to_string()),
                "asn_table": self.h.config.asn_table.as_ref().map(|p| p.display().to_string()),
                "sha256": r.sha256, "loaded_at": r.loaded_at, "rules": r.policy.rule_count(),
                "warnings": r.policy.warnings().iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                "last_reload": status,
            }),
        )
    }

    async fn sessions(&self, session: &ServerSession) -> Response<Vec<u8>> {
        let subject = session.req_header().uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "subject")
                .map(|(_, v)| v.into_owned())
        });
        match subject {
            Some(s) if !s.is_empty() => self.list(&s).await,
            _ => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "give ?subject=..."}),
            ),
        }
    }

    async fn post_revoke(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let json_body = content_type(session).is_some_and(|c| {
            c.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
        if !json_body {
            return json(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                serde_json::json!({"error": "POST /revoke takes an application/json body"}),
            );
        }
        match read_json(session).await {
            Ok(body) => self.revoke(body).await,
            Err(r) => r,
        }
    }

    async fn backchannel_logout(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // A body that fails part way is read as far as it came.
        let body = match read_body(session).await {
            Ok((body, _complete)) => body,
            Err(too_large) => return too_large,
        };
        let ct = content_type(session).map(str::to_owned);
        match crate::mint::parse_token_body(ct.as_deref(), &body) {
            Ok(params) => {
                let (status, v) = crate::backchannel::logout(&self.h, &params).await;
                json(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    v,
                )
            }
            Err(e) => json(StatusCode::BAD_REQUEST, e.body()),
        }
    }

    fn reload_rules(&self) -> Response<Vec<u8>> {
        match self.h.reload_rules("admin") {
            Ok(()) => json(StatusCode::OK, serde_json::json!({"status": "reloaded"})),
            Err(e) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({"status": "rejected", "diagnostics": e}),
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if let Some(refused) = self.browser_refusal(session) {
            return refused;
        }
        let req = session.req_header();
        let call = Call::from_request(req.method.as_str(), req.uri.path(), &self.h.config);
        if call.needs_token() && !self.authorized(session) {
            return json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "unauthorized"}),
            );
        }
        match call {
            Call::Healthz => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
            Call::Readyz => self.readyz().await,
            Call::Metrics => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.h.metrics.render(),
            ),
            Call::Jwks => reply(
                StatusCode::OK,
                "application/json",
                self.h.asserter.jwks_json().to_vec(),
            ),
            Call::Rules => self.rules(),
            Call::Sessions => self.sessions(session).await,
            Call::Revoke => self.post_revoke(session).await,
            Call::BackchannelLogout => self.backchannel_logout(session).await,
            Call::RulesReload => self.reload_rules(),
            Call::NotFound => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not found"}),
            ),
        }
    }
}
