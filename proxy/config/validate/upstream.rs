//! `[upstream]`: where the IdP is and how handoff talks to it.

use super::super::file::FileUpstream;
use super::super::{HostHeader, Upstream};
use super::Validator;
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn upstream(&mut self, u: Option<FileUpstream>) -> Option<Upstream> {
        let Some(u) = u else {
            self.report(
                "upstream",
                "missing: the [upstream] table with the IdP's address",
            );
            return None;
        };
        let host = split_host_port(&u.address).map(|(h, _)| h.to_string());
        let reason = format!("{:?} is not host:port", u.address);
        let host = self
            .check(host.is_some(), host, "upstream.address", reason)
            .flatten();
        let host_header = match u.host_header.as_deref() {
            None | Some("preserve") => Some(HostHeader::Preserve),
            Some(h) if !h.is_empty() && !h.contains(['/', ' ']) => {
                Some(HostHeader::Fixed(h.to_string()))
            }
            Some(h) => {
                self.report(
                    "upstream.host_header",
                    format!("{h:?}: expected \"preserve\" or a host name"),
                );
                None
            }
        };
        let ca_file = match &u.ca_file {
            None => Some(None),
            Some(p) => self.readable_file("upstream.ca_file", p).map(Some),
        };
        let timeout = self.duration(
            "upstream.timeout",
            u.timeout.as_deref(),
            Duration::from_secs(5),
        );
        let discovery_path = self.url_path(
            "upstream.discovery_path",
            u.discovery_path
                .as_deref()
                .unwrap_or("/.well-known/openid-configuration"),
        );
        let jwks_cache_ttl = self.duration(
            "upstream.jwks_cache_ttl",
            u.jwks_cache_ttl.as_deref(),
            Duration::from_secs(300),
        );
        Some(Upstream {
            sni: u.sni.unwrap_or(host?),
            address: u.address,
            tls: u.tls,
            ca_file: ca_file?,
            host_header: host_header?,
            forwarded_headers: u.forwarded_headers.unwrap_or(true),
            timeout: timeout?,
            discovery_path: discovery_path?,
            issuer: u.issuer,
            jwks_cache_ttl: jwks_cache_ttl?,
        })
    }
}

/// `host:port` with a port from 1 to 65535; the host without IPv6 brackets.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 || host.contains(['/', ' ']) {
        return None;
    }
    Some((host.trim_start_matches('[').trim_end_matches(']'), port))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn upstream_keys_are_checked_and_named() {
        let up = |tail: &str| {
            format!("[server]\npublic_host = \"x\"\n[upstream]\naddress = \"idp:443\"\n{tail}\n")
        };
        let c = load(&up("tls = true")).unwrap();
        assert_eq!(
            c.upstream.sni, "idp",
            "the SNI defaults to the address's host"
        );
        assert_eq!(c.upstream.base_url(), "https://idp:443");
        for (tail, key) in [
            ("host_header = \"a/b\"", "upstream.host_header"),
            ("ca_file = \"/nonexistent/ca.pem\"", "upstream.ca_file"),
            ("timeout = \"5\"", "upstream.timeout"),
            ("discovery_path = \"well-known\"", "upstream.discovery_path"),
            ("jwks_cache_ttl = \"-1s\"", "upstream.jwks_cache_ttl"),
        ] {
            let e = err(&up(tail));
            assert_eq!(e.key, key, "{tail}: {e}");
            assert_eq!(e.file, "handoff.toml");
        }
        let e = err("[server]\npublic_host = \"x\"\n[upstream]\naddress = \"idp:99999\"\n");
        assert_eq!(
            (e.key.as_str(), e.reason.as_str()),
            ("upstream.address", "\"idp:99999\" is not host:port")
        );
    }
}
