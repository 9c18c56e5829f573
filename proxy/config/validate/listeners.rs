//! No two listeners (public, TLS, admin) on one address.

use super::super::Listener;
use super::Validator;
use std::net::{IpAddr, SocketAddr};

impl Validator<'_> {
    /// No two listeners (public, TLS, admin) on one address: the kernel would
    /// either refuse the second bind or split connections between them. A
    /// wildcard address overlaps the addresses it covers on its port
    /// (`0.0.0.0:P` every IPv4 one, `[::]:P` every one: Linux binds it
    /// dual-stack); port 0 means "any free port" and never clashes.
    pub(super) fn distinct_listeners(&mut self, listeners: &[Listener], admin: Option<&str>) {
        let (mut plain, mut tls) = (0, 0);
        let public = listeners.iter().map(|l| {
            let key = if l.tls.is_some() {
                tls += 1;
                format!("server.tls[{}].listen", tls - 1)
            } else {
                plain += 1;
                format!("server.listen[{}]", plain - 1)
            };
            (key, l.addr.as_str())
        });
        let all: Vec<(String, &str)> = public
            .chain(admin.map(|a| ("admin.listen".to_string(), a)))
            .collect();
        let mut seen: Vec<(String, SocketAddr)> = Vec::new();
        for (key, addr) in all {
            // Each address was written by `socket_addr`, which parsed it.
            let Ok(a) = addr.parse::<SocketAddr>() else {
                continue;
            };
            if let Some((other, b)) = seen.iter().find(|(_, b)| listeners_overlap(&a, b)) {
                let same = if a == *b {
                    String::new()
                } else {
                    format!(" ({b})")
                };
                let reason = format!("{a} is also the address of {other}{same}: two listeners cannot share an address; give each its own port");
                self.report(&key, reason);
                continue;
            }
            seen.push((key, a));
        }
    }
}

/// Whether two listen addresses overlap: the same port (not 0) and the same IP,
/// or one a wildcard that covers the other (`[::]` covers IPv4 too).
fn listeners_overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    let covers = |w: IpAddr, o: IpAddr| match w {
        IpAddr::V6(w) => w.is_unspecified(),
        IpAddr::V4(w) => w.is_unspecified() && o.is_ipv4(),
    };
    x == y || covers(x, y) || covers(y, x)
}

#[cfg(test)]
mod tests {
    use super::super::super::Config;

    #[test]
    fn two_listeners_on_one_address_are_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["c.pem", "k.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let tls = |addr: &str| {
            format!("[[server.tls]]\nlisten = \"{addr}\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n")
        };
        let cfg = |listen: &str, tls: &str, admin: &str| {
            format!(
                "[server]\npublic_host = \"login.example.com\"\nlisten = [{listen}]\n{tls}\
                 [upstream]\naddress = \"127.0.0.1:3000\"\n[admin]\nlisten = \"{admin}\"\n"
            )
        };
        let check = |t: String| Config::from_toml(&t, "handoff.toml", dir.path());
        let clashes = [
            // (public listen, TLS listeners, admin, key reported, key named in the reason)
            (
                "\"127.0.0.1:8080\"",
                String::new(),
                "127.0.0.1:8080",
                "admin.listen",
                "server.listen[0]",
            ),
            (
                "\"0.0.0.0:8080\"",
                String::new(),
                "127.0.0.1:8080",
                "admin.listen",
                "server.listen[0]",
            ),
            (
                "\"[::]:8080\"",
                String::new(),
                "127.0.0.1:8080",
                "admin.listen",
                "server.listen[0]",
            ),
            ("\"127.0.0.1:8080\"", String::new(), "[::1]:9090", "", ""),
            (
                "\"[::]:8080\"",
                String::new(),
                "[::1]:8080",
                "admin.listen",
                "server.listen[0]",
            ),
            (
                "\"127.0.0.1:8080\", \"127.0.0.1:8080\"",
                String::new(),
                "127.0.0.1:9090",
                "server.listen[1]",
                "server.listen[0]",
            ),
            (
                "\"127.0.0.1:8080\", \"0.0.0.0:8080\"",
                String::new(),
                "127.0.0.1:9090",
                "server.listen[1]",
                "server.listen[0]",
            ),
            (
                "\"127.0.0.1:8080\"",
                tls("0.0.0.0:8080"),
                "127.0.0.1:9090",
                "server.tls[0].listen",
                "server.listen[0]",
            ),
            (
                "",
                tls("127.0.0.1:8443") + &tls("127.0.0.1:8443"),
                "127.0.0.1:9090",
                "server.tls[1].listen",
                "server.tls[0].listen",
            ),
            (
                "",
                tls("127.0.0.1:8443"),
                "127.0.0.1:8443",
                "admin.listen",
                "server.tls[0].listen",
            ),
            (
                "\"[::ffff:127.0.0.1]:8080\"",
                String::new(),
                "127.0.0.1:8080",
                "admin.listen",
                "server.listen[0]",
            ),
        ];
        for (listen, tls, admin, key, other) in &clashes {
            let r = check(cfg(listen, tls, admin));
            if key.is_empty() {
                assert!(r.is_ok(), "{listen} {tls} {admin}: {r:?}");
                continue;
            }
            let e = r.expect_err(&format!("{listen} / {tls} / {admin} was accepted"));
            let e = e.first();
            assert_eq!(&e.key, key, "{e}");
            assert!(e.reason.contains(other), "{e}");
            assert_eq!(e.file, "handoff.toml");
        }
        // No clash: other ports, other addresses, port 0 (any free port), a v4
        // wildcard next to an IPv6 address.
        let fine = [
            (
                "\"127.0.0.1:8080\", \"127.0.0.2:8080\"",
                String::new(),
                "127.0.0.1:9090",
            ),
            ("\"0.0.0.0:8080\"", tls("0.0.0.0:8443"), "127.0.0.1:9090"),
            (
                "\"127.0.0.1:0\", \"127.0.0.1:0\"",
                tls("0.0.0.0:0"),
                "127.0.0.1:0",
            ),
            ("\"0.0.0.0:8080\"", String::new(), "[::1]:8080"),
        ];
        for (listen, tls, admin) in &fine {
            let r = check(cfg(listen, tls, admin));
            assert!(r.is_ok(), "{listen} {tls} {admin}: {r:?}");
        }
        // A disabled admin listener clashes with nothing.
        let t = cfg("\"127.0.0.1:9090\"", "", "x").replace("listen = \"x\"", "disabled = true");
        assert!(check(t).is_ok());
    }
}
