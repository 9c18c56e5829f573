//! `handoff rules explain`: what a redemption would get from a policy, and why.
//!
//! [`explain`] runs [`Policy::decide_redemption`] and, beside it, walks the same
//! checks and rules again keeping a trace: which entry each client id resolved
//! to, each of the five checks and its outcome, every rule and which of its
//! matchers rejected the request or what it decided, and where each effective
//! setting came from. It allocates freely: it is for people, not the hot path.
//! In debug builds it asserts that its trace agrees with the decision.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::duration::Human;
use crate::glob::Glob;
use crate::model::{
    AuthMethod, AuthMethods, Binding, Decision, DenyReason, NativeClient, NetworkBinding,
    RedeemContext, WebClient,
};
use crate::net::{normalize_ip, same_prefix, NetList};
use crate::policy::{ClientTable, Policy};
use crate::rule::Rule;

/// How many items of a list (networks, globs, ASNs) a message shows before
/// "and N more".
const LIST_LIMIT: usize = 4;

/// Which entry of the rules file a client id resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEntry {
    /// An entry written with exactly this id, like `[web.spa]`.
    Exact,
    /// The most specific matching glob entry; the pattern, like `shop-*`.
    Glob(String),
    /// No entry: a web client that is not listed gets `[defaults.web]`.
    Defaults,
    /// No entry: a native client that is not listed may not mint.
    NotListed,
}

/// A client id and the entry of the rules file it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedClient {
    /// The client id of the request.
    pub id: String,
    /// How it resolved.
    pub entry: ClientEntry,
    /// The entry's table as written in the file, like `[web."shop-*"]`,
    /// `[defaults.web]`, or `(not listed)`.
    pub table: String,
}

/// One of the five checks of [`Policy::decide_redemption`], in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// 1. The native client is listed and may mint.
    NativeClientMayMint,
    /// 2. The web client is in the native client's `allowed_web_clients`.
    WebClientAllowed,
    /// 3. The method is in the web client's `allowed_authentication_methods`.
    MethodAllowed,
    /// 4. The client network lists pass and no rule decides `deny = true`.
    NetworksAndDenyRules,
    /// 5. The device binding holds.
    Binding,
}

impl Step {
    /// A short human title.
    pub fn title(&self) -> &'static str {
        match self {
            Step::NativeClientMayMint => "native client may mint",
            Step::WebClientAllowed => "web client allowed",
            Step::MethodAllowed => "delivery method allowed",
            Step::NetworksAndDenyRules => "networks and deny rules",
            Step::Binding => "device binding",
        }
    }

    /// The [`DenyReason`] this check gives when it fails.
    pub fn deny_reason(&self) -> DenyReason {
        match self {
            Step::NativeClientMayMint => DenyReason::UnknownNativeClient,
            Step::WebClientAllowed => DenyReason::ClientNotAllowed,
            Step::MethodAllowed => DenyReason::MethodNotAllowed,
            Step::NetworksAndDenyRules => DenyReason::DeniedByRule,
            Step::Binding => DenyReason::BindingMismatch,
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckStatus {
    /// Checked and passed.
    Passed,
    /// Checked and failed: this is the verdict.
    Failed,
    /// Not checked, because an earlier check failed. `would_pass` says what it
    /// would have given, where that can be known (not when the native client
    /// is not listed, for the checks that need its settings).
    NotReached {
        /// The outcome had it been checked.
        would_pass: Option<bool>,
    },
}

/// One check with its outcome and a human account of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Which check.
    pub step: Step,
    /// Its outcome.
    pub status: CheckStatus,
    /// Why, in words: `"shop-eu" matches "shop-*" in allowed_web_clients`.
    pub detail: String,
}

/// Where an effective setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The native client's entry.
    NativeClient,
    /// The web client's entry (or `[defaults.web]`).
    WebClient,
    /// The rule with this index (0-based, file order).
    Rule(usize),
    /// `session_idle`, capped at the effective `session_absolute`.
    CappedAtAbsolute,
}

/// An effective setting and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective<T> {
    /// The value in force.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

/// What a decision of a matching rule did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// This rule's value is the one in force.
    InForce,
    /// An earlier matching rule (this index) already decided this key.
    DecidedEarlierBy(usize),
    /// A lifetime that is not the earliest expiry: the value in force came
    /// from this source.
    NotEarliest(Source),
    /// The rule did not match, so its decisions do nothing.
    RuleDidNotMatch,
}

/// One decision written in a rule (`deny = true`, `session_idle = "5m"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDecision {
    /// The key, like `deny` or `session_idle`.
    pub key: &'static str,
    /// The value as the rules file writes it, like `true` or `5m`.
    pub value: String,
    /// What it did for this request.
    pub effect: Effect,
}

