//! Micro-benchmarks of handoff's hot-path pieces (criterion).
//!
//! `cargo bench --bench micro` (criterion's flags after `--`, e.g.
//! `-- stt/` to filter, `--quick` is not in 0.5: use `--warm-up-time 1
//! --measurement-time 2`). Groups:
//! - `stt`: minting a session transfer token (32 random bytes, base64url,
//!   SHA-256) and checking + hashing a presented one;
//! - `jws`: signing the identity assertion (EdDSA, and HS256), claims included;
//! - `id_token`: verifying an IdP id_token, RS256 and ES256, as mint does
//!   (signature, then `aud`);
//! - `cookies`: taking the transfer-token cookie out of a browser's multi-cookie
//!   `Cookie` header (and the same header without one: the pass-through cost),
//!   and rewriting a realistic multi-cookie login response of oidc-provider
//!   (`Set-Cookie` × 6, two of them session cookies);
//! - `rules`: one redemption decision (`Policy::decide_redemption`) on the
//!   example rules and on the corporate example (networks and rules);
//!   `benches/rules_eval.rs` goes deeper (200 rules, 1,000 networks);
//! - `store`: one `consume_transfer_token` — the single round trip of a
//!   redemption — on the embedded store and on a real `redis-server` (started
//!   on a free loopback port; skipped with a note when it is not installed).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use handoff::clock::{SharedClock, SystemClock};
use handoff::cookies;
use handoff::jws::{self, Alg, Jwk, JwkSet, Signer};
use handoff::secret::{LineageId, SecretHash, TransferToken};
use handoff::store::memory::MemoryStore;
use handoff::store::redis::RedisStore;
use handoff::store::{MintContext, Store};
use handoff_rules::{AuthMethod, Policy, RedeemContext};
use ring::signature::{self, KeyPair};
use serde_json::json;
use std::hint::black_box;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn stt(c: &mut Criterion) {
    let mut g = c.benchmark_group("stt");
    let lineage = LineageId::generate();
    let exp = now() + 60;
    g.bench_function("generate", |b| {
        b.iter(|| TransferToken::generate(black_box(&lineage), exp))
    });
    let token = TransferToken::generate(&lineage, exp);
    let text = token.expose().to_string();
    g.bench_function("parse_and_hash", |b| {
        b.iter(|| TransferToken::parse(black_box(&text)).expect("a minted token parses"))
    });
    g.bench_function("sha256", |b| {
        b.iter(|| SecretHash::of(black_box(text.as_bytes())))
    });
    g.finish();
}

/// The claims of an identity assertion (SPEC §2.3), built as `assertion::sign` does.
fn assertion_claims(iat: u64) -> serde_json::Value {
    json!({
        "iss": "https://login.example.com/handoff",
        "aud": "https://login.example.com",
        "sub": "auth0|65f1c2d3e4f5a6b7c8d9e0f1",
        "iat": iat,
        "exp": iat + 60,
        "jti": jws::new_jti(),
        "amr": ["session_transfer"],
        "sid": "Qm9vdHN0cmFwU2Vzc2lvbg",
        "lineage": "bGluZWFnZS0wMDAwMDAwMQ",
        "client_id": "example-web",
        "native_client_id": "com.example.mobile",
    })
}

fn jws_sign(c: &mut Criterion) {
    let mut g = c.benchmark_group("jws");
    let ed = Signer::ephemeral_ed25519();
    let hs = Signer::hs256(&[7u8; 32]).expect("32-byte secret");
    let iat = now();
    g.bench_function("sign_assertion_eddsa", |b| {
        b.iter(|| ed.sign(&assertion_claims(black_box(iat))))
    });
    g.bench_function("sign_assertion_hs256", |b| {
        b.iter(|| hs.sign(&assertion_claims(black_box(iat))))
    });
    let claims = assertion_claims(iat);
    g.bench_function("sign_only_eddsa", |b| {
        b.iter(|| ed.sign(black_box(&claims)))
    });
    g.finish();
}

