//! Behaviour of a validated policy: defaults, per-client settings, lookup, and
//! the redemption decision (order of checks, bindings, rule semantics).

use std::net::IpAddr;
use std::time::Duration;

use handoff_rules::{
    AuthMethod, AuthMethods, Binding, DenyReason, NetworkBinding, Policy, RedeemContext,
};

fn policy(src: &str) -> Policy {
    Policy::from_toml(src, "test.toml").unwrap_or_else(|d| panic!("{d}"))
}

fn errors(src: &str) -> String {
    match Policy::from_toml(src, "test.toml") {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.to_string(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// A redemption that passes everything with the base policy below.
fn ctx() -> RedeemContext<'static> {
    RedeemContext {
        native_client: "ios-app",
        web_client: "spa",
        method: AuthMethod::Cookie,
        mint_ip: ip("203.0.113.7"),
        redeem_ip: ip("203.0.113.7"),
        mint_fingerprint: None,
        redeem_fingerprint: None,
        mint_asn: None,
        redeem_asn: None,
        minute_of_day_utc: 12 * 60,
    }
}

const BASE: &str = r#"
[native.ios-app]
can_create_session_transfer_token = true
allowed_web_clients = ["spa", "shop-*"]
"#;

fn with_base(extra: &str) -> Policy {
    policy(&format!("{BASE}\n{extra}"))
}

// ---- defaults and settings -------------------------------------------------------

#[test]
fn empty_file_gives_spec_defaults() {
    let p = policy("");
    assert!(p.native_client("anything").is_none());
    let w = p.web_client("anything");
    assert_eq!(w.allowed_authentication_methods, AuthMethods::COOKIE);
    assert_eq!(w.enforce_device_binding, Binding::IP);
    assert!(!w.allow_refresh_token);
    assert!(w.enforce_online_refresh_tokens);
    assert_eq!(w.session_absolute, mins(30));
    assert_eq!(w.session_idle, mins(15));
    assert!(!w.revoke_lineage_on_replay);
    assert_eq!(p.fingerprint_headers(), &[] as &[String]);
    assert_eq!(p.binding_prefixes(), (32, 64));
    assert!(p.warnings().is_empty());
    assert_eq!(Policy::default().web_client("x"), w);
}

#[test]
fn native_defaults_and_overrides() {
    let p = policy(
        r#"
[defaults.native]
transfer_token_ttl = "2m"

[native.plain]
[native.custom]
can_create_session_transfer_token = true
transfer_token_ttl = "90s"
enforce_cascade_revocation = false
allowed_web_clients = ["spa"]
"#,
    );
    let plain = p.native_client("plain").unwrap();
    assert!(!plain.can_create_session_transfer_token);
    assert_eq!(plain.transfer_token_ttl, mins(2));
    assert!(plain.enforce_cascade_revocation);
    assert!(!plain.allows_web_client("spa"));
    let c = p.native_client("custom").unwrap();
    assert!(c.can_create_session_transfer_token);
    assert_eq!(c.transfer_token_ttl, Duration::from_secs(90));
    assert!(!c.enforce_cascade_revocation);
    assert!(c.allows_web_client("spa"));
    assert!(!c.allows_web_client("spa2"));
    assert_eq!(c.allowed_web_clients().collect::<Vec<_>>(), ["spa"]);
}

#[test]
fn web_defaults_and_overrides() {
    let p = policy(
        r#"
[defaults.web]
session_absolute = "1h"

[web.spa]
allowed_authentication_methods = ["cookie", "query"]
enforce_device_binding = "ip_prefix"
allow_refresh_token = true
enforce_online_refresh_tokens = false
session_idle = "20m"
revoke_lineage_on_replay = true
"#,
    );
    let w = p.web_client("spa");
    assert_eq!(w.allowed_authentication_methods, AuthMethods::ALL);
    assert_eq!(
        w.enforce_device_binding.network,
        NetworkBinding::IpPrefix { v4: 32, v6: 64 }
    );
    assert!(w.allow_refresh_token);
    assert!(!w.enforce_online_refresh_tokens);
    assert_eq!(
        w.session_absolute,
        mins(60),
        "inherited from [defaults.web]"
    );
    assert_eq!(w.session_idle, mins(20));
    assert!(w.revoke_lineage_on_replay);
    assert_eq!(p.web_client("other").session_absolute, mins(60));
    assert_eq!(p.web_client("other").session_idle, mins(15));
}

#[test]
fn ttl_and_lifetime_limits() {
    assert!(errors("[native.a]\ntransfer_token_ttl = \"301s\"").contains("at most 5m"));
    assert!(errors("[native.a]\ntransfer_token_ttl = \"0s\"").contains("longer than 0s"));
    policy("[native.a]\ntransfer_token_ttl = \"5m\"");
    assert!(errors("[web.a]\nsession_idle = \"0s\"").contains("longer than 0s"));
    assert!(errors("[web.a]\nsession_idle = \"31m\"").contains("exceeds"));
    assert!(errors("[web.a]\nsession_absolute = \"1h30\"").contains("invalid duration"));
    policy("[web.a]\nsession_idle = \"30m\"");
}

#[test]
fn exact_ids_win_over_globs_and_specific_globs_over_general() {
    let p = policy(
        r#"
[web."*"]
session_idle = "1m"
[web."shop-*"]
session_idle = "2m"
[web."shop-eu-*"]
session_idle = "3m"
[web.shop-eu-main]
session_idle = "4m"
"#,
    );
    assert_eq!(p.web_client("shop-eu-main").session_idle, mins(4));
    assert_eq!(p.web_client("shop-eu-2").session_idle, mins(3));
    assert_eq!(p.web_client("shop-us").session_idle, mins(2));
    assert_eq!(p.web_client("blog").session_idle, mins(1));
    assert_eq!(p.web_client("shop-eu-main").id, "shop-eu-main");
    assert_eq!(p.web_client("shop-us").id, "shop-*");
}

#[test]
fn glob_native_clients() {
    let p = policy("[native.\"com.example.*\"]\ncan_create_session_transfer_token = true\nallowed_web_clients = [\"*\"]");
    let n = p.native_client("com.example.ios").unwrap();
    assert!(n.allows_web_client("whatever"));
    assert!(p.native_client("org.other").is_none());
}

#[test]
fn fingerprint_headers_are_lower_cased_in_order() {
    let p = policy("[fingerprint]\nheaders = [\"X-Device-Id\", \"accept-language\"]");
    assert_eq!(p.fingerprint_headers(), ["x-device-id", "accept-language"]);
    assert!(errors("[fingerprint]\nheaders = [\"a\", \"A\"]").contains("listed twice"));
    assert!(errors("[fingerprint]\nheaders = [\"bad header\"]")
        .contains("not a valid HTTP header name"));
}

#[test]
fn binding_strings() {
    let p = policy(
        r#"
[binding]
ipv4_prefix = 24
ipv6_prefix = 56
[fingerprint]
headers = ["x-device-id"]
[web.a]
enforce_device_binding = "ip_prefix+fingerprint"
[web.b]
enforce_device_binding = "fingerprint"
[web.c]
enforce_device_binding = "asn"
[web.d]
enforce_device_binding = "none"
allow_unbound = true
"#,
    );
    let a = p.web_client("a").enforce_device_binding;
    assert_eq!(a.network, NetworkBinding::IpPrefix { v4: 24, v6: 56 });
    assert!(a.fingerprint);
    assert_eq!(a.to_string(), "ip_prefix+fingerprint");
    assert_eq!(
        p.web_client("b").enforce_device_binding.to_string(),
        "fingerprint"
    );
    assert!(p.web_client("c").enforce_device_binding.needs_asn());
    assert!(p.uses_asn());
    assert!(p.web_client("d").enforce_device_binding.is_none());
    assert!(errors("[web.a]\nenforce_device_binding = \"none+ip\"").contains("cannot be combined"));
    assert!(errors("[web.a]\nenforce_device_binding = \"none\"").contains("allow_unbound = true"));
    assert!(
        errors("[web.a]\nenforce_device_binding = \"none\"\nallow_unbound = false")
            .contains("allow_unbound = true")
    );
}

#[test]
fn unbound_can_be_inherited_from_confirmed_defaults() {
    let p = policy("[defaults.web]\nenforce_device_binding = \"none\"\nallow_unbound = true\n[web.a]\nsession_idle = \"1m\"");
    assert!(p.web_client("a").enforce_device_binding.is_none());
}

// ---- decision order ---------------------------------------------------------------

#[test]
fn allowed_redemption_carries_client_settings() {
    let p = with_base("[web.spa]\nallow_refresh_token = true\nrevoke_lineage_on_replay = true");
    let d = p.decide_redemption(&ctx());
    assert_eq!(d.verdict, Ok(()));
    assert!(d.is_allowed());
    assert_eq!(d.session_absolute, mins(30));
    assert_eq!(d.session_idle, mins(15));
    assert!(d.allow_refresh_token);
    assert!(d.enforce_online_refresh_tokens);
    assert!(d.revoke_lineage_on_replay);
    assert_eq!(d.binding, Binding::IP);
    assert_eq!(d.matched_rule, None);
}

#[test]
fn unknown_or_non_minting_native_client() {
    let p = with_base("[native.android]\nallowed_web_clients = [\"spa\"]");
    let c = RedeemContext {
        native_client: "nope",
        ..ctx()
    };
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::UnknownNativeClient)
    );
    let c = RedeemContext {
        native_client: "android",
        ..ctx()
    };
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::UnknownNativeClient)
    );
}

