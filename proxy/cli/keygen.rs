//! `handoff keygen` (a new assertion signing key) and `handoff jwks` (the
//! public half of the configured one).

use handoff::app::load_signer;
use handoff::config::Config;
use std::path::Path;

/// Writes a new Ed25519 PKCS#8 PEM key to `out`, readable by its owner only;
/// never overwrites.
pub fn keygen(out: &Path) -> Result<(), String> {
    if out.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite a key",
            out.display()
        ));
    }
    write_private(out, handoff::jws::generate_ed25519_pem().as_bytes())
        .map(|()| println!("wrote {} (set assertion.key_file to it)", out.display()))
        .map_err(|e| format!("{}: {e}", out.display()))
}

/// Prints the assertion verification JWKS of the configured key.
pub fn jwks(c: &Config) -> Result<(), String> {
    let (signer, _) = load_signer(c)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&signer.public_jwks()).expect("JWKS serializes")
    );
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
