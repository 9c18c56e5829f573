//! `[server]`: the public listeners, threads, the public host, trusted proxies and
//! the body limit.

use super::super::file::{FileServer, FileTls};
use super::super::{Listener, TlsFiles};
use super::Validator;
use crate::client_ip::ForwardedHeader;
use ipnet::IpNet;
use std::net::IpAddr;

/// The `[server]` part of the model.
pub(super) struct Server {
    pub listeners: Vec<Listener>,
    pub threads: usize,
    pub public_host: String,
    pub trusted_proxies: Vec<IpNet>,
    pub forwarded_header: ForwardedHeader,
    pub max_body_bytes: usize,
}

impl Validator<'_> {
    pub(super) fn server(&mut self, s: FileServer) -> Option<Server> {
        let listeners = self.listeners(&s);
        let threads = self.in_range(
            "server.threads",
            s.threads.unwrap_or(2),
            1..=256,
            "must be between 1 and 256",
        );
        let public_host = self.public_host(s.public_host);
        let trusted_proxies = self.each(&s.trusted_proxies, |v, i, n| {
            let net = parse_net(n);
            let reason = format!("{n:?} is not a network (CIDR like \"10.0.0.0/8\" or an address)");
            v.check(
                net.is_some(),
                net,
                &format!("server.trusted_proxies[{i}]"),
                reason,
            )
            .flatten()
        });
        let forwarded_header = match s
            .forwarded_header
            .map(|h| h.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("x-forwarded-for") => Some(ForwardedHeader::XForwardedFor),
            Some("forwarded") => Some(ForwardedHeader::Forwarded),
            Some(other) => {
                let reason = format!("{other:?}: expected \"x-forwarded-for\" or \"forwarded\"");
                self.report("server.forwarded_header", reason);
                None
            }
        };
        let max_body_bytes = self.in_range("server.max_body_bytes", s.max_body_bytes.unwrap_or(16 * 1024), 1024..=64 * 1024, "must be between 1024 and 65536 (bodies handoff reads are replayed to the IdP from a 64 KiB buffer)");
        Some(Server {
            listeners: listeners?,
            threads: threads?,
            public_host: public_host?,
            trusted_proxies: trusted_proxies?,
            forwarded_header: forwarded_header?,
            max_body_bytes: max_body_bytes?,
        })
    }

    /// `server.listen` (plain HTTP, `127.0.0.1:8080` when nothing is given) and
    /// `[[server.tls]]`, in that order.
    fn listeners(&mut self, s: &FileServer) -> Option<Vec<Listener>> {
        let default = if s.tls.is_empty() {
            vec!["127.0.0.1:8080".to_string()]
        } else {
            vec![]
        };
        let listen = s.listen.clone().unwrap_or(default);
        let plain = self.each(&listen, |v, i, l| {
            let addr = v.socket_addr(&format!("server.listen[{i}]"), l)?;
            Some(Listener { addr, tls: None })
        });
        let tls = self.each(&s.tls, |v, i, t: &FileTls| {
            let key = format!("server.tls[{i}]");
            let cert = v.readable_file(&format!("{key}.cert"), &t.cert);
            let tkey = v.readable_file(&format!("{key}.key"), &t.key);
            let addr = v.socket_addr(&format!("{key}.listen"), &t.listen);
            let tls = Some(TlsFiles {
                cert: cert?,
                key: tkey?,
            });
            Some(Listener { addr: addr?, tls })
        });
        let any = !(listen.is_empty() && s.tls.is_empty());
        let (plain, tls) = self.check(
            any,
            (plain, tls),
            "server.listen",
            "no listener: give server.listen or a [[server.tls]] entry",
        )?;
        Some(plain?.into_iter().chain(tls?).collect())
    }

    fn public_host(&mut self, h: Option<String>) -> Option<String> {
        let Some(h) = h else {
            self.report("server.public_host", "missing: the IdP's public host name as browsers see it (e.g. \"login.example.com\")");
            return None;
        };
        let ok = !h.is_empty() && !h.contains(['/', ' ', '@', '?', '#']);
        let reason = format!("{h:?} is not a host name (no scheme, no path)");
        self.check(ok, h, "server.public_host", reason)
    }
}

/// Parses `"10.0.0.0/8"` or a bare address (as a /32 or /128).
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn server_keys_are_checked_and_named() {
        let srv = |tail: &str| {
            format!("[server]\npublic_host = \"x\"\n{tail}\n[upstream]\naddress = \"a:1\"\n")
        };
        for (tail, key, reason) in [
            ("threads = 0", "server.threads", "must be between 1 and 256"),
            (
                "listen = []",
                "server.listen",
                "no listener: give server.listen or a [[server.tls]] entry",
            ),
            (
                "trusted_proxies = [\"10.0.0.0/8\", \"office\"]",
                "server.trusted_proxies[1]",
                "\"office\" is not a network",
            ),
            (
                "forwarded_header = \"x-real-ip\"",
                "server.forwarded_header",
                "\"x-real-ip\": expected",
            ),
            (
                "max_body_bytes = 65537",
                "server.max_body_bytes",
                "must be between 1024 and 65536",
            ),
            (
                "[[server.tls]]\nlisten = \"0.0.0.0:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"",
                "server.tls[0].cert",
                "/etc/handoff/c.pem is not a readable file",
            ),
        ] {
            let e = err(&srv(tail));
            assert_eq!(e.key, key, "{tail}: {e}");
            assert!(e.reason.starts_with(reason), "{tail}: {e}");
        }
        let e = err("[server]\npublic_host = \"https://x\"\n[upstream]\naddress = \"a:1\"\n");
        assert_eq!(e.key, "server.public_host");
        assert_eq!(
            e.reason,
            "\"https://x\" is not a host name (no scheme, no path)"
        );
        let c = load(&srv(
            "trusted_proxies = [\"10.1.2.3\"]\nforwarded_header = \"Forwarded\"",
        ))
        .unwrap();
        assert_eq!(c.trusted_proxies[0].to_string(), "10.1.2.3/32");
        assert_eq!(
            c.forwarded_header,
            crate::client_ip::ForwardedHeader::Forwarded
        );
    }
}
