//! Fixtures the test binaries share: the rules most of them run with and the
//! handoff options built on them. (Logging in through handoff is on
//! [`super::world::World`].)

use super::handoff::Options;
use super::world::REDIRECT;

/// `native-app` may mint for `web-app` only; `web-app` takes the token by cookie or
/// by query, binds to the IP, and its sessions last 5 minutes (1 minute idle).
/// `web_extra` goes at the end of `web-app`'s table, `tail` after it (more tables).
pub fn rules_with(web_extra: &str, tail: &str) -> String {
    format!(
        r#"
[native."native-app"]
can_create_session_transfer_token = true
allowed_web_clients = ["web-app"]

[web."web-app"]
allowed_authentication_methods = ["cookie", "query"]
enforce_device_binding = "ip"
session_absolute = "5m"
session_idle = "1m"
{web_extra}
{tail}
"#
    )
}

/// [`rules_with`] and nothing after `web-app`'s table.
pub fn rules(web_extra: &str) -> String {
    rules_with(web_extra, "")
}

/// handoff with `rules` and the extra config tables `extra`.
pub fn options(rules: String, extra: &str) -> Options {
    Options {
        rules,
        extra: extra.to_string(),
        ..Options::default()
    }
}

/// [`options`] with `/start` a redemption path next to `/authorize`.
pub fn options_with_start(rules: String, extra: &str) -> Options {
    options(
        rules,
        &format!("[paths]\nredemption = [\"/authorize\", \"/start\"]\n{extra}"),
    )
}

/// The web app's code exchange (form parameters), as it sends it to `/oauth/token`.
pub fn code_exchange(code: &str) -> [(&'static str, &str); 4] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", "web-app"),
        ("redirect_uri", REDIRECT),
    ]
}
