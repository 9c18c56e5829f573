//! A test world: an IdP stand-in, optionally a redis-server, and handoff in front,
//! with helpers that play the native app and the browser and check for leaks.

use super::handoff::{Options, Running};
use super::http::{Client, Resp};
use super::idp::{IdpOptions, TestIdp, LOGIN_PAGE_MARKER, SESSION_COOKIE};
use super::logs;
use super::redis::RedisServer;

/// An authorize request of the `web-app` client.
pub const AUTHORIZE: &str = "/authorize?client_id=web-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&state=s1";

pub struct World {
    /// The IdP stand-in.
    pub idp: TestIdp,
    /// handoff.
    pub hd: Running,
    /// Redis, when the world has one.
    pub redis: Option<RedisServer>,
    /// Every secret handed out so far (checked against logs and IdP requests).
    pub secrets: Vec<String>,
}

impl World {
    pub async fn new(redis: bool) -> World {
        Self::with(redis, IdpOptions::default(), Options::default()).await
    }

    pub async fn with(redis: bool, idp_opts: IdpOptions, mut opts: Options) -> World {
        let idp = TestIdp::start(idp_opts).await;
        let redis = redis.then(RedisServer::start);
        if let Some(r) = &redis {
            opts.redis_url = Some(r.url());
        }
        let hd = tokio::task::block_in_place(|| Running::start(&idp, opts));
        World {
            idp,
            hd,
            redis,
            secrets: Vec::new(),
        }
    }

    /// A fresh native refresh token for `sub`.
    pub fn refresh_token(&mut self, sub: &str) -> String {
        let rt = self
            .idp
            .issue_refresh_token(sub, "native-app", "openid offline_access");
        self.secrets.push(rt.clone());
        rt
    }

    pub async fn mint_as(&mut self, c: &Client, client_id: &str, rt: &str) -> Resp {
        self.mint_request(c, client_id, rt, &[]).await
    }

    /// A native-app mint with `rt` from `c` carrying `headers` (e.g. as sent through
    /// a forwarding proxy).
    pub async fn mint_with_headers(
        &mut self,
        c: &Client,
        rt: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.mint_request(c, "native-app", rt, headers).await
    }

    async fn mint_request(
        &mut self,
        c: &Client,
        client_id: &str,
        rt: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        let r = c
            .post_form(
                &self.hd.url("/oauth/token"),
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("refresh_token", rt),
                    ("audience", &self.hd.audience()),
                ],
                headers,
            )
            .await;
        if r.status == 200 {
            let v = r.json();
            for k in ["access_token", "refresh_token", "id_token"] {
                if let Some(s) = v[k].as_str() {
                    self.secrets.push(s.to_string());
                }
            }
        }
        r
    }

    /// Mints for `sub` from `c`; returns the STT.
    pub async fn mint(&mut self, c: &Client, sub: &str) -> String {
        let rt = self.refresh_token(sub);
        let r = self.mint_as(c, "native-app", &rt).await;
        assert_eq!(r.status, 200, "mint failed: {}", r.body);
        r.json()["access_token"].as_str().unwrap().to_string()
    }

    /// A transfer login: mints for `sub` from `c` and redeems the STT by cookie on
    /// [`AUTHORIZE`], which must log in; returns (the IdP's `_session`, the code).
    pub async fn login(&mut self, c: &Client, sub: &str) -> (String, String) {
        let stt = self.mint(c, sub).await;
        self.login_by_transfer(c, &stt).await
    }

    /// Redeems `stt` by cookie on [`AUTHORIZE`], which must log in; returns (the
    /// IdP's `_session`, now one of the secrets, the authorization code).
    pub async fn login_by_transfer(&mut self, c: &Client, stt: &str) -> (String, String) {
        let r = self.redeem_cookie(c, stt, AUTHORIZE).await;
        assert!(logged_in(&r), "{r:?}");
        let s = r
            .set_cookie(SESSION_COOKIE)
            .expect("the IdP set its session cookie");
        self.secrets.push(s.clone());
        (s, code_of(&r))
    }

    /// GET /authorize with the token in the native app's cookie.
    pub async fn redeem_cookie(&self, c: &Client, stt: &str, path: &str) -> Resp {
        c.get(
            &self.hd.url(path),
            &[(
                "cookie",
                &format!("foo=bar; auth0_session_transfer_token={stt}"),
            )],
        )
        .await
    }

    /// No request the IdP received carries any of the secrets handed out, and no log line either.
    pub fn assert_no_leaks(&self) {
        for r in self.idp.requests() {
            for s in &self.secrets {
                if s.contains('.') && s.split('.').count() == 3 && s.len() < 100 {
                    // An STT: must never reach the IdP (invariant 4).
                    assert!(
                        !r.contains(s),
                        "the IdP received a session transfer token: {} {}",
                        r.method,
                        r.path()
                    );
                    assert!(
                        !r.contains(&s[s.len() - 43..]),
                        "the IdP received an STT's secret part"
                    );
                }
            }
        }
        logs::assert_absent(&self.secrets);
    }

    pub fn redemption(&self, reason: &str) -> u64 {
        let outcome = if reason == "ok" {
            "success"
        } else {
            "fallback"
        };
        self.hd.h.metrics.redemption_count(outcome, reason)
    }
}

pub fn logged_in(r: &Resp) -> bool {
    r.status == 302
        && r.header("location")
            .is_some_and(|l| l.starts_with("https://app.example/cb?code="))
}

pub fn login_page(r: &Resp) -> bool {
    r.status == 200 && r.body.contains(LOGIN_PAGE_MARKER)
}

/// Where the stand-in IdP sends the browser back to (the web app's `redirect_uri`).
pub const REDIRECT: &str = "https://app.example/cb";

/// The authorization code in a redirect to the web app.
pub fn code_of(r: &Resp) -> String {
    let loc = r.header("location").unwrap();
    form_urlencoded::parse(loc.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned()
}

/// `GET AUTHORIZE` carrying only the IdP's session cookie.
pub async fn with_session(w: &World, c: &Client, session: &str) -> Resp {
    c.get(
        &w.hd.url(AUTHORIZE),
        &[("cookie", &format!("_session={session}"))],
    )
    .await
}
