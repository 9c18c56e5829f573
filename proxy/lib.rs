//! handoff: Native-to-Web single sign-on in front of an OpenID Connect identity
//! provider, as a pingora reverse proxy.
//!
//! A user logged in to a native app opens a web app and is logged in there too:
//! the app trades its refresh token for a one-time session transfer token
//! ([`mint`]), the browser presents it ([`redeem`]), and handoff tells the IdP who
//! the user is with a signed assertion ([`assertion`]). The flows sit in pingora's
//! request phases in [`gateway`]; state lives behind the [`store::Store`] trait;
//! policy comes from the rules file (`handoff-rules`). SPEC.md is the contract.

#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod assertion;
pub mod backchannel;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod cookies;
pub mod gateway;
pub mod hygiene;
pub mod idp;
pub mod jws;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod mint;
pub mod ratelimit;
pub mod redeem;
pub mod revocation;
pub mod secret;
pub mod server;
pub mod session;
pub mod store;
pub mod token;
pub mod transaction;
pub mod withheld;
