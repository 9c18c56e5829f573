//! The authorization endpoint: assertion login, `_session` SSO, or the login page;
//! and `/resume`, where a deferred login sets its session cookie.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use ring::digest;

use super::jwt::{b64e, now_secs};
use super::params::{
    append_query, cookie_values, normalize_scope, parse_params, valid_redirect_uri,
};
use super::reply::{authorize_error_page, login_page, redirect_error, response};
use super::state::{CodeGrant, Inner};
use super::{Body, ASSERTION_HEADER, CODE_TTL, SESSION_COOKIE};

impl Inner {
    pub(super) async fn authorize(&self, parts: &http::request::Parts) -> Response<Body> {
        let params = match parse_params(parts.uri.query().unwrap_or("").as_bytes()) {
            Ok(p) => p,
            Err(e) => return authorize_error_page(&e),
        };
        let Some(client_id) = params.get("client_id").cloned() else {
            return authorize_error_page("missing client_id");
        };
        let Some(redirect_uri) = params.get("redirect_uri").cloned() else {
            return authorize_error_page("missing redirect_uri");
        };
        if !valid_redirect_uri(&redirect_uri) {
            return authorize_error_page("invalid redirect_uri");
        }
        let state = params.get("state").map(String::as_str);
        if params.get("response_type").map(String::as_str) != Some("code") {
            return redirect_error(&redirect_uri, "unsupported_response_type", state);
        }
        let prompt: Vec<&str> = params
            .get("prompt")
            .map(|p| p.split_whitespace().collect())
            .unwrap_or_default();

        let mut sub = None;
        let mut new_session = None;
        let assertions: Vec<&HeaderValue> =
            parts.headers.get_all(ASSERTION_HEADER).iter().collect();
        if !assertions.is_empty() {
            match self.assertion_login(&assertions, &client_id).await {
                Ok((s, session)) => {
                    sub = Some(s);
                    new_session = Some(session);
                }
                Err(reason) => self.lock().assertion_rejections.push(reason),
            }
        }
        if sub.is_none() && !prompt.contains(&"login") {
            let st = self.lock();
            sub = cookie_values(&parts.headers, SESSION_COOKIE)
                .iter()
                .find_map(|v| st.sessions.get(v).cloned());
        }
        let Some(sub) = sub else {
            if prompt.contains(&"none") {
                return redirect_error(&redirect_uri, "login_required", state);
            }
            return login_page();
        };

        // The IdP's session id: a hash of the session cookie that logged the user in.
        let session_id = new_session
            .clone()
            .or_else(|| {
                let st = self.lock();
                cookie_values(&parts.headers, SESSION_COOKIE)
                    .into_iter()
                    .find(|v| st.sessions.contains_key(v.as_str()))
            })
            .map(|v| {
                b64e(digest::digest(&digest::SHA256, v.as_bytes()).as_ref())[..16].to_string()
            });
        let amr = if new_session.is_none()
            && cookie_values(&parts.headers, SESSION_COOKIE)
                .iter()
                .any(|v| self.lock().password_sessions.contains(v))
        {
            "pwd"
        } else {
            "session_transfer"
        };
        let code = self.random_token();
        let code_challenge = params.get("code_challenge").map(|c| {
            let method = params
                .get("code_challenge_method")
                .cloned()
                .unwrap_or_else(|| "plain".to_string());
            (c.clone(), method)
        });
        self.lock().codes.insert(
            code.clone(),
            CodeGrant {
                sub,
                client_id,
                redirect_uri: redirect_uri.clone(),
                scope: normalize_scope(params.get("scope").map(String::as_str).unwrap_or("openid")),
                nonce: params.get("nonce").cloned(),
                code_challenge,
                expires_at: now_secs() + CODE_TTL,
                sid: session_id.clone(),
                amr,
            },
        );
        let mut query = vec![("code", code.as_str())];
        if let Some(state) = state {
            query.push(("state", state));
        }
        if let (true, Some(session)) = (self.opts.defer_session, &new_session) {
            let ticket = self.random_token();
            self.lock().pending.insert(
                ticket.clone(),
                (append_query(&redirect_uri, &query), session.clone()),
            );
            return response(
                StatusCode::FOUND,
                vec![
                    ("location", "/resume".to_string()),
                    ("cache-control", "no-store".to_string()),
                    ("set-cookie", format!("_pending={ticket}; Path=/; HttpOnly")),
                ],
                Bytes::new(),
            );
        }
        let mut headers = vec![
            ("location", append_query(&redirect_uri, &query)),
            ("cache-control", "no-store".to_string()),
        ];
        if let Some(session) = new_session {
            headers.push((
                "set-cookie",
                format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly"),
            ));
        }
        response(StatusCode::FOUND, headers, Bytes::new())
    }

    /// `/resume`: the session cookie and the client redirect a deferred login left.
    pub(super) fn resume(&self, headers: &HeaderMap) -> Response<Body> {
        let tickets = cookie_values(headers, "_pending");
        let found = {
            let mut st = self.lock();
            tickets.iter().find_map(|t| st.pending.remove(t))
        };
        match found {
            Some((location, session)) => response(
                StatusCode::FOUND,
                vec![
                    ("location", location),
                    ("cache-control", "no-store".to_string()),
                    (
                        "set-cookie",
                        format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly"),
                    ),
                    ("set-cookie", "_pending=; Path=/; Max-Age=0".to_string()),
                ],
                Bytes::new(),
            ),
            None => login_page(),
        }
    }
}
