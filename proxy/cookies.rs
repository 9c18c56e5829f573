//! Reading the request's `Cookie` header and writing handoff's own `Set-Cookie`s.
//!
//! Each `name=value` pair is parsed with the `cookie` crate; pairs handoff does not
//! remove are passed on byte for byte, so the IdP sees exactly what the browser
//! sent, minus the transfer-token cookies.

use cookie::{Cookie, SameSite};

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

/// `Set-Cookie` for the `__Host-` cookie that carries a query-delivered token across
/// the 303 (SPEC §2.2 step 1): `Secure`, `Path=/`, no `Domain`, `HttpOnly`,
/// `SameSite=Lax`, `Max-Age` = the token's remaining life.
pub fn redirect_cookie(name: &str, token: &str, max_age_secs: i64) -> String {
    Cookie::build((name, token))
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(time::Duration::seconds(max_age_secs.max(0)))
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
        let c = redirect_cookie("__Host-handoff_stt", "abc.1.def", 42);
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
