//! The annotated files in `rules/examples/`: each validates without a warning
//! and decides the requests its comments promise.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use handoff_rules::{explain, AuthMethod, Binding, DenyReason, Policy, RedeemContext};

fn example(name: &str) -> Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let src = fs::read_to_string(&path).unwrap();
    let p = Policy::from_toml(&src, name).unwrap_or_else(|d| panic!("{d}"));
    assert!(p.warnings().is_empty(), "{name}: {:?}", p.warnings());
    p
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

const DEVICE: Option<[u8; 32]> = Some([7; 32]);

fn req<'a>(native: &'a str, web: &'a str, mint: &str, redeem: &str) -> RedeemContext<'a> {
    RedeemContext {
        native_client: native,
        web_client: web,
        method: AuthMethod::Cookie,
        mint_ip: ip(mint),
        redeem_ip: ip(redeem),
        mint_fingerprint: DEVICE,
        redeem_fingerprint: DEVICE,
        mint_asn: None,
        redeem_asn: None,
        minute_of_day_utc: 12 * 60,
    }
}

/// (verdict, absolute, idle), checking on the way that `explain` agrees.
fn decide(p: &Policy, c: RedeemContext<'_>) -> (Result<(), DenyReason>, Duration, Duration) {
    let d = p.decide_redemption(&c);
    let e = explain(p, &c);
    assert_eq!(e.decision, d);
    assert!(!e.to_string().is_empty());
    (d.verdict, d.session_absolute, d.session_idle)
}

#[test]
fn every_example_is_checked_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(names, ["corporate.toml", "mobile.toml", "strict.toml"]);
    for n in &names {
        example(n);
    }
}

#[test]
fn strict() {
    let p = example("strict.toml");
    assert!(!p.uses_asn());
    // The account portal in the app's web view: same /24 and device.
    let c = req(
        "com.example.ios",
        "account-portal",
        "203.0.113.7",
        "203.0.113.9",
    );
    let d = p.decide_redemption(&c);
    assert_eq!(d.verdict, Ok(()));
    assert_eq!((d.session_absolute, d.session_idle), (mins(20), mins(10)));
    assert!(d.allow_refresh_token && d.enforce_online_refresh_tokens);
    assert!(d.revoke_lineage_on_replay);
    // ...but not in another browser.
    let other = RedeemContext {
        redeem_fingerprint: Some([8; 32]),
        ..c
    };
    assert_eq!(decide(&p, other).0, Err(DenyReason::BindingMismatch));
    // Shops take query links; at night they get short sessions.
    let shop = RedeemContext {
        method: AuthMethod::Query,
        minute_of_day_utc: 23 * 60,
        ..req(
            "com.example.android.beta",
            "shop-eu",
            "203.0.113.7",
            "203.0.113.7",
        )
    };
    assert_eq!(decide(&p, shop), (Ok(()), mins(10), mins(5)));
    // Known-bad networks and network changes are refused.
    let bad = req("com.example.ios", "shop-eu", "198.51.100.4", "198.51.100.4");
    assert_eq!(decide(&p, bad).0, Err(DenyReason::DeniedByRule));
    let moved = req("com.example.ios", "shop-eu", "203.0.113.7", "192.0.2.7");
    assert_eq!(decide(&p, moved).0, Err(DenyReason::DeniedByRule));
    // Android builds do not mint from the documentation "cloud".
    assert!(!p.may_mint("com.example.android.beta", ip("192.0.2.1")));
    assert!(p.may_mint("com.example.android.beta", ip("203.0.113.1")));
    assert!(!p.may_mint("com.example.desktop", ip("203.0.113.1")));
}

