//! Request hygiene: what handoff refuses or removes before any flow looks at a
//! request, because the IdP (or a server behind it) might read the request another
//! way than handoff does (SPEC §7.11: where handoff cannot be sure, it takes the
//! dangerous reading).
//!
//! - **Shadow headers.** CGI, WSGI, Rack and PHP servers read `X_Forwarded_For` as
//!   `X-Forwarded-For`. Every incoming header whose name, with `_` read as `-`,
//!   matches a header handoff strips or sets is dropped ([`shadows`]).
//! - **Ambiguous paths.** Java routers (Tomcat, Undertow, JAX-RS: Keycloak) drop
//!   `;params` and resolve dot segments; others decode `%2f` or read `\` as `/`.
//!   handoff cannot know which, so a raw path with any of these is answered `400`
//!   ([`ambiguous_path`]): nothing reaches the IdP under a path handoff matched one
//!   way and the IdP routes another (a `/token;x` that escapes mediation).
//! - **Session transfer tokens anywhere.** An STT-shaped value — the
//!   `{lineage}.{expiry}.{secret}` shape, also percent-encoded — is taken out of the
//!   query under any parameter name, dropped with any header that carries it,
//!   refused in a path, and stopped in a body ([`contains_stt`]).
//! - **Authorize requests handoff cannot mediate** ([`unmediatable`]): a response
//!   mode other than `query`, a response type other than `code`, a pushed (`PAR`)
//!   or signed (`JAR`) request object. Their code would come back where handoff
//!   cannot see it (an HTML form, a fragment, a JWT), so within a transfer session
//!   they get an ordinary login.

use std::borrow::Cow;

/// Lineage id length (base64url of 16 bytes).
const LINEAGE_LEN: usize = 22;
/// Secret length (base64url of 32 bytes).
const SECRET_LEN: usize = 43;
/// How many bytes of a body are held back between chunks so a token split across
/// two chunks is still seen whole before any of it is forwarded.
pub const STT_WINDOW: usize = LINEAGE_LEN + 1 + 20 + 1 + SECRET_LEN;

/// Headers handoff itself sets for the IdP (who the client is); a client's own
/// are never believed (lower-case).
pub const FORWARDING_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// Other forwarding headers IdPs build their URLs from (Keycloak reads
/// `X-Forwarded-Port` and `-Prefix`): dropped whenever handoff writes the
/// forwarding headers itself (`upstream.forwarded_headers`).
pub const ROUTING_HEADERS: &[&str] = &[
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-real-ip",
];

/// Headers that make some servers route a request to another path or method than
/// its request line says (IIS/Symfony `X-Original-URL`, method overrides): a
/// `/something` with `X-Original-URL: /token` would reach the token endpoint
/// unmediated. Always dropped.
pub const REWRITE_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// True when `name`, with `_` read as `-` and case ignored, is one of `protected`
/// (lower-case names) but is not spelled exactly like it: a header some servers
/// would read as the protected one.
pub fn shadows(name: &str, protected: &[impl AsRef<str>]) -> bool {
    if !name.contains('_') {
        return false;
    }
    let folded: String = name
        .bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect();
    protected.iter().any(|p| p.as_ref() == folded)
}

/// True for raw paths that routers read differently: `;` (path parameters),
/// `\`, `..` segments, and percent-encoded `.`, `/`, `\`, `%` or NUL. handoff answers
/// them `400` instead of guessing which reading the IdP takes.
pub fn ambiguous_path(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.iter().any(|c| matches!(c, b';' | b'\\' | 0)) {
        return true;
    }
    if raw.split('/').any(|s| s == "..") {
        return true;
    }
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|c| *c == b'%') {
        let at = i + p;
        let hex = b.get(at + 1..at + 3).map(|h| h.to_ascii_lowercase());
        match hex.as_deref() {
            Some(b"2e") | Some(b"2f") | Some(b"5c") | Some(b"25") | Some(b"00") => return true,
            Some(h) if h.iter().all(u8::is_ascii_hexdigit) => {}
            // A `%` that is not an escape: routers differ on it too.
            _ => return true,
        }
        i = at + 1;
    }
    false
}

