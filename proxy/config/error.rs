//! What is wrong with a config file: one [`ConfigError`] per problem, all of a
//! file's problems as [`ConfigErrors`].

use std::fmt;

/// A configuration error: which file, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: String,
    /// The dotted key (or `line:col` position for syntax errors).
    pub key: String,
    /// What is wrong, and what was expected.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Every error of a rejected config file, in the order the file's sections are
/// checked (never empty). Validation keeps going after an error, as the rules
/// file's does, so one `handoff config check` shows every problem.
///
/// Displayed one error per line; a single error displays exactly as its
/// [`ConfigError`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Wraps a list of errors; `None` when it is empty (nothing was wrong).
    pub fn new(errors: Vec<ConfigError>) -> Option<Self> {
        (!errors.is_empty()).then_some(ConfigErrors(errors))
    }

    /// The first error (the one a stop-at-first check would have reported).
    pub fn first(&self) -> &ConfigError {
        &self.0[0]
    }

    /// All errors, in order.
    pub fn as_slice(&self) -> &[ConfigError] {
        &self.0
    }

    /// Iterates over all errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Unwraps the list.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str) -> ConfigError {
        ConfigError {
            file: "h.toml".into(),
            key: key.into(),
            reason: "bad".into(),
        }
    }

    #[test]
    fn one_error_displays_as_itself_and_many_one_per_line() {
        assert_eq!(ConfigErrors::from(e("a")).to_string(), e("a").to_string());
        let all = ConfigErrors::new(vec![e("a"), e("b")]).unwrap();
        assert_eq!(all.to_string(), "h.toml: a: bad\nh.toml: b: bad");
        assert_eq!(all.first().key, "a");
        assert!(ConfigErrors::new(vec![]).is_none());
    }
}