#[test]
fn web_client_must_be_allowed() {
    let p = with_base("");
    let c = RedeemContext {
        web_client: "admin",
        ..ctx()
    };
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::ClientNotAllowed)
    );
    let c = RedeemContext {
        web_client: "shop-eu",
        ..ctx()
    };
    assert_eq!(p.decide_redemption(&c).verdict, Ok(()));
}

#[test]
fn method_must_be_allowed() {
    let p = with_base("[web.\"shop-*\"]\nallowed_authentication_methods = [\"query\", \"cookie\"]");
    let q = RedeemContext {
        method: AuthMethod::Query,
        ..ctx()
    };
    assert_eq!(
        p.decide_redemption(&q).verdict,
        Err(DenyReason::MethodNotAllowed)
    );
    let q = RedeemContext {
        web_client: "shop-1",
        ..q
    };
    assert_eq!(p.decide_redemption(&q).verdict, Ok(()));
}

#[test]
fn client_network_lists() {
    let p = with_base(
        r#"
[web.spa]
allowed_networks = ["203.0.113.0/24", "2001:db8::/32"]
denied_networks = ["203.0.113.128/25"]
"#,
    );
    let c = |redeem: &str| RedeemContext {
        mint_ip: ip(redeem),
        redeem_ip: ip(redeem),
        ..ctx()
    };
    assert_eq!(p.decide_redemption(&c("203.0.113.7")).verdict, Ok(()));
    assert_eq!(
        p.decide_redemption(&c("::ffff:203.0.113.7")).verdict,
        Ok(())
    );
    assert_eq!(p.decide_redemption(&c("2001:db8::1")).verdict, Ok(()));
    assert_eq!(
        p.decide_redemption(&c("203.0.113.200")).verdict,
        Err(DenyReason::DeniedByRule)
    );
    assert_eq!(
        p.decide_redemption(&c("198.51.100.1")).verdict,
        Err(DenyReason::DeniedByRule)
    );
    assert!(p.web_client("spa").allows_redeem_from(ip("203.0.113.1")));
}

