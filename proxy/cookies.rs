//! Cookies in both directions.
//!
//! Requests: the `Cookie` header is split into its pairs as bytes; pairs handoff
//! does not remove are passed on byte for byte, so the IdP sees exactly what the
//! browser sent, minus transfer-token and transaction cookies and dead sessions.
//!
//! Responses (SPEC §2.4): every `Set-Cookie` of the IdP is parsed with the `cookie`
//! crate and written back — all of them, in order. The IdP's session cookies get
//! `Secure`, `HttpOnly`, the configured `SameSite`, no wider `Domain` than
//! configured, and an expiry no later than the web session's absolute limit; other
//! cookies keep their values and gain `Secure` when configured.

use crate::config::{SameSite as ConfSameSite, SessionConfig};
use cookie::{Cookie, Expiration, SameSite};

/// Removes every cookie whose name is in `names` from the `Cookie` header values.
/// Returns the remaining header (None when nothing is left) and the removed
/// `(name, value)` pairs in order.
///
/// It works on bytes, not `&str`: a header with one non-UTF-8 byte anywhere must
/// not be a hiding place for a transfer token (invariant 4), and the cookies it
/// keeps must reach the IdP exactly as sent. A removed cookie whose value is not
/// UTF-8 is removed all the same (its value comes back lossily, and is garbage).
pub fn take_cookies(headers: &[&[u8]], names: &[&str]) -> (Option<Vec<u8>>, Vec<(String, String)>) {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut taken = Vec::new();
    for h in headers {
        for seg in h.split(|b| *b == b';') {
            let seg = seg.trim_ascii();
            if seg.is_empty() {
                continue;
            }
            let (name, value) = match seg.iter().position(|b| *b == b'=') {
                Some(i) => (seg[..i].trim_ascii(), seg[i + 1..].trim_ascii()),
                None => (seg, &b""[..]),
            };
            if names.iter().any(|n| n.as_bytes() == name) {
                // RFC 6265 allows the value in double quotes.
                let value = value
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(value);
                taken.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
            } else {
                kept.push(seg);
            }
        }
    }
    let rest = (!kept.is_empty()).then(|| kept.join(&b"; "[..]));
    (rest, taken)
}

/// Every value of cookies named `name` in the `Cookie` header values, in order
/// (duplicates happen, and IdPs differ in which one they read).
pub fn find_cookies(headers: &[&[u8]], name: &str) -> Vec<String> {
    headers
        .iter()
        .flat_map(|h| h.split(|b| *b == b';'))
        .filter_map(|seg| {
            let seg = seg.trim_ascii();
            let i = seg.iter().position(|b| *b == b'=')?;
            (seg[..i].trim_ascii() == name.as_bytes()).then(|| unquote(seg[i + 1..].trim_ascii()))
        })
        .collect()
}

/// A cookie value without RFC 6265's optional double quotes, as text.
fn unquote(v: &[u8]) -> String {
    let v = v
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v);
    String::from_utf8_lossy(v).into_owned()
}

/// The value of the first cookie named `name` in the `Cookie` header values.
pub fn find_cookie(headers: &[&[u8]], name: &str) -> Option<String> {
    headers
        .iter()
        .flat_map(|h| h.split(|b| *b == b';'))
        .find_map(|seg| {
            let seg = seg.trim_ascii();
            let i = seg.iter().position(|b| *b == b'=')?;
            (seg[..i].trim_ascii() == name.as_bytes()).then(|| {
                let v = seg[i + 1..].trim_ascii();
                let v = v
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v);
                String::from_utf8_lossy(v).into_owned()
            })
        })
}

/// A rewritten `Set-Cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The header value to send.
    pub header: String,
    /// For an IdP session cookie that is set (not deleted): its name and value, to bind.
    pub session_cookie: Option<(String, String)>,
}

fn is_deletion(c: &Cookie<'_>, now: u64) -> bool {
    if c.value().is_empty() {
        return true;
    }
    if let Some(ma) = c.max_age() {
        if ma.whole_seconds() <= 0 {
            return true;
        }
    }
    if let Some(Expiration::DateTime(t)) = c.expires() {
        if t.unix_timestamp() <= now as i64 {
            return true;
        }
    }
    false
}