/// One `[[rule]]` and how it fared against the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    /// 0-based index, file order.
    pub index: usize,
    /// The rule's `name`, if it has one.
    pub name: Option<String>,
    /// 1-based line of its `[[rule]]` header.
    pub line: usize,
    /// The matchers it has, in evaluation order; empty means it matches every
    /// redemption.
    pub matchers: Vec<&'static str>,
    /// The matchers that rejected the request, each with why, like
    /// `method (query is not in [cookie])`; empty if and only if it matched.
    pub rejected_by: Vec<String>,
    /// Its decisions, in a fixed order (deny, binding, lifetimes, refresh).
    pub decisions: Vec<RuleDecision>,
}

impl RuleTrace {
    /// Whether the rule matched the request.
    pub fn matched(&self) -> bool {
        self.rejected_by.is_empty()
    }

    /// `rule[2] "office" (line 40)`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("rule[{}] {n:?} (line {})", self.index, self.line),
            None => format!("rule[{}] (line {})", self.index, self.line),
        }
    }
}

/// What a redemption gets from a policy, and why: the result of [`explain`].
///
/// `Display` renders it as text for `handoff rules explain`; the fields carry
/// the same content for programs (and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation {
    /// Exactly what [`Policy::decide_redemption`] returns for the request.
    pub decision: Decision,
    /// The native client and the entry it resolved to.
    pub native_client: ResolvedClient,
    /// The web client and the entry it resolved to.
    pub web_client: ResolvedClient,
    /// How the token arrived.
    pub method: AuthMethod,
    /// The client IP at mint time, as given.
    pub mint_ip: IpAddr,
    /// The client IP at redemption, as given.
    pub redeem_ip: IpAddr,
    /// ASN of the mint IP, if known.
    pub mint_asn: Option<u32>,
    /// ASN of the redeem IP, if known.
    pub redeem_asn: Option<u32>,
    /// Whether a device fingerprint was present at mint time.
    pub mint_fingerprint: bool,
    /// Whether a device fingerprint was present at redemption.
    pub redeem_fingerprint: bool,
    /// Minutes since 00:00 UTC (0..1440).
    pub minute_of_day_utc: u16,
    /// The five checks, in order.
    pub checks: Vec<Check>,
    /// Every rule, in file order.
    pub rules: Vec<RuleTrace>,
    /// The binding checked (or that would have been) and where it came from.
    pub binding: Effective<Binding>,
    /// Whether that binding holds for this request (whether or not it was
    /// reached).
    pub binding_holds: bool,
    /// The `[binding]` prefix lengths (IPv4, IPv6) used by `ip_prefix`.
    pub binding_prefixes: (u8, u8),
    /// Effective absolute session lifetime.
    pub session_absolute: Effective<Duration>,
    /// Effective idle session lifetime.
    pub session_idle: Effective<Duration>,
    /// Whether refresh tokens may reach the web app.
    pub allow_refresh_token: Effective<bool>,
    /// Whether the web app's refresh tokens die with the session.
    pub enforce_online_refresh_tokens: Effective<bool>,
    /// Whether a replay of the token revokes its lineage (web client setting).
    pub revoke_lineage_on_replay: bool,
    /// The native client's token lifetime; `None` if it is not listed.
    pub transfer_token_ttl: Option<Duration>,
    /// The native client's `enforce_cascade_revocation`; `None` if it is not
    /// listed.
    pub enforce_cascade_revocation: Option<bool>,
}

impl Explanation {
    /// Whether the redemption is allowed.
    pub fn is_allowed(&self) -> bool {
        self.decision.is_allowed()
    }

    /// The check that failed, if any.
    pub fn failed_check(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status == CheckStatus::Failed)
    }

    /// The rules that matched, in file order.
    pub fn matched_rules(&self) -> impl Iterator<Item = &RuleTrace> {
        self.rules.iter().filter(|r| r.matched())
    }

    fn source_label(&self, s: Source) -> String {
        match s {
            Source::NativeClient => self.native_client.table.clone(),
            Source::WebClient => self.web_client.table.clone(),
            Source::Rule(i) => self
                .rules
                .get(i)
                .map_or_else(|| format!("rule[{i}]"), RuleTrace::label),
            Source::CappedAtAbsolute => "capped at session_absolute".to_owned(),
        }
    }
}

