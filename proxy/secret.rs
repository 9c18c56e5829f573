//! Secrets as types.
//!
//! Invariant 4 of SPEC.md says no log line may contain a transfer token, and the
//! same goes for refresh tokens, cookie values and assertions. Rather than relying
//! on every log statement to remember that, secrets live in types whose `Debug`
//! and `Display` print only a short prefix of their SHA-256 (`stt#1a2b3c4d`), so a
//! `tracing` field or an error message that formats one cannot leak it. The clear
//! value is reachable only through an explicitly named method (`expose`).
//!
//! The session transfer token (STT) format is
//! `{lineage}.{expiry}.{secret}`:
//! - `lineage`: the 16-byte lineage id, base64url (22 characters). Not secret: it is
//!   the routing part that lets every Redis key of one redemption share a hash tag.
//! - `expiry`: Unix seconds at which the token expires, decimal. Not secret and not
//!   trusted (the stored record decides); it only sizes the redirect cookie's
//!   `Max-Age`. Changing it changes the hash, so a tampered token is simply unknown.
//! - `secret`: 32 bytes from `ring::rand::SystemRandom`, base64url without padding
//!   (43 characters).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// Length of a lineage id in its base64url form.
pub const LINEAGE_LEN: usize = 22;
/// Length of the STT's secret part in its base64url form (32 bytes).
pub const SECRET_LEN: usize = 43;
/// The longest string that can be an STT; anything longer is rejected unread.
pub const MAX_TOKEN_LEN: usize = LINEAGE_LEN + 1 + 12 + 1 + SECRET_LEN;

/// SHA-256 of a secret: what the store keys on instead of the secret itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// Hashes `bytes` with SHA-256.
    pub fn of(bytes: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        SecretHash(out)
    }

    /// Parses 64 hex digits (as [`SecretHash::hex`] writes them).
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        }
        Some(SecretHash(out))
    }

    /// base64url without padding (43 characters), for the most numerous store keys.
    pub fn b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Full lower-case hex, used in store keys.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The first 8 hex digits: enough to correlate log lines, useless to an attacker.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.short())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Fills `buf` from the system's CSPRNG.
///
/// # Panics
/// Never in practice: `SystemRandom` fails only when the OS has no randomness
/// source at all, and handoff cannot run safely on such a machine.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random number generator failed");
    buf
}

/// A random identifier (16 bytes, base64url): session ids, `jti`s.
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The id of a lineage: the family of a native refresh token (SPEC §1).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LineageId(String);

impl LineageId {
    /// A fresh random lineage id.
    pub fn generate() -> Self {
        LineageId(URL_SAFE_NO_PAD.encode(random_bytes::<16>()))
    }

    /// A placeholder for a record read without its lineage (the store fills it in
    /// from the key); never a valid lineage id.
    pub fn unset() -> Self {
        LineageId(String::new())
    }

    /// Accepts a lineage id given from outside (admin API, a token's routing part).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == LINEAGE_LEN && is_b64url(s)).then(|| LineageId(s.to_owned()))
    }

    /// The id as text (not secret).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LineageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for LineageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not a well-formed transfer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedToken {
    /// Longer or shorter than any token handoff mints.
    Length,
    /// Not three dot-separated parts.
    Shape,
    /// A character outside base64url (or a non-digit in the expiry).
    Alphabet,
}

impl fmt::Display for MalformedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MalformedToken::Length => "wrong length",
            MalformedToken::Shape => "wrong shape",
            MalformedToken::Alphabet => "wrong alphabet",
        })
    }
}

/// A session transfer token. Its `Debug`/`Display` show only `stt#` and a hash prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct TransferToken {
    text: String,
    lineage: LineageId,
    expires_at: u64,
    hash: SecretHash,
}

impl TransferToken {
    /// Mints a new token for `lineage` that expires at `expires_at` (Unix seconds).
    pub fn generate(lineage: &LineageId, expires_at: u64) -> Self {
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let text = format!("{}.{}.{}", lineage.as_str(), expires_at, secret);
        let hash = SecretHash::of(text.as_bytes());
        TransferToken {
            text,
            lineage: lineage.clone(),
            expires_at,
            hash,
        }
    }

