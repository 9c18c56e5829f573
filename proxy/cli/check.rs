//! `handoff config check` and `handoff rules check`.

use handoff::app::load_signer;
use handoff::config::Config;
use std::path::Path;

/// Validates the config and everything it names (signing key, rules file),
/// printing every error of the config file.
pub fn config(file: &Path) -> Result<(), String> {
    let c = Config::load(file).map_err(|e| e.to_string())?;
    load_signer(&c)?;
    let policy = handoff::app::load_policy(&c)?;
    super::print_warnings(&policy);
    println!(
        "{}: ok ({} listener(s), upstream {}, mint audience {})",
        file.display(),
        c.listeners.len(),
        c.upstream.address,
        c.mint_audience()
    );
    Ok(())
}

/// Validates a rules file: diagnostics like a compiler.
pub fn rules(file: &Path) -> Result<(), String> {
    super::read_rules(file)?;
    println!("{}: ok", file.display());
    Ok(())
}
