//! Compact JWS: signing handoff's assertions and verifying the IdP's tokens.
//!
//! `ring` does the cryptography; this module only does the JOSE framing that ring
//! does not give (base64url segments, JWK → public key). Signing: `EdDSA`
//! (Ed25519) or `HS256`. Verification: `RS256`, `ES256` and `EdDSA`, the algorithms
//! IdPs sign id_tokens and logout tokens with. `alg: none` and any algorithm not in
//! the caller's list are refused before a key is even looked up, and a key is only
//! used for the algorithm its type implies (no RSA-key-as-HMAC-secret confusion).

use crate::secret::random_bytes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Why a JWS was refused or a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwsError {
    /// Not three base64url segments of JSON.
    Malformed(&'static str),
    /// `alg` not allowed here.
    Algorithm(String),
    /// No key in the set matches `kid`/`alg`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// A key could not be loaded.
    Key(String),
}

impl fmt::Display for JwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwsError::Malformed(w) => write!(f, "malformed JWS: {w}"),
            JwsError::Algorithm(a) => write!(f, "algorithm {a:?} not accepted"),
            JwsError::UnknownKey => f.write_str("no matching key in the JWKS"),
            JwsError::BadSignature => f.write_str("signature does not verify"),
            JwsError::Key(e) => write!(f, "bad key: {e}"),
        }
    }
}

impl std::error::Error for JwsError {}

