//! Captures every log line of the test process (handoff's `tracing` events and
//! pingora's `log` records) with the filter production uses at its most verbose
//! (`HANDOFF_LOG=debug`), so tests can prove no secret is logged.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static BUF: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

fn buf() -> &'static Mutex<Vec<u8>> {
    BUF.get_or_init(|| Mutex::new(Vec::new()))
}

struct Writer;

impl Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        buf()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        if std::env::var_os("HANDOFF_TEST_LOGS").is_some() {
            let _ = std::io::stderr().write_all(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per process).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(handoff::logging::filter("debug"))
            .with_writer(|| Writer)
            .with_ansi(false)
            .try_init();
    });
}

/// Everything logged so far.
pub fn captured() -> String {
    String::from_utf8_lossy(&buf().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// Fails the test if any of `secrets` appears in the logs (whole, or its secret tail).
pub fn assert_absent(secrets: &[String]) {
    let logs = captured();
    assert!(
        !logs.is_empty(),
        "no logs were captured: the capture is broken"
    );
    for s in secrets {
        assert!(!logs.contains(s.as_str()), "a secret appeared in the logs");
        if s.len() > 24 {
            assert!(
                !logs.contains(&s[s.len() - 24..]),
                "part of a secret appeared in the logs"
            );
        }
    }
}