#[test]
fn mobile() {
    let p = example("mobile.toml");
    assert!(p.uses_asn());
    let carrier = |mint: &str, redeem: &str, a: u32, b: u32| RedeemContext {
        method: AuthMethod::Query,
        mint_asn: Some(a),
        redeem_asn: Some(b),
        ..req("com.example.app", "shop", mint, redeem)
    };

    // CGNAT moved the phone within a /22: the default binding holds.
    let d = p.decide_redemption(&carrier("203.0.113.7", "203.0.112.200", 64499, 64499));
    assert_eq!(d.verdict, Ok(()));
    assert_eq!(d.binding.to_string(), "ip_prefix+fingerprint");
    assert_eq!((d.session_absolute, d.session_idle), (mins(120), mins(30)));
    assert_eq!(d.matched_rule, None);

    // A known carrier moved it across pools: the same carrier and device is
    // enough; the network changed, so the session is short.
    let c = carrier("203.0.113.7", "198.51.100.9", 64500, 64500);
    let d = p.decide_redemption(&c);
    assert_eq!(d.verdict, Ok(()));
    assert_eq!(d.binding.to_string(), "asn+fingerprint");
    assert_eq!((d.session_absolute, d.session_idle), (mins(15), mins(5)));
    assert_eq!(d.matched_rule, Some(2));
    // Another carrier at redemption: the ASN binding fails.
    assert_eq!(
        decide(&p, carrier("203.0.113.7", "198.51.100.9", 64500, 64501)).0,
        Err(DenyReason::BindingMismatch)
    );
    // Without an ASN table the carrier rule does not match; the device is
    // still enough across a network change.
    let no_table = RedeemContext {
        mint_asn: None,
        redeem_asn: None,
        ..c
    };
    let d = p.decide_redemption(&no_table);
    assert_eq!(d.verdict, Ok(()));
    assert_eq!(d.binding.to_string(), "fingerprint");
    assert_eq!(d.matched_rule, Some(3));

    // Wi-Fi (IPv6) to cellular (IPv4): a network change.
    let wifi = carrier("2001:db8:1:2::9", "203.0.113.7", 64499, 64499);
    assert_eq!(decide(&p, wifi), (Ok(()), mins(15), mins(5)));
    // ...but not without the device fingerprint.
    let stolen = RedeemContext {
        redeem_fingerprint: None,
        ..wifi
    };
    assert_eq!(decide(&p, stolen).0, Err(DenyReason::BindingMismatch));

    // Hosting providers never redeem.
    assert_eq!(
        decide(&p, carrier("203.0.113.7", "203.0.113.7", 64500, 64510)).0,
        Err(DenyReason::DeniedByRule)
    );

    // The account pages keep same IP + device, even on a known carrier.
    let account = RedeemContext {
        method: AuthMethod::Cookie,
        web_client: "account",
        ..carrier("203.0.113.7", "203.0.113.8", 64500, 64500)
    };
    let d = p.decide_redemption(&account);
    assert_eq!(d.verdict, Err(DenyReason::BindingMismatch));
    assert_eq!(
        d.binding,
        Binding {
            network: handoff_rules::NetworkBinding::Ip,
            fingerprint: true
        }
    );
    let same = RedeemContext {
        redeem_ip: account.mint_ip,
        ..account
    };
    let d = p.decide_redemption(&same);
    assert_eq!(d.verdict, Ok(()));
    assert!(d.allow_refresh_token);
    assert_eq!((d.session_absolute, d.session_idle), (mins(30), mins(10)));

    // The help center: network only, no device needed.
    let help = RedeemContext {
        web_client: "help-center",
        mint_fingerprint: None,
        redeem_fingerprint: None,
        ..carrier("203.0.113.7", "203.0.114.1", 64499, 64499)
    };
    assert_eq!(decide(&p, help), (Ok(()), mins(60), mins(20)));

    // Beta builds are covered by the glob; other apps are not.
    assert_eq!(
        p.native_client("com.example.app.beta")
            .unwrap()
            .transfer_token_ttl,
        Duration::from_secs(90)
    );
    assert!(p.native_client("com.other.app").is_none());
}

