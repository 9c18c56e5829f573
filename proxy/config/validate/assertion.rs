//! `[assertion]`: the identity assertion handoff signs for the IdP (SPEC §2.3).

use super::super::file::FileAssertion;
use super::super::{AssertionConfig, SigningKey};
use super::Validator;
use crate::jws::{JwsError, Signer};
use crate::secret::SecretBytes;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Validator<'_> {
    /// `public_host` gives the default issuer and audience (empty when
    /// `server.public_host` was wrong: the result is thrown away then).
    pub(super) fn assertion(
        &mut self,
        a: FileAssertion,
        public_host: &str,
    ) -> Option<AssertionConfig> {
        let ttl = self
            .duration("assertion.ttl", a.ttl.as_deref(), Duration::from_secs(60))
            .and_then(|t| {
                let ok = !t.is_zero() && t <= Duration::from_secs(60);
                self.check(
                    ok,
                    t,
                    "assertion.ttl",
                    "must be between 1s and 60s (SPEC §2.3)",
                )
            });
        let key = self.signing_key(&a);
        let header = self.cookie_name(
            "assertion.header",
            a.header.as_deref().unwrap_or("X-Handoff-Assertion"),
        );
        Some(AssertionConfig {
            header: header?,
            issuer: a
                .issuer
                .unwrap_or_else(|| format!("https://{public_host}/handoff")),
            audience: a
                .audience
                .unwrap_or_else(|| format!("https://{public_host}")),
            ttl: ttl?,
            key: key?,
        })
    }

    /// `alg` with `key_file` (EdDSA) or `secret_file` (HS256).
    fn signing_key(&mut self, a: &FileAssertion) -> Option<SigningKey> {
        match a.alg.as_deref().unwrap_or("EdDSA") {
            "EdDSA" => {
                let no_secret = self.check(
                    a.secret_file.is_none(),
                    (),
                    "assertion.secret_file",
                    "only used with alg = \"HS256\"",
                );
                let key = match &a.key_file {
                    Some(p) => self.ed25519_key(p),
                    None => Some(SigningKey::Ephemeral),
                };
                no_secret.and(key)
            }
            "HS256" => match &a.secret_file {
                Some(p) => self.hs256_secret(p),
                None => {
                    self.report("assertion.secret_file", "missing: alg = \"HS256\" needs a file holding the shared secret (at least 32 bytes)");
                    None
                }
            },
            other => {
                self.report(
                    "assertion.alg",
                    format!("{other:?}: expected \"EdDSA\" or \"HS256\""),
                );
                None
            }
        }
    }

    fn ed25519_key(&mut self, p: &Path) -> Option<SigningKey> {
        let hint = " (make one with `handoff keygen --out FILE`)";
        let (path, bytes) = self.key_file("assertion.key_file", p, hint)?;
        let usable = Signer::ed25519_from_pkcs8(&bytes).map(drop);
        self.usable_key("assertion.key_file", &path, usable)?;
        let pkcs8 = SecretBytes::new(bytes);
        Some(SigningKey::Ed25519File { path, pkcs8 })
    }

    fn hs256_secret(&mut self, p: &Path) -> Option<SigningKey> {
        let (path, bytes) = self.key_file("assertion.secret_file", p, "")?;
        let secret = SecretBytes::new(bytes.trim_ascii());
        let usable = Signer::hs256(secret.expose()).map(drop);
        self.usable_key("assertion.secret_file", &path, usable)?;
        Some(SigningKey::Hs256File { path, secret })
    }

    /// Reads a key file; `hint` follows the "not a readable file" reason.
    fn key_file(&mut self, key: &str, p: &Path, hint: &str) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.path(p);
        let reason = format!("{} is not a readable file{hint}", path.display());
        self.check(path.is_file(), (), key, reason)?;
        match std::fs::read(&path) {
            Ok(bytes) => Some((path, bytes)),
            Err(e) => {
                self.report(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    fn usable_key(&mut self, key: &str, path: &Path, r: Result<(), JwsError>) -> Option<()> {
        let reason = match &r {
            Ok(()) => String::new(),
            Err(e) => format!("{}: {e}", path.display()),
        };
        self.check(r.is_ok(), (), key, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::SigningKey;
    use super::super::testing::*;

    #[test]
    fn assertion_keys_are_checked_and_named() {
        let c = load(MIN).unwrap();
        assert_eq!(c.assertion.header, "X-Handoff-Assertion");
        assert_eq!(c.assertion.issuer, "https://login.example.com/handoff");
        assert_eq!(c.assertion.audience, "https://login.example.com");
        assert!(matches!(c.assertion.key, SigningKey::Ephemeral));
        assert_refused(
            "assertion",
            &[
                (
                    "ttl = \"5m\"",
                    "assertion.ttl",
                    "must be between 1s and 60s (SPEC §2.3)",
                ),
                (
                    "ttl = \"0s\"",
                    "assertion.ttl",
                    "must be between 1s and 60s (SPEC §2.3)",
                ),
                (
                    "alg = \"RS256\"",
                    "assertion.alg",
                    "\"RS256\": expected \"EdDSA\" or \"HS256\"",
                ),
                (
                    "secret_file = \"s\"",
                    "assertion.secret_file",
                    "only used with alg = \"HS256\"",
                ),
                (
                    "alg = \"HS256\"",
                    "assertion.secret_file",
                    "missing: alg = \"HS256\"",
                ),
                (
                    "header = \"X Bad\"",
                    "assertion.header",
                    "\"X Bad\" is not a valid cookie or header name",
                ),
                (
                    "key_file = \"missing.pem\"",
                    "assertion.key_file",
                    "/etc/handoff/missing.pem is not a readable file",
                ),
            ],
        );
    }

    #[test]
    fn key_files_are_read_and_checked_here() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p.display().to_string()
        };
        let ed = write("k.pem", crate::jws::generate_ed25519_pem().as_bytes());
        let junk = write("junk.pem", b"-----BEGIN NOTHING-----\n");
        let hs = write("hs", &[b'x'; 40]);
        let short = write("short", b"  tooshort \n");
        let with = |tail: String| format!("{MIN}[assertion]\n{tail}\n");

        let c = load(&with(format!("key_file = \"{ed}\""))).unwrap();
        assert!(matches!(c.assertion.key, SigningKey::Ed25519File { .. }));
        assert!(crate::app::load_signer(&c).is_ok());
        let c = load(&with(format!("alg = \"HS256\"\nsecret_file = \"{hs}\""))).unwrap();
        let SigningKey::Hs256File { secret, .. } = &c.assertion.key else {
            panic!("{:?}", c.assertion.key)
        };
        assert_eq!(secret.expose(), &[b'x'; 40]);
        assert!(
            !format!("{:?}", c.assertion.key).contains("xxxx"),
            "redacted"
        );

        let e = err(&with(format!("key_file = \"{junk}\"")));
        assert_eq!(e.key, "assertion.key_file");
        assert_eq!(
            e.reason,
            format!("{junk}: bad key: expected a PEM \"PRIVATE KEY\" (PKCS#8) block")
        );
        let e = err(&with(format!("alg = \"HS256\"\nsecret_file = \"{short}\"")));
        assert_eq!(e.key, "assertion.secret_file");
        assert!(e.reason.ends_with("at least 32 bytes"), "{e}");
        let e = err(&with(format!("key_file = \"{}\"", dir.path().display())));
        assert_eq!(e.key, "assertion.key_file", "a folder is not a key file");
    }
}
