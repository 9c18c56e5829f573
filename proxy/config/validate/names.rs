//! `[names]` and `[paths]`: the cookie and parameter names of the wire contract
//! (SPEC §2.2), and the IdP paths handoff acts on.

use super::super::file::{FileNames, FilePaths};
use super::super::{Names, Paths};
use super::Validator;

impl Validator<'_> {
    pub(super) fn names(&mut self, n: FileNames) -> Option<Names> {
        let redirect_cookie = self
            .cookie_name(
                "names.redirect_cookie",
                n.redirect_cookie.as_deref().unwrap_or("__Host-handoff_stt"),
            )
            .and_then(|c| {
                let ok = c.starts_with("__Host-");
                self.check(
                    ok,
                    c,
                    "names.redirect_cookie",
                    "must start with __Host- (SPEC §2.2: no Domain, Path=/, Secure)",
                )
            });
        let aliases = n
            .cookie_aliases
            .unwrap_or_else(|| vec!["session_transfer_token".into()]);
        let cookie_aliases = self.each(&aliases, |v, i, c| {
            v.cookie_name(&format!("names.cookie_aliases[{i}]"), c)
        });
        let cookie = self.cookie_name(
            "names.cookie",
            n.cookie
                .as_deref()
                .unwrap_or("auth0_session_transfer_token"),
        );
        let query_param = self.cookie_name(
            "names.query_param",
            n.query_param.as_deref().unwrap_or("session_transfer_token"),
        );
        Some(Names {
            cookie: cookie?,
            cookie_aliases: cookie_aliases?,
            query_param: query_param?,
            redirect_cookie: redirect_cookie?,
        })
    }

    pub(super) fn paths(&mut self, p: FilePaths) -> Option<Paths> {
        let redemption = p.redemption.unwrap_or_else(|| vec!["/authorize".into()]);
        let redemption = self.each(&redemption, |v, i, r| {
            v.url_path(&format!("paths.redemption[{i}]"), r)
        });
        let token = self.url_path("paths.token", p.token.as_deref().unwrap_or("/oauth/token"));
        let revocation = self.url_path(
            "paths.revocation",
            p.revocation.as_deref().unwrap_or("/oauth/revoke"),
        );
        let jwks = self.url_path(
            "paths.jwks",
            p.jwks
                .as_deref()
                .unwrap_or("/.well-known/handoff/jwks.json"),
        );
        Some(Paths {
            token: token?,
            revocation: revocation?,
            redemption: redemption?,
            jwks: jwks?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn names_and_paths_are_checked_and_named() {
        let c = load(MIN).unwrap();
        assert_eq!(c.names.cookie, "auth0_session_transfer_token");
        assert_eq!(c.names.cookie_aliases, vec!["session_transfer_token"]);
        assert_eq!(c.names.redirect_cookie, "__Host-handoff_stt");
        assert_eq!(c.paths.redemption, vec!["/authorize"]);
        assert_eq!(c.paths.token, "/oauth/token");
        for (tail, key, reason) in [
            (
                "[names]\nredirect_cookie = \"stt\"",
                "names.redirect_cookie",
                "must start with __Host-",
            ),
            (
                "[names]\ncookie_aliases = [\"ok\", \"not ok\"]",
                "names.cookie_aliases[1]",
                "\"not ok\" is not a valid",
            ),
            (
                "[names]\ncookie = \"\"",
                "names.cookie",
                "\"\" is not a valid cookie or header name",
            ),
            (
                "[names]\nquery_param = \"a=b\"",
                "names.query_param",
                "\"a=b\" is not a valid",
            ),
            (
                "[paths]\nredemption = [\"/authorize\", \"authorize\"]",
                "paths.redemption[1]",
                "\"authorize\" is not an absolute URL path",
            ),
            (
                "[paths]\ntoken = \"/t?x\"",
                "paths.token",
                "\"/t?x\" is not an absolute URL path",
            ),
            (
                "[paths]\nrevocation = \"r\"",
                "paths.revocation",
                "\"r\" is not",
            ),
            ("[paths]\njwks = \"/a b\"", "paths.jwks", "\"/a b\" is not"),
        ] {
            let e = err(&format!("{MIN}{tail}\n"));
            assert_eq!(e.key, key, "{tail}: {e}");
            assert!(e.reason.starts_with(reason), "{tail}: {e}");
        }
    }
}
