//! End to end: a native app mints, a browser redeems, through a running handoff, in
//! front of a real HTTP IdP stand-in, with a real redis-server. Each test names the
//! SPEC §7 invariant it proves.

mod support;

use serde_json::json;
use std::sync::Arc;
use support::handoff::{Options, Running};
use support::http::Client;
use support::idp::IdpOptions;
use support::world::{logged_in, login_page, World, AUTHORIZE};

// ---- the happy paths ---------------------------------------------------------

/// Invariant 4 (the IdP never receives an STT) on the cookie path, and the
/// assertion's claims as the IdP verified them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_redemption_logs_the_native_user_in_and_the_idp_never_sees_the_token() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert!(logged_in(&r), "{r:?} {:?}", w.idp.assertion_rejections());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert!(
        r.set_cookie_line("auth0_session_transfer_token")
            .unwrap()
            .contains("Max-Age=0"),
        "the STT cookie is expired in the browser"
    );
    let logins = w.idp.logins();
    assert_eq!(logins.len(), 1);
    let c = &logins[0].claims;
    assert_eq!(logins[0].sub, "alice");
    assert_eq!(c["client_id"], "web-app");
    assert_eq!(c["native_client_id"], "native-app");
    assert_eq!(c["amr"], json!(["session_transfer"]));
    assert!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap() <= 60);
    assert!(c["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(c["lineage"].as_str().unwrap(), &stt[..22]);
    // The other cookie reached the IdP untouched; the STT cookie did not.
    let authz = w
        .idp
        .requests()
        .into_iter()
        .find(|r| r.path() == "/authorize")
        .unwrap();
    assert_eq!(authz.header("cookie"), Some("foo=bar"));
    assert_eq!(w.redemption("ok"), 1);
    w.assert_no_leaks();
}

/// Query delivery: 303 to the clean URL, the token in a `__Host-` cookie, then login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_redemption_redirects_to_the_clean_url_then_logs_in() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let r = a
        .get(
            &w.hd
                .url(&format!("{AUTHORIZE}&session_transfer_token={stt}")),
            &[],
        )
        .await;
    assert_eq!(r.status, 303);
    let loc = r.header("location").unwrap();
    assert_eq!(
        loc, AUTHORIZE,
        "the clean URL keeps every other parameter in order"
    );
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let line = r.set_cookie_line("__Host-handoff_stt").unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(line.contains(attr), "{line}");
    }
    assert!(!line.contains("Domain"), "{line}");
    let max_age: i64 = line
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (55..=60).contains(&max_age),
        "Max-Age is the token's remaining life: {max_age}"
    );
    assert!(
        w.idp.requests().iter().all(|r| r.path() != "/authorize"),
        "the 303 is answered by handoff, not the IdP"
    );

    let cookie = r.set_cookie("__Host-handoff_stt").unwrap();
    let r2 = a
        .get(
            &w.hd.url(loc),
            &[("cookie", &format!("__Host-handoff_stt={cookie}"))],
        )
        .await;
    assert!(logged_in(&r2), "{r2:?}");
    assert!(r2
        .set_cookie_line("__Host-handoff_stt")
        .unwrap()
        .contains("Max-Age=0"));
    w.assert_no_leaks();
}

/// The same flow over HTTPS (a certificate generated for the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_carries_the_whole_flow() {
    let mut w = World::with(
        false,
        IdpOptions::default(),
        Options {
            tls: true,
            ..Options::default()
        },
    )
    .await;
    let c = Client::new("127.0.0.1", w.hd.ca_pem.as_deref());
    assert!(w.hd.url("/").starts_with("https://"));
    let stt = w.mint(&c, "carol").await;
    let r = w.redeem_cookie(&c, &stt, AUTHORIZE).await;
    assert!(logged_in(&r), "{r:?}");
    let fwd = w
        .idp
        .requests()
        .into_iter()
        .find(|r| r.path() == "/authorize")
        .unwrap();
    assert_eq!(fwd.header("x-forwarded-proto"), Some("https"));
    w.assert_no_leaks();
}

