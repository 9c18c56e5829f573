//! Diagnostics: what is wrong with a rules file (or ASN table), and where.
//!
//! Positions are 1-based lines and 1-based columns counted in characters (not
//! bytes), so they match what an editor shows for the file.

use std::fmt;
use std::ops::Range;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The file is rejected.
    Error,
    /// The file is accepted, but probably does not say what its author meant.
    Warning,
}

impl Severity {
    /// The lower-case word used in rendered diagnostics: `error` or `warning`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about a source file, pointing at the place it is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// Error (file rejected) or warning (file accepted).
    pub severity: Severity,
    /// The file name given to the parser.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and, where possible, what was expected instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// Renders like a compiler: `file:line:col: error: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.severity, self.message
        )
    }
}

/// All diagnostics of a rejected file (errors, and any warnings found on the way),
/// in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// Wraps a list of diagnostics.
    pub fn new(diagnostics: Vec<Diagnostic>) -> Self {
        Diagnostics(diagnostics)
    }

    /// All diagnostics, in source order.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.0
    }

    /// Iterates over all diagnostics.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    /// Unwraps the list.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.0
    }
}

impl fmt::Display for Diagnostics {
    /// One diagnostic per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A byte range in the source.
pub(crate) type Span = Range<usize>;

/// Collects diagnostics for one source text, turning byte offsets into line:col.
pub(crate) struct Reporter<'s> {
    src: &'s str,
    file: &'s str,
    line_starts: Vec<usize>,
    diags: Vec<Diagnostic>,
    errors: usize,
}

impl<'s> Reporter<'s> {
    pub(crate) fn new(src: &'s str, file: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Reporter {
            src,
            file,
            line_starts,
            diags: Vec::new(),
            errors: 0,
        }
    }

    /// 1-based (line, column) of a byte offset; column counts characters.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        (line, self.src[start..offset].chars().count() + 1)
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    /// Byte offset where 1-based `line` starts.
    pub(crate) fn line_start(&self, line: usize) -> usize {
        self.line_starts[line.clamp(1, self.line_starts.len()) - 1]
    }

    fn push(&mut self, severity: Severity, at: usize, message: String) {
        let (line, column) = self.position(at);
        if severity == Severity::Error {
            self.errors += 1;
        }
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_owned(),
            line,
            column,
            message,
        });
    }

    pub(crate) fn error(&mut self, span: &Span, message: impl Into<String>) {
        self.push(Severity::Error, span.start, message.into());
    }

    pub(crate) fn warning(&mut self, span: &Span, message: impl Into<String>) {
        self.push(Severity::Warning, span.start, message.into());
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors
    }

    /// The collected diagnostics in source order (stable for equal positions).
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|d| (d.line, d.column));
        self.diags
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub(crate) fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting an adjacent transposition as one edit (optimal string
/// alignment), so `qeury` is one typo away from `query`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let src = "a = 1\nbé = \"x\"\n";
        let r = Reporter::new(src, "f.toml");
        assert_eq!(r.position(0), (1, 1));
        assert_eq!(r.position(4), (1, 5));
        assert_eq!(r.position(6), (2, 1));
        // `=` after a two-byte char is the 4th character of line 2.
        assert_eq!(r.position(10), (2, 4));
        assert_eq!(r.position(999), (3, 1));
    }

    #[test]
    fn display_is_compiler_like() {
        let d = Diagnostic {
            severity: Severity::Error,
            file: "rules.toml".into(),
            line: 3,
            column: 7,
            message: "bad".into(),
        };
        assert_eq!(d.to_string(), "rules.toml:3:7: error: bad");
        let all = Diagnostics::new(vec![d.clone(), d]);
        assert_eq!(all.to_string().lines().count(), 2);
    }

    #[test]
    fn suggestions() {
        let keys = ["session_idle", "session_absolute", "allow_refresh_token"];
        assert_eq!(did_you_mean("sesion_idle", &keys), Some("session_idle"));
        assert_eq!(
            did_you_mean("allow_refresh_tokens", &keys),
            Some("allow_refresh_token")
        );
        assert_eq!(did_you_mean("colour", &keys), None);
        assert_eq!(did_you_mean("qeury", &["cookie", "query"]), Some("query"));
    }
}