/// Explains what `policy` decides for `ctx`, and why. See [`Explanation`].
///
/// `explain(p, c).decision == p.decide_redemption(c)` always.
pub fn explain(policy: &Policy, ctx: &RedeemContext<'_>) -> Explanation {
    let decision = policy.decide_redemption(ctx);
    let prefix = policy.prefix;

    let native = resolve(&policy.natives, ctx.native_client, "native");
    let web_entry = resolve(&policy.webs, ctx.web_client, "web");
    let native_client = native.as_ref().map(|(_, n)| *n);
    let web = policy.web_client(ctx.web_client);
    let native_resolved = native.map_or_else(
        || ResolvedClient {
            id: ctx.native_client.to_owned(),
            entry: ClientEntry::NotListed,
            table: "(not listed)".to_owned(),
        },
        |(r, _)| r,
    );
    let web_resolved = web_entry.map_or_else(
        || ResolvedClient {
            id: ctx.web_client.to_owned(),
            entry: ClientEntry::Defaults,
            table: "[defaults.web]".to_owned(),
        },
        |(r, _)| r,
    );

    // The index agrees with the plain definition of matching.
    #[cfg(debug_assertions)]
    {
        let mut indexed = Vec::new();
        policy.for_each_matching_rule(ctx, |i, _| indexed.push(i));
        let plain: Vec<usize> = (0..policy.rules.len())
            .filter(|&i| policy.rules[i].matches(ctx, prefix))
            .collect();
        debug_assert_eq!(indexed, plain, "the rule index disagrees");
    }

    // ---- the rules, with the same semantics as `decide_redemption` ----------
    let mut rules = Vec::with_capacity(policy.rules.len());
    let mut absolute = Effective {
        value: web.session_absolute,
        source: Source::WebClient,
    };
    let mut idle = Effective {
        value: web.session_idle,
        source: Source::WebClient,
    };
    // The rule that decided each first-match key.
    let (mut deny_at, mut binding, mut refresh, mut online) = (None, None, None, None);
    let (mut first_match, mut first_decider) = (None, None);
    for (i, rule) in policy.rules.iter().enumerate() {
        let rejected_by = rejections(rule, ctx, prefix);
        debug_assert_eq!(rejected_by.is_empty(), rule.matches(ctx, prefix));
        let matched = rejected_by.is_empty();
        if matched {
            first_match.get_or_insert(i);
            if rule.decides_beyond_lifetimes() {
                first_decider.get_or_insert(i);
            }
            if let Some(a) = rule.session_absolute.filter(|&a| a < absolute.value) {
                absolute = Effective {
                    value: a,
                    source: Source::Rule(i),
                };
            }
            if let Some(a) = rule.session_idle.filter(|&a| a < idle.value) {
                idle = Effective {
                    value: a,
                    source: Source::Rule(i),
                };
            }
        }
        // The effect of a first-match key is known now; that of a lifetime
        // only once every rule has been seen (settled below).
        let mut decisions = Vec::new();
        let t = Tally { i, matched };
        t.first(&mut decisions, "deny", rule.deny, &mut deny_at);
        t.first(&mut decisions, "binding", rule.binding, &mut binding);
        for (key, value) in [
            ("session_absolute", rule.session_absolute),
            ("session_idle", rule.session_idle),
        ] {
            if let Some(v) = value {
                decisions.push(RuleDecision {
                    key,
                    value: Human(v).to_string(),
                    effect: if matched {
                        Effect::InForce // provisional
                    } else {
                        Effect::RuleDidNotMatch
                    },
                });
            }
        }
        t.first(
            &mut decisions,
            "allow_refresh_token",
            rule.allow_refresh_token,
            &mut refresh,
        );
        t.first(
            &mut decisions,
            "enforce_online_refresh_tokens",
            rule.enforce_online_refresh_tokens,
            &mut online,
        );
        rules.push(RuleTrace {
            index: i,
            name: rule.name.clone(),
            line: rule.line,
            matchers: matcher_names(rule),
            rejected_by,
            decisions,
        });
    }
    let deny = deny_at.and_then(|i| Some((policy.rules[i].deny?, i)));
    if idle.value > absolute.value {
        idle = Effective {
            value: absolute.value,
            source: Source::CappedAtAbsolute,
        };
    }
    for trace in &mut rules {
        let i = trace.index;
        for d in &mut trace.decisions {
            if d.effect != Effect::InForce {
                continue;
            }
            let in_force = match d.key {
                "session_absolute" => absolute,
                "session_idle" => idle,
                _ => continue,
            };
            if in_force.source != Source::Rule(i) {
                d.effect = Effect::NotEarliest(in_force.source);
            }
        }
    }

    // The walk attributes each first-match key to the rule whose value the
    // decision carries.
    let decided = |slot: Option<usize>, key: fn(&Rule) -> Option<bool>, web: bool| {
        slot.map_or(Some(web), |i| key(&policy.rules[i]))
    };
    debug_assert_eq!(
        binding.map_or(Some(web.enforce_device_binding), |i| policy.rules[i]
            .binding),
        Some(decision.binding)
    );
    debug_assert_eq!(
        decided(refresh, |r| r.allow_refresh_token, web.allow_refresh_token),
        Some(decision.allow_refresh_token)
    );
    debug_assert_eq!(
        decided(
            online,
            |r| r.enforce_online_refresh_tokens,
            web.enforce_online_refresh_tokens
        ),
        Some(decision.enforce_online_refresh_tokens)
    );
    let from_rule = |slot: Option<usize>| slot.map_or(Source::WebClient, Source::Rule);
    let binding = Effective {
        value: decision.binding,
        source: from_rule(binding),
    };
    let allow_refresh_token = Effective {
        value: decision.allow_refresh_token,
        source: from_rule(refresh),
    };
    let enforce_online_refresh_tokens = Effective {
        value: decision.enforce_online_refresh_tokens,
        source: from_rule(online),
    };
    debug_assert_eq!(absolute.value, decision.session_absolute);
    debug_assert_eq!(idle.value, decision.session_idle);
    // ---- the five checks ------------------------------------------------------
    let binding_holds = decision.binding.holds(ctx);
    let mut outcomes: Vec<(Step, Option<bool>, String)> = Vec::with_capacity(5);
    let native_ok = native_client.is_some_and(|n| n.can_create_session_transfer_token);
    outcomes.push((
        Step::NativeClientMayMint,
        Some(native_ok),
        match native_client {
            None => format!(
                "{:?} matches no [native] entry, and a native client that is not listed may not mint",
                ctx.native_client
            ),
            Some(_) => format!(
                "{} has can_create_session_transfer_token = {native_ok}",
                native_resolved.table
            ),
        },
    ));
    outcomes.push(match native_client {
        None => (
            Step::WebClientAllowed,
            None,
            "no native client entry, so no allowed_web_clients".to_owned(),
        ),
        Some(n) => {
            let hit = n
                .allowed_web_clients
                .iter()
                .find(|g| g.matches(ctx.web_client));
            (
                Step::WebClientAllowed,
                Some(hit.is_some()),
                match hit {
                    Some(g) if g.as_str() == ctx.web_client => format!(
                        "{:?} is in allowed_web_clients of {}",
                        ctx.web_client, native_resolved.table
                    ),
                    Some(g) => format!(
                        "{:?} matches {:?} in allowed_web_clients of {}",
                        ctx.web_client,
                        g.as_str(),
                        native_resolved.table
                    ),
                    None if n.allowed_web_clients.is_empty() => {
                        format!("allowed_web_clients of {} is empty", native_resolved.table)
                    }
                    None => format!(
                        "{:?} matches none of allowed_web_clients of {}: {}",
                        ctx.web_client,
                        native_resolved.table,
                        list(
                            n.allowed_web_clients
                                .iter()
                                .map(|g| format!("{:?}", g.as_str()))
                        )
                    ),
                },
            )
        }
    });
    let methods = web.allowed_authentication_methods;
    let method_ok = methods.contains(ctx.method);
    outcomes.push((
        Step::MethodAllowed,
        Some(method_ok),
        format!(
            "{} is {}in allowed_authentication_methods {} of {}",
            ctx.method,
            if method_ok { "" } else { "not " },
            method_list(methods),
            web_resolved.table
        ),
    ));
    outcomes.push(networks_and_deny(
        web,
        &web_resolved,
        native_client,
        &native_resolved,
        ctx,
        deny,
        &rules,
    ));
    outcomes.push((
        Step::Binding,
        Some(binding_holds),
        binding_detail(decision.binding, ctx),
    ));

    let failed_at = outcomes.iter().position(|(_, ok, _)| *ok != Some(true));
    let checks: Vec<Check> = outcomes
        .into_iter()
        .enumerate()
        .map(|(k, (step, ok, detail))| Check {
            step,
            status: match failed_at {
                Some(f) if k == f => CheckStatus::Failed,
                Some(f) if k > f => CheckStatus::NotReached { would_pass: ok },
                _ => CheckStatus::Passed,
            },
            detail,
        })
        .collect();
    debug_assert_eq!(
        checks
            .iter()
            .find(|c| c.status == CheckStatus::Failed)
            .map(|c| c.step.deny_reason()),
        decision.verdict.err()
    );
    debug_assert_eq!(
        decision.matched_rule,
        match (decision.verdict, deny) {
            (Err(DenyReason::DeniedByRule), Some((true, i)))
                if web.allows_redeem_from(ctx.redeem_ip)
                    && native_client.is_some_and(|n| n.allows_mint_from(ctx.mint_ip)) =>
                Some(i),
            _ => first_decider.or(first_match),
        }
    );

    Explanation {
        decision,
        native_client: native_resolved,
        web_client: web_resolved,
        method: ctx.method,
        mint_ip: ctx.mint_ip,
        redeem_ip: ctx.redeem_ip,
        mint_asn: ctx.mint_asn,
        redeem_asn: ctx.redeem_asn,
        mint_fingerprint: ctx.mint_fingerprint.is_some(),
        redeem_fingerprint: ctx.redeem_fingerprint.is_some(),
        minute_of_day_utc: ctx.minute_of_day_utc % 1440,
        checks,
        rules,
        binding,
        binding_holds,
        binding_prefixes: prefix,
        session_absolute: absolute,
        session_idle: idle,
        allow_refresh_token,
        enforce_online_refresh_tokens,
        revoke_lineage_on_replay: web.revoke_lineage_on_replay,
        transfer_token_ttl: native_client.map(|n| n.transfer_token_ttl),
        enforce_cascade_revocation: native_client.map(|n| n.enforce_cascade_revocation),
    }
}

