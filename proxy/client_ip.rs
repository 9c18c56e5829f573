//! Who is the client: the trusted-proxy rule (SPEC §4.2).
//!
//! Binding a transfer token to "the device's IP" is only as good as the IP we
//! believe. `X-Forwarded-For` and `Forwarded` are written by whoever sent the
//! request, so they are believed only when the TCP peer is a configured trusted
//! proxy, and then only up to the first hop that is not itself trusted: the
//! client IP is the right-most address that is not in a trusted range. A spoofed
//! header from an untrusted peer changes nothing (invariant 3).

use ipnet::IpNet;
use std::net::IpAddr;

/// Which forwarding header the trusted proxies write (only that one is read: a
/// proxy that appends to `X-Forwarded-For` passes a client's own `Forwarded`
/// through untouched, and the other way round).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, cloud load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`.
    Forwarded,
}

/// The address that stands for "client unknown": a trusted proxy sent a
/// forwarding header that cannot be read. Bindings never hold for it.
pub const UNKNOWN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// The client IP of a request from `peer`, given the raw values of the forwarding
/// header the trusted proxies write (`None` for a value that is not UTF-8).
pub fn client_ip_from(
    peer: IpAddr,
    which: ForwardedHeader,
    values: &[Option<&str>],
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    if values.iter().any(Option::is_none) {
        return UNKNOWN;
    }
    let values: Vec<&str> = values.iter().flatten().copied().collect();
    match which {
        ForwardedHeader::XForwardedFor => client_ip(peer, &values, &[], trusted),
        ForwardedHeader::Forwarded => client_ip(peer, &[], &values, trusted),
    }
}

/// The client IP of a request that arrived from `peer` with these forwarding
/// headers (`x_forwarded_for`: every `X-Forwarded-For` value in order;
/// `forwarded`: every `Forwarded` value in order).
pub fn client_ip(
    peer: IpAddr,
    x_forwarded_for: &[&str],
    forwarded: &[&str],
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // The chain as proxies appended it: left-most is the claimed origin.
    let hops: Vec<Option<IpAddr>> = if !forwarded.is_empty() {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|elem| {
                elem.split(';')
                    .find_map(|pair| {
                        let (k, v) = pair.trim().split_once('=')?;
                        k.trim().eq_ignore_ascii_case("for").then(|| parse_hop(v))
                    })
                    .flatten()
            })
            .collect()
    } else {
        x_forwarded_for
            .iter()
            .flat_map(|v| v.split(','))
            .map(parse_hop)
            .collect()
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = canonical(*ip);
                if !is_trusted(&client) {
                    return client;
                }
            }
            // An unparseable hop from a trusted proxy: the client is unknown.
            None => return UNKNOWN,
        }
    }
    client
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) become plain IPv4, so that a
/// dual-stack listener and an IPv4 one see the same client.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `"[2001:db8::1]:443"`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &["1.1.1.1"], &["for=1.1.1.1"], &t),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &["1.1.1.1"], &[], &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn right_most_untrusted_hop_wins() {
        let t = nets(&["10.0.0.0/8"]);
        // the client tried to spoof 1.1.1.1; the proxy appended the real 198.51.100.7
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["1.1.1.1, 198.51.100.7"], &[], &t),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                &["1.1.1.1", "198.51.100.7, 10.0.0.3"],
                &[],
                &t
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["198.51.100.7:5555"], &[], &t),
            ip("198.51.100.7")
        );
        // all trusted: the left-most
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["10.1.1.1"], &[], &t),
            ip("10.1.1.1")
        );
        // no header: the peer
        assert_eq!(client_ip(ip("10.0.0.2"), &[], &[], &t), ip("10.0.0.2"));
        // garbage from a trusted proxy: the client is unknown
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["1.1.1.1, garbage"], &[], &t),
            UNKNOWN
        );
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let t = nets(&["10.0.0.0/8"]);
        // A client-sent Forwarded passes through an XFF-appending proxy: ignored.
        assert_eq!(
            client_ip_from(
                ip("10.0.0.2"),
                ForwardedHeader::XForwardedFor,
                &[Some("198.51.100.7")],
                &t
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip_from(
                ip("10.0.0.2"),
                ForwardedHeader::Forwarded,
                &[Some("for=192.0.2.1")],
                &t
            ),
            ip("192.0.2.1")
        );
        // Non-UTF-8 from a trusted proxy: unknown, never the proxy itself.
        assert_eq!(
            client_ip_from(ip("10.0.0.2"), ForwardedHeader::XForwardedFor, &[None], &t),
            UNKNOWN
        );
        // Untrusted peer: its headers mean nothing.
        assert_eq!(
            client_ip_from(
                ip("203.0.113.1"),
                ForwardedHeader::XForwardedFor,
                &[None],
                &t
            ),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn forwarded_header() {
        let t = nets(&["10.0.0.0/8"]);
        let f = ["for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\""];
        assert_eq!(client_ip(ip("10.0.0.2"), &[], &f, &t), ip("2001:db8::1"));
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.9"), &[], &[], &[]),
            ip("203.0.113.9")
        );
    }
}
