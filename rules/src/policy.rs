//! Step 3 of 3: the validated policy and its pure evaluation.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::diag::{Diagnostic, Diagnostics};
use crate::glob::Glob;
use crate::index::RuleIndex;
use crate::model::{Decision, DenyReason, NativeClient, RedeemContext, WebClient};
use crate::rule::Rule;

/// Client entries by exact id, then by glob.
///
/// Exact ids win; among globs, the one with the most non-`*` characters wins,
/// ties going to the one written first in the file.
#[derive(Debug, Clone)]
pub(crate) struct ClientTable<T> {
    pub exact: HashMap<String, T>,
    /// Sorted: most specific first, then file order.
    pub globs: Vec<(Glob, T)>,
}

impl<T> Default for ClientTable<T> {
    fn default() -> Self {
        ClientTable {
            exact: HashMap::new(),
            globs: Vec::new(),
        }
    }
}

impl<T> ClientTable<T> {
    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        self.exact.get(id).or_else(|| {
            self.globs
                .iter()
                .find(|(g, _)| g.matches(id))
                .map(|(_, t)| t)
        })
    }
}

/// A validated rules file: immutable, `Send + Sync`, cheap to share in an `Arc`.
///
/// Only [`Policy::from_toml`] makes one, so holding a `Policy` means holding a
/// policy that parsed and validated.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) natives: ClientTable<NativeClient>,
    pub(crate) webs: ClientTable<WebClient>,
    pub(crate) default_web: WebClient,
    pub(crate) fingerprint_headers: Vec<String>,
    /// `[binding]` (ipv4_prefix, ipv6_prefix).
    pub(crate) prefix: (u8, u8),
    pub(crate) rules: Vec<Rule>,
    /// Narrows `rules` down by method and networks; built from `rules`.
    pub(crate) index: RuleIndex,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Default for Policy {
    /// The built-in defaults (what an empty rules file gives): no native client
    /// may mint.
    fn default() -> Self {
        Policy::from_toml("", "<defaults>").expect("the empty rules file is valid")
    }
}

impl Policy {
    /// Parses and validates a rules file. `file_name` is used in diagnostics.
    ///
    /// On error, every problem found is returned (errors and warnings, in source
    /// order), not only the first.
    pub fn from_toml(source: &str, file_name: &str) -> Result<Policy, Diagnostics> {
        crate::validate::validate(source, file_name)
    }

    /// Warnings produced while validating an accepted file (e.g. a shadowed rule).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The native client's resolved settings (defaults applied); `None` if the
    /// file does not list it (by exact id or glob).
    pub fn native_client(&self, client_id: &str) -> Option<&NativeClient> {
        self.natives.get(client_id)
    }

    /// The web client's resolved settings; unknown web clients get the
    /// `[defaults.web]` settings.
    pub fn web_client(&self, client_id: &str) -> &WebClient {
        self.webs.get(client_id).unwrap_or(&self.default_web)
    }

    /// Whether a session transfer may log in to `client_id`: the file lists it
    /// as a web client, or some native client's `allowed_web_clients` admits it.
    /// The token endpoint uses this to decide which code exchanges it mediates
    /// even when it could not match the code to a transfer session.
    pub fn is_transfer_web_client(&self, client_id: &str) -> bool {
        self.webs.get(client_id).is_some()
            || self
                .natives
                .exact
                .values()
                .any(|n| n.allows_web_client(client_id))
            || self
                .natives
                .globs
                .iter()
                .any(|(_, n)| n.allows_web_client(client_id))
    }

    /// Request headers (lower-case names) whose values feed the device
    /// fingerprint, in order.
    pub fn fingerprint_headers(&self) -> &[String] {
        &self.fingerprint_headers
    }

    /// The `[binding]` prefix lengths (IPv4, IPv6) used by `ip_prefix` and
    /// `networks_differ`.
    pub fn binding_prefixes(&self) -> (u8, u8) {
        self.prefix
    }

    /// Whether any binding in the file (client or rule) uses the ASN, i.e. the
    /// proxy needs an ASN table.
    pub fn uses_asn(&self) -> bool {
        let web = |w: &WebClient| w.enforce_device_binding.needs_asn();
        web(&self.default_web)
            || self.webs.exact.values().any(web)
            || self.webs.globs.iter().any(|(_, w)| web(w))
            || self.rules.iter().any(|r| {
                r.binding.is_some_and(|b| b.needs_asn())
                    || r.redeem_asn.is_some()
                    || r.mint_asn.is_some()
            })
    }

    /// Whether a mint by `native_client` from `ip` is allowed: the client is
    /// listed, may mint, and `ip` passes its network lists.
    pub fn may_mint(&self, native_client: &str, ip: IpAddr) -> bool {
        self.native_client(native_client)
            .is_some_and(|n| n.can_create_session_transfer_token && n.allows_mint_from(ip))
    }