#[test]
fn native_network_lists_apply_to_the_mint_ip() {
    let p = policy(
        r#"
[native.ios-app]
can_create_session_transfer_token = true
allowed_web_clients = ["spa"]
denied_networks = ["198.51.100.0/24"]
[web.spa]
enforce_device_binding = "none"
allow_unbound = true
"#,
    );
    let c = RedeemContext {
        mint_ip: ip("198.51.100.9"),
        ..ctx()
    };
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::DeniedByRule)
    );
    assert!(!p.may_mint("ios-app", ip("198.51.100.9")));
    assert!(p.may_mint("ios-app", ip("203.0.113.7")));
    assert!(!p.may_mint("nope", ip("203.0.113.7")));
}

#[test]
fn checks_run_in_the_documented_order() {
    // Everything is wrong at once: the earliest check names the reason.
    let p = with_base("[web.admin]\ndenied_networks = [\"0.0.0.0/0\"]\n[[rule]]\ndeny = true");
    let mut c = RedeemContext {
        native_client: "nope",
        web_client: "admin",
        method: AuthMethod::Query,
        redeem_ip: ip("198.51.100.1"),
        ..ctx()
    };
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::UnknownNativeClient)
    );
    c.native_client = "ios-app";
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::ClientNotAllowed)
    );
    c.web_client = "spa";
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::MethodNotAllowed)
    );
    c.method = AuthMethod::Cookie;
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::DeniedByRule)
    );
    let p = with_base("");
    assert_eq!(
        p.decide_redemption(&c).verdict,
        Err(DenyReason::BindingMismatch)
    );
}