#[test]
fn corporate() {
    let p = example("corporate.toml");
    assert!(!p.uses_asn());
    let n = "corp.workspace.desktop";

    // Payments: 10-minute sessions, same IP and device, no refresh tokens.
    let d = p.decide_redemption(&req(n, "payments", "10.1.4.20", "10.1.4.20"));
    assert_eq!(d.verdict, Ok(()));
    assert_eq!((d.session_absolute, d.session_idle), (mins(10), mins(5)));
    assert!(!d.allow_refresh_token);
    assert_eq!(d.binding.to_string(), "ip+fingerprint");
    // Office LAN roaming does not loosen payments...
    assert_eq!(
        decide(&p, req(n, "payments", "10.1.4.20", "10.1.9.20")).0,
        Err(DenyReason::BindingMismatch)
    );
    // ...nor does an office -> VPN handover.
    assert_eq!(
        decide(&p, req(n, "payments", "10.1.4.20", "10.8.0.9")).0,
        Err(DenyReason::BindingMismatch)
    );
    // Payments only from the offices or the VPN, not the offices' public IPs.
    assert_eq!(
        decide(&p, req(n, "payments", "198.51.100.7", "198.51.100.7")).0,
        Err(DenyReason::DeniedByRule)
    );
    // After hours, payments stay at 10 minutes (rules only shorten).
    let late = RedeemContext {
        minute_of_day_utc: 22 * 60,
        ..req(n, "payments", "10.1.4.20", "10.1.4.20")
    };
    assert_eq!(decide(&p, late), (Ok(()), mins(10), mins(5)));

    // The intranet: roaming between office access points is fine; long
    // sessions by day, short ones after hours.
    let roam = req(n, "intranet", "10.1.4.20", "10.1.4.77");
    let d = p.decide_redemption(&roam);
    assert_eq!(d.verdict, Ok(()));
    assert_eq!(d.binding.to_string(), "fingerprint");
    assert_eq!((d.session_absolute, d.session_idle), (mins(480), mins(60)));
    let roam_late = RedeemContext {
        minute_of_day_utc: 5 * 60,
        ..roam
    };
    assert_eq!(decide(&p, roam_late), (Ok(()), mins(30), mins(10)));
    // Another site: still the device, but a short session.
    let site = req(n, "intranet", "10.1.4.20", "10.2.7.1");
    assert_eq!(decide(&p, site), (Ok(()), mins(20), mins(10)));
    // Office IPv6, which no rule mentions: the intranet's own binding
    // (ip_prefix: the same /64), no device needed.
    let home = RedeemContext {
        mint_fingerprint: None,
        redeem_fingerprint: None,
        ..req(n, "intranet", "2001:db8:c0:1::5", "2001:db8:c0:1::99")
    };
    assert_eq!(decide(&p, home), (Ok(()), mins(480), mins(60)));

    // Expenses: refresh tokens, except across an office <-> VPN handover.
    let d = p.decide_redemption(&req(n, "expenses", "10.1.4.20", "10.1.4.99"));
    assert_eq!(d.verdict, Ok(()));
    assert!(d.allow_refresh_token);
    let d = p.decide_redemption(&req(n, "expenses", "10.8.3.3", "10.1.4.99"));
    assert_eq!(d.verdict, Ok(()));
    assert!(!d.allow_refresh_token);
    assert_eq!((d.session_absolute, d.session_idle), (mins(20), mins(10)));

    // HR apps (glob): same IP and device outside the office LAN.
    assert_eq!(
        decide(
            &p,
            req("corp.workspace.ios", "hr-portal", "10.8.0.4", "10.8.0.5")
        )
        .0,
        Err(DenyReason::BindingMismatch)
    );

    // Guest Wi-Fi: no mint, no redemption.
    assert!(!p.may_mint(n, ip("10.99.0.5")));
    assert!(!p.may_mint(n, ip("192.0.2.1")), "home networks cannot mint");
    assert!(p.may_mint(n, ip("2001:db8:c0::5")));
    assert_eq!(
        decide(&p, req(n, "intranet", "10.1.4.20", "10.99.0.5")).0,
        Err(DenyReason::DeniedByRule)
    );
    // Apps not in allowed_web_clients are refused.
    assert_eq!(
        decide(&p, req(n, "wiki", "10.1.4.20", "10.1.4.20")).0,
        Err(DenyReason::ClientNotAllowed)
    );
}
