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
    cookie_values(headers, name).collect()
}

/// The value of the first cookie named `name` in the `Cookie` header values.
pub fn find_cookie(headers: &[&[u8]], name: &str) -> Option<String> {
    cookie_values(headers, name).next()
}

/// The values of cookies named `name`, unquoted, in order, read lazily.
fn cookie_values<'a>(headers: &'a [&'a [u8]], name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .iter()
        .flat_map(|h| h.split(|b| *b == b';'))
        .filter_map(move |seg| {
            let seg = seg.trim_ascii();
            let i = seg.iter().position(|b| *b == b'=')?;
            (seg[..i].trim_ascii() == name.as_bytes()).then(|| unquote(seg[i + 1..].trim_ascii()))
        })
}

/// A cookie value without RFC 6265's optional double quotes, as text.
fn unquote(v: &[u8]) -> String {
    let v = v
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v);
    String::from_utf8_lossy(v).into_owned()
}

/// One configured session cookie as a request carries it, and every value an IdP
/// might read out of it (SPEC §7.11).
///
/// Cookie parsers disagree: oidc-provider (the `cookies` package) strips a leading
/// quote without a closing one; others strip quotes at either end, percent-decode,
/// trim, split on `,` as RFC 2965 did, read `%5Fsession` or `_Session` as
/// `_session` (PHP also reads `.` and space as `_`), or take the last of duplicates.
/// handoff collects every such reading, checks each against the store — the dead
/// one wins — and passes a value that is not in canonical form only when one of
/// its readings is a live bound session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCookieScan {
    /// The configured name.
    pub name: String,
    /// Every distinct value an IdP might read (non-empty ones).
    pub readings: Vec<String>,
    /// Exactly one occurrence, spelled exactly, with a plain value: there is only
    /// one way to read it.
    pub canonical: bool,
    /// More occurrences than allowed: stripped without a look-up.
    pub over_limit: bool,
}

/// A cookie name as lenient parsers see it: trimmed, unquoted, percent-decoded,
/// lower-cased, with `.`, `-`, `[` and space read as `_` (PHP).
fn folded_name(name: &[u8]) -> String {
    let n = name.trim_ascii();
    let n = n.strip_prefix(b"\"").unwrap_or(n);
    let n = n.strip_suffix(b"\"").unwrap_or(n);
    let decoded = percent_decode(n);
    decoded
        .iter()
        .map(|b| match b {
            b'.' | b' ' | b'[' | b'-' => '_',
            b => b.to_ascii_lowercase() as char,
        })
        .collect()
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A value byte that has one reading everywhere (RFC 6265 cookie-octet, minus `%`).
fn plain_value_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\' | b'%')
}

/// Every value a lenient parser might read out of a raw cookie value.
fn readings_of(v: &[u8], out: &mut Vec<String>) {
    let mut forms: Vec<Vec<u8>> = vec![v.to_vec()];
    let t = v.trim_ascii();
    forms.push(t.to_vec());
    let lead = t.strip_prefix(b"\"").unwrap_or(t);
    let trail = t.strip_suffix(b"\"").unwrap_or(t);
    let both = lead.strip_suffix(b"\"").unwrap_or(lead);
    for f in [lead, trail, both] {
        forms.push(f.to_vec());
        forms.push(f.trim_ascii().to_vec());
    }
    // The npm `cookie` parser (oidc-provider, Express): a value that starts with a
    // quote loses its first and last character, whatever the last one is.
    if t.len() >= 2 && (t[0] == b'"' || t[t.len() - 1] == b'"') {
        forms.push(t[1..t.len() - 1].to_vec());
    }
    // Cut at a separator some parser splits on.
    let cut: Vec<Vec<u8>> = forms
        .iter()
        .filter_map(|f| {
            f.iter()
                .position(|b| matches!(b, b',' | b' ' | b'\t'))
                .map(|i| f[..i].to_vec())
        })
        .collect();
    forms.extend(cut);
    let decoded: Vec<Vec<u8>> = forms.iter().map(|f| percent_decode(f)).collect();
    forms.extend(decoded);
    for f in forms {
        if f.is_empty() {
            continue;
        }
        let s = String::from_utf8_lossy(&f).into_owned();
        if !out.contains(&s) {
            out.push(s);
        }
    }
}