/// One JSON Web Key (public parts only).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Jwk {
    /// Key type: `RSA`, `EC`, `OKP`.
    pub kty: String,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm the key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig` or `enc`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Curve (`P-256`, `Ed25519`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x / OKP public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// The algorithms handoff verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    fn kty(self) -> &'static str {
        match self {
            Alg::Rs256 => "RSA",
            Alg::Es256 => "EC",
            Alg::EdDsa => "OKP",
        }
    }
}

/// The header fields handoff looks at.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn b64(seg: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|_| JwsError::Malformed("segment is not base64url"))
}

/// Splits and decodes a compact JWS without verifying it: `(header, claims, signing input, signature)`.
fn split(token: &str) -> Result<(Header, Value, &str, Vec<u8>), JwsError> {
    if token.len() > 16 * 1024 {
        return Err(JwsError::Malformed("too long"));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JwsError::Malformed("not three segments"));
    };
    let header: Header =
        serde_json::from_slice(&b64(h)?).map_err(|_| JwsError::Malformed("header is not JSON"))?;
    let claims: Value =
        serde_json::from_slice(&b64(p)?).map_err(|_| JwsError::Malformed("payload is not JSON"))?;
    if !claims.is_object() {
        return Err(JwsError::Malformed("payload is not a JSON object"));
    }
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok((header, claims, signing_input, b64(s)?))
}

/// Verifies a compact JWS against `jwks`, accepting only `allowed` algorithms.
/// Returns the claims; the caller checks them (`iss`, `aud`, `exp`, ...).
pub fn verify(token: &str, jwks: &JwkSet, allowed: &[Alg]) -> Result<Value, JwsError> {
    let (header, claims, input, sig) = split(token)?;
    let alg = Alg::parse(&header.alg)
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| JwsError::Algorithm(header.alg.chars().take(16).collect()))?;
    let candidates = jwks.keys.iter().filter(|k| {
        k.kty == alg.kty()
            && k.use_.as_deref().is_none_or(|u| u == "sig")
            && k.alg.as_deref().is_none_or(|a| a == header.alg)
            && match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    });
    let mut any = false;
    for k in candidates {
        any = true;
        if verify_with(alg, k, input.as_bytes(), &sig)? {
            return Ok(claims);
        }
    }
    Err(if any {
        JwsError::BadSignature
    } else {
        JwsError::UnknownKey
    })
}

/// Whether `kid` names a key of `jwks` (used to decide whether to refetch a JWKS).
pub fn header_kid(token: &str) -> Option<String> {
    let h = token.split('.').next()?;
    let header: Header = serde_json::from_slice(&b64(h).ok()?).ok()?;
    header.kid
}

fn verify_with(alg: Alg, k: &Jwk, msg: &[u8], sig: &[u8]) -> Result<bool, JwsError> {
    let field = |v: &Option<String>, what: &'static str| -> Result<Vec<u8>, JwsError> {
        b64(v
            .as_deref()
            .ok_or(JwsError::Key(format!("JWK lacks {what}")))?)
    };
    let ok = match alg {
        Alg::Rs256 => {
            let n = field(&k.n, "n")?;
            let e = field(&k.e, "e")?;
            signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok()
        }
        Alg::Es256 => {
            if k.crv.as_deref() != Some("P-256") {
                return Ok(false);
            }
            let mut point = vec![4u8];
            point.extend(field(&k.x, "x")?);
            point.extend(field(&k.y, "y")?);
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        Alg::EdDsa => {
            if k.crv.as_deref() != Some("Ed25519") {
                return Ok(false);
            }
            signature::UnparsedPublicKey::new(&signature::ED25519, field(&k.x, "x")?)
                .verify(msg, sig)
                .is_ok()
        }
    };
    Ok(ok)
}

/// Signs handoff's assertions.
pub enum Signer {
    /// Ed25519 (`alg: EdDSA`); the public key is published as a JWKS.
    Ed25519 {
        /// The key pair.
        key: signature::Ed25519KeyPair,
        /// Its key id (hash of the public key).
        kid: String,
    },
    /// HMAC-SHA-256 with a shared secret (`alg: HS256`); nothing is published.
    Hs256 {
        /// The HMAC key.
        key: ring::hmac::Key,
        /// Its key id (hash of the secret's hash).
        kid: String,
    },
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Ed25519 { kid, .. } => write!(f, "Signer::Ed25519({kid})"),
            Signer::Hs256 { kid, .. } => write!(f, "Signer::Hs256({kid})"),
        }
    }
}

/// A new Ed25519 private key as PKCS#8 PEM (what `handoff keygen` writes).
pub fn generate_ed25519_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let doc = signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("system randomness failed");
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

impl Signer {
    /// Loads an Ed25519 PKCS#8 key, PEM (`BEGIN PRIVATE KEY`) or DER.
    pub fn ed25519_from_pkcs8(bytes: &[u8]) -> Result<Signer, JwsError> {
        let der = if bytes.starts_with(b"-----") {
            let mut rd = bytes;
            match rustls_pemfile::private_key(&mut rd) {
                Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k))) => {
                    k.secret_pkcs8_der().to_vec()
                }
                _ => {
                    return Err(JwsError::Key(
                        "expected a PEM \"PRIVATE KEY\" (PKCS#8) block".into(),
                    ))
                }
            }
        } else {
            bytes.to_vec()
        };
        let key = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| JwsError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        let kid = kid_of(key.public_key().as_ref());
        Ok(Signer::Ed25519 { key, kid })
    }

    /// A fresh Ed25519 key that lives only in this process.
    pub fn ephemeral_ed25519() -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let doc =
            signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("system randomness failed");
        Signer::ed25519_from_pkcs8(doc.as_ref()).expect("ring accepts its own key")
    }

    /// An HS256 signer; the secret must be at least 32 bytes.
    pub fn hs256(secret: &[u8]) -> Result<Signer, JwsError> {
        if secret.len() < 32 {
            return Err(JwsError::Key(
                "an HS256 secret must be at least 32 bytes".into(),
            ));
        }
        let kid = kid_of(ring::digest::digest(&ring::digest::SHA256, secret).as_ref());
        Ok(Signer::Hs256 {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            kid,
        })
    }

    /// The `alg` this signer produces.
    pub fn alg(&self) -> &'static str {
        match self {
            Signer::Ed25519 { .. } => "EdDSA",
            Signer::Hs256 { .. } => "HS256",
        }
    }

    /// Signs `claims` into a compact JWS (`typ: JWT`).
    pub fn sign(&self, claims: &Value) -> String {
        let kid = match self {
            Signer::Ed25519 { kid, .. } | Signer::Hs256 { kid, .. } => kid,
        };
        let header = serde_json::json!({"alg": self.alg(), "typ": "JWT", "kid": kid});
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = match self {
            Signer::Ed25519 { key, .. } => key.sign(out.as_bytes()).as_ref().to_vec(),
            Signer::Hs256 { key, .. } => ring::hmac::sign(key, out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        out
    }

    /// The public JWKS (empty for HS256: a shared secret is never published).
    pub fn public_jwks(&self) -> JwkSet {
        match self {
            Signer::Ed25519 { key, kid } => JwkSet {
                keys: vec![Jwk {
                    kty: "OKP".into(),
                    crv: Some("Ed25519".into()),
                    x: Some(URL_SAFE_NO_PAD.encode(key.public_key().as_ref())),
                    kid: Some(kid.clone()),
                    alg: Some("EdDSA".into()),
                    use_: Some("sig".into()),
                    ..Jwk::default()
                }],
            },
            Signer::Hs256 { .. } => JwkSet::default(),
        }
    }
}

fn kid_of(material: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, material);
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..12])
}

/// A random `jti`.
pub fn new_jti() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn eddsa_round_trip_and_tamper() {
        let s = Signer::ephemeral_ed25519();
        let t = s.sign(&json!({"sub": "alice"}));
        let jwks = s.public_jwks();
        assert_eq!(verify(&t, &jwks, &[Alg::EdDsa]).unwrap()["sub"], "alice");
        // payload swapped
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory"}"#),
            parts[2]
        );
        assert_eq!(
            verify(&forged, &jwks, &[Alg::EdDsa]),
            Err(JwsError::BadSignature)
        );
        // algorithm not allowed
        assert!(matches!(
            verify(&t, &jwks, &[Alg::Rs256]),
            Err(JwsError::Algorithm(_))
        ));
        // another key
        let other = Signer::ephemeral_ed25519().public_jwks();
        assert!(verify(&t, &other, &[Alg::EdDsa]).is_err());
    }

    #[test]
    fn pem_keys_load_and_keep_their_kid() {
        let pem = generate_ed25519_pem();
        let a = Signer::ed25519_from_pkcs8(pem.as_bytes()).unwrap();
        let b = Signer::ed25519_from_pkcs8(pem.as_bytes()).unwrap();
        assert_eq!(a.public_jwks(), b.public_jwks());
        assert!(Signer::ed25519_from_pkcs8(b"-----BEGIN NOTHING-----").is_err());
        assert!(Signer::ed25519_from_pkcs8(b"garbage").is_err());
    }

    #[test]
    fn es256_verifies_with_a_jwk() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let kp = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let pubkey = kp.public_key().as_ref();
        let jwk = Jwk {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            x: Some(URL_SAFE_NO_PAD.encode(&pubkey[1..33])),
            y: Some(URL_SAFE_NO_PAD.encode(&pubkey[33..65])),
            kid: Some("k1".into()),
            ..Jwk::default()
        };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"bob"}"#)
        );
        let sig = kp.sign(&rng, input.as_bytes()).unwrap();
        let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        let set = JwkSet { keys: vec![jwk] };
        assert_eq!(verify(&t, &set, &[Alg::Es256]).unwrap()["sub"], "bob");
        // wrong kid → unknown key
        let t2 = t.replacen(
            &URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#),
            &URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k2"}"#),
            1,
        );
        assert_eq!(verify(&t2, &set, &[Alg::Es256]), Err(JwsError::UnknownKey));
    }

    #[test]
    fn rs256_verifies_with_a_jwk() {
        // A throwaway 2048-bit test key (PKCS#1 DER), made with openssl for this test.
        let der = include_bytes!("testdata/rsa2048.pkcs1.der");
        let kp = signature::RsaKeyPair::from_der(der).unwrap();
        let comps: signature::RsaPublicKeyComponents<Vec<u8>> = kp.public().into();
        let jwk = Jwk {
            kty: "RSA".into(),
            n: Some(URL_SAFE_NO_PAD.encode(&comps.n)),
            e: Some(URL_SAFE_NO_PAD.encode(&comps.e)),
            kid: Some("r1".into()),
            alg: Some("RS256".into()),
            ..Jwk::default()
        };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"r1"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"rsa-user"}"#)
        );
        let mut sig = vec![0u8; kp.public().modulus_len()];
        kp.sign(
            &signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        let set = JwkSet { keys: vec![jwk] };
        assert_eq!(verify(&t, &set, &[Alg::Rs256]).unwrap()["sub"], "rsa-user");
        // The same token presented as HS256 with the RSA key as "secret" is refused.
        let confused = t.replacen(
            &URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"r1"}"#),
            &URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"r1"}"#),
            1,
        );
        assert!(matches!(
            verify(&confused, &set, &[Alg::Rs256, Alg::Es256, Alg::EdDsa]),
            Err(JwsError::Algorithm(_))
        ));
        sig[10] ^= 1;
        let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            verify(&bad, &set, &[Alg::Rs256]),
            Err(JwsError::BadSignature)
        );
    }

    #[test]
    fn alg_none_and_garbage_are_refused() {
        let set = Signer::ephemeral_ed25519().public_jwks();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#)
        );
        assert!(matches!(
            verify(&none, &set, &[Alg::EdDsa, Alg::Rs256, Alg::Es256]),
            Err(JwsError::Algorithm(_))
        ));
        for g in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b",
            "a.b.c.d",
            "€.€.€",
            &"x".repeat(20_000),
        ] {
            assert!(verify(g, &set, &[Alg::EdDsa]).is_err());
        }
    }

    #[test]
    fn hs256_needs_a_long_secret_and_publishes_nothing() {
        assert!(Signer::hs256(b"short").is_err());
        let s = Signer::hs256(&[7u8; 32]).unwrap();
        assert!(s.public_jwks().keys.is_empty());
        let t = s.sign(&json!({"a": 1}));
        let (input, sig) = t.rsplit_once('.').unwrap();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7u8; 32]);
        ring::hmac::verify(
            &key,
            input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(sig).unwrap(),
        )
        .unwrap();
    }
}