/// A realistic id_token body for `aud`.
fn id_token_claims(aud: &str) -> String {
    let t = now();
    json!({
        "iss": "https://login.example.com/", "sub": "auth0|65f1c2d3e4f5a6b7c8d9e0f1",
        "aud": aud, "iat": t, "exp": t + 3600, "auth_time": t - 30,
        "nonce": "n-0S6_WzA2Mj", "sid": "8f2a1c3e-5b7d-4e9f-a1c3-e5b7d9f1a3c5",
        "email": "jane.doe@example.com", "email_verified": true, "name": "Jane Doe",
        "picture": "https://example.com/jane.png", "updated_at": "2026-01-01T00:00:00Z",
    })
    .to_string()
}

/// The JWKS of an IdP mid-rotation: the key in use plus an older one.
fn jwks_with(k: Jwk, other: Jwk) -> JwkSet {
    JwkSet {
        keys: vec![other, k],
    }
}

/// Verifies like mint does: signature (allowed algorithms), then `aud`, then `sub`.
fn verify_like_mint(token: &str, set: &JwkSet, aud: &str) -> String {
    let claims = jws::verify(token, set, &[Alg::Rs256, Alg::Es256, Alg::EdDsa]).expect("verifies");
    assert!(handoff::idp::audience_contains(&claims, aud));
    claims["sub"].as_str().expect("sub").to_string()
}

fn id_token(c: &mut Criterion) {
    let mut g = c.benchmark_group("id_token");
    let rng = ring::rand::SystemRandom::new();
    let aud = "com.example.mobile";
    let payload = URL_SAFE_NO_PAD.encode(id_token_claims(aud));

    // RS256 with the 2048-bit test key.
    let der = include_bytes!("../proxy/testdata/rsa2048.pkcs1.der");
    let kp = signature::RsaKeyPair::from_der(der).expect("test key");
    let comps: signature::RsaPublicKeyComponents<Vec<u8>> = kp.public().into();
    let rsa = Jwk {
        kty: "RSA".into(),
        n: Some(URL_SAFE_NO_PAD.encode(&comps.n)),
        e: Some(URL_SAFE_NO_PAD.encode(&comps.e)),
        kid: Some("rsa-2026".into()),
        alg: Some("RS256".into()),
        use_: Some("sig".into()),
        ..Jwk::default()
    };
    let old_rsa = Jwk {
        kid: Some("rsa-2025".into()),
        ..rsa.clone()
    };
    let input = format!(
        "{}.{payload}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","kid":"rsa-2026"}"#)
    );
    let mut sig = vec![0u8; kp.public().modulus_len()];
    kp.sign(
        &signature::RSA_PKCS1_SHA256,
        &rng,
        input.as_bytes(),
        &mut sig,
    )
    .expect("RSA signing");
    let rs_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let rs_set = jwks_with(rsa, old_rsa);
    g.bench_function("verify_rs256", |b| {
        b.iter(|| verify_like_mint(black_box(&rs_token), &rs_set, aud))
    });

    // ES256 (P-256).
    let pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
    let ec = signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .expect("P-256 key");
    let pk = ec.public_key().as_ref();
    let ec_jwk = Jwk {
        kty: "EC".into(),
        crv: Some("P-256".into()),
        x: Some(URL_SAFE_NO_PAD.encode(&pk[1..33])),
        y: Some(URL_SAFE_NO_PAD.encode(&pk[33..65])),
        kid: Some("ec-2026".into()),
        alg: Some("ES256".into()),
        use_: Some("sig".into()),
        ..Jwk::default()
    };
    let old_ec = Jwk {
        kid: Some("ec-2025".into()),
        ..ec_jwk.clone()
    };
    let input = format!(
        "{}.{payload}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT","kid":"ec-2026"}"#)
    );
    let sig = ec.sign(&rng, input.as_bytes()).expect("ES256 signing");
    let es_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let es_set = jwks_with(ec_jwk, old_ec);
    g.bench_function("verify_es256", |b| {
        b.iter(|| verify_like_mint(black_box(&es_token), &es_set, aud))
    });
    g.finish();
}

