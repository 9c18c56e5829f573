//! The fast upstream: a minimal hyper server standing in for the IdP.
//!
//! Just enough OpenID Connect for handoff's mint and redemption to be real, and
//! cheap enough that the bench measures handoff, not the IdP:
//! - `GET /.well-known/openid-configuration`, `GET /jwks` (one ES256 key, `ring`);
//! - `POST /oauth/token` with `grant_type=refresh_token`: any `rt-<n>` refresh
//!   token is user `n`; the answer carries an ES256 `id_token` (`iss` = this
//!   issuer, `aud` = the `client_id`, `sub` = `auth0|<24 hex>`), signed once per
//!   (client, user) and reused for an hour; other tokens get `invalid_grant`;
//! - `GET /authorize`: with handoff's assertion header, a login — `302` to the
//!   `redirect_uri` with a code, and the session cookies `oidc-provider` sets
//!   (`_session`, `_session.legacy`); without it, a 1 KiB login page. The
//!   assertion is not verified: that is the IdP's cost, not handoff's;
//! - anything else: `200` with a small JSON body; a request that carries a
//!   `_session` cookie gets `x-bench-session: present` back, so the session
//!   scenario can tell that handoff let the cookie through;
//! - `GET /__bench/stats`: counters, read straight from the upstream.
//!
//! It runs on one thread (a current-thread tokio runtime), like a small, fast IdP.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The assertion header handoff adds after a redemption.
const ASSERTION_HEADER: &str = "x-handoff-assertion";
const KID: &str = "bench-es256";