/// Scans the `Cookie` header values for the configured session cookie `names`
/// (see [`SessionCookieScan`]). At most `max_occurrences` occurrences of a name
/// are read; past that the name is marked `over_limit`.
pub fn scan_session_cookies(
    headers: &[&[u8]],
    names: &[String],
    max_occurrences: usize,
) -> Vec<SessionCookieScan> {
    let folded: Vec<String> = names.iter().map(|n| folded_name(n.as_bytes())).collect();
    let mut scans: Vec<SessionCookieScan> = names
        .iter()
        .map(|n| SessionCookieScan {
            name: n.clone(),
            canonical: true,
            ..Default::default()
        })
        .collect();
    let mut seen = vec![0usize; names.len()];
    let mut visit = |name: &[u8], value: &[u8], exact_split: bool| {
        let f = folded_name(name);
        for (i, n) in names.iter().enumerate() {
            if folded[i] != f {
                continue;
            }
            let s = &mut scans[i];
            seen[i] += 1;
            if seen[i] > max_occurrences {
                s.over_limit = true;
                continue;
            }
            if !exact_split
                || seen[i] > 1
                || name != n.as_bytes()
                || !value.iter().all(|b| plain_value_byte(*b))
            {
                s.canonical = false;
            }
            readings_of(value, &mut s.readings);
        }
    };
    for h in headers {
        for seg in h.split(|b| *b == b';') {
            let seg = seg.trim_ascii();
            if let Some(i) = seg.iter().position(|b| *b == b'=') {
                visit(&seg[..i], seg[i + 1..].trim_ascii(), true);
            }
            // RFC 2965 parsers also split on `,`: every piece is a cookie to them.
            for piece in seg.split(|b| *b == b',').skip(1) {
                if let Some(i) = piece.iter().position(|b| *b == b'=') {
                    visit(&piece[..i], piece[i + 1..].trim_ascii(), false);
                }
            }
        }
    }
    for (i, s) in scans.iter_mut().enumerate() {
        if seen[i] == 0 {
            s.canonical = true;
        }
    }
    scans.retain(|s| !s.readings.is_empty() || s.over_limit);
    scans
}

/// Like [`take_cookies`], but with cookie names compared as lenient parsers
/// compare them (see [`SessionCookieScan`]): removes every cookie that some IdP
/// would read as one of `names`, and every pair a `,`-splitting parser would.
pub fn take_cookies_folded(headers: &[&[u8]], names: &[&str]) -> Option<Vec<u8>> {
    let folded: Vec<String> = names.iter().map(|n| folded_name(n.as_bytes())).collect();
    let mut kept: Vec<&[u8]> = Vec::new();
    for h in headers {
        for seg in h.split(|b| *b == b';') {
            let seg = seg.trim_ascii();
            if seg.is_empty() {
                continue;
            }
            let hit = seg.split(|b| *b == b',').enumerate().any(|(k, piece)| {
                let piece = if k == 0 { seg } else { piece };
                let name = match piece.iter().position(|b| *b == b'=') {
                    Some(i) => &piece[..i],
                    None if k == 0 => piece,
                    None => return false,
                };
                folded.contains(&folded_name(name))
            });
            if !hit {
                kept.push(seg);
            }
        }
    }
    (!kept.is_empty()).then(|| kept.join(&b"; "[..]))
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
    harden(&mut c, cfg);
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

/// An IdP session cookie's attributes (SPEC §2.4): `Secure`, `HttpOnly`, the
/// configured `SameSite`, and no wider `Domain` than configured.
fn harden(c: &mut Cookie<'_>, cfg: &SessionConfig) {
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
            max_cookie_occurrences: 4,
            max_cookie_bytes: 16384,
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
        for (domain, kept) in [
            ("example.com", "login.example.com"),
            ("eu.login.example.com", "eu.login.example.com"),
            ("evil.com", "login.example.com"),
        ] {
            let r = rewrite_set_cookie(
                &format!("_session=a; Domain={domain}"),
                &cfg(Some("login.example.com")),
                None,
            )
            .unwrap();
            assert!(r.header.contains(&format!("Domain={kept}")), "{}", r.header);
        }
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
    fn session_cookies_are_read_every_way_an_idp_might() {
        let names = vec!["_session".to_string()];
        let scan = |h: &[u8]| scan_session_cookies(&[h], &names, 4);
        let s = scan(b"a=1; _session=V~; _session.sig=S");
        assert!(s[0].canonical, "{s:?}");
        assert_eq!(s[0].readings, vec!["V~".to_string()]);
        let s = scan(b"_session=\"V~; _session.sig=S");
        assert!(!s[0].canonical);
        assert!(s[0].readings.contains(&"V~".to_string()), "{s:?}");
        let s = scan(b"_session=\"Vx");
        assert!(
            s[0].readings.contains(&"V".to_string()),
            "oidc-provider's reading: {s:?}"
        );
        let s = scan(b"_session=V~\"");
        assert!(!s[0].canonical && s[0].readings.contains(&"V~".to_string()));
        let s = scan(b"_session=%56%7E");
        assert!(
            !s[0].canonical && s[0].readings.contains(&"V~".to_string()),
            "{s:?}"
        );
        let s = scan(b"x=1, _session=V~");
        assert!(
            !s[0].canonical && s[0].readings.contains(&"V~".to_string()),
            "{s:?}"
        );
        for h in [
            &b"_Session=V~"[..],
            b"%5Fsession=V~",
            b" _session =V~",
            b"\"_session\"=V~",
        ] {
            let s = scan(h);
            assert!(
                !s.is_empty() && !s[0].canonical,
                "{:?}",
                String::from_utf8_lossy(h)
            );
            assert!(s[0].readings.contains(&"V~".to_string()));
        }
        let s = scan(b"_session=a; _session=b");
        assert!(!s[0].canonical && s[0].readings.len() == 2);
        let many = "_session=x; ".repeat(10);
        assert!(scan(many.as_bytes())[0].over_limit);
        assert!(scan(b"other=1").is_empty());
        assert_eq!(
            take_cookies_folded(&[b"a=1; _Session=x; b=2, _session=y; c=3"], &["_session"])
                .as_deref(),
            Some(&b"a=1; c=3"[..])
        );
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