/// Records a rule's first-match decisions (`deny`, `binding`, refresh keys).
struct Tally {
    i: usize,
    matched: bool,
}

impl Tally {
    /// Records `key = value` if the rule sets it; `slot` holds the index of the
    /// rule that decided the key so far, and is taken by this rule if it is the
    /// first matching one to set it.
    fn first<T: fmt::Display>(
        &self,
        out: &mut Vec<RuleDecision>,
        key: &'static str,
        value: Option<T>,
        slot: &mut Option<usize>,
    ) {
        let Some(value) = value else { return };
        let effect = match (self.matched, *slot) {
            (false, _) => Effect::RuleDidNotMatch,
            (true, Some(j)) => Effect::DecidedEarlierBy(j),
            (true, None) => {
                *slot = Some(self.i);
                Effect::InForce
            }
        };
        out.push(RuleDecision {
            key,
            value: value.to_string(),
            effect,
        });
    }
}

/// The entry `id` resolves to, the same way [`ClientTable::get`] looks it up.
fn resolve<'p, T>(
    table: &'p ClientTable<T>,
    id: &str,
    kind: &str,
) -> Option<(ResolvedClient, &'p T)> {
    if let Some(t) = table.exact.get(id) {
        return Some((
            ResolvedClient {
                id: id.to_owned(),
                entry: ClientEntry::Exact,
                table: crate::validate::client_table_name(kind, id),
            },
            t,
        ));
    }
    let (g, t) = table.globs.iter().find(|(g, _)| g.matches(id))?;
    Some((
        ResolvedClient {
            id: id.to_owned(),
            entry: ClientEntry::Glob(g.as_str().to_owned()),
            table: crate::validate::client_table_name(kind, g.as_str()),
        },
        t,
    ))
}

