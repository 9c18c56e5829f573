//! Sorting a request once, when it arrives (SPEC §7.11): request hygiene (headers
//! the IdP must not read from a client, paths and hosts read one way only), the
//! client's address, the route, and the authorize parameters that matter. Nothing
//! downstream re-reads the request line.

use super::ctx::{Ctx, Route};
use crate::app::Handoff;
use crate::hygiene;
use http::header;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::net::{IpAddr, Ipv4Addr};

/// The configured paths in canonical form, computed once.
pub(super) struct Routes {
    jwks: String,
    token: String,
    revocation: String,
    backchannel_logout: String,
    redemption: Vec<String>,
    /// Header names (lower-case) whose `_` spellings are dropped: computed once,
    /// not per request.
    protected_headers: Vec<String>,
}

impl Routes {
    /// The routes of one instance's config.
    pub fn new(h: &Handoff) -> Routes {
        let c = |p: &str| canonical_path(p).into_owned();
        Routes {
            jwks: c(&h.config.paths.jwks),
            token: c(&h.config.paths.token),
            revocation: c(&h.config.paths.revocation),
            backchannel_logout: c(&h.config.backchannel_logout.path),
            redemption: h.config.paths.redemption.iter().map(|p| c(p)).collect(),
            protected_headers: hygiene::FORWARDING_HEADERS
                .iter()
                .chain(hygiene::ROUTING_HEADERS)
                .chain(hygiene::REWRITE_HEADERS)
                .map(|n| n.to_string())
                .chain([h.config.assertion.header.to_ascii_lowercase()])
                .collect(),
        }
    }

    /// The route of a canonical path and method.
    fn of(&self, path: &str, method: &http::Method) -> Route {
        let post = method == http::Method::POST;
        let get = method == http::Method::GET || method == http::Method::HEAD;
        if get && path == self.jwks {
            Route::Jwks
        } else if self.redemption.iter().any(|p| p == path) {
            Route::Redemption
        } else if post && path == self.token {
            Route::Token
        } else if post && path == self.revocation {
            Route::Revocation
        } else if post && path == self.backchannel_logout {
            Route::BackchannelLogout
        } else {
            Route::Proxy
        }
    }
}

/// Sorts the request into `ctx` after its hygiene; returns the status to refuse it
/// with (`400` ambiguous path or a token in it, `421` not one of handoff's hosts).
pub(super) fn sort(
    h: &Handoff,
    routes: &Routes,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Option<u16> {
    strip_headers(h, &routes.protected_headers, session.req_header_mut());
    let req = session.req_header();
    let raw_path = req.uri.path();
    if hygiene::ambiguous_path(raw_path) || hygiene::contains_stt(raw_path.as_bytes()) {
        tracing::info!("refused a path that routers read in more than one way");
        return Some(400);
    }
    if !host_is_ours(h, req, ctx) {
        tracing::info!("refused a request for a host that is not handoff's");
        return Some(421);
    }
    ctx.path = raw_path.to_string();
    // Matched in a canonical form: IdP routers commonly ignore case, a trailing
    // slash and percent-encoding, so `/Token/` must not slip past mediation.
    ctx.canonical_path = canonical_path(raw_path).into_owned();
    ctx.route = routes.of(&ctx.canonical_path, &req.method);
    let query = req.uri.query();
    ctx.hop = super::response::hop_key(&ctx.canonical_path, query.unwrap_or(""));
    ctx.authorize_client = query.and_then(|q| crate::token::query_param(q, "client_id"));
    ctx.unmediatable = query.is_some_and(hygiene::unmediatable_query);
    client_address(h, session, ctx);
    None
}

/// Drops every header the IdP must not hear from a client: the assertion header
/// (invariant 5) and its `_` spellings, forwarding and rerouting headers, any
/// header carrying a token-shaped value, a `Referer` naming the token parameter.
fn strip_headers(h: &Handoff, protected: &[String], req: &mut RequestHeader) {
    while req
        .remove_header(h.config.assertion.header.as_str())
        .is_some()
    {}
    let param = h.config.names.query_param.as_bytes();
    let drop: Vec<http::HeaderName> = req
        .headers
        .iter()
        .filter(|(name, value)| {
            let n = name.as_str();
            let routing = (h.config.upstream.forwarded_headers
                && hygiene::ROUTING_HEADERS.contains(&n))
                || hygiene::REWRITE_HEADERS.contains(&n);
            let referer_leak = n == "referer"
                && value
                    .as_bytes()
                    .windows(param.len())
                    .any(|w| w.eq_ignore_ascii_case(param));
            n != "cookie"
                && (hygiene::shadows(n, protected)
                    || routing
                    || referer_leak
                    || hygiene::contains_stt(value.as_bytes()))
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in drop {
        req.remove_header(&name);
    }
}

/// Whether the request's `Host` (and an absolute-form target's authority) is the
/// configured public host; records the `Host`.
fn host_is_ours(h: &Handoff, req: &RequestHeader, ctx: &mut Ctx) -> bool {
    let host = req
        .headers
        .get(header::HOST)
        .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
        .or_else(|| req.uri.authority().map(|a| a.to_string()));
    let ours = |got: &str| host_matches(got, &h.config.public_host);
    let ok =
        req.uri.authority().is_none_or(|a| ours(a.as_str())) && host.as_deref().is_none_or(ours);
    ctx.host = host;
    ok
}

/// The client's address after the trusted-proxy rule (SPEC §4.2), and the scheme
/// a trusted proxy says the browser used.
fn client_address(h: &Handoff, session: &Session, ctx: &mut Ctx) {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let req = session.req_header();
    let name = match h.config.forwarded_header {
        crate::client_ip::ForwardedHeader::XForwardedFor => "x-forwarded-for",
        crate::client_ip::ForwardedHeader::Forwarded => "forwarded",
    };
    let raw: Vec<Option<&str>> = req
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    ctx.client_ip = crate::client_ip::client_ip_from(
        peer,
        h.config.forwarded_header,
        &raw,
        &h.config.trusted_proxies,
    );
    let trusted = h
        .config
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&crate::client_ip::canonical(peer)));
    if trusted {
        ctx.forwarded_proto = req
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|p| *p == "https" || *p == "http")
            .map(str::to_owned);
    }
    ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
}

