//! The login transaction (SPEC §2.3): the few IdP hops between a redemption and
//! the IdP setting its session cookie.
//!
//! Real IdPs log a user in over several requests (oidc-provider: `/auth` →
//! `/interaction/:uid` → `/auth/:uid`), and the one that needs the assertion is
//! rarely the one that carried the token. After a successful redemption handoff
//! gives the browser a `__Host-` cookie naming the transaction and attaches a
//! freshly signed assertion to each upstream request that carries it, until:
//! - the IdP sets its session cookie (the transaction ends and the session is bound),
//! - the transaction's time is up (≤ 120 s), or its hop budget is spent,
//! - the lineage is revoked.
//!
//! The cookie's value is sealed (HMAC-SHA-256 under a key derived from the
//! assertion signing key, so every instance that shares the key can open it) and
//! carries everything the redemption decided, so a hop costs no store read for the
//! decision — only one atomic hop count, which is also how a transaction is ended.
//! It is bound to the client IP: a copy replayed from elsewhere does nothing.

use crate::secret::{random_id, LineageId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What one login transaction carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Transaction id (random).
    #[serde(rename = "t")]
    pub txid: String,
    /// The web session id it will create.
    #[serde(rename = "sid")]
    pub sid: String,
    /// The user.
    #[serde(rename = "s")]
    pub sub: String,
    /// The lineage.
    #[serde(rename = "l")]
    pub lineage: LineageId,
    /// The web client.
    #[serde(rename = "w")]
    pub web_client: String,
    /// The native client.
    #[serde(rename = "n")]
    pub native_client: String,
    /// The client IP it is bound to.
    #[serde(rename = "ip")]
    pub ip: IpAddr,
    /// When the transaction ends (Unix seconds).
    #[serde(rename = "exp")]
    pub exp: u64,
    /// The web session's absolute expiry (Unix seconds).
    #[serde(rename = "abs")]
    pub absolute_exp: u64,
    /// The web session's idle limit (seconds).
    #[serde(rename = "idle")]
    pub idle_secs: u64,
    /// The decision's refresh-token policy.
    #[serde(rename = "rt", default)]
    pub refresh: crate::store::RefreshPolicy,
}

impl Transaction {
    /// A new transaction id.
    pub fn new_id() -> String {
        random_id()
    }
}

/// Seals and opens transaction cookies.
pub struct TxKey(hmac::Key);

impl std::fmt::Debug for TxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TxKey(..)")
    }
}

/// The longest cookie value [`TxKey::open`] looks at.
const MAX_SEALED: usize = 2048;

impl TxKey {
    /// Derives the key from secret key material (the assertion signing key file),
    /// with a label so it can never be confused with another use of that material.
    pub fn derive(material: &[u8]) -> TxKey {
        let label = hmac::Key::new(hmac::HMAC_SHA256, b"handoff login transaction cookie v1");
        let derived = hmac::sign(&label, material);
        TxKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// A random key (for an ephemeral signing key: single instance only).
    pub fn random() -> TxKey {
        TxKey::derive(&crate::secret::random_bytes::<32>())
    }

    /// 32 bytes of key material for another use of the same secret (HMAC of
    /// `label` under this key: a different label, an unrelated key), so every
    /// instance that shares the signing key derives the same one.
    pub fn subkey(&self, label: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, label).as_ref());
        out
    }

    /// `base64url(json).base64url(hmac)`.
    pub fn seal(&self, tx: &Transaction) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(tx).expect("transactions serialize"));
        let tag = hmac::sign(&self.0, body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Opens a sealed value; None when it was not sealed by this key or is garbage.
    pub fn open(&self, value: &str) -> Option<Transaction> {
        if value.len() > MAX_SEALED {
            return None;
        }
        let (body, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.0, body.as_bytes(), &tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> Transaction {
        Transaction {
            txid: Transaction::new_id(),
            sid: "s".into(),
            sub: "alice".into(),
            lineage: LineageId::generate(),
            web_client: "web".into(),
            native_client: "app".into(),
            ip: "127.0.0.1".parse().unwrap(),
            exp: 100,
            absolute_exp: 1000,
            idle_secs: 60,
            refresh: Default::default(),
        }
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_untouched() {
        let k = TxKey::derive(b"key material");
        let t = tx();
        let v = k.seal(&t);
        assert_eq!(k.open(&v), Some(t.clone()));
        assert_eq!(TxKey::derive(b"other").open(&v), None);
        assert_eq!(
            TxKey::derive(b"key material").open(&v),
            Some(t.clone()),
            "instances sharing the key agree"
        );
        // Tampering with the body (say, the IP or the subject) breaks the tag.
        let (body, tag) = v.split_once('.').unwrap();
        let mut forged = t.clone();
        forged.sub = "mallory".into();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(k.open(&format!("{forged_body}.{tag}")), None);
        assert_eq!(k.open(body), None);
        for g in ["", ".", "a.b", "%%.%%", &"a".repeat(5000)] {
            assert_eq!(k.open(g), None);
        }
    }
}