fn networks_and_deny(
    web: &WebClient,
    web_resolved: &ResolvedClient,
    native: Option<&NativeClient>,
    native_resolved: &ResolvedClient,
    ctx: &RedeemContext<'_>,
    deny: Option<(bool, usize)>,
    rules: &[RuleTrace],
) -> (Step, Option<bool>, String) {
    let step = Step::NetworksAndDenyRules;
    let redeem = net_list_refusal(&web.networks, ctx.redeem_ip).map(|why| {
        format!(
            "redeem IP {} {why} of {}",
            normalize_ip(ctx.redeem_ip),
            web_resolved.table
        )
    });
    let mint = match native {
        None => Err("no native client entry to check the mint IP against".to_owned()),
        Some(n) => Ok(net_list_refusal(&n.networks, ctx.mint_ip).map(|why| {
            format!(
                "mint IP {} {why} of {}",
                normalize_ip(ctx.mint_ip),
                native_resolved.table
            )
        })),
    };
    let rule = match deny {
        Some((true, i)) => Some(format!("{} decides deny = true", rules[i].label())),
        Some((false, i)) => Some(format!(
            "{} decides deny = false, so no later rule can deny",
            rules[i].label()
        )),
        None => None,
    };
    let denied_by_rule = matches!(deny, Some((true, _)));
    // The first failure is the reason; otherwise say what passed.
    if let Some(r) = redeem {
        return (step, Some(false), r);
    }
    match mint {
        Ok(Some(m)) => (step, Some(false), m),
        _ if denied_by_rule => (step, Some(false), rule.expect("deny rule")),
        Err(no_native) => (
            step,
            None,
            format!(
                "redeem IP passes the network lists of {}; {no_native}; {}",
                web_resolved.table,
                rule.unwrap_or_else(|| "no matching rule denies".to_owned())
            ),
        ),
        Ok(None) => (
            step,
            Some(true),
            format!(
                "redeem IP passes the network lists of {}, mint IP those of {}; {}",
                web_resolved.table,
                native_resolved.table,
                rule.unwrap_or_else(|| "no matching rule denies".to_owned())
            ),
        ),
    }
}

/// Why `list` refuses `ip`, or `None` if it permits it (same logic as
/// `NetList::permits`).
fn net_list_refusal(list: &NetList, ip: IpAddr) -> Option<String> {
    let ip = normalize_ip(ip);
    if let Some(n) = list.denied.iter().find(|n| n.contains(&ip)) {
        return Some(format!("is in denied_networks ({n})"));
    }
    if !list.allowed.is_empty() && !list.allowed.iter().any(|n| n.contains(&ip)) {
        return Some(format!(
            "is not in allowed_networks ({})",
            list_nets(&list.allowed)
        ));
    }
    debug_assert!(list.permits(ip));
    None
}