struct Idp {
    issuer: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    discovery: Bytes,
    jwks: Bytes,
    login_page: Bytes,
    ok_body: Bytes,
    id_tokens: Mutex<HashMap<(String, u64), (String, u64)>>,
    requests: AtomicU64,
    grants: AtomicU64,
    assertions: AtomicU64,
    sessions_seen: AtomicU64,
    connections: AtomicU64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The subject the IdP gives user `n` (Auth0-shaped: 30 characters).
pub fn subject(n: u64) -> String {
    format!("auth0|{n:024x}")
}

impl Idp {
    fn new(issuer: String) -> Idp {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key generation");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("ring accepts its own key");
        let pk = key.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": KID,
            "x": URL_SAFE_NO_PAD.encode(&pk[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&pk[33..65]),
        }]});
        let discovery = serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let mut page = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head><body>\
             <form method=\"post\" action=\"/interaction/login\"><label>Email <input name=\"login\"></label>\
             <label>Password <input type=\"password\" name=\"password\"></label><button>Sign in</button></form>",
        );
        while page.len() < 1000 {
            page.push_str("<!-- padding to a realistic login page size -->");
        }
        page.push_str("</body></html>");
        Idp {
            issuer,
            key,
            rng,
            discovery: Bytes::from(discovery.to_string()),
            jwks: Bytes::from(jwks.to_string()),
            login_page: Bytes::from(page),
            ok_body: Bytes::from_static(
                br#"{"sub":"auth0|0000000000000000000000aa","name":"Bench User","email":"bench@example.com","email_verified":true,"updated_at":"2026-01-01T00:00:00Z","locale":"en","picture":"https://example.com/avatar.png"}"#,
            ),
            id_tokens: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            grants: AtomicU64::new(0),
            assertions: AtomicU64::new(0),
            sessions_seen: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }

    fn random(&self) -> String {
        let mut b = [0u8; 24];
        self.rng.fill(&mut b).expect("randomness");
        URL_SAFE_NO_PAD.encode(b)
    }

    fn id_token(&self, client_id: &str, user: u64) -> String {
        let t = now();
        let k = (client_id.to_string(), user);
        if let Some((tok, exp)) = self.id_tokens.lock().unwrap().get(&k) {
            if *exp > t + 600 {
                return tok.clone();
            }
        }
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": KID});
        let claims = serde_json::json!({
            "iss": self.issuer, "sub": subject(user), "aud": client_id,
            "iat": t, "exp": t + 3600, "auth_time": t,
        });
        let mut s = URL_SAFE_NO_PAD.encode(header.to_string());
        s.push('.');
        s.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self
            .key
            .sign(&self.rng, s.as_bytes())
            .expect("ES256 signing");
        s.push('.');
        s.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        self.id_tokens
            .lock()
            .unwrap()
            .insert(k, (s.clone(), t + 3600));
        s
    }

    fn token(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let mut grant = None;
        let mut rt = None;
        let mut client = None;
        for (k, v) in form_urlencoded::parse(body) {
            match &*k {
                "grant_type" => grant = Some(v.into_owned()),
                "refresh_token" => rt = Some(v.into_owned()),
                "client_id" => client = Some(v.into_owned()),
                _ => {}
            }
        }
        let user = rt
            .as_deref()
            .and_then(|t| t.strip_prefix("rt-"))
            .and_then(|n| n.parse::<u64>().ok());
        match (grant.as_deref(), user, client) {
            (Some("refresh_token"), Some(user), Some(client)) => {
                self.grants.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::json!({
                    "access_token": format!("at-{user}-{}", self.random()),
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": "openid profile email offline_access",
                    "id_token": self.id_token(&client, user),
                });
                json(200, body.to_string())
            }
            _ => json(
                400,
                r#"{"error":"invalid_grant","error_description":"unknown refresh token"}"#.into(),
            ),
        }
    }

    fn authorize(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if !req.headers().contains_key(ASSERTION_HEADER) {
            return Response::builder()
                .status(200)
                .header("content-type", "text/html; charset=utf-8")
                .header("cache-control", "no-store")
                .body(Full::new(self.login_page.clone()))
                .expect("static response");
        }
        self.assertions.fetch_add(1, Ordering::Relaxed);
        let q = req.uri().query().unwrap_or("");
        let mut redirect = String::from("https://app.example/callback");
        let mut state = String::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match &*k {
                "redirect_uri" => redirect = v.into_owned(),
                "state" => state = v.into_owned(),
                _ => {}
            }
        }
        let location = format!(
            "{redirect}?code={}&state={}",
            self.random(),
            form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
        );
        let session = self.random();
        let expires = "Expires=Fri, 01 Jan 2038 00:00:00 GMT";
        Response::builder()
            .status(302)
            .header("location", location)
            .header("cache-control", "no-store")
            .header(
                "set-cookie",
                format!("_session={session}; path=/; {expires}; samesite=lax; httponly"),
            )
            .header(
                "set-cookie",
                format!("_session.legacy={session}; path=/; {expires}; httponly"),
            )
            .header(
                "set-cookie",
                "_interaction_resume=; path=/authorize; expires=Thu, 01 Jan 1970 00:00:00 GMT; samesite=lax; httponly",
            )
            .body(Full::new(Bytes::new()))
            .expect("static response")
    }

    fn stats(&self) -> Response<Full<Bytes>> {
        json(
            200,
            serde_json::json!({
                "requests": self.requests.load(Ordering::Relaxed),
                "token_grants": self.grants.load(Ordering::Relaxed),
                "assertions": self.assertions.load(Ordering::Relaxed),
                "sessions_seen": self.sessions_seen.load(Ordering::Relaxed),
                "connections": self.connections.load(Ordering::Relaxed),
            })
            .to_string(),
        )
    }
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}

async fn handle(
    idp: Arc<Idp>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    idp.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    Ok(match (req.method().as_str(), path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(idp.discovery.clone()))
            .expect("static response"),
        ("GET", "/jwks") => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(idp.jwks.clone()))
            .expect("static response"),
        ("POST", "/oauth/token") => {
            let body = req.into_body().collect().await?.to_bytes();
            idp.token(&body)
        }
        ("GET", "/authorize") => idp.authorize(&req),
        ("GET", "/__bench/stats") => idp.stats(),
        _ => {
            let has_session = req
                .headers()
                .get_all("cookie")
                .iter()
                .any(|v| v.as_bytes().windows(9).any(|w| w == b"_session="));
            let mut b = Response::builder()
                .status(200)
                .header("content-type", "application/json");
            if has_session {
                idp.sessions_seen.fetch_add(1, Ordering::Relaxed);
                b = b.header("x-bench-session", "present");
            }
            b.body(Full::new(idp.ok_body.clone()))
                .expect("static response")
        }
    })
}

/// Serves the fake IdP on `listen` until killed.
pub fn run(listen: &str) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("fake IdP: cannot listen on {listen}: {e}"));
        let idp = Arc::new(Idp::new(format!("http://{listen}")));
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            idp.connections.fetch_add(1, Ordering::Relaxed);
            let idp = idp.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |r| handle(idp.clone(), r));
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    unreachable!("the accept loop never ends")
}
