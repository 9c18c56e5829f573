//! A stand-in OpenID Connect identity provider for handoff's end-to-end tests.
//!
//! It is a real HTTP/1.1 server (hyper) on `127.0.0.1:0` that behaves like a small,
//! RFC-correct OIDC provider, plus the one extension handoff relies on: `/authorize`
//! logs the user in when the request carries a valid handoff identity assertion
//! (`X-Handoff-Assertion`, an EdDSA compact JWS verified against handoff's JWKS).
//!
//! The JWS code here is deliberately independent of handoff's own: the stand-in
//! checks handoff's output, it must not share its bugs.
//!
//! Endpoints:
//! - `GET  /.well-known/openid-configuration`
//! - `GET  /jwks` (the IdP's ES256 key)
//! - `POST /oauth/token` (`refresh_token` and `authorization_code` grants, form bodies only)
//! - `GET|POST /userinfo` (bearer access token)
//! - `POST /oauth/revoke` (RFC 7009)
//! - `GET  /authorize` (assertion login, `_session` cookie SSO, or the login page)
//!
//! Every request is recorded before it is handled, also while the IdP is "down".

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// Header that carries handoff's identity assertion.
pub const ASSERTION_HEADER: &str = "x-handoff-assertion";
/// Name of the IdP's session cookie (as `oidc-provider` names it).
pub const SESSION_COOKIE: &str = "_session";
/// Marker contained in the login page's body.
pub const LOGIN_PAGE_MARKER: &str = "IDP_LOGIN_PAGE";

const ACCESS_TOKEN_TTL: u64 = 3600;
const ID_TOKEN_TTL: u64 = 300;
const CODE_TTL: u64 = 60;
const MAX_BODY: usize = 1 << 20;
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `iat` / `nbf` of assertions.
const ASSERTION_LEEWAY: f64 = 5.0;
/// Longest accepted assertion lifetime (`exp - iat`).
const ASSERTION_MAX_LIFETIME: f64 = 60.0;

type Body = Full<Bytes>;

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct IdpOptions {
    /// `true`: token responses include an ES256 `id_token`; `false`: clients must use userinfo.
    pub id_token: bool,
    /// `true`: every refresh-token grant returns a new refresh token and invalidates the old one.
    pub rotate_refresh_tokens: bool,
    /// Where to fetch handoff's assertion-verification JWKS (can be set later).
    pub handoff_jwks_url: Option<String>,
    /// Expected `aud` of handoff assertions.
    pub assertion_audience: String,
    /// Expected `iss` of handoff assertions.
    pub assertion_issuer: String,
    /// `true`: like oidc-provider, an assertion login does not set the session
    /// cookie at once: it redirects to `/resume` (with a `_pending` cookie), and
    /// `/resume` sets `_session` and redirects to the client with the code.
    pub defer_session: bool,
    /// `true`: route like a Java servlet container / JAX-RS (Keycloak on Quarkus,
    /// Tomcat, Jetty) with lenient settings: the request path is normalised by
    /// [`java_route`] before it is matched (`/token;jsessionid=x`, `/a/../token`,
    /// `/a/%2e%2e/token`, `/a\..\token`, `/a%5c..%2ftoken` and `/token/` all reach
    /// `/token`'s handler). A proxy in front of such an IdP must see them as `/token`.
    pub java_router: bool,
}

impl Default for IdpOptions {
    /// id_token and rotation on, no JWKS URL, audience `test-idp`, issuer `handoff`.
    fn default() -> Self {
        IdpOptions {
            id_token: true,
            rotate_refresh_tokens: true,
            handoff_jwks_url: None,
            assertion_audience: "test-idp".to_string(),
            assertion_issuer: "handoff".to_string(),
            defer_session: false,
            java_router: false,
        }
    }
}

/// One request as the IdP received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// As received: path and query (origin form).
    pub uri: String,
    /// Lower-case names, values decoded lossily as UTF-8, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// Whether `needle` occurs in the URI, in any header value, or in the body.
    pub fn contains(&self, needle: &str) -> bool {
        let n = needle.as_bytes();
        self.uri.contains(needle)
            || self.headers.iter().any(|(_, v)| v.contains(needle))
            || n.is_empty()
            || self.body.windows(n.len()).any(|w| w == n)
    }

    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        let end = self.uri.find('?').unwrap_or(self.uri.len());
        &self.uri[..end]
    }
}

/// A successful login through a handoff assertion.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginRecord {
    pub sub: String,
    /// The web client of the `/authorize` request (equal to the assertion's `client_id`).
    pub client_id: String,
    /// All claims of the assertion.
    pub claims: Value,
    /// Value of the `_session` cookie the IdP set for this login.
    pub session: String,
}

/// The running stand-in. Dropping it stops the server (abruptly); prefer [`TestIdp::shutdown`].
pub struct TestIdp {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestIdp {
    /// Binds `127.0.0.1:0`, generates the ES256 signing key and starts serving.
    pub async fn start(opts: IdpOptions) -> TestIdp {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("test IdP: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("test IdP: local_addr");
        let issuer = format!("http://{addr}");

        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("test IdP: generate P-256 key");
        let signing_key =
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("test IdP: load P-256 key");
        // Uncompressed point: 0x04 || X (32) || Y (32).
        let point = signing_key.public_key().as_ref();
        let x = b64e(&point[1..33]);
        let y = b64e(&point[33..65]);
        // RFC 7638 thumbprint as kid.
        let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64e(digest::digest(&digest::SHA256, thumbprint_input.as_bytes()).as_ref());
        let public_jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "alg": "ES256", "use": "sig",
        });

        let state = State {
            jwks_url: opts.handoff_jwks_url.clone(),
            ..State::default()
        };
        let inner = Arc::new(Inner {
            issuer,
            opts,
            rng,
            signing_key,
            kid,
            public_jwk,
            client: Client::builder(TokioExecutor::new()).build_http(),
            state: Mutex::new(state),
        });

