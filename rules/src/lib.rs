//! handoff's policy language: the rules file (SPEC §4).
//!
//! Modelled on cedar-policy, in three steps with separate types:
//!
//! 1. **parse** (`source`): TOML text → a small tree in which every key and value
//!    knows its byte span;
//! 2. **validate** (`validate`): the tree → a [`Policy`], with every default
//!    applied, every glob/CIDR/duration/binding precompiled, or else *all*
//!    problems as [`Diagnostics`] (`file:line:col: error: ...`);
//! 3. **evaluate** ([`Policy::decide_redemption`]): a pure function of
//!    (policy, [`RedeemContext`]) → [`Decision`]. No I/O, no allocation, no
//!    clock: the caller passes the time of day in, so it is trivially testable,
//!    fuzzable and benchmarkable. An index built at validation (`index`)
//!    narrows the rules down by method and networks first, so the cost does
//!    not grow with the number of networks.
//!
//! [`explain`] runs step 3 with a trace, for `handoff rules explain`: which
//! entry each client resolved to, which check failed, which rules matched and
//! what each decided, and where every effective setting came from.
//!
//! A `Policy` can only come out of step 2, so the proxy can never evaluate an
//! unvalidated file; on reload, a file that fails step 2 leaves the running
//! `Policy` in force.
//!
//! The file format is documented in `rules/README.md`.

#![warn(missing_docs)]

mod asn;
mod diag;
mod duration;
mod explain;
mod glob;
mod index;
mod model;
mod net;
mod policy;
mod rule;
mod source;
mod validate;

pub use asn::AsnTable;
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use explain::{
    explain, Check, CheckStatus, ClientEntry, Effect, Effective, Explanation, ResolvedClient,
    RuleDecision, RuleTrace, Source, Step,
};
pub use model::{
    AuthMethod, AuthMethods, Binding, Decision, DenyReason, NativeClient, NetworkBinding,
    RedeemContext, WebClient, MAX_TRANSFER_TOKEN_TTL,
};
pub use net::{normalize_ip, same_prefix};
pub use policy::Policy;