    /// Number of `[[rule]]`s.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The `name` of rule `index`, if it has one.
    pub fn rule_name(&self, index: usize) -> Option<&str> {
        self.rules.get(index).and_then(|r| r.name.as_deref())
    }

    /// The 1-based line of rule `index`'s `[[rule]]` header.
    pub fn rule_line(&self, index: usize) -> Option<usize> {
        self.rules.get(index).map(|r| r.line)
    }

    /// Calls `f` with every rule that matches `ctx`, in file order: the
    /// candidates of the index, checked against their remaining matchers.
    #[inline]
    pub(crate) fn for_each_matching_rule(
        &self,
        ctx: &RedeemContext<'_>,
        mut f: impl FnMut(usize, &Rule),
    ) {
        self.index
            .for_each_candidate(ctx.method, ctx.redeem_ip, ctx.mint_ip, |i| {
                let rule = &self.rules[i];
                if rule.matches_rest(ctx, self.prefix) {
                    f(i, rule);
                }
            });
    }

    /// The whole redemption decision: pure, no I/O, no heap allocation.
    ///
    /// Checks, in order, the first failure deciding the verdict:
    /// 1. the native client is listed and may mint — else `UnknownNativeClient`;
    /// 2. the web client is in its `allowed_web_clients` — else `ClientNotAllowed`;
    /// 3. the method is in the web client's `allowed_authentication_methods` —
    ///    else `MethodNotAllowed`;
    /// 4. the redeem IP passes the web client's network lists, the mint IP the
    ///    native client's, and no rule decides `deny = true` — else `DeniedByRule`;
    /// 5. the binding (the web client's, unless a rule decided one) holds — else
    ///    `BindingMismatch`.
    ///
    /// Rules: for `deny`, `binding`, `allow_refresh_token` and
    /// `enforce_online_refresh_tokens` separately, the first matching rule that
    /// sets it decides; lifetimes take the minimum over the web client and every
    /// matching rule, and idle is capped by absolute.
    pub fn decide_redemption(&self, ctx: &RedeemContext<'_>) -> Decision {
        let web = self.web_client(ctx.web_client);
        let mut d = Decision {
            verdict: Ok(()),
            session_absolute: web.session_absolute,
            session_idle: web.session_idle,
            allow_refresh_token: web.allow_refresh_token,
            enforce_online_refresh_tokens: web.enforce_online_refresh_tokens,
            revoke_lineage_on_replay: web.revoke_lineage_on_replay,
            binding: web.enforce_device_binding,
            matched_rule: None,
        };

        let (mut deny, mut binding, mut refresh, mut online) = (None, None, None, None);
        let (mut first_match, mut first_decider) = (None, None);
        self.for_each_matching_rule(ctx, |i, rule| {
            first_match.get_or_insert(i);
            if rule.decides_beyond_lifetimes() {
                first_decider.get_or_insert(i);
            }
            if let Some(a) = rule.session_absolute {
                d.session_absolute = d.session_absolute.min(a);
            }
            if let Some(a) = rule.session_idle {
                d.session_idle = d.session_idle.min(a);
            }
            if deny.is_none() {
                deny = rule.deny.map(|v| (v, i));
            }
            if binding.is_none() {
                binding = rule.binding;
            }
            if refresh.is_none() {
                refresh = rule.allow_refresh_token;
            }
            if online.is_none() {
                online = rule.enforce_online_refresh_tokens;
            }
        });
        d.session_idle = d.session_idle.min(d.session_absolute);
        d.binding = binding.unwrap_or(d.binding);
        d.allow_refresh_token = refresh.unwrap_or(d.allow_refresh_token);
        d.enforce_online_refresh_tokens = online.unwrap_or(d.enforce_online_refresh_tokens);
        d.matched_rule = first_decider.or(first_match);
        let denied_by = match deny {
            Some((true, i)) => Some(i),
            _ => None,
        };

        d.verdict = match self.native_client(ctx.native_client) {
            Some(n) if n.can_create_session_transfer_token => {
                if !n.allows_web_client(ctx.web_client) {
                    Err(DenyReason::ClientNotAllowed)
                } else if !web.allowed_authentication_methods.contains(ctx.method) {
                    Err(DenyReason::MethodNotAllowed)
                } else if !web.allows_redeem_from(ctx.redeem_ip) || !n.allows_mint_from(ctx.mint_ip)
                {
                    Err(DenyReason::DeniedByRule)
                } else if let Some(i) = denied_by {
                    d.matched_rule = Some(i);
                    Err(DenyReason::DeniedByRule)
                } else if !d.binding.holds(ctx) {
                    Err(DenyReason::BindingMismatch)
                } else {
                    Ok(())
                }
            }
            _ => Err(DenyReason::UnknownNativeClient),
        };
        d
    }
}