/// Whether the request's `Host` is one of handoff's public hosts (case-insensitive;
/// a missing port, or the scheme's default one, matches the configured host).
pub fn host_matches(got: &str, public_host: &str) -> bool {
    fn split(h: &str) -> (String, Option<&str>) {
        let h = h.trim();
        if let Some(rest) = h.strip_prefix('[') {
            return match rest.split_once(']') {
                Some((a, p)) => (format!("[{}]", a.to_ascii_lowercase()), p.strip_prefix(':')),
                None => (h.to_ascii_lowercase(), None),
            };
        }
        match h.rsplit_once(':') {
            Some((a, p)) if !a.contains(':') => (a.to_ascii_lowercase(), Some(p)),
            _ => (h.to_ascii_lowercase(), None),
        }
    }
    let (gh, gp) = split(got);
    let (ph, pp) = split(public_host);
    let gh = gh.trim_end_matches('.');
    gh == ph.trim_end_matches('.')
        && match (gp, pp) {
            (Some(a), Some(b)) => a == b,
            (Some(a), None) => a == "443" || a == "80",
            _ => true,
        }
}

/// SHA-256 over the configured request attributes (SPEC §4.2 `fingerprint`), or
/// None when none are configured or one of them is missing (a fingerprint
/// binding then fails).
pub fn fingerprint(req: &RequestHeader, names: &[String]) -> Option<[u8; 32]> {
    if names.is_empty() {
        return None;
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for n in names {
        ctx.update(n.as_bytes());
        ctx.update(b"\0");
        // A missing attribute makes no fingerprint at all: two requests that
        // both lack it must not "match".
        let v = req.headers.get(n.as_str())?;
        ctx.update(v.as_bytes());
        ctx.update(b"\0");
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Some(out)
}

/// A path as routers that are lenient see it: percent-decoded, ASCII lower-case,
/// repeated slashes collapsed, no trailing slash, `.` segments dropped.
pub fn canonical_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Fast path: most paths are canonical already.
    let b = path.as_bytes();
    let clean = b.first() == Some(&b'/')
        && (b.len() == 1 || b[b.len() - 1] != b'/')
        && !b
            .iter()
            .any(|c| c.is_ascii_uppercase() || *c == b'%' || *c == b'+')
        && !path.contains("//")
        && !path.contains("/./")
        && !path.ends_with("/.");
    if clean {
        return std::borrow::Cow::Borrowed(path);
    }
    let decoded: Vec<u8> =
        form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
    let decoded = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    let segments: Vec<&str> = decoded
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    std::borrow::Cow::Owned(format!("/{}", segments.join("/")))
}

/// The host part of `public_host`, when it is a DNS name (cookies cannot carry an
/// IP address as their `Domain`).
pub(super) fn cookie_domain(public_host: &str) -> Option<&str> {
    let host = public_host.rsplit_once(':').map_or(public_host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            public_host
        }
    });
    (host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[') && host.contains('.'))
        .then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_routers_see_one_path() {
        for p in [
            "/oauth/token",
            "/OAuth/Token",
            "/oauth/token/",
            "//oauth//token",
            "/oauth/%74oken",
            "/oauth/./token",
        ] {
            assert_eq!(canonical_path(p), "/oauth/token", "{p}");
        }
        assert_eq!(canonical_path("/"), "/");
        assert_ne!(canonical_path("/oauth/tokens"), "/oauth/token");
    }

    #[test]
    fn hosts_match_in_any_case_with_or_without_the_default_port() {
        assert!(host_matches("Login.Example.com", "login.example.com"));
        assert!(host_matches("login.example.com:443", "login.example.com"));
        assert!(host_matches("login.example.com.", "login.example.com"));
        assert!(host_matches("127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(host_matches("127.0.0.1", "127.0.0.1:8080"));
        assert!(!host_matches("127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!host_matches("login.example.com:6666", "login.example.com"));
        assert!(!host_matches("evil.example", "login.example.com"));
        assert!(host_matches("[::1]:8443", "[::1]:8443"));
        assert!(!host_matches("[::2]:8443", "[::1]:8443"));
    }
}