fn binding_detail(b: Binding, ctx: &RedeemContext<'_>) -> String {
    let (mint, redeem) = (normalize_ip(ctx.mint_ip), normalize_ip(ctx.redeem_ip));
    let net = match b.network {
        NetworkBinding::None => None,
        NetworkBinding::Ip if mint == redeem => Some(format!("same IP {mint}: holds")),
        NetworkBinding::Ip => Some(format!(
            "mint IP {mint} differs from redeem IP {redeem}: fails"
        )),
        NetworkBinding::IpPrefix { v4, v6 } => {
            let n = if mint.is_ipv4() { v4 } else { v6 };
            Some(if mint.is_ipv4() != redeem.is_ipv4() {
                format!("mint IP {mint} and redeem IP {redeem} are of different families: fails")
            } else if same_prefix(mint, redeem, v4, v6) {
                format!("mint IP {mint} and redeem IP {redeem} share the first {n} bits: holds")
            } else {
                format!(
                    "mint IP {mint} and redeem IP {redeem} differ within the first {n} bits: fails"
                )
            })
        }
        NetworkBinding::Asn => Some(match (known_asn(ctx.mint_asn), known_asn(ctx.redeem_asn)) {
            (Some(a), Some(r)) if a == r => format!("both IPs in AS{a}: holds"),
            (Some(a), Some(r)) => format!("mint IP in AS{a}, redeem IP in AS{r}: fails"),
            (None, _) => "the mint IP's ASN is unknown: fails".to_owned(),
            (_, None) => "the redeem IP's ASN is unknown: fails".to_owned(),
        }),
    };
    let fp = b.fingerprint.then(|| {
        match (ctx.mint_fingerprint, ctx.redeem_fingerprint) {
            (Some(a), Some(r)) if a == r => "fingerprints equal: holds",
            (Some(_), Some(_)) => "fingerprints differ: fails",
            (None, _) => "no fingerprint at mint: fails",
            (_, None) => "no fingerprint at redemption: fails",
        }
        .to_owned()
    });
    let head = format!("{}", BindingWithPrefix(b));
    match (net, fp) {
        (None, None) => format!("{head}: binds nothing, always holds"),
        (Some(x), None) | (None, Some(x)) => format!("{head}: {x}"),
        (Some(x), Some(y)) => format!("{head}: {x}; {y}"),
    }
}

fn known_asn(a: Option<u32>) -> Option<u32> {
    a.filter(|&a| a != 0)
}

/// A binding with its prefix lengths: `ip_prefix (/24, /64)+fingerprint`.
struct BindingWithPrefix(Binding);

impl fmt::Display for BindingWithPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.network {
            NetworkBinding::IpPrefix { v4, v6 } => {
                write!(f, "{} (IPv4 /{v4}, IPv6 /{v6})", self.0)
            }
            _ => write!(f, "{}", self.0),
        }
    }
}

/// The names of the matchers a rule has, in the order `Rule::matches` tests them.
fn matcher_names(r: &Rule) -> Vec<&'static str> {
    [
        ("web_client", r.web_client.is_some()),
        ("native_client", r.native_client.is_some()),
        ("method", r.method.is_some()),
        ("redeem_network", r.redeem_network.is_some()),
        ("mint_network", r.mint_network.is_some()),
        ("redeem_asn", r.redeem_asn.is_some()),
        ("mint_asn", r.mint_asn.is_some()),
        ("networks_differ", r.networks_differ.is_some()),
        ("time_of_day", r.time_of_day.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, has)| has.then_some(n))
    .collect()
}