/// Rewrites one `Set-Cookie` of the IdP. `cap` is `(absolute_exp, now)` when the
/// response belongs to a transfer session: session cookies then expire no later.
/// A session cookie that cannot be parsed is dropped (returns None) rather than
/// passed on unhardened; any other unparseable header is passed on untouched.
pub fn rewrite_set_cookie(
    raw: &str,
    cfg: &SessionConfig,
    cap: Option<(u64, u64)>,
) -> Option<Rewritten> {
    let mut c = match Cookie::parse(raw.to_string()) {
        Ok(c) => c,
        Err(_) => {
            let name = raw
                .split(';')
                .next()
                .and_then(|p| p.split('=').next())
                .unwrap_or("")
                .trim();
            if cfg.cookie_names.iter().any(|n| n == name) {
                return None;
            }
            return Some(Rewritten {
                header: raw.to_string(),
                session_cookie: None,
            });
        }
    };
    if !cfg.cookie_names.iter().any(|n| n == c.name()) {
        if cfg.secure_all_cookies && c.secure() != Some(true) {
            c.set_secure(true);
            return Some(Rewritten {
                header: c.to_string(),
                session_cookie: None,
            });
        }
        return Some(Rewritten {
            header: raw.to_string(),
            session_cookie: None,
        });
    }
    c.set_secure(true);
    c.set_http_only(true);
    c.set_same_site(match cfg.same_site {
        ConfSameSite::Lax => SameSite::Lax,
        ConfSameSite::Strict => SameSite::Strict,
        ConfSameSite::None => SameSite::None,
    });
    let narrow_enough = |d: &str| {
        let d = d.trim_start_matches('.').to_ascii_lowercase();
        cfg.domain
            .as_deref()
            .is_some_and(|allowed| d == allowed || d.ends_with(&format!(".{allowed}")))
    };
    match c.domain().map(str::to_owned) {
        Some(d) if !narrow_enough(&d) => match &cfg.domain {
            Some(allowed) => c.set_domain(allowed.clone()),
            None => c.unset_domain(),
        },
        _ => {}
    }
    let now = cap.map(|(_, now)| now).unwrap_or(0);
    let deletion = is_deletion(&c, now);
    if let (Some((abs, now)), false) = (cap, deletion) {
        let remaining = abs.saturating_sub(now) as i64;
        let max_age = c
            .max_age()
            .map(|m| m.whole_seconds())
            .unwrap_or(i64::MAX)
            .min(remaining);
        c.set_max_age(time::Duration::seconds(max_age));
        let abs_t = time::OffsetDateTime::from_unix_timestamp(abs as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let expires = match c.expires() {
            Some(Expiration::DateTime(t)) if t < abs_t => t,
            _ => abs_t,
        };
        c.set_expires(expires);
    }
    // The value as the browser will send it back (quotes stripped, like find_cookie).
    let session_cookie = (!deletion).then(|| (c.name().to_string(), c.value_trimmed().to_string()));
    Some(Rewritten {
        header: c.to_string(),
        session_cookie,
    })
}

/// `Set-Cookie` that ends an IdP session cookie in the browser.
pub fn expire_session_cookie(name: &str, cfg: &SessionConfig) -> String {
    let mut c = Cookie::build((name, ""))
        .secure(true)
        .http_only(true)
        .path("/")
        .max_age(time::Duration::ZERO)
        .build();
    if let Some(d) = &cfg.domain {
        c.set_domain(d.clone());
    }
    c.to_string()
}

/// `Set-Cookie` for handoff's own `__Host-` cookies — the one that carries a
/// query-delivered token across the 303 (SPEC §2.2 step 1) and the login
/// transaction's: `Secure`, `Path=/`, no `Domain`, `HttpOnly`, `SameSite=Lax`,
/// `Max-Age` as given.
pub fn host_cookie(name: &str, token: &str, max_age_secs: i64) -> String {
    Cookie::build((name, token))
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(time::Duration::seconds(max_age_secs.max(0)))
        .build()
        .to_string()
}

/// `Set-Cookie` that removes a cookie set with `Domain=domain` (a cookie is only
/// removed by a `Set-Cookie` with the same domain and path).
pub fn expire_cookie_in_domain(name: &str, domain: &str) -> String {
    Cookie::build((name, ""))
        .secure(true)
        .http_only(true)
        .path("/")
        .domain(domain.to_string())
        .max_age(time::Duration::ZERO)
        .build()
        .to_string()
}

/// `Set-Cookie` that removes a cookie from the browser (`Max-Age=0`).
pub fn expire_cookie(name: &str) -> String {
    Cookie::build((name, ""))
        .secure(true)
        .http_only(true)
        .path("/")
        .max_age(time::Duration::ZERO)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(domain: Option<&str>) -> SessionConfig {
        SessionConfig {
            cookie_names: vec!["_session".into(), "KEYCLOAK_IDENTITY".into()],
            same_site: ConfSameSite::Lax,
            domain: domain.map(str::to_owned),
            secure_all_cookies: true,
            transaction_cookie: "__Host-handoff_tx".into(),
            transaction_ttl: Duration::from_secs(120),
            transaction_max_hops: 20,
            cache_ttl: Duration::from_secs(1),
            outage_grace: Duration::from_secs(30),
            retention: Duration::from_secs(86400),
        }
    }

    fn attrs(h: &str) -> Vec<String> {
        h.split(';')
            .map(|a| a.trim().to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn session_cookies_are_hardened() {
        let r =
            rewrite_set_cookie("_session=abc; Path=/; SameSite=None", &cfg(None), None).unwrap();
        let a = attrs(&r.header);
        assert!(
            a.contains(&"secure".into())
                && a.contains(&"httponly".into())
                && a.contains(&"samesite=lax".into()),
            "{}",
            r.header
        );
        assert_eq!(r.session_cookie, Some(("_session".into(), "abc".into())));
    }

    #[test]
    fn domain_is_never_wider_than_configured() {
        // No domain configured: host-only.
        let r = rewrite_set_cookie("_session=a; Domain=.example.com", &cfg(None), None).unwrap();
        assert!(
            !r.header.to_ascii_lowercase().contains("domain"),
            "{}",
            r.header
        );
        // Wider than allowed → the allowed one; narrower → kept.
        let r = rewrite_set_cookie(
            "_session=a; Domain=example.com",
            &cfg(Some("login.example.com")),
            None,
        )
        .unwrap();
        assert!(
            r.header.contains("Domain=login.example.com"),
            "{}",
            r.header
        );
        let r = rewrite_set_cookie(
            "_session=a; Domain=eu.login.example.com",
            &cfg(Some("login.example.com")),
            None,
        )
        .unwrap();
        assert!(
            r.header.contains("Domain=eu.login.example.com"),
            "{}",
            r.header
        );
        let r = rewrite_set_cookie(
            "_session=a; Domain=evil.com",
            &cfg(Some("login.example.com")),
            None,
        )
        .unwrap();
        assert!(
            r.header.contains("Domain=login.example.com"),
            "{}",
            r.header
        );
    }

    #[test]
    fn expiry_is_capped_at_the_absolute_limit_whatever_form_it_takes() {
        let now = 1_800_000_000;
        let abs = now + 600;
        // Max-Age longer than the limit.
        let r =
            rewrite_set_cookie("_session=a; Max-Age=86400", &cfg(None), Some((abs, now))).unwrap();
        assert!(r.header.contains("Max-Age=600"), "{}", r.header);
        // Expires later than the limit (and no Max-Age).
        let r = rewrite_set_cookie(
            "_session=a; Expires=Wed, 01 Jan 2110 00:00:00 GMT",
            &cfg(None),
            Some((abs, now)),
        )
        .unwrap();
        let c = Cookie::parse(r.header.clone()).unwrap();
        assert_eq!(c.expires_datetime().unwrap().unix_timestamp(), abs as i64);
        assert_eq!(c.max_age().unwrap().whole_seconds(), 600);
        // A browser-session cookie (neither) gets both.
        let r = rewrite_set_cookie("_session=a", &cfg(None), Some((abs, now))).unwrap();
        assert!(
            r.header.contains("Max-Age=600") && r.header.contains("Expires="),
            "{}",
            r.header
        );
        // Shorter than the limit: kept.
        let r = rewrite_set_cookie("_session=a; Max-Age=60", &cfg(None), Some((abs, now))).unwrap();
        assert!(
            r.header.contains("Max-Age=60;") || r.header.ends_with("Max-Age=60"),
            "{}",
            r.header
        );
        // A deletion stays a deletion and binds nothing.
        let r = rewrite_set_cookie("_session=; Max-Age=0", &cfg(None), Some((abs, now))).unwrap();
        assert!(r.header.contains("Max-Age=0"));
        assert_eq!(r.session_cookie, None);
        let r = rewrite_set_cookie(
            "_session=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            &cfg(None),
            Some((abs, now)),
        )
        .unwrap();
        assert_eq!(r.session_cookie, None);
    }

    #[test]
    fn quoted_values_and_other_cookies_keep_their_values() {
        let r = rewrite_set_cookie("_session=\"q v\"; Path=/", &cfg(None), None).unwrap();
        assert!(
            r.header.starts_with("_session=\"q v\"") || r.header.starts_with("_session=q v"),
            "{}",
            r.header
        );
        let r = rewrite_set_cookie("lang=en-US; Path=/", &cfg(None), None).unwrap();
        assert!(
            r.header.starts_with("lang=en-US") && r.header.contains("Secure"),
            "{}",
            r.header
        );
        assert_eq!(r.session_cookie, None);
        let mut off = cfg(None);
        off.secure_all_cookies = false;
        let r = rewrite_set_cookie("lang=en-US; Path=/", &off, None).unwrap();
        assert_eq!(r.header, "lang=en-US; Path=/");
    }

    #[test]
    fn unparseable_headers() {
        assert_eq!(
            rewrite_set_cookie("garbage without equals", &cfg(None), None)
                .unwrap()
                .header,
            "garbage without equals"
        );
        assert!(
            rewrite_set_cookie("_session", &cfg(None), None).is_none()
                || rewrite_set_cookie("_session", &cfg(None), None)
                    .unwrap()
                    .session_cookie
                    .is_none()
        );
    }

    #[test]
    fn finds_request_cookies() {
        assert_eq!(
            find_cookie(&[b"a=1; _session=\"xyz\"; b=2"], "_session").as_deref(),
            Some("xyz")
        );
        assert_eq!(
            find_cookie(&[b"a=1", b"_session=z"], "_session").as_deref(),
            Some("z")
        );
        assert_eq!(find_cookie(&[b"a=1"], "_session"), None);
    }

    #[test]
    fn takes_only_named_cookies_and_keeps_the_rest_verbatim() {
        let names = ["auth0_session_transfer_token", "session_transfer_token"];
        let (rest, taken) = take_cookies(
            &[
                b"a=1; auth0_session_transfer_token=TOKEN; b=\"q v\"",
                b"session_transfer_token=\"T2\";c=3",
            ],
            &names,
        );
        assert_eq!(rest.as_deref(), Some(&b"a=1; b=\"q v\"; c=3"[..]));
        assert_eq!(
            taken,
            vec![
                ("auth0_session_transfer_token".into(), "TOKEN".into()),
                ("session_transfer_token".into(), "T2".into())
            ]
        );
        let (rest, taken) = take_cookies(&[b"x=1"], &["y"]);
        assert_eq!((rest.as_deref(), taken.len()), (Some(&b"x=1"[..]), 0));
        let (rest, _) = take_cookies(&[b"y=1"], &["y"]);
        assert_eq!(rest, None);
        let (rest, _) = take_cookies(&[b";;=;garbage;;"], &["y"]);
        assert!(rest.is_some());
        // Non-UTF-8 bytes elsewhere in the header do not shield the token, and survive.
        let (rest, taken) = take_cookies(&[b"a=\xff\xfe; session_transfer_token=T; z"], &names);
        assert_eq!(rest.as_deref(), Some(&b"a=\xff\xfe; z"[..]));
        assert_eq!(taken[0].1, "T");
    }

    #[test]
    fn redirect_cookie_has_host_prefix_attributes() {
        let c = host_cookie("__Host-handoff_stt", "abc.1.def", 42);
        for part in [
            "__Host-handoff_stt=abc.1.def",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=42",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Domain"));
        assert!(expire_cookie("x").contains("Max-Age=0"));
    }
}
