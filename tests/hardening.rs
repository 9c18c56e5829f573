//! Attacks and failure modes a security review found, each pinned by a test that
//! fails without its fix.

mod support;

use serde_json::json;
use support::fixtures::{code_exchange, options_with_start, rules_with};
use support::handoff::Options;
use support::http::Client;
use support::idp::IdpOptions;
use support::world::{logged_in, login_page, with_session, World, AUTHORIZE, REDIRECT};

fn max_age(line: &str) -> Option<i64> {
    line.split(';').find_map(|a| {
        a.trim()
            .to_ascii_lowercase()
            .strip_prefix("max-age=")
            .and_then(|v| v.parse().ok())
    })
}

/// A world with the shared rules and `/start` a redemption path; `extra` config tables.
async fn world(redis: bool, extra: &str) -> World {
    World::with(
        redis,
        IdpOptions::default(),
        options_with_start(rules_with("", ""), extra),
    )
    .await
}

/// The IdP sets its session cookie on a later hop (like oidc-provider's resume)
/// after the transaction's time ran out: the session is still bound, so it still
/// has limits (without the fix it was an unbound, unlimited IdP session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_set_after_the_transaction_ran_out_is_still_bound() {
    let idp = IdpOptions {
        defer_session: true,
        ..IdpOptions::default()
    };
    let mut w = World::with(
        true,
        idp,
        options_with_start(
            rules_with("", ""),
            "[session]
transaction_ttl = \"10s\"
",
        ),
    )
    .await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    // Hop 0: the redemption; the assertion logs in, the IdP defers its session to /resume.
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert_eq!(
        r.header("location"),
        Some("/resume"),
        "{r:?} {:?}",
        w.idp.assertion_rejections()
    );
    let tx = format!(
        "__Host-handoff_tx={}",
        r.set_cookie("__Host-handoff_tx").unwrap()
    );
    let pending = format!("{tx}; _pending={}", r.set_cookie("_pending").unwrap());
    // Hop 1, past the transaction's time: no assertion, but the session the IdP
    // sets now is bound.
    w.hd.clock.advance_secs(11);
    let r = a.get(&w.hd.url("/resume"), &[("cookie", &pending)]).await;
    assert!(logged_in(&r), "{r:?}");
    let line = r.set_cookie_line("_session").unwrap().to_string();
    assert!(
        max_age(&line).is_some_and(|m| m <= 300),
        "capped at the absolute limit: {line}"
    );
    let session = r.set_cookie("_session").unwrap();
    w.secrets.push(session.clone());
    w.hd.clock.advance_secs(61);
    let r = with_session(&w, &a, &session).await;
    assert!(login_page(&r), "held to its idle limit: {r:?}");
    w.assert_no_leaks();
}

/// An exchange the IdP refuses (here: it is down) does not spend the code's
/// record: the retry is still mediated (without the fix the retry passed through
/// with a refresh token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_code_exchange_stays_mediated_on_retry() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let (_, code) = w.login(&a, "alice").await;
    let form = code_exchange(&code);
    w.idp.set_down(true);
    let r = a.post_form(&w.hd.url("/oauth/token"), &form, &[]).await;
    assert_eq!(r.status, 503);
    w.idp.set_down(false);
    let r = a.post_form(&w.hd.url("/oauth/token"), &form, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("refresh_token").is_none(), "{}", r.body);
    w.secrets
        .push(r.json()["access_token"].as_str().unwrap().to_string());
    w.assert_no_leaks();
}

/// Lenient routers: `/OAuth/Token/` reaches the same IdP endpoint, so it is
/// mediated the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_variants_do_not_escape_mediation() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let (_, code) = w.login(&a, "alice").await;
    let form = code_exchange(&code);
    let r = a.post_form(&w.hd.url("/OAuth/Token/"), &form, &[]).await;
    // The stand-in's router is strict (404); what matters is that handoff answered
    // it as the token endpoint: mediated, so no refresh token either way.
    assert!(!r.body.contains("refresh_token"), "{}", r.body);
    assert_eq!(
        w.hd.h
            .metrics
            .web_refresh_tokens
            .with_label_values(&["withheld"])
            .get(),
        1,
        "{}",
        r.body
    );
}