/// Whether `b` holds something shaped like a session transfer token:
/// 22 base64url characters, `.`, digits, `.`, 43 base64url characters. Looked for
/// in the bytes as they are and percent-decoded (up to three times, for values
/// encoded more than once).
pub fn contains_stt(b: &[u8]) -> bool {
    if raw_contains_stt(b) {
        return true;
    }
    let mut cur: Cow<'_, [u8]> = Cow::Borrowed(b);
    for _ in 0..3 {
        if !cur.contains(&b'%') && !cur.contains(&b'+') {
            return false;
        }
        let next = percent_decode(&cur);
        if raw_contains_stt(&next) {
            return true;
        }
        if next.len() == cur.len() {
            return false;
        }
        cur = Cow::Owned(next);
    }
    false
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn raw_contains_stt(b: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = b[from..].iter().position(|c| *c == b'.') {
        let dot = from + p;
        from = dot + 1;
        // 22 base64url characters before the first dot...
        if dot < LINEAGE_LEN || !b[dot - LINEAGE_LEN..dot].iter().all(|c| b64url(*c)) {
            continue;
        }
        // ...digits, a second dot...
        let digits = b[dot + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let second = dot + 1 + digits;
        if digits == 0 || b.get(second) != Some(&b'.') {
            continue;
        }
        // ...and 43 base64url characters.
        let secret = &b[second + 1..];
        if secret.len() >= SECRET_LEN && secret[..SECRET_LEN].iter().all(|c| b64url(*c)) {
            return true;
        }
    }
    false
}

/// A query string with every session transfer token taken out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CleanQuery {
    /// The query that goes on (other parameters byte for byte), `None` when
    /// nothing was removed.
    pub query: Option<String>,
    /// The first value of the delivery parameter (percent-decoded), if any.
    pub delivered: Option<String>,
}

/// Takes out of a raw query the delivery parameter `param` (every occurrence,
/// also with a percent-encoded name) and every parameter whose name or value holds
/// an STT-shaped value, whatever it is called. Parameters are split on `&` and, as
/// some servers do, on `;`.
pub fn clean_query(query: &str, param: &str) -> CleanQuery {
    let mut kept = Vec::new();
    let mut delivered = None;
    let mut removed = false;
    for seg in query.split('&') {
        let named = seg.split(';').any(|part| {
            form_urlencoded::parse(part.as_bytes())
                .next()
                .is_some_and(|(k, v)| {
                    if k == param {
                        delivered.get_or_insert_with(|| v.into_owned());
                        true
                    } else {
                        false
                    }
                })
        });
        if named || contains_stt(seg.as_bytes()) {
            removed = true;
        } else {
            kept.push(seg);
        }
    }
    CleanQuery {
        query: removed.then(|| kept.join("&")),
        delivered,
    }
}

/// Every `(name, value)` of a query, names ASCII lower-cased, split on `&` and `;`.
fn params(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split(['&', ';']).filter_map(|seg| {
        form_urlencoded::parse(seg.as_bytes())
            .next()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
    })
}

/// True when parameters (of a query, or a form body) ask for an authorization
/// response handoff cannot mediate: any `response_mode` other than `query`, any
/// `response_type` other than `code`, a `request` object or a pushed `request_uri`.
/// Every occurrence counts (IdPs differ in which duplicate they read).
pub fn unmediatable<'a>(params_list: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    params_list.into_iter().any(|(k, v)| match k {
        "response_mode" => v != "query",
        "response_type" => v != "code",
        "request" | "request_uri" => true,
        _ => false,
    })
}