    /// Checks the shape of a presented token without touching the store
    /// (SPEC §2.2 step 2: garbage is rejected before any store access).
    pub fn parse(s: &str) -> Result<Self, MalformedToken> {
        if s.len() > MAX_TOKEN_LEN || s.len() < LINEAGE_LEN + 3 + SECRET_LEN {
            return Err(MalformedToken::Length);
        }
        let mut parts = s.split('.');
        let (Some(lin), Some(exp), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MalformedToken::Shape);
        };
        if lin.len() != LINEAGE_LEN || secret.len() != SECRET_LEN || exp.is_empty() {
            return Err(MalformedToken::Length);
        }
        if !is_b64url(lin) || !is_b64url(secret) || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MalformedToken::Alphabet);
        }
        // 43 base64url characters carry 258 bits; the last one must leave the two
        // spare bits zero, or it is not something we minted.
        if URL_SAFE_NO_PAD.decode(secret).map(|v| v.len()) != Ok(32) {
            return Err(MalformedToken::Alphabet);
        }
        let expires_at = exp.parse::<u64>().map_err(|_| MalformedToken::Alphabet)?;
        Ok(TransferToken {
            text: s.to_owned(),
            lineage: LineageId(lin.to_owned()),
            expires_at,
            hash: SecretHash::of(s.as_bytes()),
        })
    }

    /// The lineage named by the token's routing part.
    pub fn lineage(&self) -> &LineageId {
        &self.lineage
    }

    /// The expiry the token claims (not trusted; the stored record decides).
    pub fn claimed_expiry(&self) -> u64 {
        self.expires_at
    }

    /// SHA-256 of the whole token: the only form that is ever stored.
    pub fn hash(&self) -> &SecretHash {
        &self.hash
    }

    /// The token itself, for the one place that must send it: the mint response
    /// and the redirect cookie.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for TransferToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stt#{}", self.hash.short())
    }
}

impl fmt::Display for TransferToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Secret bytes (a signing key file's contents): redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        SecretBytes(bytes.into())
    }

    /// The clear bytes, for the places that must use them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret#{}", SecretHash::of(&self.0).short())
    }
}

/// Any other secret string (refresh tokens, cookie values, assertions, bearer
/// tokens): redacted in `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The clear value, for the places that must send it on.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the value, for store keys.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret#{}", self.hash().short())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_and_redact() {
        let lin = LineageId::generate();
        let t = TransferToken::generate(&lin, 1_900_000_000);
        let p = TransferToken::parse(t.expose()).unwrap();
        assert_eq!(p.hash(), t.hash());
        assert_eq!(p.lineage(), &lin);
        assert_eq!(p.claimed_expiry(), 1_900_000_000);
        let shown = format!("{t:?} {t} {p:?}");
        assert!(!shown.contains(t.expose()));
        assert!(!shown.contains(&t.expose()[30..]));
        assert!(shown.starts_with("stt#"));
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        let lin = LineageId::generate();
        let good = TransferToken::generate(&lin, 1_900_000_000);
        let g = good.expose();
        let cases = [
            String::new(),
            "x".into(),
            g[..g.len() - 1].to_string(),
            format!("{g}A"),
            g.replace('.', "!"),
            format!("{}{}", &g[..22], &g[23..]),
            g.replacen(&g[0..1], "%", 1),
            format!("{}.12ab.{}", &g[..22], &g[g.len() - 43..]),
            "é".repeat(40),
            "a".repeat(10_000),
            format!("{}.1.{}.", &g[..22], &g[g.len() - 43..]),
        ];
        for c in &cases {
            assert!(TransferToken::parse(c).is_err(), "accepted {c:?}");
        }
        // A secret whose spare bits are set does not decode to our 32 bytes.
        let mut bad = g.to_string();
        bad.pop();
        bad.push('B');
        if URL_SAFE_NO_PAD.decode(&bad[bad.len() - 43..]).is_err() {
            assert_eq!(TransferToken::parse(&bad), Err(MalformedToken::Alphabet));
        }
    }

    #[test]
    fn secrets_redact() {
        let s = Secret::new("refresh-token-value");
        assert!(!format!("{s:?}{s}").contains("refresh-token-value"));
    }
}
