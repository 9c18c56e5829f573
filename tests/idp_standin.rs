//! The IdP stand-in's own tests (`tests/support/idp/`): it must be a correct,
//! strict OpenID Connect provider for the other tests to mean anything. They live
//! here, in one test binary, so they run once rather than in every binary that
//! includes `mod support;`.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use support::idp::java_router::{java_route, remove_dot_segments};
use support::idp::jwt::{b64d, b64e, now_secs};
use support::idp::reply::response;
use support::idp::{IdpOptions, TestIdp, ASSERTION_HEADER, LOGIN_PAGE_MARKER};

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
    let no_kid = signer.sign_with_header(&json!({"alg": "EdDSA"}), &claims("user-1", "web-app"));
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