/// A transfer session cannot be used for a response mode handoff cannot mediate
/// (form_post, fragment, JARM, hybrid): the IdP sees no session, ordinary login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmediatable_response_modes_get_an_ordinary_login() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let (s, _) = w.login(&a, "alice").await;
    for extra in [
        "&response_mode=form_post",
        "&response_mode=fragment",
        "&response_mode=query.jwt",
    ] {
        let r = a
            .get(
                &w.hd.url(&format!("{AUTHORIZE}{extra}")),
                &[("cookie", &format!("_session={s}"))],
            )
            .await;
        let seen = w.idp.requests().into_iter().next_back().unwrap();
        assert_eq!(
            seen.header("cookie"),
            None,
            "{extra}: the IdP saw the transfer session"
        );
        assert!(
            r.set_cookie_line("_session").is_none(),
            "{extra}: the cookie itself is left alone"
        );
    }
    assert!(
        logged_in(
            &a.get(
                &w.hd.url(AUTHORIZE),
                &[("cookie", &format!("_session={s}"))]
            )
            .await
        ),
        "query mode still works"
    );
}

/// A rule that forbids refresh tokens wins over the client setting that allows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_level_refresh_token_decisions_hold_at_the_token_endpoint() {
    let r = rules_with("allow_refresh_token = true", "[[rule]]\nname = \"no refresh tokens\"\nweb_client = [\"web-app\"]\nallow_refresh_token = false\n");
    let mut w = World::with(true, IdpOptions::default(), options_with_start(r, "")).await;
    let a = Client::device_a();
    let (_, code) = w.login(&a, "alice").await;
    let r = a
        .post_form(
            &w.hd.url("/oauth/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", "web-app"),
                ("redirect_uri", REDIRECT),
            ],
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json().get("refresh_token").is_none(),
        "the rule forbids it: {}",
        r.body
    );
}

/// Behind a trusted proxy that writes X-Forwarded-For, a client-sent `Forwarded`
/// is ignored, and an unreadable X-Forwarded-For makes the client unknown (no
/// binding holds) rather than the proxy itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_forwarding_header_counts() {
    let o = Options {
        server_extra: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..options_with_start(rules_with("", ""), "")
    };
    let mut w = World::with(true, IdpOptions::default(), o).await;
    let proxy = Client::device_a();
    let rt = w.refresh_token("alice");
    let r = w
        .mint_with_headers(&proxy, &rt, &[("x-forwarded-for", "198.51.100.7")])
        .await;
    let stt = r.json()["access_token"].as_str().unwrap().to_string();
    w.secrets.push(stt.clone());
    w.secrets
        .push(r.json()["refresh_token"].as_str().unwrap().to_string());
    // The attacker's request through the proxy: XFF is theirs, Forwarded is forged.
    let r = proxy
        .get(
            &w.hd.url(AUTHORIZE),
            &[
                ("cookie", &format!("auth0_session_transfer_token={stt}")),
                ("x-forwarded-for", "203.0.113.66"),
                ("forwarded", "for=198.51.100.7"),
            ],
        )
        .await;
    assert!(login_page(&r), "{r:?}");
    assert_eq!(w.redemption("binding_mismatch"), 1);
    // An unreadable X-Forwarded-For from the trusted proxy: unknown client, not the proxy.
    let stt = w.mint(&proxy, "alice").await; // minted as the proxy's own IP (no header)
    let mut raw = b"auth0_session_transfer_token=".to_vec();
    raw.extend_from_slice(stt.as_bytes());
    let req = http::Request::builder()
        .uri(w.hd.url(AUTHORIZE))
        .header("cookie", http::HeaderValue::from_bytes(&raw).unwrap())
        .header(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "an ordinary login page");
    assert_eq!(w.redemption("binding_mismatch"), 2);
    w.assert_no_leaks();
}

