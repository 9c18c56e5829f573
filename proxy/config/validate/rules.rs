//! `[rules]`: where the rules file and the ASN table are, and how often they are
//! checked for changes. Their contents are the rules crate's to validate.

use super::super::file::FileRules;
use super::Validator;
use std::path::PathBuf;
use std::time::Duration;

/// The `[rules]` part of the model.
pub(super) struct Rules {
    pub file: Option<PathBuf>,
    pub asn_table: Option<PathBuf>,
    pub watch: Duration,
}

impl Validator<'_> {
    pub(super) fn rules(&mut self, r: FileRules) -> Option<Rules> {
        let watch = self.duration(
            "rules.watch_interval",
            r.watch_interval.as_deref(),
            Duration::from_secs(1),
        );
        Some(Rules {
            file: r.file.as_deref().map(|p| self.path(p)),
            asn_table: r.asn_table.as_deref().map(|p| self.path(p)),
            watch: watch?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn rules_paths_are_relative_to_the_file_and_the_interval_a_duration() {
        let c = load(&format!(
            "{MIN}[rules]\nfile = \"rules.toml\"\nwatch_interval = \"0s\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.rules_file.as_deref(),
            Some(Path::new("/etc/handoff/rules.toml"))
        );
        assert_eq!(c.rules_watch, Duration::ZERO);
        let e = err(&format!("{MIN}[rules]\nwatch_interval = \"often\"\n"));
        assert_eq!(e.key, "rules.watch_interval");
        assert!(e.reason.starts_with("\"often\" is not a duration"), "{e}");
    }
}