#[test]
fn deny_reason_labels() {
    let all = [
        (DenyReason::UnknownNativeClient, "unknown_native_client"),
        (DenyReason::ClientNotAllowed, "client_not_allowed"),
        (DenyReason::MethodNotAllowed, "method_not_allowed"),
        (DenyReason::DeniedByRule, "denied_by_rule"),
        (DenyReason::BindingMismatch, "binding_mismatch"),
    ];
    for (r, s) in all {
        assert_eq!(r.as_str(), s);
        assert_eq!(r.to_string(), s);
    }
}

// ---- bindings ---------------------------------------------------------------------

fn redeem_from(p: &Policy, mint: &str, redeem: &str) -> Result<(), DenyReason> {
    p.decide_redemption(&RedeemContext {
        mint_ip: ip(mint),
        redeem_ip: ip(redeem),
        ..ctx()
    })
    .verdict
}

#[test]
fn ip_binding() {
    let p = with_base("");
    assert_eq!(redeem_from(&p, "203.0.113.7", "203.0.113.7"), Ok(()));
    assert_eq!(redeem_from(&p, "203.0.113.7", "::ffff:203.0.113.7"), Ok(()));
    assert_eq!(
        redeem_from(&p, "203.0.113.7", "203.0.113.8"),
        Err(DenyReason::BindingMismatch)
    );
    assert_eq!(redeem_from(&p, "2001:db8::1", "2001:db8::1"), Ok(()));
    assert_eq!(
        redeem_from(&p, "2001:db8::1", "2001:db8::2"),
        Err(DenyReason::BindingMismatch)
    );
}

#[test]
fn ip_prefix_binding() {
    let p =
        with_base("[binding]\nipv4_prefix = 24\n[web.spa]\nenforce_device_binding = \"ip_prefix\"");
    assert_eq!(redeem_from(&p, "203.0.113.7", "203.0.113.250"), Ok(()));
    assert_eq!(
        redeem_from(&p, "203.0.113.7", "203.0.114.7"),
        Err(DenyReason::BindingMismatch)
    );
    // Default /64 for IPv6: privacy addresses inside the /64 pass.
    assert_eq!(
        redeem_from(&p, "2001:db8:1:2::1", "2001:db8:1:2:abcd::9"),
        Ok(())
    );
    assert_eq!(
        redeem_from(&p, "2001:db8:1:2::1", "2001:db8:1:3::1"),
        Err(DenyReason::BindingMismatch)
    );
    assert_eq!(
        redeem_from(&p, "203.0.113.7", "2001:db8::1"),
        Err(DenyReason::BindingMismatch)
    );
    // Default /32 for IPv4.
    let p = with_base("[web.spa]\nenforce_device_binding = \"ip_prefix\"");
    assert_eq!(
        redeem_from(&p, "203.0.113.7", "203.0.113.8"),
        Err(DenyReason::BindingMismatch)
    );
}

#[test]
fn none_binding() {
    let p = with_base("[web.spa]\nenforce_device_binding = \"none\"\nallow_unbound = true");
    assert_eq!(redeem_from(&p, "203.0.113.7", "2001:db8::1"), Ok(()));
}

#[test]
fn asn_binding() {
    let p = with_base("[web.spa]\nenforce_device_binding = \"asn\"");
    let c = |m, r| RedeemContext {
        redeem_ip: ip("198.51.100.1"),
        mint_asn: m,
        redeem_asn: r,
        ..ctx()
    };
    assert_eq!(
        p.decide_redemption(&c(Some(64500), Some(64500))).verdict,
        Ok(())
    );
    let mismatch = Err(DenyReason::BindingMismatch);
    assert_eq!(
        p.decide_redemption(&c(Some(64500), Some(64501))).verdict,
        mismatch
    );
    assert_eq!(p.decide_redemption(&c(None, Some(64500))).verdict, mismatch);
    assert_eq!(p.decide_redemption(&c(None, None)).verdict, mismatch);
    assert_eq!(
        p.decide_redemption(&c(Some(0), Some(0))).verdict,
        mismatch,
        "0 = not routed"
    );
}

#[test]
fn fingerprint_binding_combined_with_ip() {
    let p = with_base("[fingerprint]\nheaders = [\"x-device-id\"]\n[web.spa]\nenforce_device_binding = \"ip+fingerprint\"");
    let c = |m, r, redeem: &str| RedeemContext {
        mint_fingerprint: m,
        redeem_fingerprint: r,
        redeem_ip: ip(redeem),
        ..ctx()
    };
    let (a, b) = (Some([1u8; 32]), Some([2u8; 32]));
    let mismatch = Err(DenyReason::BindingMismatch);
    assert_eq!(p.decide_redemption(&c(a, a, "203.0.113.7")).verdict, Ok(()));
    assert_eq!(
        p.decide_redemption(&c(a, b, "203.0.113.7")).verdict,
        mismatch
    );
    assert_eq!(
        p.decide_redemption(&c(a, None, "203.0.113.7")).verdict,
        mismatch
    );
    assert_eq!(
        p.decide_redemption(&c(None, None, "203.0.113.7")).verdict,
        mismatch
    );
    assert_eq!(
        p.decide_redemption(&c(a, a, "203.0.113.8")).verdict,
        mismatch
    );
}

