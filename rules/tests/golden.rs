//! Golden tests: each `tests/golden/NAME.toml` is checked and its diagnostics
//! (errors, or the warnings of an accepted file) compared with `NAME.txt`.
//!
//! To regenerate after an intended change: `UPDATE_GOLDEN=1 cargo test -p
//! handoff-rules --test golden`, then review the diff.

use std::fs;
use std::path::Path;

use handoff_rules::Policy;

fn render(src: &str, name: &str) -> String {
    match Policy::from_toml(src, name) {
        Err(d) => format!("rejected\n{d}\n"),
        Ok(p) => {
            let mut out = String::from("accepted\n");
            for w in p.warnings() {
                out.push_str(&format!("{w}\n"));
            }
            out
        }
    }
}

#[test]
fn golden_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for toml in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let name = toml.file_name().unwrap().to_str().unwrap();
        let actual = render(&fs::read_to_string(toml).unwrap(), name);
        let expected_path = toml.with_extension("txt");
        if update {
            fs::write(&expected_path, &actual).unwrap();
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "--- {name}: expected\n{expected}--- actual\n{actual}"
            ));
        }
        checked += 1;
    }
    assert!(checked >= 5, "golden files missing in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