        let (shutdown_tx, mut shutdown_rx) = oneshot::channel::<()>();
        let server = inner.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut shutdown_rx => break,
                    accepted = listener.accept() => {
                        let stream = match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        };
                        let inner = server.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| {
                                let inner = inner.clone();
                                async move { Ok::<_, Infallible>(inner.handle(req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            // Dropping `conns` aborts the open connections.
        });

        TestIdp {
            inner,
            addr,
            shutdown_tx: Some(shutdown_tx),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn issuer(&self) -> String {
        self.inner.issuer.clone()
    }

    /// Sets where handoff's JWKS is fetched from, and forgets the cached keys.
    pub fn set_handoff_jwks_url(&self, url: &str) {
        let mut st = self.inner.lock();
        st.jwks_url = Some(url.to_string());
        st.jwks_cache.clear();
    }

    /// Seeds a valid refresh token (as if `sub` had logged in to `client_id`).
    pub fn issue_refresh_token(&self, sub: &str, client_id: &str, scope: &str) -> String {
        let token = self.inner.random_token();
        let grant = RefreshGrant {
            sub: sub.to_string(),
            client_id: client_id.to_string(),
            scope: normalize_scope(scope),
        };
        self.inner.lock().refresh.insert(token.clone(), grant);
        token
    }

    /// Whether `token` is a refresh token the IdP would currently accept.
    pub fn refresh_token_active(&self, token: &str) -> bool {
        self.inner.lock().refresh.contains_key(token)
    }

    /// The refresh tokens the IdP currently accepts that were issued to `client_id`.
    pub fn refresh_tokens_of(&self, client_id: &str) -> Vec<String> {
        let st = self.inner.lock();
        st.refresh
            .iter()
            .filter(|(_, g)| g.client_id == client_id)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    /// Successful assertion logins, in order.
    pub fn logins(&self) -> Vec<LoginRecord> {
        self.inner.lock().logins.clone()
    }

    /// Why assertions were rejected, in order (for debugging failing tests).
    pub fn assertion_rejections(&self) -> Vec<String> {
        self.inner.lock().assertion_rejections.clone()
    }

    /// When down, every endpoint answers 503 (requests are still recorded).
    /// Signs arbitrary claims with the IdP's ES256 key (e.g. a back-channel
    /// `logout_token`), as the IdP would.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        self.inner.sign_claims(claims)
    }

    /// An ordinary IdP session of `sub` (as a password login makes it, without
    /// handoff); returns its `_session` cookie value.
    pub fn password_session(&self, sub: &str) -> String {
        let session = self.inner.random_token();
        let mut st = self.inner.lock();
        st.sessions.insert(session.clone(), sub.to_string());
        st.password_sessions.insert(session.clone());
        session
    }

    /// The IdP's session id (`sid` in its id_tokens) for a `_session` cookie value.
    pub fn session_id(cookie_value: &str) -> String {
        b64e(digest::digest(&digest::SHA256, cookie_value.as_bytes()).as_ref())[..16].to_string()
    }

    /// Simulates an outage: every endpoint answers 503.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().down = down;
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------
// Server state

#[derive(Clone, Debug)]
struct RefreshGrant {
    sub: String,
    client_id: String,
    scope: String,
}

#[derive(Clone, Debug)]
struct AccessGrant {
    sub: String,
    expires_at: u64,
}

#[derive(Clone, Debug)]
struct CodeGrant {
    sub: String,
    client_id: String,
    redirect_uri: String,
    scope: String,
    nonce: Option<String>,
    code_challenge: Option<(String, String)>,
    expires_at: u64,
    /// The IdP session the code was issued in (its `sid` claim).
    sid: Option<String>,
    /// How the session's user logged in (`amr` claim).
    amr: &'static str,
}

#[derive(Default)]
struct State {
    down: bool,
    jwks_url: Option<String>,
    jwks_cache: Vec<AssertionKey>,
    requests: Vec<RecordedRequest>,
    logins: Vec<LoginRecord>,
    assertion_rejections: Vec<String>,
    refresh: HashMap<String, RefreshGrant>,
    access: HashMap<String, AccessGrant>,
    /// refresh token -> the access token issued with it by a code exchange: revoked
    /// with it (RFC 7009 §2.1's SHOULD, as oidc-provider does with the whole grant).
    paired_access: HashMap<String, String>,
    codes: HashMap<String, CodeGrant>,
    /// session cookie value -> sub
    sessions: HashMap<String, String>,
    /// Sessions a password login made (no assertion): `amr` says `pwd`.
    password_sessions: HashSet<String>,
    /// `_pending` ticket -> (client redirect with code, session cookie value)
    pending: HashMap<String, (String, String)>,
    seen_jti: HashSet<String>,
}

#[derive(Clone, Debug)]
struct AssertionKey {
    kid: Option<String>,
    x: [u8; 32],
}

struct Inner {
    issuer: String,
    opts: IdpOptions,
    rng: SystemRandom,
    signing_key: EcdsaKeyPair,
    kid: String,
    public_jwk: Value,
    client: Client<HttpConnector, Empty<Bytes>>,
    state: Mutex<State>,
}

/// An RFC 6749 §5.2 error.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }
    fn into_response(self) -> Response<Body> {
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
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn random_token(&self) -> String {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).expect("test IdP: system RNG");
        b64e(&bytes)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
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
            "/resume" => {
                let tickets = cookie_values(&parts.headers, "_pending");
                let found = {
                    let mut st = self.lock();
                    tickets.iter().find_map(|t| st.pending.remove(t))
                };
                match found {
                    Some((location, session)) => response(
                        StatusCode::FOUND,
                        vec![
                            ("location", location),
                            ("cache-control", "no-store".to_string()),
                            (
                                "set-cookie",
                                format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly"),
                            ),
                            ("set-cookie", "_pending=; Path=/; Max-Age=0".to_string()),
                        ],
                        Bytes::new(),
                    ),
                    None => login_page(),
                }
            }
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

    // ---- token endpoint (RFC 6749 §4.1.3, §6) ----

    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
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

    /// Signs `claims` as an ES256 JWT with the IdP's key.
    fn sign_claims(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64e(header.to_string().as_bytes()),
            b64e(claims.to_string().as_bytes())
        );
        let sig = self
            .signing_key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("test IdP: ES256 signing");
        format!("{signing_input}.{}", b64e(sig.as_ref()))
    }

    // ---- userinfo ----

    fn userinfo(&self, headers: &HeaderMap) -> Response<Body> {
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

    /// Revokes `token` when the request is well formed and identifies the client the
    /// token was issued to. The answer is 200 in every case.
    fn revoke(&self, headers: &HeaderMap, body: &[u8]) {
        if !is_form(headers) {
            return;
        }
        let Ok(params) = parse_params(body) else {
            return;
        };
        let Ok(Some(client_id)) = client_identity(headers, &params) else {
            return;
        };
        let Some(token) = params.get("token") else {
            return;
        };
        let mut st = self.lock();
        if st
            .refresh
            .get(token)
            .is_some_and(|g| g.client_id == client_id)
        {
            st.refresh.remove(token);
            if let Some(a) = st.paired_access.remove(token) {
                st.access.remove(&a);
            }
        }
        // Access tokens are opaque and carry no client binding here: revoke on sight.
        st.access.remove(token);
    }

    // ---- authorization endpoint ----

    async fn authorize(&self, parts: &http::request::Parts) -> Response<Body> {
        let params = match parse_params(parts.uri.query().unwrap_or("").as_bytes()) {
            Ok(p) => p,
            Err(e) => return authorize_error_page(&e),
        };
        let Some(client_id) = params.get("client_id").cloned() else {
            return authorize_error_page("missing client_id");
        };
        let Some(redirect_uri) = params.get("redirect_uri").cloned() else {
            return authorize_error_page("missing redirect_uri");
        };
        if !valid_redirect_uri(&redirect_uri) {
            return authorize_error_page("invalid redirect_uri");
        }
        let state = params.get("state").map(String::as_str);
        if params.get("response_type").map(String::as_str) != Some("code") {
            return redirect_error(&redirect_uri, "unsupported_response_type", state);
        }
        let prompt: Vec<&str> = params
            .get("prompt")
            .map(|p| p.split_whitespace().collect())
            .unwrap_or_default();

        let mut sub = None;
        let mut new_session = None;
        let assertions: Vec<&HeaderValue> =
            parts.headers.get_all(ASSERTION_HEADER).iter().collect();
        if !assertions.is_empty() {
            match self.assertion_login(&assertions, &client_id).await {
                Ok((s, session)) => {
                    sub = Some(s);
                    new_session = Some(session);
                }
                Err(reason) => self.lock().assertion_rejections.push(reason),
            }
        }
        if sub.is_none() && !prompt.contains(&"login") {
            let st = self.lock();
            sub = cookie_values(&parts.headers, SESSION_COOKIE)
                .iter()
                .find_map(|v| st.sessions.get(v).cloned());
        }
        let Some(sub) = sub else {
            if prompt.contains(&"none") {
                return redirect_error(&redirect_uri, "login_required", state);
            }
            return login_page();
        };

        // The IdP's session id: a hash of the session cookie that logged the user in.
        let session_id = new_session
            .clone()
            .or_else(|| {
                let st = self.lock();
                cookie_values(&parts.headers, SESSION_COOKIE)
                    .into_iter()
                    .find(|v| st.sessions.contains_key(v.as_str()))
            })
            .map(|v| {
                b64e(digest::digest(&digest::SHA256, v.as_bytes()).as_ref())[..16].to_string()
            });
        let amr = if new_session.is_none()
            && cookie_values(&parts.headers, SESSION_COOKIE)
                .iter()
                .any(|v| self.lock().password_sessions.contains(v))
        {
            "pwd"
        } else {
            "session_transfer"
        };
        let code = self.random_token();
        let code_challenge = params.get("code_challenge").map(|c| {
            let method = params
                .get("code_challenge_method")
                .cloned()
                .unwrap_or_else(|| "plain".to_string());
            (c.clone(), method)
        });
        self.lock().codes.insert(
            code.clone(),
            CodeGrant {
                sub,
                client_id,
                redirect_uri: redirect_uri.clone(),
                scope: normalize_scope(params.get("scope").map(String::as_str).unwrap_or("openid")),
                nonce: params.get("nonce").cloned(),
                code_challenge,
                expires_at: now_secs() + CODE_TTL,
                sid: session_id.clone(),
                amr,
            },
        );
        let mut query = vec![("code", code.as_str())];
        if let Some(state) = state {
            query.push(("state", state));
        }
        if let (true, Some(session)) = (self.opts.defer_session, &new_session) {
            let ticket = self.random_token();
            self.lock().pending.insert(
                ticket.clone(),
                (append_query(&redirect_uri, &query), session.clone()),
            );
            return response(
                StatusCode::FOUND,
                vec![
                    ("location", "/resume".to_string()),
                    ("cache-control", "no-store".to_string()),
                    ("set-cookie", format!("_pending={ticket}; Path=/; HttpOnly")),
                ],
                Bytes::new(),
            );
        }
        let mut headers = vec![
            ("location", append_query(&redirect_uri, &query)),
            ("cache-control", "no-store".to_string()),
        ];
        if let Some(session) = new_session {
            headers.push((
                "set-cookie",
                format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly"),
            ));
        }
        response(StatusCode::FOUND, headers, Bytes::new())
    }

    /// Verifies the assertion and, when valid, creates the session and records the
    /// login. Returns (sub, session cookie value) or the reason for rejection.
    async fn assertion_login(
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

// ---------------------------------------------------------------------------------
// Helpers

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn b64e(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url without padding.
fn b64d(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

fn matching_keys(keys: &[AssertionKey], kid: Option<&str>) -> Vec<AssertionKey> {
    keys.iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .cloned()
        .collect()
}

fn normalize_scope(scope: &str) -> String {
    scope.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Form / query parameters per RFC 6749 §3.1: empty values count as omitted,
/// repeated parameters are an error.
fn parse_params(input: &[u8]) -> Result<HashMap<String, String>, String> {
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

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|media| media.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The client identifier from HTTP Basic (RFC 6749 §2.3.1) and/or the `client_id`
/// parameter. Secrets are not checked: the stand-in has no client registry.
fn client_identity(
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

/// The path a Java servlet container / JAX-RS router (Keycloak) dispatches on,
/// from the raw request path, in the containers' order:
/// 1. `\` is a separator (Tomcat `ALLOW_BACKSLASH`, Jetty, Undertow);
/// 2. path parameters go: every segment loses `;...` (`/token;jsessionid=x` is
///    `/token`), on the raw path, so an encoded `%3b` stays;
/// 3. percent-decoding, where `%2f` and `%5c` become separators
///    (`ALLOW_ENCODED_SLASH`) and `%2e` a dot; invalid escapes stay as they are;
/// 4. empty segments collapse (`//token` is `/token`);
/// 5. dot segments are resolved (RFC 3986 §5.2.4; `..` never climbs above `/`);
/// 6. a trailing `/` is dropped (JAX-RS matches `/token/` to `@Path("token")`).
pub fn java_route(raw: &str) -> String {
    let raw = raw.replace('\\', "/");
    let no_params: Vec<&str> = raw
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect();
    let no_params = no_params.join("/");
    let bytes = no_params.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                decoded.push(b);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut collapsed = String::with_capacity(decoded.len() + 1);
    for c in decoded.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    if !collapsed.starts_with('/') {
        collapsed.insert(0, '/');
    }
    let mut out = remove_dot_segments(&collapsed);
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// RFC 3986 §5.2.4, step by step.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut output = String::new();
    fn pop_segment(output: &mut String) {
        match output.rfind('/') {
            Some(i) => output.truncate(i),
            None => output.clear(),
        }
    }
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/");
        } else if input == "/." {
            input = "/".to_string();
        } else if input.starts_with("/../") {
            input.replace_range(..4, "/");
            pop_segment(&mut output);
        } else if input == "/.." {
            input = "/".to_string();
            pop_segment(&mut output);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input.replace_range(..end, "");
        }
    }
    output
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

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

fn cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
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
fn valid_redirect_uri(uri: &str) -> bool {
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

fn append_query(uri: &str, params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

fn response(status: StatusCode, headers: Vec<(&str, String)>, body: Bytes) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(body)).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::from_static(b"internal error\n")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn text_response(status: StatusCode, content_type: &str, body: &'static str) -> Response<Body> {
    response(
        status,
        vec![("content-type", content_type.to_string())],
        Bytes::from_static(body.as_bytes()),
    )
}

fn json_response(
    status: StatusCode,
    value: &Value,
    mut headers: Vec<(&str, String)>,
) -> Response<Body> {
    headers.push(("content-type", "application/json".into()));
    headers.push(("cache-control", "no-store".into()));
    headers.push(("pragma", "no-cache".into()));
    response(status, headers, Bytes::from(value.to_string()))
}

fn method_not_allowed(allow: &str) -> Response<Body> {
    response(
        StatusCode::METHOD_NOT_ALLOWED,
        vec![
            ("allow", allow.to_string()),
            ("content-type", "text/plain".into()),
        ],
        Bytes::from_static(b"method not allowed\n"),
    )
}

fn login_page() -> Response<Body> {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>IdP login</title></head>\n\
         <body><!-- {LOGIN_PAGE_MARKER} --><h1>Sign in</h1>\n\
         <form method=\"post\"><input name=\"login\"><input name=\"password\" type=\"password\">\
         <button type=\"submit\">Sign in</button></form></body></html>\n"
    );
    response(
        StatusCode::OK,
        vec![
            ("content-type", "text/html; charset=utf-8".into()),
            ("cache-control", "no-store".into()),
        ],
        Bytes::from(body),
    )
}

/// Errors that must not be redirected (bad client_id / redirect_uri): shown to the user.
fn authorize_error_page(reason: &str) -> Response<Body> {
    let reason: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || " _-".contains(*c))
        .collect();
    response(
        StatusCode::BAD_REQUEST,
        vec![
            ("content-type", "text/html; charset=utf-8".into()),
            ("cache-control", "no-store".into()),
        ],
        Bytes::from(format!(
            "<!DOCTYPE html>\n<html><head><title>IdP error</title></head><body>invalid_request: {reason}</body></html>\n"
        )),
    )
}

fn redirect_error(redirect_uri: &str, error: &str, state: Option<&str>) -> Response<Body> {
    let mut query = vec![("error", error)];
    if let Some(state) = state {
        query.push(("state", state));
    }
    response(
        StatusCode::FOUND,
        vec![
            ("location", append_query(redirect_uri, &query)),
            ("cache-control", "no-store".into()),
        ],
        Bytes::new(),
    )
}

// ---------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::Ed25519KeyPair;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const AUD: &str = "test-idp";
    const ISS: &str = "https://handoff.test";

    fn opts(id_token: bool, rotate: bool) -> IdpOptions {
        IdpOptions {
            id_token,
            rotate_refresh_tokens: rotate,
            handoff_jwks_url: None,
            assertion_audience: AUD.to_string(),
            assertion_issuer: ISS.to_string(),
            defer_session: false,
            java_router: false,
        }
    }

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or(Value::Null)
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }
        fn is_login_page(&self) -> bool {
            self.status == StatusCode::OK
                && self.body.contains("<title>IdP login</title>")
                && self.body.contains(LOGIN_PAGE_MARKER)
        }
    }

    async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = client
            .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn token(idp: &TestIdp, form: &[(&str, &str)]) -> Reply {
        call(
            "POST",
            &format!("{}/oauth/token", idp.issuer()),
            &[("content-type", "application/x-www-form-urlencoded")],
            &serde_urlencoded::to_string(form).unwrap(),
        )
        .await
    }

    async fn refresh(idp: &TestIdp, client_id: &str, rt: &str) -> Reply {
        token(
            idp,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("refresh_token", rt),
            ],
        )
        .await
    }

    // ---- a tiny JWKS server and an Ed25519 signer standing in for handoff ----

    struct JwksServer {
        url: String,
        body: Arc<Mutex<String>>,
        hits: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    impl JwksServer {
        async fn start(body: String) -> JwksServer {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
            let url = format!(
                "http://{}/.well-known/handoff/jwks.json",
                listener.local_addr().unwrap()
            );
            let body = Arc::new(Mutex::new(body));
            let hits = Arc::new(AtomicUsize::new(0));
            let (b, h) = (body.clone(), hits.clone());
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (b, h) = (b.clone(), h.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |_req: Request<Incoming>| {
                            h.fetch_add(1, Ordering::SeqCst);
                            let body = b.lock().unwrap().clone();
                            async move {
                                Ok::<_, Infallible>(response(
                                    StatusCode::OK,
                                    vec![("content-type", "application/json".into())],
                                    Bytes::from(body),
                                ))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            JwksServer {
                url,
                body,
                hits,
                task,
            }
        }

        fn set(&self, body: String) {
            *self.body.lock().unwrap() = body;
        }
    }

    struct Signer {
        key: Ed25519KeyPair,
        kid: String,
    }

    impl Signer {
        fn new(kid: &str) -> Signer {
            let rng = SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Signer {
                key: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
                kid: kid.to_string(),
            }
        }
        fn jwk(&self) -> Value {
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64e(self.key.public_key().as_ref()),
                   "kid": self.kid, "alg": "EdDSA", "use": "sig"})
        }
        fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                b64e(header.to_string().as_bytes()),
                b64e(claims.to_string().as_bytes())
            );
            format!("{input}.{}", b64e(self.key.sign(input.as_bytes()).as_ref()))
        }
        fn sign(&self, claims: &Value) -> String {
            self.sign_with_header(
                &json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}),
                claims,
            )
        }
    }

    fn jwks(signers: &[&Signer]) -> String {
        json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()}).to_string()
    }

    fn claims(sub: &str, client_id: &str) -> Value {
        let now = now_secs();
        let mut jti = [0u8; 16];
        SystemRandom::new().fill(&mut jti).unwrap();
        json!({
            "iss": ISS, "aud": AUD, "sub": sub, "iat": now, "exp": now + 30,
            "jti": b64e(&jti), "amr": ["session_transfer"], "sid": "ws-1",
            "lineage": "lin-1", "client_id": client_id, "native_client_id": "native-app",
        })
    }

    fn authorize_url(idp: &TestIdp, client_id: &str) -> String {
        format!(
            "{}/authorize?client_id={client_id}&redirect_uri=http%3A%2F%2Fapp.test%2Fcb&response_type=code&state=st-1&scope=openid%20profile&nonce=n-1",
            idp.issuer()
        )
    }

    async fn authorize_with(idp: &TestIdp, client_id: &str, assertion: &str) -> Reply {
        call(
            "GET",
            &authorize_url(idp, client_id),
            &[(ASSERTION_HEADER, assertion)],
            "",
        )
        .await
    }

    /// Verifies an ES256 JWS against the IdP's /jwks, independently of the IdP code path.
    async fn verify_id_token(idp: &TestIdp, id_token: &str) -> Value {
        let jwks = call("GET", &format!("{}/jwks", idp.issuer()), &[], "")
            .await
            .json();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["crv"], "P-256");
        let mut point = vec![4u8];
        point.extend(b64d(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(b64d(jwk["y"].as_str().unwrap()).unwrap());
        let parts: Vec<&str> = id_token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&b64d(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], jwk["kid"]);
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &b64d(parts[2]).unwrap(),
            )
            .expect("id_token signature verifies against /jwks");
        serde_json::from_slice(&b64d(parts[1]).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn discovery_and_id_token_verify_against_jwks() {
        let idp = TestIdp::start(opts(true, true)).await;
        let iss = idp.issuer();
        assert_eq!(iss, format!("http://{}", idp.addr()));

        let disco = call(
            "GET",
            &format!("{iss}/.well-known/openid-configuration"),
            &[],
            "",
        )
        .await;
        assert_eq!(disco.status, StatusCode::OK);
        let d = disco.json();
        assert_eq!(d["issuer"], iss);
        assert_eq!(d["authorization_endpoint"], format!("{iss}/authorize"));
        assert_eq!(d["token_endpoint"], format!("{iss}/oauth/token"));
        assert_eq!(d["userinfo_endpoint"], format!("{iss}/userinfo"));
        assert_eq!(d["jwks_uri"], format!("{iss}/jwks"));
        assert_eq!(d["revocation_endpoint"], format!("{iss}/oauth/revoke"));
        assert_eq!(d["id_token_signing_alg_values_supported"], json!(["ES256"]));

        let rt = idp.issue_refresh_token("user-1", "native-app", "openid offline_access");
        let r = refresh(&idp, "native-app", &rt).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let body = r.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "openid offline_access");
        let c = verify_id_token(&idp, body["id_token"].as_str().unwrap()).await;
        assert_eq!(c["iss"], iss);
        assert_eq!(c["sub"], "user-1");
        assert_eq!(c["aud"], "native-app");
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);

        // A tampered id_token does not verify.
        let tok = body["id_token"].as_str().unwrap();
        let parts: Vec<&str> = tok.split('.').collect();
        let forged = b64e(
            json!({"iss": iss, "sub": "admin", "aud": "native-app"})
                .to_string()
                .as_bytes(),
        );
        let jwk = &call("GET", &format!("{iss}/jwks"), &[], "").await.json()["keys"][0];
        let mut point = vec![4u8];
        point.extend(b64d(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(b64d(jwk["y"].as_str().unwrap()).unwrap());
        assert!(
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
                .verify(
                    format!("{}.{forged}", parts[0]).as_bytes(),
                    &b64d(parts[2]).unwrap()
                )
                .is_err()
        );
        idp.shutdown().await;
    }

    #[tokio::test]
    async fn refresh_rotation_invalidates_old_token() {
        let idp = TestIdp::start(opts(true, true)).await;
        let rt1 = idp.issue_refresh_token("user-1", "native-app", "openid offline_access");
        let r = refresh(&idp, "native-app", &rt1).await;
        assert_eq!(r.status, StatusCode::OK);
        let rt2 = r.json()["refresh_token"].as_str().unwrap().to_string();
        assert_ne!(rt1, rt2);
        assert!(!idp.refresh_token_active(&rt1));
        assert!(idp.refresh_token_active(&rt2));

        let again = refresh(&idp, "native-app", &rt1).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert_eq!(again.json()["error"], "invalid_grant");
        assert!(!again.body.contains(&rt1), "error must not echo the token");

        let r3 = refresh(&idp, "native-app", &rt2).await;
        assert_eq!(r3.status, StatusCode::OK);

        // Narrowing scope is fine, widening is not.
        let rt3 = r3.json()["refresh_token"].as_str().unwrap().to_string();
        let narrowed = token(
            &idp,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "native-app"),
                ("refresh_token", &rt3),
                ("scope", "openid"),
            ],
        )
        .await;
        assert_eq!(narrowed.status, StatusCode::OK);
        assert_eq!(narrowed.json()["scope"], "openid");
        let rt4 = narrowed.json()["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        let widened = token(
            &idp,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "native-app"),
                ("refresh_token", &rt4),
                ("scope", "openid admin"),
            ],
        )
        .await;
        assert_eq!(widened.json()["error"], "invalid_scope");
        idp.shutdown().await;
    }

    #[tokio::test]
    async fn no_rotation_and_userinfo() {
        let idp = TestIdp::start(opts(false, false)).await;
        let rt = idp.issue_refresh_token("user-9", "native-app", "openid");
        let r1 = refresh(&idp, "native-app", &rt).await;
        assert_eq!(r1.status, StatusCode::OK);
        let b1 = r1.json();
        assert!(b1.get("refresh_token").is_none());
        assert!(b1.get("id_token").is_none());
        assert_eq!(
            refresh(&idp, "native-app", &rt).await.status,
            StatusCode::OK
        );

        let at = b1["access_token"].as_str().unwrap();
        let url = format!("{}/userinfo", idp.issuer());
        let ui = call(
            "GET",
            &url,
            &[("authorization", &format!("Bearer {at}"))],
            "",
        )
        .await;
        assert_eq!(ui.status, StatusCode::OK);
        assert_eq!(ui.json(), json!({"sub": "user-9"}));
        assert_eq!(
            call("GET", &url, &[], "").await.status,
            StatusCode::UNAUTHORIZED
        );
        let bad = call("GET", &url, &[("authorization", "Bearer nope")], "").await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        assert!(bad
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token"));
        idp.shutdown().await;
    }

    #[tokio::test]
    async fn token_endpoint_rejects_audience_and_bad_requests() {
        let idp = TestIdp::start(opts(true, true)).await;
        let rt = idp.issue_refresh_token("user-1", "native-app", "openid offline_access");

        let aud = token(
            &idp,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "native-app"),
                ("refresh_token", &rt),
                ("audience", "urn:handoff.test:session_transfer"),
            ],
        )
        .await;
        assert_eq!(aud.status, StatusCode::BAD_REQUEST);
        assert_eq!(aud.json()["error"], "invalid_request");
        assert_eq!(aud.json()["error_description"], "unknown audience");
        assert!(
            idp.refresh_token_active(&rt),
            "a rejected request does not consume the token"
        );

        let other_client = refresh(&idp, "web-app", &rt).await;
        assert_eq!(other_client.json()["error"], "invalid_grant");
        assert_eq!(
            refresh(&idp, "native-app", "unknown").await.json()["error"],
            "invalid_grant"
        );

        let url = format!("{}/oauth/token", idp.issuer());
        let json_body = call(
            "POST",
            &url,
            &[("content-type", "application/json")],
            &json!({"grant_type": "refresh_token", "client_id": "native-app", "refresh_token": rt})
                .to_string(),
        )
        .await;
        assert_eq!(json_body.json()["error"], "invalid_request");
        let form = [("content-type", "application/x-www-form-urlencoded")];
        for garbage in [
            "%%%&&==",
            "grant_type=refresh_token&grant_type=refresh_token",
            "\u{0}\u{ff}",
        ] {
            let r = call("POST", &url, &form, garbage).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{garbage:?}");
        }
        let unsupported = token(
            &idp,
            &[("grant_type", "password"), ("client_id", "native-app")],
        )
        .await;
        assert_eq!(unsupported.json()["error"], "unsupported_grant_type");
        let bad_basic = call(
            "POST",
            &url,
            &[form[0], ("authorization", "Basic !!!")],
            "grant_type=refresh_token",
        )
        .await;
        assert_eq!(bad_basic.status, StatusCode::UNAUTHORIZED);
        assert_eq!(bad_basic.json()["error"], "invalid_client");
        // client_secret_basic identifies the client too.
        let basic = format!("Basic {}", STANDARD.encode("native-app:secret"));
        let ok = call(
            "POST",
            &url,
            &[form[0], ("authorization", &basic)],
            &format!("grant_type=refresh_token&refresh_token={rt}"),
        )
        .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(
            call("GET", &url, &[], "").await.status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        idp.shutdown().await;
    }

    #[tokio::test]
    async fn revocation() {
        let idp = TestIdp::start(opts(true, true)).await;
        let rt = idp.issue_refresh_token("user-1", "native-app", "openid");
        let url = format!("{}/oauth/revoke", idp.issuer());
        let form = [("content-type", "application/x-www-form-urlencoded")];

        // Wrong client: 200, but nothing revoked.
        let r = call(
            "POST",
            &url,
            &form,
            &format!("token={rt}&client_id=web-app"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(idp.refresh_token_active(&rt));

        let r = call(
            "POST",
            &url,
            &form,
            &format!("token={rt}&client_id=native-app&token_type_hint=refresh_token"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!idp.refresh_token_active(&rt));
        assert_eq!(
            refresh(&idp, "native-app", &rt).await.json()["error"],
            "invalid_grant"
        );

        for body in ["token=unknown&client_id=native-app", "", "%%%"] {
            assert_eq!(call("POST", &url, &form, body).await.status, StatusCode::OK);
        }
        idp.shutdown().await;
    }

    #[tokio::test]
    async fn assertion_login_redirects_with_code_and_session() {
        let signer = Signer::new("k1");
        let jwks_srv = JwksServer::start(jwks(&[&signer])).await;
        let idp = TestIdp::start(IdpOptions {
            handoff_jwks_url: Some(jwks_srv.url.clone()),
            ..opts(true, true)
        })
        .await;

        let first_claims = claims("user-1", "web-app");
        let assertion = signer.sign(&first_claims);
        let r = authorize_with(&idp, "web-app", &assertion).await;
        assert_eq!(
            r.status,
            StatusCode::FOUND,
            "{:?}",
            idp.assertion_rejections()
        );
        let location = r.header("location").unwrap().to_string();
        assert!(
            location.starts_with("http://app.test/cb?code="),
            "{location}"
        );
        assert!(location.ends_with("&state=st-1"), "{location}");
        let code = location["http://app.test/cb?code=".len()..location.len() - "&state=st-1".len()]
            .to_string();
        let cookie = r.header("set-cookie").unwrap().to_string();
        assert!(
            cookie.starts_with("_session=") && cookie.ends_with("; Path=/; HttpOnly"),
            "{cookie}"
        );
        let session = cookie["_session=".len()..cookie.find(';').unwrap()].to_string();

        let logins = idp.logins();
        assert_eq!(logins.len(), 1);
        assert_eq!(logins[0].sub, "user-1");
        assert_eq!(logins[0].client_id, "web-app");
        assert_eq!(logins[0].claims, first_claims);
        assert_eq!(logins[0].session, session);
        assert!(idp.requests().last().unwrap().contains(&assertion));

        // The code redeems once, for the right client and redirect_uri.
        let f = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", "web-app"),
            ("redirect_uri", "http://app.test/cb"),
        ];
        let t = token(&idp, &f).await;
        assert_eq!(t.status, StatusCode::OK, "{}", t.body);
        let tb = t.json();
        assert!(tb["refresh_token"].is_string());
        assert_eq!(tb["scope"], "openid profile");
        let idc = verify_id_token(&idp, tb["id_token"].as_str().unwrap()).await;
        assert_eq!(idc["sub"], "user-1");
        assert_eq!(idc["aud"], "web-app");
        assert_eq!(idc["nonce"], "n-1");
        assert_eq!(
            token(&idp, &f).await.json()["error"],
            "invalid_grant",
            "code reuse"
        );

        // SSO: the session cookie alone logs in again, without a new Set-Cookie.
        let sso = call(
            "GET",
            &authorize_url(&idp, "other-web"),
            &[("cookie", &format!("a=b; _session={session}"))],
            "",
        )
        .await;
        assert_eq!(sso.status, StatusCode::FOUND);
        assert!(sso.header("set-cookie").is_none());
        // ...unless prompt=login.
        let forced = format!("{}&prompt=login", authorize_url(&idp, "other-web"));
        assert!(call(
            "GET",
            &forced,
            &[("cookie", &format!("_session={session}"))],
            ""
        )
        .await
        .is_login_page());
        let none = format!("{}&prompt=none", authorize_url(&idp, "other-web"));
        let r = call("GET", &none, &[], "").await;
        assert_eq!(
            r.header("location"),
            Some("http://app.test/cb?error=login_required&state=st-1")
        );

        // Replay of the same assertion fails.
        assert!(authorize_with(&idp, "web-app", &assertion)
            .await
            .is_login_page());
        assert_eq!(idp.logins().len(), 1);
        assert!(idp
            .assertion_rejections()
            .last()
            .unwrap()
            .contains("replayed"));
        assert_eq!(jwks_srv.hits.load(Ordering::SeqCst), 1, "JWKS cached");

        // Key rotation: unknown kid triggers one refetch.
        let signer2 = Signer::new("k2");
        jwks_srv.set(jwks(&[&signer, &signer2]));
        let r = authorize_with(&idp, "web-app", &signer2.sign(&claims("user-2", "web-app"))).await;
        assert_eq!(
            r.status,
            StatusCode::FOUND,
            "{:?}",
            idp.assertion_rejections()
        );
        assert_eq!(jwks_srv.hits.load(Ordering::SeqCst), 2);
        assert_eq!(idp.logins()[1].sub, "user-2");

        jwks_srv.task.abort();
        idp.shutdown().await;
    }

    #[tokio::test]
    async fn bad_assertions_get_the_login_page() {
        let signer = Signer::new("k1");
        let stranger = Signer::new("k1"); // same kid, different key
        let jwks_srv = JwksServer::start(jwks(&[&signer])).await;
        let idp = TestIdp::start(opts(true, true)).await;

        // No JWKS URL yet: even a good assertion fails.
        assert!(
            authorize_with(&idp, "web-app", &signer.sign(&claims("u", "web-app")))
                .await
                .is_login_page()
        );
        assert!(idp.assertion_rejections()[0].contains("no handoff JWKS URL"));
        idp.set_handoff_jwks_url(&jwks_srv.url);

        let now = now_secs();
        let with = |patch: Value| {
            let mut c = claims("user-1", "web-app");
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            signer.sign(&c)
        };
        let good = signer.sign(&claims("user-1", "web-app"));
        let (h, p, s) = {
            let v: Vec<&str> = good.split('.').collect();
            (v[0].to_string(), v[1].to_string(), v[2].to_string())
        };
        let tampered_payload = b64e(claims("admin", "web-app").to_string().as_bytes());
        let mut flipped_sig = b64d(&s).unwrap();
        flipped_sig[0] ^= 1;

        let cases: Vec<(&str, &str, String)> = vec![
            (
                "tampered payload",
                "signature does not verify",
                format!("{h}.{tampered_payload}.{s}"),
            ),
            (
                "flipped signature",
                "signature does not verify",
                format!("{h}.{p}.{}", b64e(&flipped_sig)),
            ),
            (
                "other key",
                "signature does not verify",
                stranger.sign(&claims("user-1", "web-app")),
            ),
            (
                "expired",
                "expired",
                with(json!({"iat": now - 40, "exp": now - 1})),
            ),
            (
                "wrong aud",
                "aud mismatch",
                with(json!({"aud": "other-idp"})),
            ),
            (
                "wrong aud array",
                "aud mismatch",
                with(json!({"aud": ["a", "b"]})),
            ),
            (
                "wrong iss",
                "iss mismatch",
                with(json!({"iss": "https://evil.test"})),
            ),
            (
                "wrong client",
                "client_id does not match",
                with(json!({"client_id": "other-web"})),
            ),
            (
                "too long",
                "lifetime",
                with(json!({"iat": now, "exp": now + 61})),
            ),
            (
                "future iat",
                "iat in the future",
                with(json!({"iat": now + 30, "exp": now + 60})),
            ),
            ("no amr", "amr", with(json!({"amr": null}))),
            ("wrong amr", "amr", with(json!({"amr": ["pwd"]}))),
            ("empty sub", "sub missing", with(json!({"sub": ""}))),
            ("no jti", "jti missing", with(json!({"jti": null}))),
            ("no exp", "exp missing", with(json!({"exp": null}))),
            ("nbf in future", "nbf", with(json!({"nbf": now + 20}))),
            (
                "alg none",
                "alg is not EdDSA",
                format!("{}.{p}.", b64e(br#"{"alg":"none"}"#)),
            ),
            (
                "alg HS256",
                "alg is not EdDSA",
                signer.sign_with_header(
                    &json!({"alg": "HS256", "kid": "k1"}),
                    &claims("u", "web-app"),
                ),
            ),
            (
                "unknown kid",
                "no Ed25519 key for kid",
                signer.sign_with_header(
                    &json!({"alg": "EdDSA", "kid": "k9"}),
                    &claims("u", "web-app"),
                ),
            ),
            (
                "crit",
                "crit",
                signer.sign_with_header(
                    &json!({"alg": "EdDSA", "kid": "k1", "crit": ["x"]}),
                    &claims("u", "web-app"),
                ),
            ),
            (
                "padded b64",
                "header is not base64url",
                format!("{h}=.{p}.{s}"),
            ),
            ("garbage", "not a compact JWS", "not-a-jws".to_string()),
            (
                "bad base64",
                "header is not base64url",
                "!!!.???.***".to_string(),
            ),
            ("four parts", "not a compact JWS", format!("{good}.x")),
            (
                "payload not object",
                "payload is not a JSON object",
                signer.sign(&json!("just a string")),
            ),
        ];
        for (name, reason, assertion) in &cases {
            let r = authorize_with(&idp, "web-app", assertion).await;
            assert!(r.is_login_page(), "{name}: {} {}", r.status, r.body);
            assert!(r.header("set-cookie").is_none(), "{name}");
            let last = idp.assertion_rejections().pop().unwrap_or_default();
            assert!(
                last.contains(reason),
                "{name}: rejected for {last:?}, expected {reason:?}"
            );
        }
        assert_eq!(idp.logins().len(), 0);
        assert_eq!(idp.assertion_rejections().len(), cases.len() + 1);

        // Two assertion headers (a forged one next to a real one) are rejected.
        let two = call(
            "GET",
            &authorize_url(&idp, "web-app"),
            &[
                (ASSERTION_HEADER, good.as_str()),
                (ASSERTION_HEADER, good.as_str()),
            ],
            "",
        )
        .await;
        assert!(two.is_login_page());

        // A kid-less assertion is tried against every key; the good one still works once.
        let no_kid =
            signer.sign_with_header(&json!({"alg": "EdDSA"}), &claims("user-1", "web-app"));
        assert_eq!(
            authorize_with(&idp, "web-app", &no_kid).await.status,
            StatusCode::FOUND
        );
        assert_eq!(
            authorize_with(&idp, "web-app", &good).await.status,
            StatusCode::FOUND
        );
        assert_eq!(idp.logins().len(), 2);

        // No assertion, an unknown session cookie: login page.
        let r = call(
            "GET",
            &authorize_url(&idp, "web-app"),
            &[("cookie", "_session=forged")],
            "",
        )
        .await;
        assert!(r.is_login_page());
        jwks_srv.task.abort();
        idp.shutdown().await;
    }

    #[tokio::test]
    async fn authorize_parameter_errors() {
        let idp = TestIdp::start(opts(true, true)).await;
        let iss = idp.issuer();
        for q in [
            "",
            "client_id=web-app",
            "client_id=web-app&redirect_uri=javascript%3Aalert(1)&response_type=code",
            "client_id=web-app&redirect_uri=http%3A%2F%2Fa%2Fcb%23frag&response_type=code",
            "client_id=web-app&client_id=x&redirect_uri=http%3A%2F%2Fa%2Fcb&response_type=code",
        ] {
            let r = call("GET", &format!("{iss}/authorize?{q}"), &[], "").await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        }
        let r = call(
            "GET",
            &format!("{iss}/authorize?client_id=w&redirect_uri=http%3A%2F%2Fa%2Fcb%3Fx%3D1&response_type=token&state=s"),
            &[],
            "",
        )
        .await;
        assert_eq!(
            r.header("location"),
            Some("http://a/cb?x=1&error=unsupported_response_type&state=s")
        );
        idp.shutdown().await;
    }

    #[test]
    fn java_route_normalises_like_a_servlet_container() {
        for (raw, want) in [
            ("/oauth/token", "/oauth/token"),
            ("/", "/"),
            ("", "/"),
            // path parameters, per segment, raw
            ("/oauth/token;jsessionid=x", "/oauth/token"),
            ("/oauth;a=b/token;c", "/oauth/token"),
            ("/oauth/token;", "/oauth/token"),
            ("/oauth/token%3bx", "/oauth/token;x"),
            // RFC 3986 §5.2.4 dot segments, plain and encoded
            ("/a/../oauth/token", "/oauth/token"),
            ("/oauth/./token", "/oauth/token"),
            ("/oauth/token/.", "/oauth/token"),
            ("/oauth/x/..", "/oauth"),
            ("/../../oauth/token", "/oauth/token"),
            ("/a/%2e%2e/oauth/token", "/oauth/token"),
            ("/a/%2E./oauth/token", "/oauth/token"),
            ("/a/.%2e/oauth/%2e/token", "/oauth/token"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/a/..;x/oauth/token", "/oauth/token"),
            // backslashes, raw and encoded, and encoded slashes
            ("/oauth\\token", "/oauth/token"),
            ("/a\\..\\oauth\\token", "/oauth/token"),
            ("/oauth%5ctoken", "/oauth/token"),
            ("/oauth%5Ctoken", "/oauth/token"),
            ("/oauth%2ftoken", "/oauth/token"),
            ("/a%2f..%2foauth%2Ftoken", "/oauth/token"),
            ("/a%5c..%5coauth/token", "/oauth/token"),
            // empty segments and a trailing slash
            ("//oauth//token", "/oauth/token"),
            ("/oauth/token/", "/oauth/token"),
            ("/oauth/token//", "/oauth/token"),
            // other escapes decode; invalid ones stay
            ("/%61uthorize", "/authorize"),
            ("/authorize%zz", "/authorize%zz"),
            ("/authorize%", "/authorize%"),
            // case is kept (JAX-RS matches case-sensitively)
            ("/OAuth/Token", "/OAuth/Token"),
        ] {
            assert_eq!(java_route(raw), want, "java_route({raw:?})");
        }
    }

    #[test]
    fn remove_dot_segments_follows_rfc3986() {
        // RFC 3986 §5.2.4's own examples and §5.4's abnormal ones, on absolute paths.
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("/b/c/d;p/../../../g"), "/g");
        assert_eq!(remove_dot_segments("/b/c/./g"), "/b/c/g");
        assert_eq!(remove_dot_segments("/b/c/g/."), "/b/c/g/");
        assert_eq!(remove_dot_segments("/b/c/.."), "/b/");
        assert_eq!(remove_dot_segments("/b/c/g.."), "/b/c/g..");
        assert_eq!(remove_dot_segments("/b/c/..g"), "/b/c/..g");
        assert_eq!(remove_dot_segments("/."), "/");
        assert_eq!(remove_dot_segments("/.."), "/");
        assert_eq!(remove_dot_segments("../x"), "x");
    }

    #[tokio::test]
    async fn java_router_dispatches_path_variants_to_the_token_endpoint() {
        let variants = [
            "/oauth/token;jsessionid=x",
            "/x/../oauth/token",
            "/x/%2e%2e/oauth/token",
            "/oauth%2ftoken",
            "/oauth%5ctoken",
            "/oauth/./token/",
            "//oauth/token",
        ];
        for java in [false, true] {
            let idp = TestIdp::start(IdpOptions {
                java_router: java,
                ..opts(true, false)
            })
            .await;
            for path in variants {
                let rt = idp.issue_refresh_token("user-1", "native-app", "openid");
                let body = serde_urlencoded::to_string([
                    ("grant_type", "refresh_token"),
                    ("client_id", "native-app"),
                    ("refresh_token", rt.as_str()),
                ])
                .unwrap();
                let r = call(
                    "POST",
                    &format!("{}{path}", idp.issuer()),
                    &[("content-type", "application/x-www-form-urlencoded")],
                    &body,
                )
                .await;
                let want = if java {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                };
                assert_eq!(r.status, want, "java_router={java} POST {path}: {}", r.body);
            }
            // What was recorded is the raw path, as sent.
            assert_eq!(idp.requests()[0].path(), variants[0]);
        }
    }

    #[tokio::test]
    async fn outage_recording_and_not_found() {
        let idp = TestIdp::start(opts(true, true)).await;
        let iss = idp.issuer();
        assert_eq!(
            call("GET", &format!("{iss}/nope"), &[], "").await.status,
            StatusCode::NOT_FOUND
        );

        idp.set_down(true);
        for path in [
            "/.well-known/openid-configuration",
            "/jwks",
            "/authorize",
            "/userinfo",
            "/nope",
        ] {
            assert_eq!(
                call("GET", &format!("{iss}{path}"), &[], "").await.status,
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
        let rt = idp.issue_refresh_token("user-1", "native-app", "openid");
        assert_eq!(
            refresh(&idp, "native-app", &rt).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        idp.set_down(false);
        assert_eq!(
            refresh(&idp, "native-app", &rt).await.status,
            StatusCode::OK
        );

        let reqs = idp.requests();
        assert_eq!(reqs.len(), 8);
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(reqs[0].uri, "/nope");
        assert_eq!(reqs[0].path(), "/nope");
        let r6 = &reqs[6];
        assert_eq!(r6.method, "POST");
        assert_eq!(
            r6.header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        assert!(r6.contains(&rt));
        assert!(r6.contains("grant_type=refresh_token"));
        assert!(r6.contains("application/x-www-form-urlencoded"));
        assert!(!r6.contains("session_transfer"));
        idp.shutdown().await;
    }
}