/// The mint answer has Auth0's shape and passes the rotated refresh token through;
/// the rotated token keeps the lineage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_answers_in_auth0_shape_and_hands_back_the_rotated_refresh_token() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let rt = w.refresh_token("dave");
    let r = w.mint_as(&a, "native-app", &rt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(
        v["issued_token_type"],
        "urn:auth0:params:oauth:token-type:session_transfer_token"
    );
    assert_eq!(v["token_type"], "N_A");
    assert_eq!(v["expires_in"], 60);
    assert!(v["id_token"].is_string());
    let rotated = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rotated, rt);
    assert!(w.idp.refresh_token_active(&rotated));
    assert!(!w.idp.refresh_token_active(&rt), "the IdP rotated it");
    // The forwarded grant had no special audience.
    let grant = w
        .idp
        .requests()
        .into_iter()
        .find(|r| r.path() == "/oauth/token")
        .unwrap();
    assert!(!String::from_utf8_lossy(&grant.body).contains("audience"));
    // JSON bodies work too, and the rotated token stays in the same lineage.
    let r2 = a
        .post_json(
            &w.hd.url("/oauth/token"),
            &json!({"grant_type": "refresh_token", "client_id": "native-app", "refresh_token": rotated, "audience": w.hd.audience()}),
            &[],
        )
        .await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    let stt1 = v["access_token"].as_str().unwrap();
    let stt2 = r2.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(&stt1[..22], &stt2[..22], "same lineage across rotation");
    w.secrets.push(stt2);
    w.secrets
        .push(r2.json()["refresh_token"].as_str().unwrap().to_string());
    w.assert_no_leaks();
}

/// Without an id_token, the user comes from the userinfo endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_falls_back_to_userinfo_without_an_id_token() {
    let mut w = World::with(
        false,
        IdpOptions {
            id_token: false,
            ..IdpOptions::default()
        },
        Options::default(),
    )
    .await;
    let a = Client::device_a();
    let stt = w.mint(&a, "erin").await;
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert!(logged_in(&r));
    assert_eq!(w.idp.logins()[0].sub, "erin");
    assert!(w.idp.requests().iter().any(|r| r.path() == "/userinfo"));
}

/// Ordinary token requests pass through to the IdP with their body intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_token_requests_are_proxied_with_their_body() {
    let mut w = World::new(false).await;
    let a = Client::device_a();
    let rt = w.refresh_token("frank");
    let r = a
        .post_form(
            &w.hd.url("/oauth/token"),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "native-app"),
                ("refresh_token", &rt),
            ],
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token_type"], "Bearer");
    w.secrets
        .push(r.json()["refresh_token"].as_str().unwrap().to_string());
    assert_eq!(w.hd.h.metrics.mints.with_label_values(&["minted"]).get(), 0);
    w.assert_no_leaks();
}

// ---- invariants ---------------------------------------------------------------

/// Invariant 1: a token succeeds at most once; the replay is an ordinary login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_1_replay_ends_on_the_login_page() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    assert!(logged_in(&w.redeem_cookie(&a, &stt, AUTHORIZE).await));
    let again = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert!(login_page(&again), "{again:?}");
    assert_eq!(w.redemption("not_found_or_expired"), 1);
    assert_eq!(w.idp.logins().len(), 1);
    w.assert_no_leaks();
}

/// Invariant 1 across instances: 100 parallel redemptions of one token through two
/// handoff instances sharing one Redis — exactly one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_1_parallel_redemptions_across_two_instances_succeed_once() {
    let mut w = World::new(true).await;
    let url = w.redis.as_ref().unwrap().url();
    let key = w.hd.signing_key_pem.clone();
    let hd2 = tokio::task::block_in_place(|| {
        Running::start(
            &w.idp,
            Options {
                redis_url: Some(url),
                signing_key_pem: Some(key),
                ..Options::default()
            },
        )
    });
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let urls = Arc::new([w.hd.url(AUTHORIZE), hd2.url(AUTHORIZE)]);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (a, urls, stt) = (a.clone(), urls.clone(), stt.clone());
        tasks.push(tokio::spawn(async move {
            a.get(
                &urls[i % 2],
                &[("cookie", &format!("auth0_session_transfer_token={stt}"))],
            )
            .await
        }));
    }
    let mut ok = 0;
    let mut login = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if logged_in(&r) {
            ok += 1;
        } else if login_page(&r) {
            login += 1;
        }
    }
    assert_eq!((ok, login), (1, 99));
    assert_eq!(w.idp.logins().len(), 1);
    let both = w.redemption("ok") + hd2.h.metrics.redemption_count("success", "ok");
    assert_eq!(both, 1);
    w.assert_no_leaks();
}

