//! `[clients.ID]` (web clients' secrets, to revoke the refresh tokens handoff
//! withholds from them) and `[backchannel_logout]`.

use super::super::file::{FileBackchannel, FileClient};
use super::super::BackchannelLogout;
use super::Validator;
use crate::secret::Secret;
use std::collections::{BTreeMap, HashMap};

impl Validator<'_> {
    pub(super) fn clients(
        &mut self,
        clients: &BTreeMap<String, FileClient>,
    ) -> Option<HashMap<String, Secret>> {
        let mut secrets = Some(HashMap::new());
        for (id, c) in clients {
            let secret = self.client_secret(&format!("clients.{id}.secret_file"), c);
            match (&mut secrets, secret) {
                (Some(all), Some(s)) => drop(all.insert(id.clone(), s)),
                _ => secrets = None,
            }
        }
        secrets
    }

    fn client_secret(&mut self, key: &str, c: &FileClient) -> Option<Secret> {
        let p = self.path(&c.secret_file);
        let s = match std::fs::read_to_string(&p) {
            Ok(s) => s,
            Err(e) => {
                self.report(key, format!("cannot read {}: {e}", p.display()));
                return None;
            }
        };
        let s = s.trim();
        self.check(!s.is_empty(), Secret::new(s), key, "the file is empty")
    }

    pub(super) fn backchannel_logout(&mut self, b: FileBackchannel) -> Option<BackchannelLogout> {
        let path = self.url_path(
            "backchannel_logout.path",
            b.path.as_deref().unwrap_or("/handoff/backchannel-logout"),
        );
        Some(BackchannelLogout {
            path: path?,
            audiences: b.audiences,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn client_secrets_are_read_and_every_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good"), " s3cret \n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let client = |id: &str, f: &str| {
            format!(
                "[clients.{id}]\nsecret_file = \"{}\"\n",
                dir.path().join(f).display()
            )
        };
        let c = load(&format!("{MIN}{}", client("web", "good"))).unwrap();
        assert_eq!(c.client_secrets["web"].expose(), "s3cret");
        let t = format!(
            "{MIN}{}{}{}",
            client("a", "empty"),
            client("b", "good"),
            client("c", "none")
        );
        assert_eq!(keys(&t), ["clients.a.secret_file", "clients.c.secret_file"]);
        let e = load(&t).unwrap_err();
        assert_eq!(e.first().reason, "the file is empty");
        assert!(e.as_slice()[1].reason.starts_with("cannot read "), "{e}");
    }

    #[test]
    fn backchannel_logout_path() {
        let c = load(MIN).unwrap();
        assert_eq!(c.backchannel_logout.path, "/handoff/backchannel-logout");
        assert!(c.backchannel_logout.audiences.is_empty());
        let e = err(&format!("{MIN}[backchannel_logout]\npath = \"logout\"\n"));
        assert_eq!(e.key, "backchannel_logout.path");
    }
}
