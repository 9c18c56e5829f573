//! The IdP's ES256 signing key and JWTs, base64url, and the clock of `iat`/`exp`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

use super::state::Inner;

/// A new P-256 key: the key, its `kid` (RFC 7638 thumbprint) and its public JWK.
pub(super) fn generate_es256(rng: &SystemRandom) -> (EcdsaKeyPair, String, Value) {
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng).expect("test IdP: generate P-256 key");
    let signing_key =
        EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).expect("test IdP: load P-256 key");
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
    (signing_key, kid, public_jwk)
}

impl Inner {
    /// Signs `claims` as an ES256 JWT with the IdP's key.
    pub(super) fn sign_claims(&self, claims: &Value) -> String {
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
}

pub fn b64e(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url without padding.
pub fn b64d(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
