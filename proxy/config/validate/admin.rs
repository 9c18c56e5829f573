//! `[admin]`: the admin listener and the token that protects it.

use super::super::file::FileAdmin;
use super::super::AdminConfig;
use super::Validator;
use crate::secret::Secret;

impl Validator<'_> {
    pub(super) fn admin(&mut self, ad: FileAdmin) -> Option<AdminConfig> {
        let token = match &ad.token_file {
            None => Some(None),
            Some(p) => self.admin_token(p).map(Some),
        };
        let listen = if ad.disabled {
            Some(None)
        } else {
            let listen = ad.listen.as_deref().unwrap_or("127.0.0.1:9090");
            self.socket_addr("admin.listen", listen).and_then(|l| {
                let loopback = l.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
                // A token file that was given but wrong is its own error already.
                let ok = loopback || ad.token_file.is_some();
                let reason = format!("{l} is not a loopback address: set admin.token_file so the admin API is protected");
                self.check(ok, Some(l), "admin.listen", reason)
            })
        };
        Some(AdminConfig {
            listen: listen?,
            token: token?,
        })
    }

    fn admin_token(&mut self, p: &std::path::Path) -> Option<Secret> {
        let p = self.path(p);
        let t = match std::fs::read_to_string(&p) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                self.report(
                    "admin.token_file",
                    format!("cannot read {}: {e}", p.display()),
                );
                return None;
            }
        };
        let ok = t.len() >= 16;
        self.check(
            ok,
            Secret::new(t),
            "admin.token_file",
            "the token must be at least 16 characters",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn admin_listener_and_token() {
        let c = load(MIN).unwrap();
        assert_eq!(c.admin.listen.as_deref(), Some("127.0.0.1:9090"));
        assert!(c.admin.token.is_none());
        let c = load(&format!("{MIN}[admin]\ndisabled = true\n")).unwrap();
        assert_eq!(c.admin.listen, None);

        let e = err(&format!("{MIN}[admin]\nlisten = \"0.0.0.0:9090\"\n"));
        assert_eq!(e.key, "admin.listen");
        assert!(e.reason.contains("is not a loopback address"), "{e}");
        let e = err(&format!("{MIN}[admin]\nlisten = \"localhost\"\n"));
        assert_eq!(e.key, "admin.listen");

        let dir = tempfile::tempdir().unwrap();
        let (short, long) = (dir.path().join("short"), dir.path().join("long"));
        std::fs::write(&short, "abc\n").unwrap();
        std::fs::write(&long, "0123456789abcdef\n").unwrap();
        let with = |p: &std::path::Path| {
            format!(
                "{MIN}[admin]\nlisten = \"0.0.0.0:9090\"\ntoken_file = \"{}\"\n",
                p.display()
            )
        };
        let c = load(&with(&long)).unwrap();
        assert_eq!(c.admin.token.unwrap().expose(), "0123456789abcdef");
        let e = err(&with(&short));
        assert_eq!(
            (e.key.as_str(), e.reason.as_str()),
            (
                "admin.token_file",
                "the token must be at least 16 characters"
            )
        );
        let e = err(&with(&dir.path().join("none")));
        assert_eq!(e.key, "admin.token_file");
        assert!(e.reason.starts_with("cannot read "), "{e}");
    }
}