/// handoff's session settings as a deployment in front of oidc-provider would set them.
fn session_config() -> handoff::config::SessionConfig {
    let text = r#"
[server]
public_host = "login.example.com"
[upstream]
address = "127.0.0.1:3000"
[session]
cookie_names = ["_session", "_session.legacy"]
domain = "login.example.com"
"#;
    handoff::config::Config::from_toml(text, "micro.toml", std::path::Path::new("."))
        .expect("bench config")
        .session
}

fn cookie_rewriting(c: &mut Criterion) {
    let mut g = c.benchmark_group("cookies");
    let stt = TransferToken::generate(&LineageId::generate(), now() + 60);
    let browser = format!(
        "_ga=GA1.1.1234567890.1700000000; _ga_ABCDEF1234=GS1.1.1700000000.3.1.1700000123.0.0.0; \
         _session=x9Yy1Qm8kP2sTf6Hc4Vb0Nw; _session.sig=r2Vq0n5mWz8eTsUa1YcJkPhL3bQ; \
         _session.legacy=x9Yy1Qm8kP2sTf6Hc4Vb0Nw; _session.legacy.sig=Hk3nQ8sVw1ZbT6mYa0LcJpEr5uD; \
         auth0_session_transfer_token={}; theme=dark; consent=analytics%3D1%26ads%3D0",
        stt.expose()
    );
    let without = browser.replace(
        &format!("auth0_session_transfer_token={}; ", stt.expose()),
        "",
    );
    let names = [
        "__Host-handoff_stt",
        "auth0_session_transfer_token",
        "session_transfer_token",
    ];
    g.bench_function("request_take_stt_cookie", |b| {
        b.iter(|| cookies::take_cookies(&[black_box(browser.as_bytes())], &names))
    });
    g.bench_function("request_no_stt_cookie", |b| {
        b.iter(|| cookies::take_cookies(&[black_box(without.as_bytes())], &names))
    });

    // oidc-provider's answer that ends a login: 6 Set-Cookie headers, 2 of them
    // the session cookies handoff hardens, binds and caps.
    let cfg = session_config();
    let t = now();
    let login_response = [
        "_interaction_resume=; path=/oidc/auth/Q2x1ZUlk; expires=Thu, 01 Jan 1970 00:00:00 GMT; samesite=lax; httponly".to_string(),
        "_interaction_resume.sig=; path=/oidc/auth/Q2x1ZUlk; expires=Thu, 01 Jan 1970 00:00:00 GMT; samesite=lax; httponly".to_string(),
        "_session=x9Yy1Qm8kP2sTf6Hc4Vb0Nw; path=/; expires=Fri, 01 Jan 2038 00:00:00 GMT; samesite=lax; httponly".to_string(),
        "_session.sig=r2Vq0n5mWz8eTsUa1YcJkPhL3bQ; path=/; expires=Fri, 01 Jan 2038 00:00:00 GMT; samesite=lax; httponly".to_string(),
        "_session.legacy=x9Yy1Qm8kP2sTf6Hc4Vb0Nw; path=/; expires=Fri, 01 Jan 2038 00:00:00 GMT; httponly".to_string(),
        "_session.legacy.sig=Hk3nQ8sVw1ZbT6mYa0LcJpEr5uD; path=/; expires=Fri, 01 Jan 2038 00:00:00 GMT; httponly".to_string(),
    ];
    g.bench_function("response_rewrite_6_set_cookies", |b| {
        b.iter(|| {
            login_response
                .iter()
                .filter_map(|raw| {
                    cookies::rewrite_set_cookie(black_box(raw), &cfg, Some((t + 1800, t)))
                })
                .count()
        })
    });
    g.bench_function("handoff_own_set_cookies", |b| {
        b.iter(|| {
            (
                cookies::host_cookie("__Host-handoff_stt", black_box(stt.expose()), 60),
                cookies::expire_cookie(black_box("auth0_session_transfer_token")),
            )
        })
    });
    g.finish();
}

