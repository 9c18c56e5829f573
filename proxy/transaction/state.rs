//! The transaction's data, its sealed cookie and its state machine: plain data,
//! no I/O (a leaf: `app` holds the [`TxKey`]).

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
    /// The hop (canonical path and query) the next request must be to carry the
    /// assertion: the `Location` of the previous hop's answer. The transaction follows the IdP's
    /// own redirect chain and nothing else, so it cannot finish an interaction
    /// another request started (a `form_post` authorize, say).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Transaction {
    /// A new transaction id.
    pub(crate) fn new_id() -> String {
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
    pub(crate) fn subkey(&self, label: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, label).as_ref());
        out
    }

    /// `base64url(json).base64url(hmac)`.
    pub(crate) fn seal(&self, tx: &Transaction) -> String {
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
            next: Some("/interaction/x".into()),
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

/// One request's login transaction, as one state machine (SPEC §2.3). The
/// gateway moves it along as the request meets the flows; the response phase
/// derives the transaction cookie's `Set-Cookie` from it ([`TxState::cookie`]).
///
/// ```text
///   None ──redemption ok──▶ Started ──IdP sets its session──▶ Done
///   cookie ──opened, on the chain, hop ok──▶ Continued ──IdP sets its session──▶ Done
///   cookie ──off the chain/refused/out of hops/store error──▶ BindOnly (binds, never asserts)
///   cookie ──invalid──▶ Ended          any ──failed redemption──▶ Ended
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TxState {
    /// No login transaction.
    #[default]
    None,
    /// Continued from the browser's cookie: this request carries an assertion.
    Continued {
        /// The transaction.
        tx: Transaction,
        /// The next hop changed: the cookie is sealed again.
        moved: bool,
    },
    /// Started by this request's redemption: it carries an assertion, and the
    /// browser gets the sealed cookie.
    Started {
        /// The transaction.
        tx: Transaction,
    },
    /// May not assert (off the redirect chain, another IP, out of hops or time,
    /// store trouble, a new redemption attempt) but a session the IdP sets now must
    /// still be bound: an unbound transfer session would have no limits at all.
    BindOnly {
        /// The transaction.
        tx: Transaction,
        /// Whether the browser's cookie is expired in the response.
        expire: bool,
    },
    /// Over (invalid cookie, or an ordinary login replaced it): the cookie goes.
    Ended,
    /// The IdP's session cookie got bound in this response.
    Done {
        /// Whether the browser holds a transaction cookie to expire.
        expire: bool,
    },
}

/// What the response does with the transaction cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxCookie<'a> {
    /// Nothing.
    Keep,
    /// Seal this transaction into it.
    Set(&'a Transaction),
    /// Expire it.
    Expire,
}

impl TxState {
    /// The transaction whose hops carry an assertion.
    pub(crate) fn asserting(&self) -> Option<&Transaction> {
        match self {
            TxState::Continued { tx, .. } | TxState::Started { tx } => Some(tx),
            _ => None,
        }
    }

    /// The transaction a session cookie the IdP sets now is bound to.
    pub fn binding(&self) -> Option<&Transaction> {
        match self {
            TxState::BindOnly { tx, .. } => Some(tx),
            other => other.asserting(),
        }
    }

    /// Whether a transaction is running (asserting or binding).
    pub(crate) fn is_active(&self) -> bool {
        self.binding().is_some()
    }

    /// A redemption attempt replaces the running transaction: whatever happens next
    /// is the new token's doing, but a session set now still gets bound.
    pub(crate) fn redemption_attempt(&mut self) {
        if let TxState::Continued { tx, .. } = self {
            let tx = tx.clone();
            *self = TxState::BindOnly { tx, expire: false };
        }
    }

    /// An ordinary login: nothing of an earlier transaction goes on.
    pub fn end(&mut self) {
        *self = TxState::Ended;
    }

    /// The IdP answered this hop with a redirect to `next` (a canonical path on the
    /// public host): only that path may carry the assertion next.
    pub(crate) fn follow(&mut self, next: &str) {
        match self {
            TxState::Started { tx } => tx.next = Some(next.to_string()),
            TxState::Continued { tx, moved } if tx.next.as_deref() != Some(next) => {
                tx.next = Some(next.to_string());
                *moved = true;
            }
            _ => {}
        }
    }

    /// The IdP set its session cookie and it was bound: the transaction is over.
    pub fn done(&mut self) {
        *self = match self {
            TxState::Started { .. } => TxState::Done { expire: false },
            TxState::None => TxState::None,
            _ => TxState::Done { expire: true },
        };
    }

    /// The transaction cookie's fate in the response.
    pub fn cookie(&self) -> TxCookie<'_> {
        match self {
            TxState::Started { tx } | TxState::Continued { tx, moved: true } => TxCookie::Set(tx),
            TxState::BindOnly { expire: true, .. }
            | TxState::Ended
            | TxState::Done { expire: true } => TxCookie::Expire,
            _ => TxCookie::Keep,
        }
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    fn tx() -> Transaction {
        Transaction {
            txid: "t".into(),
            sid: "s".into(),
            sub: "u".into(),
            lineage: LineageId::generate(),
            web_client: "w".into(),
            native_client: "n".into(),
            ip: "127.0.0.1".parse().unwrap(),
            exp: 10,
            absolute_exp: 100,
            idle_secs: 60,
            refresh: Default::default(),
            next: None,
        }
    }

    #[test]
    fn a_started_transaction_sets_its_cookie_unless_done_at_once() {
        let mut s = TxState::None;
        assert_eq!(s.cookie(), TxCookie::Keep);
        s = TxState::Started { tx: tx() };
        assert!(s.asserting().is_some());
        assert!(matches!(s.cookie(), TxCookie::Set(_)));
        s.follow("/interaction/x");
        assert_eq!(
            s.asserting().unwrap().next.as_deref(),
            Some("/interaction/x")
        );
        s.done();
        assert_eq!(s, TxState::Done { expire: false });
        assert_eq!(s.cookie(), TxCookie::Keep);
        assert!(!s.is_active());
    }

    #[test]
    fn a_continued_transaction_expires_its_cookie_when_done() {
        let mut s = TxState::Continued {
            tx: tx(),
            moved: false,
        };
        assert!(s.asserting().is_some());
        assert_eq!(s.cookie(), TxCookie::Keep);
        s.follow("/auth/x");
        assert!(matches!(s.cookie(), TxCookie::Set(t) if t.next.as_deref() == Some("/auth/x")));
        s.done();
        assert_eq!(s.cookie(), TxCookie::Expire);
    }

    #[test]
    fn a_redemption_attempt_keeps_binding_but_stops_asserting() {
        let mut s = TxState::Continued {
            tx: tx(),
            moved: false,
        };
        s.redemption_attempt();
        assert!(s.asserting().is_none() && s.binding().is_some());
        assert_eq!(s.cookie(), TxCookie::Keep);
        s.end();
        assert!(!s.is_active());
        assert_eq!(s.cookie(), TxCookie::Expire);
        let mut n = TxState::None;
        n.redemption_attempt();
        assert_eq!(n, TxState::None);
        n.done();
        assert_eq!(n, TxState::None, "nothing to end");
    }

    #[test]
    fn bind_only_binds_and_says_whether_the_cookie_goes() {
        let s = TxState::BindOnly {
            tx: tx(),
            expire: true,
        };
        assert!(s.asserting().is_none() && s.is_active());
        assert_eq!(s.cookie(), TxCookie::Expire);
        let s = TxState::BindOnly {
            tx: tx(),
            expire: false,
        };
        assert_eq!(s.cookie(), TxCookie::Keep);
    }
}