/// Every matcher of `r` that rejects `ctx`, with why. Empty if and only if
/// `r.matches(ctx, prefix)`.
fn rejections(r: &Rule, ctx: &RedeemContext<'_>, prefix: (u8, u8)) -> Vec<String> {
    let mut out = Vec::new();
    let globs = |key: &str, gs: &[Glob], id: &str| -> Option<String> {
        (!gs.iter().any(|g| g.matches(id))).then(|| {
            format!(
                "{key} ({id:?} matches none of {})",
                list(gs.iter().map(|g| format!("{:?}", g.as_str())))
            )
        })
    };
    let nets = |key: &str, ns: &[IpNet], ip: IpAddr| -> Option<String> {
        let ip = normalize_ip(ip);
        (!ns.iter().any(|n| n.contains(&ip)))
            .then(|| format!("{key} ({ip} is in none of {})", list_nets(ns)))
    };
    let asns = |key: &str, l: &[u32], asn: Option<u32>, which: &str| -> Option<String> {
        match known_asn(asn) {
            Some(a) if l.contains(&a) => None,
            Some(a) => Some(format!(
                "{key} (AS{a} is none of {})",
                list(l.iter().map(|a| format!("AS{a}")))
            )),
            None => Some(format!("{key} (the {which} IP's ASN is unknown)")),
        }
    };
    if let Some(g) = &r.web_client {
        out.extend(globs("web_client", g, ctx.web_client));
    }
    if let Some(g) = &r.native_client {
        out.extend(globs("native_client", g, ctx.native_client));
    }
    if let Some(m) = r.method {
        if !m.contains(ctx.method) {
            out.push(format!(
                "method ({} is not in {})",
                ctx.method,
                method_list(m)
            ));
        }
    }
    if let Some(n) = &r.redeem_network {
        out.extend(nets("redeem_network", n, ctx.redeem_ip));
    }
    if let Some(n) = &r.mint_network {
        out.extend(nets("mint_network", n, ctx.mint_ip));
    }
    if let Some(l) = &r.redeem_asn {
        out.extend(asns("redeem_asn", l, ctx.redeem_asn, "redeem"));
    }
    if let Some(l) = &r.mint_asn {
        out.extend(asns("mint_asn", l, ctx.mint_asn, "mint"));
    }
    if let Some(want) = r.networks_differ {
        let same = same_prefix(ctx.mint_ip, ctx.redeem_ip, prefix.0, prefix.1);
        if want == same {
            out.push(format!(
                "networks_differ (wants {want}, but mint and redeem IP are {} the same IPv4 /{} or IPv6 /{})",
                if same { "in" } else { "not in" },
                prefix.0,
                prefix.1
            ));
        }
    }
    if let Some(t) = r.time_of_day {
        if !t.contains(ctx.minute_of_day_utc) {
            out.push(format!(
                "time_of_day ({} UTC is outside {}-{})",
                hhmm(ctx.minute_of_day_utc),
                hhmm(t.start),
                hhmm(t.end)
            ));
        }
    }
    out
}