/// Invariant 2: an expired token never succeeds (time moved through the clock seam).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_2_expired_token_fails() {
    for redis in [true, false] {
        let mut w = World::new(redis).await;
        let a = Client::device_a();
        // Mint in the past, redeem now: the assertion's iat stays on the IdP's clock.
        w.hd.clock.advance_secs(-60);
        let stt = w.mint(&a, "alice").await;
        w.hd.clock.advance_secs(60);
        let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
        assert!(login_page(&r), "store redis={redis}: {r:?}");
        assert_eq!(w.redemption("not_found_or_expired"), 1);
        // Two seconds before expiry it still works.
        w.hd.clock.advance_secs(-58);
        let stt = w.mint(&a, "alice").await;
        w.hd.clock.advance_secs(58);
        assert!(logged_in(&w.redeem_cookie(&a, &stt, AUTHORIZE).await));
        w.assert_no_leaks();
    }
}

/// Invariant 3: a token redeemed from another IP fails (`ip` binding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_3_wrong_ip_fails() {
    let mut w = World::new(true).await;
    let stt = w.mint(&Client::device_a(), "alice").await;
    let r = w.redeem_cookie(&Client::device_b(), &stt, AUTHORIZE).await;
    assert!(login_page(&r), "{r:?}");
    assert_eq!(w.redemption("binding_mismatch"), 1);
    w.assert_no_leaks();
}

/// Invariant 3: a spoofed X-Forwarded-For from an untrusted peer changes nothing —
/// neither at mint nor at redemption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_3_spoofed_forwarded_for_is_ignored() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let b = Client::device_b();
    let stt = w.mint(&a, "alice").await;
    // Device B claims to be device A.
    let r = b
        .get(
            &w.hd.url(AUTHORIZE),
            &[
                ("cookie", &format!("auth0_session_transfer_token={stt}")),
                ("x-forwarded-for", "127.0.0.1"),
                ("forwarded", "for=127.0.0.1"),
            ],
        )
        .await;
    assert!(login_page(&r));
    assert_eq!(w.redemption("binding_mismatch"), 1);
    // And the IdP hears the real client, not the spoofed one.
    let fwd = w
        .idp
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path() == "/authorize")
        .unwrap();
    assert_eq!(fwd.header("x-forwarded-for"), Some("127.0.0.2"));
    assert_eq!(fwd.header("forwarded"), None);
    w.assert_no_leaks();
}

/// Invariant 3 with a trusted proxy: its X-Forwarded-For is believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_forwarded_for_is_believed() {
    let opts = Options {
        server_extra: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Options::default()
    };
    let mut w = World::with(true, IdpOptions::default(), opts).await;
    let proxy = Client::device_a();
    let rt = w.refresh_token("alice");
    let r = w
        .mint_with_headers(&proxy, &rt, &[("x-forwarded-for", "198.51.100.7")])
        .await;
    assert_eq!(r.status, 200);
    let stt = r.json()["access_token"].as_str().unwrap().to_string();
    w.secrets.push(stt.clone());
    w.secrets
        .push(r.json()["refresh_token"].as_str().unwrap().to_string());
    let cookie = format!("auth0_session_transfer_token={stt}");
    // Through the proxy from another device: mismatch.
    let r = proxy
        .get(
            &w.hd.url(AUTHORIZE),
            &[("cookie", &cookie), ("x-forwarded-for", "198.51.100.8")],
        )
        .await;
    assert!(login_page(&r));
    let stt = w.mint(&Client::device_b(), "bob").await; // direct, not via the proxy
    let r = w.redeem_cookie(&Client::device_b(), &stt, AUTHORIZE).await;
    assert!(logged_in(&r));
    w.assert_no_leaks();
}