// ---- rules ------------------------------------------------------------------------

#[test]
fn lifetimes_combine_by_earliest_expiry() {
    let p = with_base(
        r#"
[web.spa]
session_absolute = "1h"
session_idle = "30m"
[[rule]]
session_absolute = "20m"
[[rule]]
session_idle = "10m"
[[rule]]
method = "query"
session_absolute = "1m"
[[rule]]
session_absolute = "2h"
"#,
    );
    let d = p.decide_redemption(&ctx());
    assert_eq!(d.session_absolute, mins(20));
    assert_eq!(d.session_idle, mins(10));
    assert_eq!(
        d.matched_rule,
        Some(0),
        "first matching rule when none decides more"
    );
}

#[test]
fn idle_is_capped_by_absolute_after_combining() {
    let p = with_base("[[rule]]\nsession_absolute = \"5m\"");
    let d = p.decide_redemption(&ctx());
    assert_eq!(d.session_absolute, mins(5));
    assert_eq!(d.session_idle, mins(5));
}

#[test]
fn first_matching_rule_decides_deny_binding_and_refresh() {
    let p = with_base(
        r#"
[web.spa]
allowed_authentication_methods = ["cookie", "query"]
[[rule]]
name = "office is exempt"
redeem_network = "10.0.0.0/8"
deny = false
[[rule]]
name = "no query links"
method = "query"
deny = true
[[rule]]
binding = "ip_prefix"
allow_refresh_token = true
[[rule]]
binding = "none"
allow_unbound = true
allow_refresh_token = false
enforce_online_refresh_tokens = false
"#,
    );
    let d = p.decide_redemption(&ctx());
    assert_eq!(d.verdict, Ok(()));
    assert_eq!(
        d.binding.network,
        NetworkBinding::IpPrefix { v4: 32, v6: 64 }
    );
    assert!(d.allow_refresh_token);
    assert!(!d.enforce_online_refresh_tokens, "first rule that sets it");
    assert_eq!(d.matched_rule, Some(2));

    let q = RedeemContext {
        method: AuthMethod::Query,
        ..ctx()
    };
    let d = p.decide_redemption(&q);
    assert_eq!(d.verdict, Err(DenyReason::DeniedByRule));
    assert_eq!(d.matched_rule, Some(1));
    assert_eq!(p.rule_name(1), Some("no query links"));

    let office = RedeemContext {
        mint_ip: ip("10.1.1.1"),
        redeem_ip: ip("10.1.1.1"),
        ..q
    };
    let d = p.decide_redemption(&office);
    assert_eq!(d.verdict, Ok(()), "an earlier deny = false wins");
    assert_eq!(d.matched_rule, Some(0));
}

#[test]
fn rule_binding_overrides_client_binding() {
    let p = with_base("[[rule]]\nweb_client = \"spa\"\nbinding = \"none\"\nallow_unbound = true");
    assert_eq!(redeem_from(&p, "203.0.113.7", "198.51.100.1"), Ok(()));
}