/// A store outage with nothing cached strips the session cookie from the request
/// (fail closed) but does not delete it in the browser (no data loss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_does_not_log_users_out_of_their_browsers() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    w.redis.as_mut().unwrap().stop();
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[("cookie", "_session=an-ordinary-idp-session")],
        )
        .await;
    assert!(r.set_cookie_line("_session").is_none(), "{r:?}");
    let seen = w.idp.requests().into_iter().next_back().unwrap();
    assert_eq!(seen.header("cookie"), None, "fail closed towards the IdP");
}

/// A revoked lineage ends its sessions even where the cascade could not write a
/// tombstone (here: only the lineage marker exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lineage_marker_alone_ends_its_sessions() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let (s, _) = w.login(&a, "alice").await;
    let lineage = w.hd.lineage_of(&s).await;
    let mut c = w.redis.as_ref().unwrap().conn();
    let _: () = redis::cmd("SET")
        .arg(format!("ho:{{{}}}:revoked", lineage.as_str()))
        .arg("1")
        .arg("EX")
        .arg(3600)
        .query(&mut c)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // past the cache bound
    assert!(login_page(
        &a.get(
            &w.hd.url(AUTHORIZE),
            &[("cookie", &format!("_session={s}"))]
        )
        .await
    ));
    w.assert_no_leaks();
}

/// Duplicate session cookies: a dead value hidden behind junk is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_session_cannot_hide_behind_a_duplicate_cookie() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let (s, _) = w.login(&a, "alice").await;
    w.hd.clock.advance_secs(61);
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[("cookie", &format!("_session=junk; _session={s}"))],
        )
        .await;
    assert!(login_page(&r), "{r:?}");
    let seen = w.idp.requests().into_iter().next_back().unwrap();
    assert_eq!(
        seen.header("cookie"),
        None,
        "every value of the dead name is removed"
    );
}

/// A fingerprint binding needs the attributes: two requests that both lack them
/// do not match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_fingerprint_attributes_never_match() {
    let r = format!(
        "[fingerprint]\nheaders = [\"x-device-id\"]\n{}",
        rules_with("", "").replace(
            "enforce_device_binding = \"ip\"",
            "enforce_device_binding = \"fingerprint\""
        )
    );
    let mut w = World::with(true, IdpOptions::default(), options_with_start(r, "")).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    assert!(login_page(&w.redeem_cookie(&a, &stt, AUTHORIZE).await));
    assert_eq!(w.redemption("binding_mismatch"), 1);
    // With the attribute on both sides it holds.
    let rt = w.refresh_token("alice");
    let r = w
        .mint_with_headers(&a, &rt, &[("x-device-id", "device-1")])
        .await;
    let stt = r.json()["access_token"].as_str().unwrap().to_string();
    w.secrets.extend([
        stt.clone(),
        r.json()["refresh_token"].as_str().unwrap().to_string(),
    ]);
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[
                ("cookie", &format!("auth0_session_transfer_token={stt}")),
                ("x-device-id", "device-1"),
            ],
        )
        .await;
    assert!(logged_in(&r), "{r:?}");
    w.assert_no_leaks();
}

/// A failed redemption is an ordinary login: a running transaction of this browser
/// is ended too, so the next hop carries no assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_redemption_ends_the_running_transaction() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let r = w.redeem_cookie(&a, &stt, "/start?client_id=web-app").await;
    let tx = format!(
        "__Host-handoff_tx={}",
        r.set_cookie("__Host-handoff_tx").unwrap()
    );
    // A replayed (spent) token with the running transaction: ordinary login.
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[(
                "cookie",
                &format!("{tx}; auth0_session_transfer_token={stt}"),
            )],
        )
        .await;
    assert!(login_page(&r), "{r:?}");
    assert!(
        r.set_cookie_line("__Host-handoff_tx")
            .is_some_and(|l| max_age(l) == Some(0)),
        "{r:?}"
    );
    w.assert_no_leaks();
}

