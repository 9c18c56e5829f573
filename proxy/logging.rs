//! Log setup: structured logs in which no secret can appear.
//!
//! handoff's own events only ever format secrets through their redacting types
//! (`secret.rs`). The libraries below it are another matter: pingora logs whole
//! request headers (cookies included) and response bodies (tokens included) at
//! `debug`. So whatever level the operator asks for, pingora and the HTTP stack are
//! capped at `info` — a debug session must not turn into a token leak (invariant 4).

use tracing_subscriber::EnvFilter;

/// Targets whose debug output contains request or response contents.
const CAPPED: &[&str] = &[
    "pingora",
    "pingora_core",
    "pingora_proxy",
    "pingora_http",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "redis",
];

/// An [`EnvFilter`] for the operator's `spec` (e.g. `"debug"`, `"handoff=trace"`),
/// with the libraries that log request contents capped at `info`.
pub fn filter(spec: &str) -> EnvFilter {
    let kept: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !CAPPED.iter().any(|c| d.starts_with(c)))
        .collect();
    let mut f = EnvFilter::try_new(kept.join(",")).unwrap_or_else(|_| EnvFilter::new("info"));
    for c in CAPPED {
        f = f.add_directive(format!("{c}=info").parse().expect("static directive"));
    }
    f
}

/// Installs the process-wide subscriber: `text` or `json` to stderr, level from
/// `HANDOFF_LOG` (default `info`).
pub fn init(format: &str) {
    let spec = std::env::var("HANDOFF_LOG").unwrap_or_else(|_| "info".into());
    // Colours only for a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&spec))
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_debug_cannot_be_switched_on() {
        let f = filter("debug,pingora_proxy=trace,handoff=trace").to_string();
        assert!(f.contains("pingora_proxy=info"), "{f}");
        assert!(!f.contains("pingora_proxy=trace"), "{f}");
        assert!(f.contains("handoff=trace"), "{f}");
        // garbage falls back to info, never panics
        let _ = filter("=,,[[[");
    }
}
