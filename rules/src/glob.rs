//! Client-id globs: `*` matches any run of characters (also none); every other
//! character matches itself. No `?`, classes or escapes: ids are opaque strings.

/// A compiled glob. Matching never allocates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: String,
    /// No `*`: matching is string equality.
    exact: bool,
    /// Bytes before the first `*` and after the last: the literal head and
    /// tail every match starts and ends with, checked first.
    head: usize,
    tail: usize,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        let head = pattern.find('*').unwrap_or(pattern.len());
        let tail = pattern.rfind('*').map_or(0, |i| pattern.len() - i - 1);
        Glob {
            pattern: pattern.to_owned(),
            exact: !Glob::is_glob(pattern),
            head,
            tail,
        }
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern contains a `*` (otherwise it is an exact id).
    pub(crate) fn is_glob(pattern: &str) -> bool {
        pattern.contains('*')
    }

    /// Characters that are not `*`: more means more specific.
    pub(crate) fn literal_len(&self) -> usize {
        self.pattern.chars().filter(|&c| c != '*').count()
    }

    /// Whether `s` matches. The literal head and tail are compared first; the
    /// middle (which starts and ends with `*`) is matched iteratively with one
    /// backtrack point (the last `*`), so it is linear-ish and cannot blow up
    /// on patterns like `*a*a*a*`.
    pub(crate) fn matches(&self, s: &str) -> bool {
        if self.exact {
            return self.pattern == s;
        }
        // Byte-wise is exact for UTF-8: `*` is ASCII, and literal runs compare
        // whole encoded characters.
        let (p, s) = (self.pattern.as_bytes(), s.as_bytes());
        let (head, tail) = (self.head, self.tail);
        if s.len() < head + tail
            || p[..head] != s[..head]
            || p[p.len() - tail..] != s[s.len() - tail..]
        {
            return false;
        }
        let (p, s) = (&p[head..p.len() - tail], &s[head..s.len() - tail]);
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if pi < p.len() && p[pi] == s[si] {
                pi += 1;
                si += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }

    /// Whether every id matched by `other` is matched by `self` too.
    ///
    /// Treating `other`'s `*` as a literal character and matching it is sound:
    /// a literal of `self` can never consume a `*` of `other`, so each `*` of
    /// `other` falls inside some `*` of `self`, which also absorbs whatever that
    /// star expands to.
    pub(crate) fn covers(&self, other: &Glob) -> bool {
        self.matches(&other.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).matches(s)
    }

    #[test]
    fn matching() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("ios-*", "ios-app"));
        assert!(m("ios-*", "ios-"));
        assert!(!m("ios-*", "android-app"));
        assert!(m("*-beta", "web-beta"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exact2"));
        assert!(m("é*ü", "éxyü"));
        assert!(!m("*a*a*a*a*b", &"a".repeat(200)));
        // Head and tail must not overlap.
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
        assert!(m("a*a", "aa"));
        assert!(!m("a*a", "a"));
        assert!(m("**", ""));
        assert!(m("x**y", "xy"));
        assert!(m("é*", "é"));
        assert!(!m("é*", "e"));
    }

    #[test]
    fn coverage() {
        let g = Glob::new;
        assert!(g("*").covers(&g("ios-*")));
        assert!(g("ios-*").covers(&g("ios-app-*")));
        assert!(g("ios-*").covers(&g("ios-app")));
        assert!(!g("ios-app-*").covers(&g("ios-*")));
        assert!(!g("ios-app").covers(&g("ios-*")));
        assert!(g("*b*").covers(&g("*b")));
    }
}