#[test]
fn matchers() {
    let p = with_base(
        r#"
[[rule]]
native_client = ["android-*"]
session_absolute = "1m"
[[rule]]
web_client = ["shop-*", "spa"]
session_absolute = "2m"
[[rule]]
mint_network = ["203.0.113.0/24"]
session_absolute = "3m"
[[rule]]
redeem_asn = [64500]
session_absolute = "4m"
[[rule]]
mint_asn = 64501
session_absolute = "5m"
[[rule]]
networks_differ = true
session_absolute = "6m"
[[rule]]
time_of_day = "22:00-06:00"
session_absolute = "7m"
[[rule]]
method = "cookie"
session_absolute = "8m"
[[rule]]
networks_differ = false
session_absolute = "9m"
"#,
    );
    let abs = |c: RedeemContext<'_>| p.decide_redemption(&c).session_absolute;
    let base = ctx(); // matches rules 1, 2, 7 and 8
    assert_eq!(abs(base), mins(2));
    assert_eq!(p.decide_redemption(&base).matched_rule, Some(1));
    let c = RedeemContext {
        web_client: "admin",
        ..base
    };
    assert_eq!(abs(c), mins(3));
    let c = RedeemContext {
        web_client: "admin",
        mint_ip: ip("198.51.100.1"),
        ..base
    };
    assert_eq!(
        abs(c),
        mins(6),
        "mint network no longer matches; networks now differ"
    );
    let c = RedeemContext {
        web_client: "admin",
        mint_ip: ip("198.51.100.1"),
        redeem_ip: ip("198.51.100.1"),
        ..base
    };
    assert_eq!(abs(c), mins(8));
    let c = RedeemContext {
        redeem_asn: Some(64500),
        ..c
    };
    assert_eq!(abs(c), mins(4));
    let c = RedeemContext {
        redeem_asn: None,
        mint_asn: Some(64501),
        ..c
    };
    assert_eq!(abs(c), mins(5));
    let c = RedeemContext {
        mint_asn: None,
        minute_of_day_utc: 23 * 60,
        ..c
    };
    assert_eq!(abs(c), mins(7));
    let c = RedeemContext {
        native_client: "android-x",
        ..c
    };
    assert_eq!(abs(c), mins(1));
    let c = RedeemContext {
        web_client: "admin",
        mint_ip: ip("198.51.100.1"),
        redeem_ip: ip("198.51.100.1"),
        method: AuthMethod::Query,
        ..base
    };
    assert_eq!(abs(c), mins(9));
}

#[test]
fn networks_differ_uses_binding_prefixes() {
    let p = with_base("[binding]\nipv4_prefix = 24\n[[rule]]\nnetworks_differ = true\ndeny = true");
    let c = |m: &str, r: &str| RedeemContext {
        mint_ip: ip(m),
        redeem_ip: ip(r),
        ..ctx()
    };
    assert_ne!(
        p.decide_redemption(&c("203.0.113.7", "203.0.113.9"))
            .verdict,
        Err(DenyReason::DeniedByRule)
    );
    assert_eq!(
        p.decide_redemption(&c("203.0.113.7", "203.0.114.9"))
            .verdict,
        Err(DenyReason::DeniedByRule)
    );
    assert_eq!(
        p.decide_redemption(&c("203.0.113.7", "2001:db8::1"))
            .verdict,
        Err(DenyReason::DeniedByRule)
    );
}

#[test]
fn rule_validation() {
    assert!(errors("[[rule]]\nweb_client = []\ndeny = true").contains("empty list"));
    assert!(errors("[[rule]]\nredeem_asn = [0]\ndeny = true").contains("not an AS number"));
    assert!(errors("[[rule]]\nmethod = \"post\"\ndeny = true")
        .contains("unknown authentication method"));
    assert!(errors("[[rule]]\ntime_of_day = \"9-17\"\ndeny = true").contains("HH:MM-HH:MM"));
    assert!(
        errors("[[rule]]\nmint_network = \"::ffff:10.0.0.0/104\"\ndeny = true")
            .contains("write \"10.0.0.0/8\"")
    );
    let p = policy("[[rule]]\nname = \"a\"\ndeny = true\n[[rule]]\nname = \"b\"\ndeny = true");
    assert_eq!(p.warnings().len(), 1);
    assert_eq!(p.rule_count(), 2);
    assert_eq!(p.rule_line(1), Some(4));
    assert!(p.warnings()[0]
        .message
        .contains("rule[1] (\"b\") is shadowed by rule[0] (\"a\")"));
}

#[test]
fn lifetime_rules_are_never_reported_as_shadowed() {
    let p =
        policy("[[rule]]\nbinding = \"ip\"\n[[rule]]\nweb_client = \"x\"\nsession_idle = \"1m\"");
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
}

#[test]
fn all_errors_are_reported_with_positions() {
    let e = errors("[web.a]\nsession_idle = \"x\"\n\n[web.b]\nsession_absolute = \"y\"\n");
    assert_eq!(
        e,
        "test.toml:2:16: error: `session_idle`: invalid duration \"x\": expected whole numbers with units d, h, m, s in that order, like \"90s\", \"30m\" or \"1h30m\"\n\
         test.toml:5:20: error: `session_absolute`: invalid duration \"y\": expected whole numbers with units d, h, m, s in that order, like \"90s\", \"30m\" or \"1h30m\""
    );
}

#[test]
fn policy_is_shareable() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<handoff_rules::AsnTable>();
}