/// Invariant 5: no client can send the assertion header through handoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_5_client_sent_assertion_never_reaches_the_idp() {
    let w = World::new(false).await;
    let a = Client::device_a();
    for name in [
        "X-Handoff-Assertion",
        "x-handoff-assertion",
        "X-HANDOFF-ASSERTION",
    ] {
        let r = a
            .get(
                &w.hd.url(AUTHORIZE),
                &[(name, "forged.assertion.value"), (name, "second")],
            )
            .await;
        assert!(login_page(&r), "{r:?}");
        let r = a
            .get(&w.hd.url("/somewhere/else"), &[(name, "forged")])
            .await;
        assert_eq!(r.status, 404);
    }
    for r in w.idp.requests() {
        assert!(
            r.header("x-handoff-assertion").is_none(),
            "{} {}",
            r.method,
            r.uri
        );
        assert!(!r.contains("forged"));
    }
    assert!(w.idp.logins().is_empty());
}

/// A web client the native client may not log in to: ordinary login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_client_not_allowed_for_the_native_client_fails() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let r = w
        .redeem_cookie(
            &a,
            &stt,
            &AUTHORIZE.replace("client_id=web-app", "client_id=intruder-app"),
        )
        .await;
    assert!(login_page(&r));
    assert_eq!(w.redemption("client_not_allowed"), 1);
    // Query delivery to a cookie-only web client: the method is refused.
    let stt = w.mint(&a, "alice").await;
    let strict = AUTHORIZE.replace("client_id=web-app", "client_id=web-strict");
    let r = a
        .get(
            &w.hd.url(&format!("{strict}&session_transfer_token={stt}")),
            &[],
        )
        .await;
    assert_eq!(r.status, 303);
    let c = r.set_cookie("__Host-handoff_stt").unwrap();
    let r = a
        .get(
            &w.hd.url(&strict),
            &[("cookie", &format!("__Host-handoff_stt={c}"))],
        )
        .await;
    assert!(login_page(&r));
    assert_eq!(w.redemption("method_not_allowed"), 1);
    w.assert_no_leaks();
}

/// SPEC §2.2 step 7: with `revoke_lineage_on_replay`, a replay revokes the lineage
/// and nothing of it can be minted or redeemed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_revokes_the_lineage_when_policy_says_so() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let rt = w.refresh_token("alice");
    let r = w.mint_as(&a, "native-app", &rt).await;
    let v = r.json();
    let stt = v["access_token"].as_str().unwrap().to_string();
    let rotated = v["refresh_token"].as_str().unwrap().to_string();
    let strict = AUTHORIZE.replace("client_id=web-app", "client_id=web-strict");
    assert!(logged_in(&w.redeem_cookie(&a, &stt, &strict).await));
    assert!(login_page(&w.redeem_cookie(&a, &stt, &strict).await));
    let lineage = handoff::secret::LineageId::parse(&stt[..22]).unwrap();
    assert!(w.hd.h.store.is_lineage_revoked(&lineage).await.unwrap());
    let r = w.mint_as(&a, "native-app", &rotated).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    w.assert_no_leaks();
}

/// Invariant 9: with the store down, mint answers 503 and redemption falls back to
/// an ordinary login; both recover when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_9_store_outage_fails_closed_and_recovers() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    w.redis.as_mut().unwrap().stop();

    let rt = w.refresh_token("alice");
    let r = w.mint_as(&a, "native-app", &rt).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(
        w.idp.refresh_token_active(&rt),
        "the refresh token was not spent at the IdP while the store was down"
    );
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert!(login_page(&r), "{r:?}");
    assert_eq!(w.redemption("store_unavailable"), 1);
    assert!(w.idp.logins().is_empty());
    let ready = a.get(&w.hd.admin_url("/readyz"), &[]).await;
    assert_eq!(ready.status, 503);

    w.redis.as_mut().unwrap().restart();
    let mut recovered = false;
    for _ in 0..50 {
        let r = w.mint_as(&a, "native-app", &rt).await;
        if r.status == 200 {
            let stt = r.json()["access_token"].as_str().unwrap().to_string();
            assert!(logged_in(&w.redeem_cookie(&a, &stt, AUTHORIZE).await));
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "handoff did not recover after Redis came back");
    assert_eq!(a.get(&w.hd.admin_url("/readyz"), &[]).await.status, 200);
    w.assert_no_leaks();
}