/// Admin and CLI-facing: the quick checks of `/rules` still answer during all this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_status_is_json() {
    let w = world(false, "").await;
    let v = Client::device_a()
        .get(&w.hd.admin_url("/rules"), &[])
        .await
        .json();
    assert_eq!(v["last_reload"]["ok"], json!(true));
}

/// The token requests the IdP received.
fn idp_token_requests(w: &World) -> usize {
    w.idp
        .requests()
        .iter()
        .filter(|r| r.path() == "/oauth/token")
        .count()
}

/// Attack 15: an unchanged Auth0 SDK configured with another domain asks for
/// `urn:{that domain}:session_transfer`. Passed on as an ordinary refresh, the IdP's
/// plain answer would be taken by the SDK for an STT and a real access token put in
/// a cookie or URL. Any other `urn:*:session_transfer` is refused, in any case, in
/// JSON or form, and when a repeated `audience` hides it; the IdP sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_session_transfer_audience_is_refused_not_proxied() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let rt = w.refresh_token("alice");
    let url = w.hd.url("/oauth/token");
    let port = w.hd.addr.port();
    let check = |r: support::http::Resp, what: &str| {
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_request", "{what}: {}", r.body);
        assert!(r.json().get("access_token").is_none(), "{what}");
    };
    for audience in [
        "urn:evil.example:session_transfer".to_string(),
        "URN:EVIL.EXAMPLE:SESSION_TRANSFER".to_string(),
        "urn:evil.example:Session_Transfer".to_string(),
        format!("urn:127.0.0.2:{port}:session_transfer"),
        "urn:127.0.0.1:1:session_transfer".to_string(),
        format!(" urn:127.0.0.1:{port}:session_transfer"),
    ] {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", "native-app"),
            ("refresh_token", rt.as_str()),
            ("audience", audience.as_str()),
        ];
        check(a.post_form(&url, &form, &[]).await, &audience);
        let body = json!({"grant_type": "refresh_token", "client_id": "native-app",
                          "refresh_token": rt, "audience": audience});
        check(a.post_json(&url, &body, &[]).await, &audience);
    }
    // A repeated audience: JSON (where a parser keeps the last, and the IdP may read
    // the first) and form, either order.
    let rt_json = serde_json::to_string(&rt).unwrap();
    for (first, second) in [
        ("urn:evil.example:session_transfer", "https://api.example"),
        ("https://api.example", "urn:evil.example:session_transfer"),
    ] {
        let body = format!(
            r#"{{"grant_type":"refresh_token","client_id":"native-app","refresh_token":{rt_json},"audience":"{first}","audience":"{second}"}}"#
        );
        let r = a
            .send("POST", &url, &[("content-type", "application/json")], body)
            .await;
        check(r, &format!("JSON duplicate {first} {second}"));
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", "native-app"),
            ("refresh_token", rt.as_str()),
            ("audience", first),
            ("audience", second),
        ];
        check(
            a.post_form(&url, &form, &[]).await,
            &format!("form duplicate {first} {second}"),
        );
    }
    assert_eq!(idp_token_requests(&w), 0, "the IdP saw a refresh request");
    assert!(w.idp.refresh_token_active(&rt));
    w.assert_no_leaks();
}

/// SPEC §2.1: the SDKs build the audience from the domain, lower-cased and without
/// the port; the host matches case-insensitively, with or without the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mint_audience_matches_in_any_case_with_or_without_the_port() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let port = w.hd.addr.port();
    for audience in [
        "urn:127.0.0.1:session_transfer".to_string(),
        "URN:127.0.0.1:SESSION_TRANSFER".to_string(),
        format!("Urn:127.0.0.1:{port}:Session_Transfer"),
    ] {
        let rt = w.refresh_token("alice");
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", "native-app"),
            ("refresh_token", rt.as_str()),
            ("audience", audience.as_str()),
        ];
        let r = a.post_form(&w.hd.url("/oauth/token"), &form, &[]).await;
        assert_eq!(r.status, 200, "{audience}: {}", r.body);
        let v = r.json();
        assert_eq!(
            v["issued_token_type"],
            handoff::mint::ISSUED_TOKEN_TYPE,
            "{audience}: {}",
            r.body
        );
        let stt = v["access_token"].as_str().unwrap().to_string();
        for k in ["access_token", "refresh_token", "id_token"] {
            w.secrets.push(v[k].as_str().unwrap().to_string());
        }
        assert!(
            logged_in(&w.redeem_cookie(&a, &stt, AUTHORIZE).await),
            "{audience}: a real STT"
        );
    }
    w.assert_no_leaks();
}

