//! Reading the request's `Cookie` header and writing handoff's own `Set-Cookie`s.
//!
//! Each `name=value` pair is parsed with the `cookie` crate; pairs handoff does not
//! remove are passed on byte for byte, so the IdP sees exactly what the browser
//! sent, minus the transfer-token cookies.

use cookie::{Cookie, SameSite};

/// Removes every cookie whose name is in `names` from the `Cookie` header values.
/// Returns the remaining header (None when nothing is left) and the removed
/// `(name, value)` pairs in order.
pub fn take_cookies(headers: &[&str], names: &[&str]) -> (Option<String>, Vec<(String, String)>) {
    let mut kept: Vec<&str> = Vec::new();
    let mut taken = Vec::new();
    for h in headers {
        for seg in h.split(';') {
            let seg = seg.trim();
            if seg.is_empty() {
                continue;
            }
            match Cookie::parse(seg) {
                Ok(c) if names.contains(&c.name()) => {
                    taken.push((c.name().to_string(), c.value().to_string()))
                }
                // A segment that does not parse, or another cookie: not ours to judge.
                _ => kept.push(seg),
            }
        }
    }
    let rest = (!kept.is_empty()).then(|| kept.join("; "));
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
        let (rest, taken) = take_cookies(
            &[
                "a=1; auth0_session_transfer_token=TOKEN; b=\"q v\"",
                "session_transfer_token=T2;c=3",
            ],
            &["auth0_session_transfer_token", "session_transfer_token"],
        );
        assert_eq!(rest.as_deref(), Some("a=1; b=\"q v\"; c=3"));
        assert_eq!(
            taken,
            vec![
                ("auth0_session_transfer_token".into(), "TOKEN".into()),
                ("session_transfer_token".into(), "T2".into())
            ]
        );
        let (rest, taken) = take_cookies(&["x=1"], &["y"]);
        assert_eq!((rest.as_deref(), taken.len()), (Some("x=1"), 0));
        let (rest, _) = take_cookies(&["y=1"], &["y"]);
        assert_eq!(rest, None);
        let (rest, _) = take_cookies(&[";;=;garbage;;"], &["y"]);
        assert!(rest.is_some());
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
