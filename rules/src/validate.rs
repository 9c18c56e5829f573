//! Step 2 of 3: the spanned tree → a [`Policy`], or every problem found.
//!
//! Validation resolves everything evaluation will need (defaults applied to each
//! client, globs compiled, CIDRs parsed, bindings with their prefix lengths), so
//! that `decide_redemption` only walks precomputed slices.
//!
//! It keeps going after an error, so one run reports all problems of a file.

use std::time::Duration;

use ipnet::IpNet;

use crate::diag::{did_you_mean, Diagnostics, Reporter, Span};
use crate::duration::{parse_duration, Human};
use crate::glob::Glob;
use crate::model::{
    AuthMethod, AuthMethods, Binding, NativeClient, NetworkBinding, WebClient,
    MAX_TRANSFER_TOKEN_TTL,
};
use crate::net::{parse_net, NetList, Nets};
use crate::policy::{ClientTable, Policy};
use crate::rule::{Rule, TimeRange};
use crate::source::{parse, Entry, Kind, Node};

const TOP_KEYS: &[&str] = &[
    "defaults",
    "native",
    "web",
    "fingerprint",
    "binding",
    "rule",
];
const DEFAULTS_KEYS: &[&str] = &["native", "web"];
const NATIVE_KEYS: &[&str] = &[
    "can_create_session_transfer_token",
    "transfer_token_ttl",
    "enforce_cascade_revocation",
    "allowed_web_clients",
    "allowed_networks",
    "denied_networks",
];
const WEB_KEYS: &[&str] = &[
    "allowed_authentication_methods",
    "enforce_device_binding",
    "allow_unbound",
    "allow_refresh_token",
    "enforce_online_refresh_tokens",
    "session_absolute",
    "session_idle",
    "revoke_lineage_on_replay",
    "allowed_networks",
    "denied_networks",
];
const FINGERPRINT_KEYS: &[&str] = &["headers"];
const BINDING_KEYS: &[&str] = &["ipv4_prefix", "ipv6_prefix"];
const RULE_KEYS: &[&str] = &[
    "name",
    "web_client",
    "native_client",
    "redeem_network",
    "mint_network",
    "redeem_asn",
    "mint_asn",
    "networks_differ",
    "method",
    "time_of_day",
    "deny",
    "binding",
    "allow_unbound",
    "session_absolute",
    "session_idle",
    "allow_refresh_token",
    "enforce_online_refresh_tokens",
];
const BINDING_MODES: &[&str] = &["none", "ip", "ip_prefix", "asn", "fingerprint"];
const METHODS: &[&str] = &["cookie", "query"];

pub(crate) fn validate(src: &str, file: &str) -> Result<Policy, Diagnostics> {
    let mut r = Reporter::new(src, file);
    let root = match parse(src) {
        Ok(root) => root,
        Err(e) => {
            r.error(&e.span, format!("invalid TOML: {}", e.message));
            return Err(Diagnostics::new(r.finish()));
        }
    };
    let mut v = Validator { r };
    let policy = v.policy(&root);
    let errors = v.r.error_count();
    let diags = v.r.finish();
    match policy {
        Some(mut p) if errors == 0 => {
            p.warnings = diags;
            Ok(p)
        }
        _ => Err(Diagnostics::new(diags)),
    }
}

fn get<'n>(table: &'n [Entry], key: &str) -> Option<&'n Entry> {
    table.iter().find(|e| e.key == key)
}

/// `[web."spa"]`-style name of a client table, for messages.
pub(crate) fn client_table_name(kind: &str, id: &str) -> String {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        format!("[{kind}.{id}]")
    } else {
        format!(
            "[{kind}.\"{}\"]",
            id.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }
}

struct Validator<'s> {
    r: Reporter<'s>,
}

/// A value read from a table, with where it was written.
struct At<T> {
    value: T,
    span: Span,
}

impl<'s> Validator<'s> {
    // ---- generic readers ------------------------------------------------------

