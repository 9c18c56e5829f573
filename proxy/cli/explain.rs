//! `handoff rules explain`: what a redemption would get, from the rules alone.

use super::ExplainArgs;
use std::process::ExitCode;

/// Prints the explanation. Exit 0 allowed, 1 denied, 2 bad input.
pub fn run(args: &ExplainArgs) -> ExitCode {
    match explain(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("handoff: {e}");
            ExitCode::from(2)
        }
    }
}

/// Ok(allowed).
fn explain(a: &ExplainArgs) -> Result<bool, String> {
    let policy = super::read_rules(&a.file)?;
    let table = match &a.asn_table {
        Some(p) => Some(handoff::app::read_asn_table(p)?),
        None => {
            if policy.uses_asn() {
                eprintln!("warning: the rules use ASNs but no --asn-table was given: every ASN is unknown");
            }
            None
        }
    };
    let minute_of_day_utc = match &a.at {
        Some(t) => parse_hh_mm(t)?,
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            ((secs / 60) % 1440) as u16
        }
    };
    let fp = [7u8; 32];
    let other = [9u8; 32];
    let ctx = handoff_rules::RedeemContext {
        native_client: &a.native_client,
        web_client: &a.web_client,
        method: a.method,
        mint_ip: a.mint_ip,
        redeem_ip: a.redeem_ip,
        mint_fingerprint: Some(fp),
        redeem_fingerprint: Some(if a.other_device { other } else { fp }),
        mint_asn: table.as_ref().and_then(|t| t.lookup(a.mint_ip)),
        redeem_asn: table.as_ref().and_then(|t| t.lookup(a.redeem_ip)),
        minute_of_day_utc,
    };
    let e = handoff_rules::explain(&policy, &ctx);
    print!("{e}");
    Ok(e.is_allowed())
}

/// `--at HH:MM` as minutes after midnight.
fn parse_hh_mm(t: &str) -> Result<u16, String> {
    let (h, m) = t
        .split_once(':')
        .ok_or_else(|| format!("--at {t:?}: expected HH:MM"))?;
    let (h, m): (u16, u16) = (
        h.parse().map_err(|_| format!("--at {t:?}: bad hour"))?,
        m.parse().map_err(|_| format!("--at {t:?}: bad minute"))?,
    );
    if h > 23 || m > 59 {
        return Err(format!(
            "--at {t:?}: expected HH:MM between 00:00 and 23:59"
        ));
    }
    Ok(h * 60 + m)
}