/// [`unmediatable`] over a raw query string.
pub fn unmediatable_query(query: &str) -> bool {
    let all: Vec<(String, String)> = params(query).collect();
    unmediatable(all.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The path of the clean-URL redirect: always exactly one leading `/`, so a
/// request for `//evil.example/x` cannot become a protocol-relative `Location`.
pub fn local_location(path: &str, query: Option<&str>) -> String {
    let p = path.trim_start_matches(['/', '\\']);
    match query {
        Some(q) if !q.is_empty() => format!("/{p}?{q}"),
        _ => format!("/{p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STT: &str =
        "AAAAAAAAAAAAAAAAAAAAAA.1800000000.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn shadow_headers() {
        let p = ["x-handoff-assertion", "x-forwarded-for"];
        assert!(shadows("X_Handoff_Assertion", &p));
        assert!(shadows("x_forwarded-for", &p));
        assert!(
            !shadows("X-Forwarded-For", &p),
            "the exact one is handled itself"
        );
        assert!(!shadows("x_other", &p));
    }

    #[test]
    fn ambiguous_paths() {
        for p in [
            "/token;jsessionid=x",
            "/x/../token",
            "/token/.;/",
            "/%2e%2e/token",
            "/a%2Ftoken",
            "/a\\token",
            "/a%5ctoken",
            "/a%252e",
            "/a%zz",
            "/a%",
        ] {
            assert!(ambiguous_path(p), "{p}");
        }
        for p in [
            "/token",
            "/oauth/%74oken",
            "/a/./b",
            "/",
            "/realms/x/protocol",
        ] {
            assert!(!ambiguous_path(p), "{p}");
        }
    }

    #[test]
    fn stt_shapes() {
        assert!(contains_stt(STT.as_bytes()));
        assert!(contains_stt(format!("x={STT}&y").as_bytes()));
        assert!(contains_stt(STT.replace('.', "%2E").as_bytes()));
        assert!(contains_stt(STT.replace('.', "%252E").as_bytes()));
        assert!(!contains_stt(b"AAAAAAAAAAAAAAAAAAAAAA.1800000000.short"));
        assert!(!contains_stt(b"a.b.c"));
        // A PKCE verifier alone is not one.
        assert!(!contains_stt(
            b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
    }

    #[test]
    fn queries_lose_every_token() {
        let c = clean_query(
            &format!("client_id=w&session_transfer_token={STT}&s=a%20b"),
            "session_transfer_token",
        );
        assert_eq!(c.query.as_deref(), Some("client_id=w&s=a%20b"));
        assert_eq!(c.delivered.as_deref(), Some(STT));
        let c = clean_query(&format!("x={STT}&s=1"), "session_transfer_token");
        assert_eq!((c.query.as_deref(), c.delivered), (Some("s=1"), None));
        let c = clean_query(
            &format!("a=1;session_transfer_token={STT}"),
            "session_transfer_token",
        );
        assert_eq!(c.query.as_deref(), Some(""));
        let c = clean_query("session%5Ftransfer%5Ftoken=z", "session_transfer_token");
        assert_eq!(c.delivered.as_deref(), Some("z"));
        assert_eq!(
            clean_query("a=1&b=2", "session_transfer_token"),
            CleanQuery::default()
        );
    }

    #[test]
    fn unmediatable_shapes() {
        for q in [
            "response_mode=form_post",
            "response_mode=query&response_mode=fragment",
            "Response_Mode=web_message",
            "response_mode=query.jwt",
            "response_type=code%20id_token",
            "response_type=token",
            "request_uri=urn:x",
            "request=eyJ",
            "a=1;response_mode=form_post",
        ] {
            assert!(unmediatable_query(q), "{q}");
        }
        for q in [
            "response_type=code",
            "response_mode=query&response_type=code",
            "",
            "x=1",
        ] {
            assert!(!unmediatable_query(q), "{q}");
        }
    }

    #[test]
    fn locations_are_local() {
        assert_eq!(
            local_location("//evil.example/a", Some("x=1")),
            "/evil.example/a?x=1"
        );
        assert_eq!(local_location("/\\evil", None), "/evil");
        assert_eq!(local_location("/authorize", Some("")), "/authorize");
    }
}