    /// The entries of a table node, or an error naming what it should be.
    fn table<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Entry]> {
        match &node.kind {
            Kind::Table(t) => Some(t),
            other => {
                self.r.error(
                    &node.span,
                    format!("{what} must be a table, found {}", other.describe()),
                );
                None
            }
        }
    }

    /// Reports every key of `table` not in `allowed`, with a suggestion.
    fn check_keys(&mut self, table: &[Entry], allowed: &[&str], where_: &str) {
        for e in table {
            if allowed.contains(&e.key.as_str()) {
                continue;
            }
            let msg = match did_you_mean(&e.key, allowed) {
                Some(s) => format!("unknown key `{}` in {where_}; did you mean `{s}`?", e.key),
                None => format!(
                    "unknown key `{}` in {where_}; expected one of: {}",
                    e.key,
                    allowed.join(", ")
                ),
            };
            self.r.error(&e.key_span, msg);
        }
    }

    fn type_error(&mut self, e: &Entry, expected: &str) {
        self.r.error(
            &e.value.span,
            format!(
                "`{}` must be {expected}, found {}",
                e.key,
                e.value.kind.describe()
            ),
        );
    }

    fn bool_(&mut self, table: &[Entry], key: &str) -> Option<At<bool>> {
        let e = get(table, key)?;
        match e.value.kind {
            Kind::Bool(b) => Some(At {
                value: b,
                span: e.value.span.clone(),
            }),
            _ => {
                self.type_error(e, "a boolean (true or false)");
                None
            }
        }
    }

    fn str_<'n>(&mut self, table: &'n [Entry], key: &str, expected: &str) -> Option<At<&'n str>> {
        let e = get(table, key)?;
        match &e.value.kind {
            Kind::Str(s) => Some(At {
                value: s.as_str(),
                span: e.value.span.clone(),
            }),
            _ => {
                self.type_error(e, expected);
                None
            }
        }
    }

    fn duration(&mut self, table: &[Entry], key: &str) -> Option<At<Duration>> {
        let s = self.str_(table, key, "a duration string like \"30m\" or \"1h30m\"")?;
        match parse_duration(s.value) {
            Ok(d) => Some(At {
                value: d,
                span: s.span,
            }),
            Err(m) => {
                self.r.error(&s.span, format!("`{key}`: {m}"));
                None
            }
        }
    }

    /// A positive duration (lifetimes and TTLs).
    fn positive_duration(&mut self, table: &[Entry], key: &str) -> Option<At<Duration>> {
        let d = self.duration(table, key)?;
        if d.value.is_zero() {
            self.r
                .error(&d.span, format!("`{key}` must be longer than 0s"));
            return None;
        }
        Some(d)
    }

    /// A string or an array of strings; `single` says whether a lone string is
    /// accepted. Empty arrays are allowed here; callers decide.
    fn strings<'n>(
        &mut self,
        table: &'n [Entry],
        key: &str,
        single: bool,
    ) -> Option<(Vec<At<&'n str>>, Span)> {
        let e = get(table, key)?;
        let expected = if single {
            "a string or an array of strings"
        } else {
            "an array of strings"
        };
        match &e.value.kind {
            Kind::Str(s) if single => Some((
                vec![At {
                    value: s.as_str(),
                    span: e.value.span.clone(),
                }],
                e.value.span.clone(),
            )),
            Kind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match &item.kind {
                        Kind::Str(s) => out.push(At {
                            value: s.as_str(),
                            span: item.span.clone(),
                        }),
                        other => {
                            self.r.error(
                                &item.span,
                                format!(
                                    "`{key}` must be {expected}, found {} in the array",
                                    other.describe()
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some((out, e.value.span.clone()))
            }
            _ => {
                self.type_error(e, expected);
                None
            }
        }
    }

    fn networks(&mut self, table: &[Entry], key: &str, single: bool) -> Option<At<Vec<IpNet>>> {
        let (items, span) = self.strings(table, key, single)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match parse_net(item.value) {
                Ok(n) => out.push(n),
                Err(m) => {
                    self.r.error(&item.span, format!("`{key}`: {m}"));
                    ok = false;
                }
            }
        }
        ok.then_some(At { value: out, span })
    }

    fn methods(&mut self, table: &[Entry], key: &str, single: bool) -> Option<At<AuthMethods>> {
        let (items, span) = self.strings(table, key, single)?;
        let mut set = AuthMethods::empty();
        let mut ok = true;
        for item in items {
            match item.value {
                "cookie" => set.insert(AuthMethod::Cookie),
                "query" => set.insert(AuthMethod::Query),
                other => {
                    let hint = did_you_mean(other, METHODS)
                        .map(|s| format!("; did you mean \"{s}\"?"))
                        .unwrap_or_default();
                    self.r.error(
                        &item.span,
                        format!("`{key}`: unknown authentication method \"{other}\", expected \"cookie\" or \"query\"{hint}"),
                    );
                    ok = false;
                }
            }
        }
        if ok && set.is_empty() {
            self.r.error(
                &span,
                format!("`{key}` must list at least one of \"cookie\", \"query\""),
            );
            ok = false;
        }
        ok.then_some(At { value: set, span })
    }

    fn globs(&mut self, table: &[Entry], key: &str, single: bool) -> Option<At<Vec<Glob>>> {
        let (items, span) = self.strings(table, key, single)?;
        let mut ok = true;
        for item in &items {
            if item.value.is_empty() {
                self.r.error(
                    &item.span,
                    format!("`{key}`: a client id or glob cannot be empty"),
                );
                ok = false;
            }
        }
        ok.then(|| At {
            value: items.iter().map(|i| Glob::new(i.value)).collect(),
            span,
        })
    }

    /// A binding string such as `"ip_prefix+fingerprint"`.
    fn binding(&mut self, table: &[Entry], key: &str, ctx: &Ctx) -> Option<At<Binding>> {
        let s = self.str_(
            table,
            key,
            "a binding string like \"ip\" or \"ip_prefix+fingerprint\"",
        )?;
        let mut b = Binding::NONE;
        let (mut saw_none, mut parts) = (false, 0);
        for part in s.value.split('+') {
            parts += 1;
            let net = match part {
                "none" => {
                    saw_none = true;
                    None
                }
                "ip" => Some(NetworkBinding::Ip),
                "ip_prefix" => Some(NetworkBinding::IpPrefix {
                    v4: ctx.prefix.0,
                    v6: ctx.prefix.1,
                }),
                "asn" => Some(NetworkBinding::Asn),
                "fingerprint" => {
                    if b.fingerprint {
                        self.r.error(
                            &s.span,
                            format!("`{key}`: \"fingerprint\" appears twice in \"{}\"", s.value),
                        );
                        return None;
                    }
                    b.fingerprint = true;
                    None
                }
                other => {
                    let hint = did_you_mean(other, BINDING_MODES)
                        .map(|s| format!("; did you mean \"{s}\"?"))
                        .unwrap_or_default();
                    self.r.error(
                        &s.span,
                        format!("`{key}`: unknown binding mode \"{other}\", expected one of \"none\", \"ip\", \"ip_prefix\", \"asn\", \"fingerprint\", or a network mode with \"+fingerprint\"{hint}"),
                    );
                    return None;
                }
            };
            if let Some(n) = net {
                if b.network != NetworkBinding::None {
                    self.r.error(
                        &s.span,
                        format!("`{key}`: \"{}\" combines two network modes; pick one of \"ip\", \"ip_prefix\", \"asn\" (optionally \"+fingerprint\")", s.value),
                    );
                    return None;
                }
                b.network = n;
            }
        }
        if saw_none && parts > 1 {
            self.r.error(
                &s.span,
                format!("`{key}`: \"none\" cannot be combined with other modes"),
            );
            return None;
        }
        if b.fingerprint && ctx.fingerprint_headers.is_empty() {
            self.r.error(
                &s.span,
                format!("`{key}` = \"{}\" needs a device fingerprint, but [fingerprint] lists no headers", s.value),
            );
            return None;
        }
        Some(At {
            value: b,
            span: s.span,
        })
    }

    /// `enforce_device_binding`/`binding` = "none" must be confirmed by
    /// `allow_unbound = true` in the same table; `allow_unbound` alone is pointless.
    fn check_unbound(&mut self, table: &[Entry], binding: &Option<At<Binding>>, key: &str) {
        let unbound = self.bool_(table, "allow_unbound");
        let confirmed = unbound.as_ref().is_some_and(|u| u.value);
        match binding {
            Some(b) if b.value.is_none() && !confirmed => self.r.error(
                &b.span,
                format!("`{key} = \"none\"` turns device binding off; confirm it with `allow_unbound = true` in the same table"),
            ),
            Some(b) if b.value.is_none() => {}
            _ => {
                if let Some(u) = unbound.filter(|u| u.value) {
                    self.r.warning(
                        &u.span,
                        format!("`allow_unbound` has no effect here: it only confirms `{key} = \"none\"` in the same table"),
                    );
                }
            }
        }
    }

    fn int_in(&mut self, table: &[Entry], key: &str, min: i64, max: i64) -> Option<At<i64>> {
        let e = get(table, key)?;
        match e.value.kind {
            Kind::Int(i) if (min..=max).contains(&i) => Some(At {
                value: i,
                span: e.value.span.clone(),
            }),
            Kind::Int(i) => {
                self.r.error(
                    &e.value.span,
                    format!("`{key}` must be between {min} and {max}, found {i}"),
                );
                None
            }
            _ => {
                self.type_error(e, &format!("an integer between {min} and {max}"));
                None
            }
        }
    }

    // ---- sections ------------------------------------------------------------

    fn policy(&mut self, root: &Node) -> Option<Policy> {
        let top = self.table(root, "the file")?;
        self.check_keys(top, TOP_KEYS, "the top level");

        let mut ctx = Ctx {
            prefix: (32, 64),
            fingerprint_headers: Vec::new(),
        };
        if let Some(e) = get(top, "binding") {
            if let Some(t) = self.table(&e.value, "[binding]") {
                self.check_keys(t, BINDING_KEYS, "[binding]");
                if let Some(v) = self.int_in(t, "ipv4_prefix", 1, 32) {
                    ctx.prefix.0 = v.value as u8;
                }
                if let Some(v) = self.int_in(t, "ipv6_prefix", 1, 128) {
                    ctx.prefix.1 = v.value as u8;
                }
            }
        }
        if let Some(e) = get(top, "fingerprint") {
            if let Some(t) = self.table(&e.value, "[fingerprint]") {
                self.check_keys(t, FINGERPRINT_KEYS, "[fingerprint]");
                ctx.fingerprint_headers = self.headers(t);
            }
        }

        let (mut default_native, mut default_web) = (builtin_native(), builtin_web());
        if let Some(e) = get(top, "defaults") {
            if let Some(t) = self.table(&e.value, "[defaults]") {
                self.check_keys(t, DEFAULTS_KEYS, "[defaults]");
                if let Some(n) = get(t, "native") {
                    if let Some(nt) = self.table(&n.value, "[defaults.native]") {
                        default_native = self.native(nt, &default_native, "[defaults.native]", "*");
                    }
                }
                if let Some(w) = get(t, "web") {
                    if let Some(wt) = self.table(&w.value, "[defaults.web]") {
                        default_web = self.web(wt, &default_web, "[defaults.web]", "*", &ctx);
                    }
                }
            }
        }

        let mut natives = ClientTable::default();
        if let Some(e) = get(top, "native") {
            if let Some(t) = self.table(&e.value, "[native]") {
                for c in t {
                    let name = client_table_name("native", &c.key);
                    if let Some(ct) = self.client_table(c, &name) {
                        let n = self.native(ct, &default_native, &name, &c.key);
                        insert_client(&mut natives, &c.key, n);
                    }
                }
            }
        }
        let mut webs = ClientTable::default();
        if let Some(e) = get(top, "web") {
            if let Some(t) = self.table(&e.value, "[web]") {
                for c in t {
                    let name = client_table_name("web", &c.key);
                    if let Some(ct) = self.client_table(c, &name) {
                        let w = self.web(ct, &default_web, &name, &c.key, &ctx);
                        insert_client(&mut webs, &c.key, w);
                    }
                }
            }
        }
        sort_globs(&mut natives);
        sort_globs(&mut webs);

        let rules = match get(top, "rule") {
            Some(e) => self.rules(e, &ctx),
            None => Vec::new(),
        };
        self.shadowing(&rules);

        Some(Policy {
            natives,
            webs,
            default_web,
            fingerprint_headers: ctx.fingerprint_headers,
            prefix: ctx.prefix,
            index: crate::index::RuleIndex::new(&rules),
            rules,
            warnings: Vec::new(),
        })
    }

    fn client_table<'n>(&mut self, c: &'n Entry, name: &str) -> Option<&'n [Entry]> {
        if c.key.is_empty() {
            self.r
                .error(&c.key_span, "a client id or glob cannot be empty");
            return None;
        }
        self.table(&c.value, name)
    }

    fn headers(&mut self, t: &[Entry]) -> Vec<String> {
        let Some((items, _)) = self.strings(t, "headers", false) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            // RFC 9110 token characters.
            let valid = !item.value.is_empty()
                && item
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                self.r.error(
                    &item.span,
                    format!(
                        "`headers`: \"{}\" is not a valid HTTP header name",
                        item.value
                    ),
                );
                continue;
            }
            let name = item.value.to_ascii_lowercase();
            if out.contains(&name) {
                self.r
                    .error(&item.span, format!("`headers`: \"{name}\" is listed twice"));
                continue;
            }
            out.push(name);
        }
        out
    }

    fn native(&mut self, t: &[Entry], base: &NativeClient, name: &str, id: &str) -> NativeClient {
        self.check_keys(t, NATIVE_KEYS, name);
        let mut n = base.clone();
        n.id = id.to_owned();
        if let Some(v) = self.bool_(t, "can_create_session_transfer_token") {
            n.can_create_session_transfer_token = v.value;
        }
        if let Some(v) = self.positive_duration(t, "transfer_token_ttl") {
            if v.value > MAX_TRANSFER_TOKEN_TTL {
                self.r.error(
                    &v.span,
                    format!(
                        "`transfer_token_ttl` must be at most 5m (300s), found {}",
                        Human(v.value)
                    ),
                );
            } else {
                n.transfer_token_ttl = v.value;
            }
        }
        if let Some(v) = self.bool_(t, "enforce_cascade_revocation") {
            n.enforce_cascade_revocation = v.value;
        }
        if let Some(v) = self.globs(t, "allowed_web_clients", false) {
            n.allowed_web_clients = v.value;
        }
        if let Some(v) = self.networks(t, "allowed_networks", false) {
            n.networks.allowed = Nets::new(v.value);
        }
        if let Some(v) = self.networks(t, "denied_networks", false) {
            n.networks.denied = Nets::new(v.value);
        }
        if n.can_create_session_transfer_token && n.allowed_web_clients.is_empty() && id != "*" {
            if let Some(v) = get(t, "can_create_session_transfer_token") {
                self.r.warning(
                    &v.value.span,
                    format!("{name} may mint, but `allowed_web_clients` is empty, so its tokens can log in nowhere"),
                );
            }
        }
        n
    }

    fn web(&mut self, t: &[Entry], base: &WebClient, name: &str, id: &str, ctx: &Ctx) -> WebClient {
        self.check_keys(t, WEB_KEYS, name);
        let mut w = base.clone();
        w.id = id.to_owned();
        if let Some(v) = self.methods(t, "allowed_authentication_methods", false) {
            w.allowed_authentication_methods = v.value;
        }
        let binding = self.binding(t, "enforce_device_binding", ctx);
        self.check_unbound(t, &binding, "enforce_device_binding");
        if let Some(b) = &binding {
            w.enforce_device_binding = b.value;
        }
        if let Some(v) = self.bool_(t, "allow_refresh_token") {
            w.allow_refresh_token = v.value;
        }
        if let Some(v) = self.bool_(t, "enforce_online_refresh_tokens") {
            w.enforce_online_refresh_tokens = v.value;
        }
        if let Some(v) = self.bool_(t, "revoke_lineage_on_replay") {
            w.revoke_lineage_on_replay = v.value;
        }
        let absolute = self.positive_duration(t, "session_absolute");
        let idle = self.positive_duration(t, "session_idle");
        if let Some(v) = &absolute {
            w.session_absolute = v.value;
        }
        if let Some(v) = &idle {
            w.session_idle = v.value;
        }
        if w.session_idle > w.session_absolute {
            // Point at whichever of the two this table set; if it set neither,
            // the inherited values were already reported where they were set.
            let inherited = |set: bool| if set { "" } else { ", inherited" };
            if let Some(span) = idle.as_ref().or(absolute.as_ref()).map(|v| v.span.clone()) {
                self.r.error(
                    &span,
                    format!(
                        "`session_idle` ({}{}) exceeds `session_absolute` ({}{}) in {name}",
                        Human(w.session_idle),
                        inherited(idle.is_some()),
                        Human(w.session_absolute),
                        inherited(absolute.is_some()),
                    ),
                );
            }
        }
        if let Some(v) = self.networks(t, "allowed_networks", false) {
            w.networks.allowed = Nets::new(v.value);
        }
        if let Some(v) = self.networks(t, "denied_networks", false) {
            w.networks.denied = Nets::new(v.value);
        }
        w
    }

    fn rules(&mut self, e: &Entry, ctx: &Ctx) -> Vec<Rule> {
        let Kind::Array(items) = &e.value.kind else {
            self.r.error(
                &e.value.span,
                format!(
                    "`rule` must be an array of tables (write each rule as [[rule]]), found {}",
                    e.value.kind.describe()
                ),
            );
            return Vec::new();
        };
        let mut rules = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let name = format!("rule[{i}]");
            if let Some(t) = self.table(item, &name) {
                if let Some(rule) = self.rule(t, &item.span, &name, ctx) {
                    rules.push(rule);
                }
            }
        }
        rules
    }

    fn rule(&mut self, t: &[Entry], span: &Span, where_: &str, ctx: &Ctx) -> Option<Rule> {
        let before = self.r.error_count();
        self.check_keys(t, RULE_KEYS, where_);
        let name = self.str_(t, "name", "a string").map(|s| s.value.to_owned());
        let non_empty = |v: &mut Self, key: &str, len: Option<(usize, Span)>| {
            if let Some((0, span)) = len {
                v.r.error(&span, format!("`{key}` is an empty list, which matches nothing; remove the key to match anything"));
            }
        };
        let web_client = self.globs(t, "web_client", true);
        non_empty(
            self,
            "web_client",
            web_client.as_ref().map(|v| (v.value.len(), v.span.clone())),
        );
        let native_client = self.globs(t, "native_client", true);
        non_empty(
            self,
            "native_client",
            native_client
                .as_ref()
                .map(|v| (v.value.len(), v.span.clone())),
        );
        let redeem_network = self.networks(t, "redeem_network", true);
        non_empty(
            self,
            "redeem_network",
            redeem_network
                .as_ref()
                .map(|v| (v.value.len(), v.span.clone())),
        );
        let mint_network = self.networks(t, "mint_network", true);
        non_empty(
            self,
            "mint_network",
            mint_network
                .as_ref()
                .map(|v| (v.value.len(), v.span.clone())),
        );
        let redeem_asn = self.asns(t, "redeem_asn");
        let mint_asn = self.asns(t, "mint_asn");
        let networks_differ = self.bool_(t, "networks_differ").map(|v| v.value);
        let method = self.methods(t, "method", true).map(|v| v.value);
        let time_of_day = self
            .str_(t, "time_of_day", "a string like \"22:00-06:00\"")
            .and_then(|s| {
                TimeRange::parse(s.value)
                    .map_err(|m| self.r.error(&s.span, m))
                    .ok()
            });

        let deny = self.bool_(t, "deny").map(|v| v.value);
        let binding = self.binding(t, "binding", ctx);
        self.check_unbound(t, &binding, "binding");
        let absolute = self.positive_duration(t, "session_absolute");
        let idle = self.positive_duration(t, "session_idle");
        if let (Some(a), Some(i)) = (&absolute, &idle) {
            if i.value > a.value {
                self.r.error(
                    &i.span,
                    format!(
                        "`session_idle` ({}) exceeds `session_absolute` ({}) in {where_}",
                        Human(i.value),
                        Human(a.value)
                    ),
                );
            }
        }
        let allow_refresh_token = self.bool_(t, "allow_refresh_token").map(|v| v.value);
        let enforce_online_refresh_tokens = self
            .bool_(t, "enforce_online_refresh_tokens")
            .map(|v| v.value);

        let rule = Rule {
            name,
            line: self.r.line_of(span.start),
            web_client: web_client.map(|v| v.value),
            native_client: native_client.map(|v| v.value),
            redeem_network: redeem_network.map(|v| Nets::new(v.value)),
            mint_network: mint_network.map(|v| Nets::new(v.value)),
            redeem_asn,
            mint_asn,
            networks_differ,
            method,
            time_of_day,
            deny,
            binding: binding.map(|b| b.value),
            session_absolute: absolute.map(|v| v.value),
            session_idle: idle.map(|v| v.value),
            allow_refresh_token,
            enforce_online_refresh_tokens,
        };
        if self.r.error_count() > before {
            return None;
        }
        if !rule.decides_anything() {
            self.r.warning(
                span,
                format!("{where_} decides nothing; set `deny`, `binding`, a lifetime or a refresh-token setting"),
            );
        }
        Some(rule)
    }

    fn asns(&mut self, t: &[Entry], key: &str) -> Option<Vec<u32>> {
        let e = get(t, key)?;
        let items: Vec<&Node> = match &e.value.kind {
            Kind::Int(_) => vec![&e.value],
            Kind::Array(a) => a.iter().collect(),
            _ => {
                self.type_error(e, "an AS number or an array of AS numbers");
                return None;
            }
        };
        if items.is_empty() {
            self.r.error(&e.value.span, format!("`{key}` is an empty list, which matches nothing; remove the key to match anything"));
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for n in items {
            match n.kind {
                Kind::Int(i) if (1..=i64::from(u32::MAX)).contains(&i) => out.push(i as u32),
                Kind::Int(i) => {
                    self.r.error(
                        &n.span,
                        format!("`{key}`: {i} is not an AS number (1 to 4294967295)"),
                    );
                    return None;
                }
                ref other => {
                    self.r.error(
                        &n.span,
                        format!("`{key}` must list integers, found {}", other.describe()),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// Warns about rules that can never take effect because an earlier rule
    /// matches everything they match and already decides what they decide.
    fn shadowing(&mut self, rules: &[Rule]) {
        for (j, later) in rules.iter().enumerate() {
            if !later.decides_anything() {
                continue; // already warned about
            }
            if let Some((i, earlier)) = rules[..j]
                .iter()
                .enumerate()
                .find(|(_, e)| e.matchers_cover(later) && e.overrides(later))
            {
                // Point at the later rule's header line.
                let span = self.line_span(later.line);
                self.r.warning(
                    &span,
                    format!(
                        "{} is shadowed by {} (line {}), which matches every request it matches and already decides what it decides; it never takes effect",
                        later.label(j),
                        earlier.label(i),
                        earlier.line
                    ),
                );
            }
        }
    }

    fn line_span(&self, line: usize) -> Span {
        let start = self.r.line_start(line);
        start..start
    }
}

/// What client and rule validation need from other sections.
struct Ctx {
    prefix: (u8, u8),
    fingerprint_headers: Vec<String>,
}

fn builtin_native() -> NativeClient {
    NativeClient {
        id: "*".into(),
        can_create_session_transfer_token: false,
        transfer_token_ttl: Duration::from_secs(60),
        enforce_cascade_revocation: true,
        allowed_web_clients: Vec::new(),
        networks: NetList::default(),
    }
}

fn builtin_web() -> WebClient {
    WebClient {
        id: "*".into(),
        allowed_authentication_methods: AuthMethods::COOKIE,
        enforce_device_binding: Binding::IP,
        allow_refresh_token: false,
        enforce_online_refresh_tokens: true,
        session_absolute: Duration::from_secs(30 * 60),
        session_idle: Duration::from_secs(15 * 60),
        revoke_lineage_on_replay: false,
        networks: NetList::default(),
    }
}

fn insert_client<T>(table: &mut ClientTable<T>, id: &str, value: T) {
    // TOML itself rejects duplicate keys, so each id arrives once.
    if Glob::is_glob(id) {
        table.globs.push((Glob::new(id), value));
    } else {
        table.exact.insert(id.to_owned(), value);
    }
}

fn sort_globs<T>(table: &mut ClientTable<T>) {
    // Stable: equal specificity keeps file order.
    table
        .globs
        .sort_by_key(|(g, _)| std::cmp::Reverse(g.literal_len()));
}
