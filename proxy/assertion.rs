//! The identity assertion (SPEC §2.3): how handoff tells the IdP who the user is.
//!
//! A compact JWS (EdDSA by default) in a request header that handoff strips from
//! every incoming request, so only handoff can put it there. Its claims tie it to
//! one web client, one web session and one lineage, and it lives at most 60 s.

use crate::clock::SharedClock;
use crate::jws::{new_jti, Signer};
use crate::secret::Secret;
use serde_json::json;
use std::time::Duration;

/// What the assertion says.
#[derive(Debug, Clone)]
pub struct AssertionFacts<'a> {
    /// The user.
    pub sub: &'a str,
    /// The lineage.
    pub lineage: &'a str,
    /// The native client whose token was redeemed.
    pub native_client: &'a str,
    /// The web session id.
    pub sid: &'a str,
    /// The web client (`client_id` of the authorize request).
    pub web_client: &'a str,
}

/// Signs handoff's identity assertions and publishes their public keys: the one
/// service every flow that logs a user in goes through (it owns the key; nothing
/// else signs).
pub struct Asserter {
    signer: Signer,
    issuer: String,
    audience: String,
    ttl: Duration,
    clock: SharedClock,
    jwks_json: bytes::Bytes,
}

impl std::fmt::Debug for Asserter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asserter")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Asserter {
    /// The asserter of `[assertion]`, signing with `signer`.
    pub fn new(signer: Signer, cfg: &crate::config::AssertionConfig, clock: SharedClock) -> Self {
        let jwks_json = serde_json::to_vec(&signer.public_jwks())
            .expect("JWKS serializes")
            .into();
        Asserter {
            signer,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            ttl: cfg.ttl,
            clock,
            jwks_json,
        }
    }

    /// Signs an assertion for `facts` (a fresh `jti` each time): the compact JWS,
    /// as a secret that never reaches a log.
    pub fn sign(&self, facts: &AssertionFacts<'_>) -> Secret {
        let iat = self.clock.now_secs();
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": facts.sub,
            "iat": iat,
            "exp": iat + self.ttl.as_secs(),
            "jti": new_jti(),
            "amr": ["session_transfer"],
            "sid": facts.sid,
            "lineage": facts.lineage,
            "client_id": facts.web_client,
            "native_client_id": facts.native_client,
        });
        Secret::new(self.signer.sign(&claims))
    }

    /// The public JWKS, serialized once (served on both listeners).
    pub(crate) fn jwks_json(&self) -> bytes::Bytes {
        self.jwks_json.clone()
    }
}