/// Attack 7: chained mints from one login grew the store without bound. The
/// lineage's limit (default burst 10) answers 429 with `Retry-After` before the IdP
/// is asked, so the refused request's refresh token is neither spent nor rotated
/// and still mints once the wait is over; the refresh-token keys stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_mints_from_one_lineage_are_rate_limited_before_the_idp() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let mut rt = w.refresh_token("alice");
    let mut minted = 0;
    let refused = loop {
        let r = w.mint_as(&a, "native-app", &rt).await;
        if r.status != 200 {
            break r;
        }
        minted += 1;
        assert!(minted <= 12, "no limit after {minted} chained mints");
        rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    };
    assert!(minted >= 10, "the default burst is 10, got {minted}");
    assert_eq!(refused.status, 429, "{}", refused.body);
    let v = refused.json();
    assert_eq!(v["error"], "temporarily_unavailable", "{}", refused.body);
    for k in [
        "access_token",
        "refresh_token",
        "issued_token_type",
        "id_token",
    ] {
        assert!(
            v.get(k).is_none(),
            "{k} in a refused mint: {}",
            refused.body
        );
    }
    let retry: i64 = refused
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        idp_token_requests(&w),
        minted,
        "the IdP saw the refused mint"
    );
    assert!(w.idp.refresh_token_active(&rt), "not spent, not rotated");
    assert!(
        w.hd.h
            .metrics
            .render()
            .contains("handoff_mint_rate_limited_total{scope=\"lineage\"} 1"),
        "{}",
        w.hd.h.metrics.render()
    );
    let mut c = w.redis.as_ref().unwrap().conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*:rt:*").query(&mut c).unwrap();
    assert!(
        keys.len() <= minted + 1,
        "{} refresh-token keys",
        keys.len()
    );
    // Once the wait is over, the very token that was refused mints.
    w.hd.clock.advance_secs(retry);
    let r = w.mint_as(&a, "native-app", &rt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    w.assert_no_leaks();
}

/// Attack 7, many accounts from one network: the per-network limit (here lowered
/// by config) counts every mint from one IPv4 /24 and refuses before the store or
/// the IdP is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mints_from_one_network_are_rate_limited() {
    let mut w = World::with(
        true,
        IdpOptions::default(),
        options_with_start(
            rules_with("", ""),
            "[mint.rate_limit]\nnetwork = { per_minute = 1, burst = 2 }\n",
        ),
    )
    .await;
    let (a, b) = (Client::device_a(), Client::device_b());
    for (c, sub) in [(&a, "alice"), (&b, "bob")] {
        let rt = w.refresh_token(sub);
        assert_eq!(w.mint_as(c, "native-app", &rt).await.status, 200);
    }
    // Another account, another device, the same /24 (127.0.0.0/24).
    let rt = w.refresh_token("carol");
    let r = w.mint_as(&b, "native-app", &rt).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(idp_token_requests(&w), 2);
    assert!(w.idp.refresh_token_active(&rt));
    assert!(w
        .hd
        .h
        .metrics
        .render()
        .contains("handoff_mint_rate_limited_total{scope=\"network\"} 1"));
}

fn lineage_of(stt: &str) -> handoff::secret::LineageId {
    handoff::secret::TransferToken::parse(stt)
        .unwrap()
        .lineage()
        .clone()
}

/// `GET /authorize` of web client `client_id` carrying `stt` in the cookie.
async fn redeem_for(w: &World, c: &Client, stt: &str, client_id: &str) -> support::http::Resp {
    let path = AUTHORIZE.replace("client_id=web-app", &format!("client_id={client_id}"));
    w.redeem_cookie(c, stt, &path).await
}

