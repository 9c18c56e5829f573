//! `[assertion]`: the identity assertion handoff signs for the IdP (SPEC §2.3).

use super::super::file::FileAssertion;
use super::super::{AssertionConfig, SigningKey};
use super::Validator;
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

    fn ed25519_key(&mut self, p: &std::path::Path) -> Option<SigningKey> {
        let p = self.path(p);
        let reason = format!(
            "{} is not a readable file (make one with `handoff keygen --out FILE`)",
            p.display()
        );
        self.check(
            p.is_file(),
            SigningKey::Ed25519File(p),
            "assertion.key_file",
            reason,
        )
    }

    fn hs256_secret(&mut self, p: &std::path::Path) -> Option<SigningKey> {
        let p = self.path(p);
        let reason = format!("{} is not a readable file", p.display());
        self.check(
            p.is_file(),
            SigningKey::Hs256File(p),
            "assertion.secret_file",
            reason,
        )
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
        for (tail, key, reason) in [
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
        ] {
            let e = err(&format!("{MIN}[assertion]\n{tail}\n"));
            assert_eq!(e.key, key, "{tail}: {e}");
            assert!(e.reason.starts_with(reason), "{tail}: {e}");
        }
    }
}
