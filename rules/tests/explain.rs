//! `explain`: the trace agrees with `decide_redemption`, attributes every
//! setting to the right entry or rule, and renders as readable text.

use std::net::IpAddr;
use std::time::Duration;

use handoff_rules::{
    explain, AuthMethod, Binding, CheckStatus, ClientEntry, DenyReason, Effect, Explanation,
    Policy, RedeemContext, Source, Step,
};

fn policy(src: &str) -> Policy {
    Policy::from_toml(src, "test.toml").unwrap_or_else(|d| panic!("{d}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

const FILE: &str = r#"
[binding]
ipv4_prefix = 24

[native.ios-app]
can_create_session_transfer_token = true
allowed_web_clients = ["spa", "shop-*"]
denied_networks = ["192.0.2.0/24"]

[native."android-*"]
can_create_session_transfer_token = false

[web.spa]
session_absolute = "20m"
session_idle = "10m"

[web."shop-*"]
allowed_authentication_methods = ["cookie", "query"]
enforce_device_binding = "ip_prefix"
denied_networks = ["198.51.100.0/24"]

[[rule]]
name = "office"
redeem_network = "10.0.0.0/8"
deny = false
binding = "ip_prefix"
session_absolute = "25m"

[[rule]]
name = "links"
method = "query"
deny = true
session_idle = "5m"

[[rule]]
name = "evening"
time_of_day = "18:00-23:00"
session_absolute = "8m"
allow_refresh_token = true

[[rule]]
web_client = ["spa", "admin"]
binding = "none"
allow_unbound = true
"#;

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

fn ex(c: RedeemContext<'_>) -> Explanation {
    let p = policy(FILE);
    let e = explain(&p, &c);
    assert_eq!(e.decision, p.decide_redemption(&c), "explain agrees");
    e
}

fn statuses(e: &Explanation) -> Vec<CheckStatus> {
    e.checks.iter().map(|c| c.status).collect()
}

#[test]
fn allowed_request_attributes_everything() {
    let e = ex(ctx());
    assert!(e.is_allowed());
    assert!(e.failed_check().is_none());
    assert_eq!(
        e.checks.iter().map(|c| c.step).collect::<Vec<_>>(),
        [
            Step::NativeClientMayMint,
            Step::WebClientAllowed,
            Step::MethodAllowed,
            Step::NetworksAndDenyRules,
            Step::Binding,
        ]
    );
    assert!(statuses(&e).iter().all(|s| *s == CheckStatus::Passed));
    assert_eq!(e.native_client.entry, ClientEntry::Exact);
    assert_eq!(e.native_client.table, "[native.ios-app]");
    assert_eq!(e.web_client.entry, ClientEntry::Exact);
    assert_eq!(e.web_client.table, "[web.spa]");
    // Only the last rule matches (web_client = spa): binding none.
    let matched: Vec<usize> = e.matched_rules().map(|r| r.index).collect();
    assert_eq!(matched, [3]);
    assert_eq!(e.binding.value, Binding::NONE);
    assert_eq!(e.binding.source, Source::Rule(3));
    assert!(e.binding_holds);
    assert_eq!(e.session_absolute.value, mins(20));
    assert_eq!(e.session_absolute.source, Source::WebClient);
    assert_eq!(e.session_idle.source, Source::WebClient);
    assert_eq!(e.allow_refresh_token.source, Source::WebClient);
    assert_eq!(e.transfer_token_ttl, Some(Duration::from_secs(60)));
    assert_eq!(e.enforce_cascade_revocation, Some(true));
    assert_eq!(e.decision.matched_rule, Some(3));
}

#[test]
fn client_entries_exact_glob_defaults_not_listed() {
    let e = ex(RedeemContext {
        web_client: "shop-eu",
        ..ctx()
    });
    assert_eq!(e.web_client.entry, ClientEntry::Glob("shop-*".into()));
    assert_eq!(e.web_client.table, "[web.\"shop-*\"]");
    assert!(e.checks[1]
        .detail
        .contains("\"shop-eu\" matches \"shop-*\""));

    let e = ex(RedeemContext {
        web_client: "blog",
        ..ctx()
    });
    assert_eq!(e.web_client.entry, ClientEntry::Defaults);
    assert_eq!(e.web_client.table, "[defaults.web]");
    assert_eq!(e.decision.verdict, Err(DenyReason::ClientNotAllowed));
    assert!(e.checks[1].detail.contains("matches none of"), "{e}");

    let e = ex(RedeemContext {
        native_client: "android-app",
        ..ctx()
    });
    assert_eq!(e.native_client.entry, ClientEntry::Glob("android-*".into()));
    assert_eq!(e.decision.verdict, Err(DenyReason::UnknownNativeClient));
    assert!(e.checks[0]
        .detail
        .contains("can_create_session_transfer_token = false"));
    assert_eq!(e.transfer_token_ttl, Some(Duration::from_secs(60)));

    let e = ex(RedeemContext {
        native_client: "desktop",
        ..ctx()
    });
    assert_eq!(e.native_client.entry, ClientEntry::NotListed);
    assert_eq!(e.transfer_token_ttl, None);
    assert_eq!(
        statuses(&e),
        [
            CheckStatus::Failed,
            CheckStatus::NotReached { would_pass: None },
            CheckStatus::NotReached {
                would_pass: Some(true)
            },
            CheckStatus::NotReached { would_pass: None },
            CheckStatus::NotReached {
                would_pass: Some(true)
            },
        ]
    );
}

#[test]
fn each_failed_check_is_the_verdict() {
    // Method: spa allows cookie only.
    let e = ex(RedeemContext {
        method: AuthMethod::Query,
        ..ctx()
    });
    assert_eq!(e.decision.verdict, Err(DenyReason::MethodNotAllowed));
    let f = e.failed_check().unwrap();
    assert_eq!(f.step, Step::MethodAllowed);
    assert_eq!(f.step.deny_reason(), DenyReason::MethodNotAllowed);
    assert!(f
        .detail
        .contains("query is not in allowed_authentication_methods [cookie] of [web.spa]"));
    assert_eq!(
        e.checks[3].status,
        CheckStatus::NotReached {
            // rule "links" (method = query) decides deny = true.
            would_pass: Some(false)
        }
    );

    // Network lists: the web client's denied network, then the native client's.
    let e = ex(RedeemContext {
        web_client: "shop-eu",
        redeem_ip: ip("::ffff:198.51.100.9"),
        ..ctx()
    });
    assert_eq!(e.decision.verdict, Err(DenyReason::DeniedByRule));
    let f = e.failed_check().unwrap();
    assert_eq!(
        f.detail,
        "redeem IP 198.51.100.9 is in denied_networks (198.51.100.0/24) of [web.\"shop-*\"]"
    );
    let e = ex(RedeemContext {
        mint_ip: ip("192.0.2.1"),
        ..ctx()
    });
    assert_eq!(
        e.failed_check().unwrap().detail,
        "mint IP 192.0.2.1 is in denied_networks (192.0.2.0/24) of [native.ios-app]"
    );

    // A deny rule.
    let e = ex(RedeemContext {
        web_client: "shop-eu",
        method: AuthMethod::Query,
        ..ctx()
    });
    assert_eq!(e.decision.verdict, Err(DenyReason::DeniedByRule));
    assert_eq!(e.decision.matched_rule, Some(1));
    assert!(e
        .failed_check()
        .unwrap()
        .detail
        .contains("rule[1] \"links\" (line 29) decides deny = true"));
    assert_eq!(
        e.checks[4].status,
        CheckStatus::NotReached {
            would_pass: Some(true)
        }
    );

    // The binding.
    let e = ex(RedeemContext {
        web_client: "shop-eu",
        redeem_ip: ip("203.0.114.7"),
        ..ctx()
    });
    assert_eq!(e.decision.verdict, Err(DenyReason::BindingMismatch));
    assert!(!e.binding_holds);
    assert_eq!(e.binding.source, Source::WebClient);
    assert_eq!(
        e.failed_check().unwrap().detail,
        "ip_prefix (IPv4 /24, IPv6 /64): mint IP 203.0.113.7 and redeem IP 203.0.114.7 differ within the first 24 bits: fails"
    );
}

#[test]
fn rule_effects_and_lifetime_sources() {
    // Office network, query method, in the evening: rules 0, 1 and 2 match.
    let e = ex(RedeemContext {
        web_client: "shop-eu",
        method: AuthMethod::Query,
        redeem_ip: ip("10.1.2.3"),
        mint_ip: ip("10.1.2.4"),
        minute_of_day_utc: 19 * 60,
        ..ctx()
    });
    // deny = false in rule 0 exempts from rule 1's deny = true.
    assert!(e.is_allowed(), "{e}");
    assert!(e.checks[3].detail.contains("decides deny = false"));
    let effects = |i: usize| -> Vec<(&str, Effect)> {
        e.rules[i]
            .decisions
            .iter()
            .map(|d| (d.key, d.effect))
            .collect()
    };
    assert_eq!(
        effects(0),
        [
            ("deny", Effect::InForce),
            ("binding", Effect::InForce),
            ("session_absolute", Effect::NotEarliest(Source::Rule(2))),
        ]
    );
    assert_eq!(
        effects(1),
        [
            ("deny", Effect::DecidedEarlierBy(0)),
            ("session_idle", Effect::InForce),
        ]
    );
    assert_eq!(
        effects(2),
        [
            ("session_absolute", Effect::InForce),
            ("allow_refresh_token", Effect::InForce),
        ]
    );
    assert!(!e.rules[3].matched());
    assert_eq!(
        e.rules[3].rejected_by,
        ["web_client (\"shop-eu\" matches none of \"spa\", \"admin\")"]
    );
    assert_eq!(effects(3)[0].1, Effect::RuleDidNotMatch);
    assert_eq!(e.rules[3].matchers, ["web_client"]);
    assert_eq!(e.session_absolute.value, mins(8));
    assert_eq!(e.session_absolute.source, Source::Rule(2));
    assert_eq!(e.session_idle.value, mins(5));
    assert_eq!(e.session_idle.source, Source::Rule(1));
    assert!(e.allow_refresh_token.value);
    assert_eq!(e.allow_refresh_token.source, Source::Rule(2));
    assert_eq!(e.binding.source, Source::Rule(0));
    assert_eq!(e.decision.matched_rule, Some(0));
}

#[test]
fn idle_capped_at_absolute_is_attributed() {
    // Evening: absolute 8m (rule 2) is below the web client's idle 10m.
    let e = ex(RedeemContext {
        minute_of_day_utc: 20 * 60,
        ..ctx()
    });
    assert_eq!(e.session_absolute.value, mins(8));
    assert_eq!(e.session_idle.value, mins(8));
    assert_eq!(e.session_idle.source, Source::CappedAtAbsolute);
    assert!(e
        .to_string()
        .contains("session_idle                   8m  capped at session_absolute"));

    // A rule's idle lifetime that the cap makes moot.
    let p = policy(
        r#"
[[rule]]
session_idle = "9m"
[[rule]]
session_absolute = "5m"
"#,
    );
    let e = explain(&p, &ctx());
    assert_eq!(e.session_idle.value, mins(5));
    assert_eq!(
        e.rules[0].decisions[0].effect,
        Effect::NotEarliest(Source::CappedAtAbsolute)
    );
    assert!(e
        .to_string()
        .contains("session_idle = 9m: no effect: idle is capped at session_absolute (5m)"));
}

#[test]
fn rejections_name_every_failing_matcher() {
    let p = policy(
        r#"
[binding]
ipv4_prefix = 16
[[rule]]
name = "all matchers"
web_client = "a*"
native_client = ["x", "y"]
method = "query"
redeem_network = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fd00::/8"]
mint_network = "10.0.0.0/8"
redeem_asn = 64500
mint_asn = [64501]
networks_differ = true
time_of_day = "22:00-06:00"
deny = true
"#,
    );
    let e = explain(
        &p,
        &RedeemContext {
            redeem_asn: Some(64499),
            ..ctx()
        },
    );
    assert_eq!(
        e.rules[0].rejected_by,
        [
            "web_client (\"spa\" matches none of \"a*\")",
            "native_client (\"ios-app\" matches none of \"x\", \"y\")",
            "method (cookie is not in [query])",
            "redeem_network (203.0.113.7 is in none of 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 and 1 more)",
            "mint_network (203.0.113.7 is in none of 10.0.0.0/8)",
            "redeem_asn (AS64499 is none of AS64500)",
            "mint_asn (the mint IP's ASN is unknown)",
            "networks_differ (wants true, but mint and redeem IP are in the same IPv4 /16 or IPv6 /64)",
            "time_of_day (12:00 UTC is outside 22:00-06:00)",
        ]
    );
    assert_eq!(e.rules[0].matchers.len(), 9);
    assert_eq!(e.decision.verdict, Err(DenyReason::UnknownNativeClient));
    assert_eq!(e.decision.matched_rule, None);
}

#[test]
fn binding_details() {
    let p = policy(
        r#"
[fingerprint]
headers = ["x-device-id"]
[native.n]
can_create_session_transfer_token = true
allowed_web_clients = ["*"]
[web.asn]
enforce_device_binding = "asn+fingerprint"
[web.fp]
enforce_device_binding = "fingerprint"
"#,
    );
    let run = |c: RedeemContext<'_>| {
        let e = explain(&p, &c);
        assert_eq!(e.decision, p.decide_redemption(&c));
        (e.binding_holds, e.checks[4].detail.clone())
    };
    let base = RedeemContext {
        native_client: "n",
        web_client: "asn",
        mint_asn: Some(64500),
        redeem_asn: Some(64500),
        mint_fingerprint: Some([1; 32]),
        redeem_fingerprint: Some([1; 32]),
        ..ctx()
    };
    assert_eq!(
        run(base),
        (
            true,
            "asn+fingerprint: both IPs in AS64500: holds; fingerprints equal: holds".into()
        )
    );
    assert_eq!(
        run(RedeemContext {
            redeem_asn: None,
            redeem_fingerprint: Some([2; 32]),
            ..base
        }),
        (
            false,
            "asn+fingerprint: the redeem IP's ASN is unknown: fails; fingerprints differ: fails"
                .into()
        )
    );
    assert_eq!(
        run(RedeemContext {
            web_client: "fp",
            mint_fingerprint: None,
            ..base
        }),
        (false, "fingerprint: no fingerprint at mint: fails".into())
    );
    assert_eq!(
        run(RedeemContext {
            web_client: "other",
            redeem_ip: ip("::ffff:203.0.113.7"),
            ..base
        }),
        (true, "ip: same IP 203.0.113.7: holds".into())
    );
}

#[test]
fn renders_as_text() {
    let p = policy(FILE);
    let c = RedeemContext {
        web_client: "shop-eu",
        method: AuthMethod::Query,
        redeem_ip: ip("::ffff:10.1.2.3"),
        mint_ip: ip("10.9.2.4"),
        minute_of_day_utc: 19 * 60 + 5,
        ..ctx()
    };
    let text = explain(&p, &c).to_string();
    let expected = r#"verdict: DENIED (binding_mismatch)
  because: device binding: ip_prefix (IPv4 /24, IPv6 /64): mint IP 10.9.2.4 and redeem IP 10.1.2.3 differ within the first 24 bits: fails

request
  native client  "ios-app" -> [native.ios-app] (exact id)
  web client     "shop-eu" -> [web."shop-*"] (glob)
  method         query
  mint IP        10.9.2.4, ASN unknown
  redeem IP      ::ffff:10.1.2.3 (IPv4-mapped: 10.1.2.3), ASN unknown
  fingerprint    at mint: absent, at redemption: absent
  time           19:05 UTC

checks (in order; the first failure is the verdict)
  1. pass              native client may mint: [native.ios-app] has can_create_session_transfer_token = true
  2. pass              web client allowed: "shop-eu" matches "shop-*" in allowed_web_clients of [native.ios-app]
  3. pass              delivery method allowed: query is in allowed_authentication_methods [cookie, query] of [web."shop-*"]
  4. pass              networks and deny rules: redeem IP passes the network lists of [web."shop-*"], mint IP those of [native.ios-app]; rule[0] "office" (line 22) decides deny = false, so no later rule can deny
  5. FAIL              device binding: ip_prefix (IPv4 /24, IPv6 /64): mint IP 10.9.2.4 and redeem IP 10.1.2.3 differ within the first 24 bits: fails

rules (4 in the file, 3 matched; the first matching rule that sets deny, binding or a refresh-token key decides it; lifetimes take the earliest expiry)
  rule[0] "office" (line 22): MATCHED (on redeem_network)
      deny = false: in force
      binding = ip_prefix: in force
      session_absolute = 25m: no effect: the earliest expiry, 8m, is from rule[2] "evening" (line 35)
  rule[1] "links" (line 29): MATCHED (on method)
      deny = true: no effect: already decided by rule[0] "office" (line 22)
      session_idle = 5m: in force
  rule[2] "evening" (line 35): MATCHED (on time_of_day)
      session_absolute = 8m: in force
      allow_refresh_token = true: in force
  rule[3] (line 41): no match: web_client ("shop-eu" matches none of "spa", "admin")
  deciding rule: rule[0] "office" (line 22)

session settings (what an allowed redemption would get)
  binding                        ip_prefix (IPv4 /24, IPv6 /64)  from rule[0] "office" (line 22); does not hold
  session_absolute               8m  from rule[2] "evening" (line 35)
  session_idle                   5m  from rule[1] "links" (line 29)
  allow_refresh_token            yes  from rule[2] "evening" (line 35)
  enforce_online_refresh_tokens  yes  from [web."shop-*"]
  revoke_lineage_on_replay       no  from [web."shop-*"]
  transfer_token_ttl             1m  from [native.ios-app]
  enforce_cascade_revocation     yes  from [native.ios-app]
"#;
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn empty_policy_explains_too() {
    let p = Policy::default();
    let e = explain(&p, &ctx());
    assert_eq!(e.decision.verdict, Err(DenyReason::UnknownNativeClient));
    assert!(e.rules.is_empty());
    let text = e.to_string();
    assert!(text.contains("rules (0 in the file, 0 matched;"), "{text}");
    assert!(text.contains("  (none)\n  deciding rule: none\n"), "{text}");
    assert!(text.contains("transfer_token_ttl             -  native client not listed"));
}

#[test]
fn methods_parse_from_their_names() {
    assert_eq!("cookie".parse::<AuthMethod>(), Ok(AuthMethod::Cookie));
    assert_eq!("query".parse::<AuthMethod>(), Ok(AuthMethod::Query));
    assert!("Query"
        .parse::<AuthMethod>()
        .unwrap_err()
        .contains("\"cookie\" or \"query\""));
}