/// Attack 12, part 1: a replay's `revoke_lineage_on_replay` is read from the
/// token's own clients (the web client it was first redeemed for), never from the
/// replaying request's `client_id`: a replayer naming a lax client does not stop
/// the revocation the token's web client asks for, and one naming a strict client
/// does not revoke a lineage whose clients say no.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayers_client_id_neither_stops_nor_forces_a_revocation() {
    // web-app (the token's client) revokes on replay; lax-app says no.
    let lax = "[web.\"lax-app\"]\nrevoke_lineage_on_replay = false\n";
    let mut w = World::with(
        false,
        IdpOptions::default(),
        options_with_start(rules_with("revoke_lineage_on_replay = true", lax), ""),
    )
    .await;
    let (a, b) = (Client::device_a(), Client::device_b());
    let stt = w.mint(&a, "alice").await;
    assert!(logged_in(&w.redeem_cookie(&a, &stt, AUTHORIZE).await));
    let r = redeem_for(&w, &b, &stt, "lax-app").await;
    assert!(!logged_in(&r));
    assert_eq!(
        w.redemption("not_found_or_expired"),
        1,
        "counted as a replay"
    );
    assert!(
        w.hd.h
            .store
            .is_lineage_revoked(&lineage_of(&stt))
            .await
            .unwrap(),
        "the replayer's client_id turned the token's revocation off"
    );

    // web-app says no (the default); strict-app would revoke.
    let strict = "[web.\"strict-app\"]\nrevoke_lineage_on_replay = true\n";
    let mut w = World::with(
        false,
        IdpOptions::default(),
        options_with_start(rules_with("", strict), ""),
    )
    .await;
    let stt = w.mint(&a, "alice").await;
    let first = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert!(logged_in(&first));
    let session = first.set_cookie("_session").unwrap();
    w.secrets.push(session.clone());
    assert!(!logged_in(&redeem_for(&w, &b, &stt, "strict-app").await));
    assert_eq!(
        w.redemption("not_found_or_expired"),
        1,
        "counted as a replay"
    );
    assert!(
        !w.hd
            .h
            .store
            .is_lineage_revoked(&lineage_of(&stt))
            .await
            .unwrap(),
        "the replayer's client_id revoked a lineage whose clients say no"
    );
    assert!(
        logged_in(&support::world::with_session(&w, &a, &session).await),
        "the user's session lives on"
    );
    w.assert_no_leaks();
}