fn hhmm(minute: u16) -> String {
    // `24:00` is a valid range end; any other minute is taken modulo a day.
    let m = if minute == 1440 { 1440 } else { minute % 1440 };
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn method_list(m: AuthMethods) -> String {
    format!(
        "[{}]",
        m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    )
}

fn list_nets(ns: &[IpNet]) -> String {
    list(ns.iter().map(|n| n.to_string()))
}

/// `a, b, c, d and 3 more`.
fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let n = items.len();
    let shown: Vec<String> = items.take(LIST_LIMIT).collect();
    let mut s = shown.join(", ");
    if n > LIST_LIMIT {
        let _ = write!(s, " and {} more", n - LIST_LIMIT);
    }
    s
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for Explanation {
    /// Human text for `handoff rules explain`: the verdict and the reason,
    /// the request as the policy saw it, the five checks, every rule, and the
    /// effective session settings with where each came from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.decision.verdict, self.failed_check()) {
            (Ok(()), _) => writeln!(f, "verdict: ALLOWED")?,
            (Err(reason), Some(c)) => {
                writeln!(f, "verdict: DENIED ({reason})")?;
                writeln!(f, "  because: {}: {}", c.step.title(), c.detail)?;
            }
            (Err(reason), None) => writeln!(f, "verdict: DENIED ({reason})")?,
        }

        writeln!(f, "\nrequest")?;
        let entry = |c: &ResolvedClient| match &c.entry {
            ClientEntry::Exact => format!("{} (exact id)", c.table),
            ClientEntry::Glob(_) => format!("{} (glob)", c.table),
            ClientEntry::Defaults => "[defaults.web] (not listed)".to_owned(),
            ClientEntry::NotListed => "not listed".to_owned(),
        };
        writeln!(
            f,
            "  native client  {:?} -> {}",
            self.native_client.id,
            entry(&self.native_client)
        )?;
        writeln!(
            f,
            "  web client     {:?} -> {}",
            self.web_client.id,
            entry(&self.web_client)
        )?;
        writeln!(f, "  method         {}", self.method)?;
        let ip = |ip: IpAddr, asn: Option<u32>| {
            let norm = normalize_ip(ip);
            let shown = if norm == ip {
                ip.to_string()
            } else {
                format!("{ip} (IPv4-mapped: {norm})")
            };
            match known_asn(asn) {
                Some(a) => format!("{shown}, AS{a}"),
                None => format!("{shown}, ASN unknown"),
            }
        };
        writeln!(f, "  mint IP        {}", ip(self.mint_ip, self.mint_asn))?;
        writeln!(
            f,
            "  redeem IP      {}",
            ip(self.redeem_ip, self.redeem_asn)
        )?;
        writeln!(
            f,
            "  fingerprint    at mint: {}, at redemption: {}",
            if self.mint_fingerprint {
                "present"
            } else {
                "absent"
            },
            if self.redeem_fingerprint {
                "present"
            } else {
                "absent"
            }
        )?;
        writeln!(f, "  time           {} UTC", hhmm(self.minute_of_day_utc))?;

        writeln!(f, "\nchecks (in order; the first failure is the verdict)")?;
        for (k, c) in self.checks.iter().enumerate() {
            let status = match c.status {
                CheckStatus::Passed => "pass",
                CheckStatus::Failed => "FAIL",
                CheckStatus::NotReached { would_pass: None } => "skip",
                CheckStatus::NotReached {
                    would_pass: Some(true),
                } => "skip (would pass)",
                CheckStatus::NotReached {
                    would_pass: Some(false),
                } => "skip (would fail)",
            };
            writeln!(
                f,
                "  {}. {:<17} {}: {}",
                k + 1,
                status,
                c.step.title(),
                c.detail
            )?;
        }

        let matched = self.matched_rules().count();
        writeln!(
            f,
            "\nrules ({} in the file, {matched} matched; the first matching rule that sets deny, binding or a refresh-token key decides it; lifetimes take the earliest expiry)",
            self.rules.len()
        )?;
        if self.rules.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for r in &self.rules {
            if !r.matched() {
                writeln!(f, "  {}: no match: {}", r.label(), r.rejected_by.join("; "))?;
                continue;
            }
            let on = if r.matchers.is_empty() {
                "no matchers, matches every redemption".to_owned()
            } else {
                format!("on {}", r.matchers.join(", "))
            };
            writeln!(f, "  {}: MATCHED ({on})", r.label())?;
            if r.decisions.is_empty() {
                writeln!(f, "      decides nothing")?;
            }
            for d in &r.decisions {
                let effect = match d.effect {
                    Effect::InForce => "in force".to_owned(),
                    Effect::DecidedEarlierBy(j) => {
                        format!(
                            "no effect: already decided by {}",
                            self.source_label(Source::Rule(j))
                        )
                    }
                    Effect::NotEarliest(s) => {
                        let in_force = match d.key {
                            "session_idle" => self.session_idle.value,
                            _ => self.session_absolute.value,
                        };
                        match s {
                            Source::CappedAtAbsolute => format!(
                                "no effect: idle is capped at session_absolute ({})",
                                Human(in_force)
                            ),
                            s => format!(
                                "no effect: the earliest expiry, {}, is from {}",
                                Human(in_force),
                                self.source_label(s)
                            ),
                        }
                    }
                    Effect::RuleDidNotMatch => "rule did not match".to_owned(),
                };
                writeln!(f, "      {} = {}: {effect}", d.key, d.value)?;
            }
        }
        match self.decision.matched_rule {
            Some(i) => writeln!(f, "  deciding rule: {}", self.source_label(Source::Rule(i)))?,
            None => writeln!(f, "  deciding rule: none")?,
        }

        writeln!(
            f,
            "\nsession settings ({})",
            if self.is_allowed() {
                "in force"
            } else {
                "what an allowed redemption would get"
            }
        )?;
        let from = |s: Source| format!("from {}", self.source_label(s));
        writeln!(
            f,
            "  binding                        {}  {}; {}",
            BindingWithPrefix(self.binding.value),
            from(self.binding.source),
            if self.binding_holds {
                "holds"
            } else {
                "does not hold"
            }
        )?;
        writeln!(
            f,
            "  session_absolute               {}  {}",
            Human(self.session_absolute.value),
            from(self.session_absolute.source)
        )?;
        writeln!(
            f,
            "  session_idle                   {}  {}",
            Human(self.session_idle.value),
            match self.session_idle.source {
                Source::CappedAtAbsolute => "capped at session_absolute".to_owned(),
                s => from(s),
            }
        )?;
        writeln!(
            f,
            "  allow_refresh_token            {}  {}",
            yes_no(self.allow_refresh_token.value),
            from(self.allow_refresh_token.source)
        )?;
        writeln!(
            f,
            "  enforce_online_refresh_tokens  {}  {}",
            yes_no(self.enforce_online_refresh_tokens.value),
            from(self.enforce_online_refresh_tokens.source)
        )?;
        writeln!(
            f,
            "  revoke_lineage_on_replay       {}  {}",
            yes_no(self.revoke_lineage_on_replay),
            from(Source::WebClient)
        )?;
        match (self.transfer_token_ttl, self.enforce_cascade_revocation) {
            (Some(ttl), Some(cascade)) => {
                writeln!(
                    f,
                    "  transfer_token_ttl             {}  {}",
                    Human(ttl),
                    from(Source::NativeClient)
                )?;
                writeln!(
                    f,
                    "  enforce_cascade_revocation     {}  {}",
                    yes_no(cascade),
                    from(Source::NativeClient)
                )?;
            }
            _ => writeln!(
                f,
                "  transfer_token_ttl             -  native client not listed"
            )?,
        }
        Ok(())
    }
}