/// The IdP down: mint answers 503 and says so; nothing is minted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_outage_makes_mint_answer_503() {
    let mut w = World::new(false).await;
    let a = Client::device_a();
    let rt = w.refresh_token("alice");
    w.idp.set_down(true);
    let r = w.mint_as(&a, "native-app", &rt).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    w.idp.set_down(false);
    assert_eq!(w.mint_as(&a, "native-app", &rt).await.status, 200);
    w.assert_no_leaks();
}

// ---- mint errors and bad input (invariant 10) ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_errors_follow_rfc_6749() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let url = w.hd.url("/oauth/token");
    let aud = w.hd.audience();
    // The IdP rejects the refresh token.
    let r = w
        .mint_as(&a, "native-app", "not-a-real-refresh-token")
        .await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // A client that may not mint.
    let rt = w.refresh_token("alice");
    let r = w.mint_as(&a, "other-native", &rt).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let r = w.mint_as(&a, "unknown-client", &rt).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    assert!(
        w.idp.refresh_token_active(&rt),
        "a refused client's token is not spent"
    );
    // Malformed requests.
    for form in [
        vec![
            ("grant_type", "password"),
            ("client_id", "native-app"),
            ("refresh_token", "x"),
            ("audience", aud.as_str()),
        ],
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("audience", aud.as_str()),
        ],
        vec![
            ("grant_type", "refresh_token"),
            ("client_id", "native-app"),
            ("audience", aud.as_str()),
        ],
    ] {
        let r = a.post_form(&url, &form, &[]).await;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (400, Some("invalid_request")),
            "{form:?}"
        );
        assert!(r.json()["error_description"].is_string());
    }
    for (ct, body) in [
        ("application/json", &b"{\"grant_type\": "[..]),
        ("application/json", b"[]"),
        ("application/x-www-form-urlencoded", b"a=\xff\xfe"),
        (
            "application/x-www-form-urlencoded",
            b"audience=x&audience=y",
        ),
        ("text/plain", b"hello"),
    ] {
        let r = a
            .send("POST", &url, &[("content-type", ct)], body.to_vec())
            .await;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (400, Some("invalid_request")),
            "{ct} {body:?}"
        );
    }
    // Too large: 413, declared or streamed.
    let big = "a".repeat(20_000);
    let r = a
        .post_form(&url, &[("grant_type", "refresh_token"), ("pad", &big)], &[])
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(w.hd.h.metrics.mints.with_label_values(&["minted"]).get(), 0);
    assert!(w
        .redis
        .as_ref()
        .map(|r| {
            let mut c = r.conn();
            let keys: Vec<String> = redis::cmd("KEYS").arg("*stt*").query(&mut c).unwrap();
            keys.is_empty()
        })
        .unwrap());
    w.assert_no_leaks();
}