fn rules(c: &mut Criterion) {
    let mut g = c.benchmark_group("rules");
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let example = Policy::from_toml(include_str!("../deploy/examples/rules.toml"), "rules.toml")
        .expect("example rules");
    let ctx = RedeemContext {
        native_client: "com.example.mobile",
        web_client: "example-web",
        method: AuthMethod::Cookie,
        mint_ip: ip("203.0.113.7"),
        redeem_ip: ip("203.0.113.7"),
        mint_fingerprint: None,
        redeem_fingerprint: None,
        mint_asn: None,
        redeem_asn: None,
        minute_of_day_utc: 600,
    };
    assert!(example.decide_redemption(&ctx).is_allowed());
    g.bench_function("decide_example", |b| {
        b.iter(|| example.decide_redemption(black_box(&ctx)))
    });
    let corporate = Policy::from_toml(
        include_str!("../rules/examples/corporate.toml"),
        "corporate.toml",
    )
    .expect("corporate rules");
    let fp = Some([9u8; 32]);
    let ctx = RedeemContext {
        native_client: "corp.workspace.desktop",
        web_client: "payments",
        method: AuthMethod::Cookie,
        mint_ip: ip("10.1.4.20"),
        redeem_ip: ip("10.1.4.20"),
        mint_fingerprint: fp,
        redeem_fingerprint: fp,
        mint_asn: None,
        redeem_asn: None,
        minute_of_day_utc: 600,
    };
    assert!(corporate.decide_redemption(&ctx).is_allowed());
    g.bench_function("decide_corporate", |b| {
        b.iter(|| corporate.decide_redemption(black_box(&ctx)))
    });
    g.finish();
}

/// A `redis-server` on a free loopback port, stopped on drop.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let r = Redis(child, port);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mint_context(lineage: &LineageId) -> MintContext {
    let t = now();
    MintContext {
        sub: "auth0|65f1c2d3e4f5a6b7c8d9e0f1".into(),
        native_client_id: "com.example.mobile".into(),
        lineage: lineage.clone(),
        scope: "openid profile email offline_access".into(),
        ip: "203.0.113.7".parse().expect("ip"),
        asn: None,
        fingerprint: None,
        iat: t,
        exp: t + 60,
    }
}

fn consume_bench(
    c: &mut Criterion,
    name: &str,
    store: Arc<dyn Store>,
    rt: &tokio::runtime::Runtime,
) {
    let lineage = LineageId::generate();
    let ctx = mint_context(&lineage);
    let rt_hash = SecretHash::of(b"refresh-token");
    c.bench_function(name, |b| {
        b.iter_batched(
            // Not timed: a freshly minted token, recorded.
            || {
                let t = TransferToken::generate(&lineage, ctx.exp);
                let h = *t.hash();
                rt.block_on(store.record_mint(&h, &ctx, &[rt_hash], Duration::from_secs(600)))
                    .expect("record_mint");
                h
            },
            // Timed: the redemption's consume.
            |h| {
                let r = rt
                    .block_on(store.consume_transfer_token(&lineage, &h, "bench-web"))
                    .expect("consume");
                assert!(matches!(r, handoff::store::Consumed::Fresh { .. }));
            },
            BatchSize::SmallInput,
        )
    });
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clock: SharedClock = Arc::new(SystemClock);
    consume_bench(
        c,
        "store/consume_memory",
        Arc::new(MemoryStore::new(clock.clone())),
        &rt,
    );
    match Redis::start() {
        None => eprintln!("store/consume_redis: skipped (redis-server is not installed: apt-get install -y redis-server)"),
        Some(redis) => {
            let store = RedisStore::new(
                &format!("redis://127.0.0.1:{}", redis.1),
                "ho",
                Duration::from_secs(1),
                clock,
            )
            .expect("redis store");
            let store: Arc<dyn Store> = Arc::new(store);
            // Connect (and load the scripts) before timing.
            let _ = rt.block_on(store.ping());
            consume_bench(c, "store/consume_redis", store, &rt);
            drop(redis);
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = stt, jws_sign, id_token, cookie_rewriting, rules, store
}
criterion_main!(benches);