/// Attack 12, part 2: a back-channel logout token is honoured once. Replayed (same
/// jti), it is refused and ends nothing — not even sessions created since; a token
/// without a jti is refused; a store outage answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_backchannel_logout_token_is_refused() {
    let mut w = World::with(
        true,
        IdpOptions::default(),
        options_with_start(
            rules_with("", ""),
            "[backchannel_logout]\naudiences = [\"web-app\"]\n",
        ),
    )
    .await;
    let a = Client::device_a();
    let url = w.hd.url("/handoff/backchannel-logout");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let event = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let claims = json!({"iss": w.idp.issuer(), "aud": "web-app", "iat": now, "jti": "logout-1", "events": event, "sub": "alice"});
    let token = w.idp.sign_jwt(&claims);

    let (s1, _) = w.login(&a, "alice").await;
    let r = a.post_form(&url, &[("logout_token", &token)], &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(login_page(&support::world::with_session(&w, &a, &s1).await));

    // The user logs in again; the captured token, replayed, must not end it.
    let (s2, _) = w.login(&a, "alice").await;
    let r = a.post_form(&url, &[("logout_token", &token)], &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_request", "{}", r.body);
    assert!(r.json()["error_description"].is_string());
    assert!(
        logged_in(&support::world::with_session(&w, &a, &s2).await),
        "a replayed logout token ended a later session"
    );

    // No jti: refused (OIDC Back-Channel Logout requires one).
    let mut no_jti = claims.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    let r = a
        .post_form(&url, &[("logout_token", &w.idp.sign_jwt(&no_jti))], &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(logged_in(&support::world::with_session(&w, &a, &s2).await));

    // Store down: 503 (fail closed), nothing revoked.
    let mut fresh = claims.clone();
    fresh["jti"] = json!("logout-2");
    let fresh = w.idp.sign_jwt(&fresh);
    w.redis.as_mut().unwrap().stop();
    let r = a.post_form(&url, &[("logout_token", &fresh)], &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    w.redis.as_mut().unwrap().restart();
    w.assert_no_leaks();
}

/// Attack 7, store part: the embedded store has a hard cap. Full, it answers
/// writes with an error (mint: 503) instead of evicting anything; the revocation
/// markers and the sessions' state are all still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_refuses_writes_past_its_cap_and_keeps_revocations() {
    let mut w = world(false, "[store]\nmax_entries = 24\n").await;
    let a = Client::device_a();
    let (s, _) = w.login(&a, "alice").await;
    let hash = handoff::secret::SecretHash::of(s.as_bytes());
    let lineage = w.hd.lineage_of(&s).await;
    handoff::revocation::revoke_lineage(&w.hd.h, &lineage, "test")
        .await
        .unwrap();
    let mut refused = None;
    for i in 0..40 {
        let rt = w.refresh_token(&format!("user-{i}"));
        let r = w.mint_as(&a, "native-app", &rt).await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the memory store took every write: it has no cap");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        w.hd.h.store.is_lineage_revoked(&lineage).await.unwrap(),
        "the revocation marker was evicted"
    );
    let rec = w.hd.h.store.session_by_cookie(&hash).await.unwrap();
    assert!(rec.is_some_and(|r| r.revoked), "the tombstone was evicted");
    assert!(login_page(&support::world::with_session(&w, &a, &s).await));
    w.assert_no_leaks();
}

/// Attack 7: each rotation would leave the rotated-out token's lineage mapping for
/// the whole lineage lifetime (90 days); once its successor is recorded, it lives
/// at most `ROTATED_REFRESH_TTL`, and the successor keeps the full lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_out_refresh_token_mapping_expires_soon() {
    let mut w = world(true, "").await;
    let a = Client::device_a();
    let old = w.refresh_token("alice");
    let r = w.mint_as(&a, "native-app", &old).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new, old, "the IdP rotates");
    let keys = handoff::store::Keys::new("ho");
    let mut c = w.redis.as_ref().unwrap().conn();
    let mut pttl = |t: &str| -> i64 {
        redis::cmd("PTTL")
            .arg(keys.refresh(&handoff::secret::Secret::new(t).hash()))
            .query(&mut c)
            .unwrap()
    };
    let short = handoff::store::ROTATED_REFRESH_TTL.as_millis() as i64;
    let (old_ttl, new_ttl) = (pttl(&old), pttl(&new));
    assert!(0 < old_ttl && old_ttl <= short, "rotated out: {old_ttl} ms");
    assert!(new_ttl > short, "the successor: {new_ttl} ms");
    // A plain refresh through handoff's token endpoint rotates it too.
    let r = a
        .post_form(
            &w.hd.url("/oauth/token"),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "native-app"),
                ("refresh_token", &new),
            ],
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let newer = r.json()["refresh_token"].as_str().unwrap().to_string();
    w.secrets.push(newer.clone());
    for k in ["access_token", "id_token"] {
        if let Some(s) = r.json()[k].as_str() {
            w.secrets.push(s.to_string());
        }
    }
    let (new_ttl, newer_ttl) = (pttl(&new), pttl(&newer));
    assert!(0 < new_ttl && new_ttl <= short, "rotated out: {new_ttl} ms");
    assert!(newer_ttl > short, "the successor: {newer_ttl} ms");
    // The old token still maps to its lineage meanwhile.
    let old_hash = handoff::secret::Secret::new(old.as_str()).hash();
    assert!(w
        .hd
        .h
        .store
        .refresh_token_info(&old_hash)
        .await
        .unwrap()
        .is_some());
    w.assert_no_leaks();
}