/// Malformed tokens at the redemption point: an ordinary login, no store access,
/// no panic, and a good token stored beside them is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens_get_an_ordinary_login_and_touch_nothing() {
    let mut w = World::new(true).await;
    let a = Client::device_a();
    let good = w.mint(&a, "alice").await;
    let mut keys_before: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut w.redis.as_ref().unwrap().conn())
        .unwrap();
    keys_before.sort();
    let bad = [
        String::new(),
        "x".into(),
        good[..good.len() - 1].to_string(),
        format!("{good}x"),
        good.replace('.', "!"),
        "a".repeat(5000),
        "%FF%FE%00".into(),
        "é".repeat(30),
        format!(
            "{}.99999999999999999999.{}",
            &good[..22],
            &good[good.len() - 43..]
        ),
    ];
    for t in &bad {
        let r = w.redeem_cookie(&a, t, AUTHORIZE).await;
        assert!(login_page(&r) || r.status == 400, "{t:?}: {r:?}");
        let r = a
            .get(
                &w.hd.url(&format!("{AUTHORIZE}&session_transfer_token={t}")),
                &[],
            )
            .await;
        assert!(r.status == 303 || r.status == 400, "{t:?}: {r:?}");
        if r.status == 303 {
            assert!(
                r.set_cookie_line("__Host-handoff_stt").is_none(),
                "a malformed token is not carried"
            );
        }
    }
    let mut keys_after: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut w.redis.as_ref().unwrap().conn())
        .unwrap();
    keys_after.sort();
    assert_eq!(keys_before, keys_after, "nothing stored changed");
    assert!(w.redemption("malformed") >= 8);
    assert!(
        logged_in(&w.redeem_cookie(&a, &good, AUTHORIZE).await),
        "the good token still works"
    );
    w.assert_no_leaks();
}

/// The STT never reaches the IdP on any path: tokens on non-redemption paths are
/// stripped too (the native app's cookie is sent to every path of the IdP host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_4_tokens_are_stripped_on_every_path() {
    let mut w = World::new(false).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let r = a
        .get(
            &w.hd.url(&format!(
                "/interaction/abc?x=1&session_transfer_token={stt}"
            )),
            &[(
                "cookie",
                &format!("session_transfer_token={stt}; __Host-handoff_stt={stt}"),
            )],
        )
        .await;
    // A token in the URL of any path: a 303 to the clean URL (the address bar and
    // history lose it), and no redemption outside an entry point.
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/interaction/abc?x=1"));
    assert!(r.set_cookie("__Host-handoff_stt").is_none());
    let r = a
        .get(
            &w.hd.url("/interaction/abc?x=1"),
            &[(
                "cookie",
                &format!("session_transfer_token={stt}; __Host-handoff_stt={stt}"),
            )],
        )
        .await;
    assert_eq!(r.status, 404);
    let seen = w
        .idp
        .requests()
        .into_iter()
        .find(|r| r.path() == "/interaction/abc")
        .unwrap();
    assert_eq!(seen.uri, "/interaction/abc?x=1");
    assert_eq!(seen.header("cookie"), None);
    // Not spent: stripping is not redeeming.
    assert!(logged_in(&w.redeem_cookie(&a, &stt, AUTHORIZE).await));
    w.assert_no_leaks();
}

/// Invariant 4: a non-UTF-8 byte elsewhere in the Cookie header is no hiding
/// place for a token, and the other cookies reach the IdP byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_4_non_utf8_cookie_headers_are_still_cleaned() {
    let mut w = World::new(false).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let mut raw = b"legacy=\xe9t\xe9; auth0_session_transfer_token=".to_vec();
    raw.extend_from_slice(stt.as_bytes());
    let r = a
        .send_raw_header("GET", &w.hd.url(AUTHORIZE), "cookie", &raw)
        .await;
    assert!(logged_in(&r), "{r:?}");
    let seen = w
        .idp
        .requests()
        .into_iter()
        .find(|r| r.path() == "/authorize")
        .unwrap();
    assert!(seen
        .headers
        .iter()
        .filter(|(k, _)| k == "cookie")
        .all(|(_, v)| !v.contains(&stt[30..])));
    w.assert_no_leaks();
}

/// handoff serves its public JWKS on the public and the admin listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_is_public() {
    let w = World::new(false).await;
    let a = Client::device_a();
    let p = a
        .get(&w.hd.url("/.well-known/handoff/jwks.json"), &[])
        .await;
    let q = a
        .get(&w.hd.admin_url("/.well-known/handoff/jwks.json"), &[])
        .await;
    assert_eq!(p.status, 200);
    assert_eq!(p.body, q.body);
    let k = &p.json()["keys"][0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(k.get("d").is_none(), "no private part");
    let m = a.get(&w.hd.admin_url("/metrics"), &[]).await;
    assert!(m.body.contains("handoff_redemptions_total"));
}
