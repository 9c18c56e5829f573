//! The identity assertion (SPEC §2.3): how handoff tells the IdP who the user is.
//!
//! A compact JWS (EdDSA by default) in a request header that handoff strips from
//! every incoming request, so only handoff can put it there. Its claims tie it to
//! one web client, one web session and one lineage, and it lives at most 60 s.

use crate::app::Handoff;
use crate::jws::new_jti;
use serde_json::json;

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

/// Signs an assertion for `facts`; returns the compact JWS.
pub fn sign(h: &Handoff, facts: &AssertionFacts<'_>) -> String {
    let iat = h.clock.now_secs();
    let claims = json!({
        "iss": h.config.assertion.issuer,
        "aud": h.config.assertion.audience,
        "sub": facts.sub,
        "iat": iat,
        "exp": iat + h.config.assertion.ttl.as_secs(),
        "jti": new_jti(),
        "amr": ["session_transfer"],
        "sid": facts.sid,
        "lineage": facts.lineage,
        "client_id": facts.web_client,
        "native_client_id": facts.native_client,
    });
    h.signer.sign(&claims)
}
