//! The stand-in's state: what it issued, what it saw, and the server's shared parts.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::EcdsaKeyPair;
use serde_json::Value;

use super::assertion::AssertionKey;
use super::jwt::b64e;
use super::{IdpOptions, LoginRecord, RecordedRequest};

#[derive(Clone, Debug)]
pub(super) struct RefreshGrant {
    pub(super) sub: String,
    pub(super) client_id: String,
    pub(super) scope: String,
}

#[derive(Clone, Debug)]
pub(super) struct AccessGrant {
    pub(super) sub: String,
    pub(super) expires_at: u64,
}

#[derive(Clone, Debug)]
pub(super) struct CodeGrant {
    pub(super) sub: String,
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    pub(super) scope: String,
    pub(super) nonce: Option<String>,
    pub(super) code_challenge: Option<(String, String)>,
    pub(super) expires_at: u64,
    /// The IdP session the code was issued in (its `sid` claim).
    pub(super) sid: Option<String>,
    /// How the session's user logged in (`amr` claim).
    pub(super) amr: &'static str,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) down: bool,
    pub(super) jwks_url: Option<String>,
    pub(super) jwks_cache: Vec<AssertionKey>,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) logins: Vec<LoginRecord>,
    pub(super) assertion_rejections: Vec<String>,
    pub(super) refresh: HashMap<String, RefreshGrant>,
    pub(super) access: HashMap<String, AccessGrant>,
    /// refresh token -> the access token issued with it by a code exchange: revoked
    /// with it (RFC 7009 §2.1's SHOULD, as oidc-provider does with the whole grant).
    pub(super) paired_access: HashMap<String, String>,
    pub(super) codes: HashMap<String, CodeGrant>,
    /// session cookie value -> sub
    pub(super) sessions: HashMap<String, String>,
    /// Sessions a password login made (no assertion): `amr` says `pwd`.
    pub(super) password_sessions: HashSet<String>,
    /// `_pending` ticket -> (client redirect with code, session cookie value)
    pub(super) pending: HashMap<String, (String, String)>,
    pub(super) seen_jti: HashSet<String>,
}

pub(super) struct Inner {
    pub(super) issuer: String,
    pub(super) opts: IdpOptions,
    pub(super) rng: SystemRandom,
    pub(super) signing_key: EcdsaKeyPair,
    pub(super) kid: String,
    pub(super) public_jwk: Value,
    pub(super) client: Client<HttpConnector, Empty<Bytes>>,
    pub(super) state: Mutex<State>,
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn random_token(&self) -> String {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).expect("test IdP: system RNG");
        b64e(&bytes)
    }
}
