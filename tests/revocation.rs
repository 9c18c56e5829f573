//! Refresh-token policy and revocation end to end (SPEC §2.5, §2.6; invariants 7
//! and 8): token endpoint mediation, cascade revocation from the native app's
//! token, propagation across instances over Redis pub/sub, the admin API and
//! back-channel logout — through running handoff instances in front of the IdP
//! stand-in.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::fixtures;
use support::handoff::{Options, Running};
use support::http::{Client, Resp};
use support::idp::{IdpOptions, TestIdp};
use support::world::{logged_in, login_page, with_session, World, AUTHORIZE};

fn rules(allow_refresh: bool) -> String {
    fixtures::rules(&format!("allow_refresh_token = {allow_refresh}"))
}

fn opts(allow_refresh: bool, extra: &str) -> Options {
    fixtures::options(rules(allow_refresh), extra)
}

/// A transfer login: returns (native refresh token after the mint, `_session`, authorization code).
async fn transfer_login(w: &mut World, c: &Client, sub: &str) -> (String, String, String) {
    let rt = w.refresh_token(sub);
    let r = w.mint_as(c, "native-app", &rt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let stt = v["access_token"].as_str().unwrap().to_string();
    let native_rt = v["refresh_token"].as_str().unwrap().to_string();
    let (session, code) = w.login_by_transfer(c, &stt).await;
    w.secrets.push(code.clone());
    (native_rt, session, code)
}

/// The lineage a bound `_session` cookie belongs to.
async fn lineage_of(hd: &Running, session: &str) -> String {
    hd.lineage_of(session).await.as_str().to_string()
}

async fn exchange(w: &mut World, c: &Client, code: &str) -> Resp {
    let r = c
        .post_form(
            &w.hd.url("/oauth/token"),
            &fixtures::code_exchange(code),
            &[],
        )
        .await;
    if r.status == 200 {
        for k in ["access_token", "refresh_token", "id_token"] {
            if let Some(s) = r.json()[k].as_str() {
                w.secrets.push(s.to_string());
            }
        }
    }
    r
}

async fn refresh(w: &mut World, c: &Client, rt: &str) -> Resp {
    let r = c
        .post_form(
            &w.hd.url("/oauth/token"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", "web-app"),
            ],
            &[],
        )
        .await;
    if r.status == 200 {
        if let Some(s) = r.json()["refresh_token"].as_str() {
            w.secrets.push(s.to_string());
        }
    }
    r
}

/// Invariant 8: with `allow_refresh_token = false` (the default) the web app's
/// code exchange succeeds without a refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_8_no_refresh_token_reaches_the_web_app_by_default() {
    for redis in [true, false] {
        let mut w = World::with(redis, IdpOptions::default(), opts(false, "")).await;
        let a = Client::device_a();
        let (_, _, code) = transfer_login(&mut w, &a, "alice").await;
        let r = exchange(&mut w, &a, &code).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert!(v.get("refresh_token").is_none(), "redis={redis}: {v}");
        assert!(
            v["access_token"].is_string() && v["id_token"].is_string(),
            "the login still succeeds"
        );
        assert_eq!(
            r.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            r.body.len()
        );
        assert_eq!(
            w.hd.h
                .metrics
                .web_refresh_tokens
                .with_label_values(&["withheld"])
                .get(),
            1
        );
        // The code is spent: a second exchange is the IdP's business (invalid_grant).
        assert_eq!(exchange(&mut w, &a, &code).await.status, 400);
        w.assert_no_leaks();
    }
}

/// §2.5: allowed by the rules, the web app gets an online refresh token: it works
/// while the session lives, rotates with its binding, and is refused (and revoked)
/// once the session is past its idle limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_refresh_tokens_live_and_die_with_their_session() {
    let mut w = World::with(true, IdpOptions::default(), opts(true, "")).await;
    let a = Client::device_a();
    let (_, session, code) = transfer_login(&mut w, &a, "alice").await;
    let r = exchange(&mut w, &a, &code).await;
    let rt = r.json()["refresh_token"]
        .as_str()
        .expect("allowed by the rules")
        .to_string();
    let r = refresh(&mut w, &a, &rt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rotated = r.json()["refresh_token"].as_str().unwrap().to_string();
    // The session idles out.
    w.hd.clock.advance_secs(61);
    let r = refresh(&mut w, &a, &rotated).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_grant")),
        "{}",
        r.body
    );
    assert!(login_page(&with_session(&w, &a, &session).await));
    assert_eq!(
        w.hd.h
            .metrics
            .web_refresh_tokens
            .with_label_values(&["session_ended"])
            .get(),
        1
    );
    // Refused for good: it is denied now even if asked again.
    assert_eq!(refresh(&mut w, &a, &rotated).await.status, 400);
    w.assert_no_leaks();
}

/// Invariant 7: revoking the native app's refresh token at the IdP's revocation
/// endpoint (through handoff) ends every web session and web refresh token of its
/// lineage; no more mints either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_7_native_revocation_cascades_to_the_lineage() {
    let mut w = World::with(true, IdpOptions::default(), opts(true, "")).await;
    let a = Client::device_a();
    let (native_rt, session, code) = transfer_login(&mut w, &a, "alice").await;
    let web_rt = exchange(&mut w, &a, &code).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(logged_in(&with_session(&w, &a, &session).await));

    let r = a
        .post_form(
            &w.hd.url("/oauth/revoke"),
            &[("token", &native_rt), ("client_id", "native-app")],
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !w.idp.refresh_token_active(&native_rt),
        "the IdP revoked it"
    );

    let r = with_session(&w, &a, &session).await;
    assert!(login_page(&r), "the web session ended: {r:?}");
    let r = refresh(&mut w, &a, &web_rt).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        w.hd.h
            .metrics
            .revocations
            .with_label_values(&["lineage", "native_token_revoked"])
            .get(),
        1
    );
    w.assert_no_leaks();
}

/// Invariant 7 across instances: a revocation at instance A takes effect at
/// instance B within the propagation bound; the delay is measured and printed.
/// Then the pub/sub connection is killed (CLIENT KILL): revocations still arrive,
/// and nothing revoked comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_7_revocation_propagates_across_instances_even_after_pubsub_loss() {
    let mut w = World::with(true, IdpOptions::default(), opts(false, "")).await;
    let url = w.redis.as_ref().unwrap().url();
    let b = tokio::task::block_in_place(|| {
        Running::start(
            &w.idp,
            Options {
                redis_url: Some(url),
                signing_key_pem: Some(w.hd.signing_key_pem.clone()),
                ..opts(false, "")
            },
        )
    });
    let a = Client::device_a();
    let bound = Duration::from_secs(1);

    async fn measure(w: &World, b: &Running, a: &Client, session: &str, lineage: &str) -> Duration {
        // Warm instance B's cache with the live session.
        let r = a
            .get(
                &b.url(AUTHORIZE),
                &[("cookie", &format!("_session={session}"))],
            )
            .await;
        assert!(logged_in(&r), "{r:?}");
        let r = a
            .post_json(
                &w.hd.admin_url("/revoke"),
                &json!({"lineage": lineage}),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let t0 = Instant::now();
        loop {
            let r = a
                .get(
                    &b.url(AUTHORIZE),
                    &[("cookie", &format!("_session={session}"))],
                )
                .await;
            if login_page(&r) {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "instance B never saw the revocation"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    let (_, s1, _) = transfer_login(&mut w, &a, "alice").await;
    let l1 = lineage_of(&w.hd, &s1).await;
    let d1 = measure(&w, &b, &a, &s1, &l1).await;
    eprintln!("propagation delay A -> B over pub/sub: {d1:?}");
    assert!(d1 <= bound + Duration::from_millis(200), "{d1:?}");

    // Kill every pub/sub connection; the subscribers reconnect by themselves.
    let mut conn = w.redis.as_ref().unwrap().conn();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut conn)
        .unwrap();
    assert!(killed >= 2, "both instances were subscribed ({killed})");
    let (_, s2, _) = transfer_login(&mut w, &a, "bob").await;
    let l2 = lineage_of(&w.hd, &s2).await;
    let d2 = measure(&w, &b, &a, &s2, &l2).await;
    eprintln!(
        "propagation delay A -> B right after CLIENT KILL of the pub/sub connections: {d2:?}"
    );
    assert!(d2 <= bound + Duration::from_millis(200), "{d2:?}");
    // Resubscribed: a third revocation is fast again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let subscribers: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut conn)
        .unwrap();
    assert!(
        subscribers.lines().count() >= 2,
        "resubscribed: {subscribers}"
    );
    let (_, s3, _) = transfer_login(&mut w, &a, "carol").await;
    let l3 = lineage_of(&w.hd, &s3).await;
    let d3 = measure(&w, &b, &a, &s3, &l3).await;
    eprintln!("propagation delay A -> B after resubscribing: {d3:?}");
    // Nothing revoked comes back, on either instance, after caches refill.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for s in [&s1, &s2, &s3] {
        for hd in [&w.hd, &b] {
            let r = a
                .get(&hd.url(AUTHORIZE), &[("cookie", &format!("_session={s}"))])
                .await;
            assert!(login_page(&r));
        }
    }
    w.assert_no_leaks();
}

/// The admin API: bearer-protected, JSON in and out, clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_lists_and_revokes_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "an-admin-token-of-some-length").unwrap();
    let mut o = opts(false, "");
    o.admin_token_file = Some(token_file.display().to_string());
    let mut w = World::with(true, IdpOptions::default(), o).await;
    let a = Client::device_a();
    let (_, session, _) = transfer_login(&mut w, &a, "alice").await;
    let auth = ("authorization", "Bearer an-admin-token-of-some-length");

    for (h, what) in [
        (None, "no token"),
        (Some(("authorization", "Bearer wrong")), "wrong token"),
        (
            Some(("authorization", "an-admin-token-of-some-length")),
            "no scheme",
        ),
    ] {
        let hs: Vec<(&str, &str)> = h.into_iter().collect();
        let r = a.get(&w.hd.admin_url("/sessions?subject=alice"), &hs).await;
        assert_eq!(r.status, 401, "{what}");
        let r = a
            .post_json(
                &w.hd.admin_url("/revoke"),
                &json!({"subject": "alice"}),
                &hs,
            )
            .await;
        assert_eq!(r.status, 401, "{what}");
    }
    assert!(
        logged_in(&with_session(&w, &a, &session).await),
        "refused calls changed nothing"
    );

    let r = a
        .get(&w.hd.admin_url("/sessions?subject=alice"), &[auth])
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let lineage = v["lineages"][0]["lineage"].as_str().unwrap().to_string();
    let sid = v["lineages"][0]["sessions"][0]["session"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["lineages"][0]["sessions"][0]["state"], "active");
    assert!(v["lineages"][0]["sessions"][0]["absolute_exp"]
        .as_u64()
        .is_some());

    for bad in [
        json!({}),
        json!({"lineage": "not-a-lineage"}),
        json!({"session": sid}),
        json!([1, 2]),
    ] {
        let r = a.post_json(&w.hd.admin_url("/revoke"), &bad, &[auth]).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = a
        .send(
            "POST",
            &w.hd.admin_url("/revoke"),
            &[auth, ("content-type", "application/json")],
            "{not json",
        )
        .await;
    assert_eq!(r.status, 400);
    let r = a
        .post_json(
            &w.hd.admin_url("/revoke"),
            &json!({"lineage": lineage, "session": "nope"}),
            &[auth],
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(
        logged_in(&with_session(&w, &a, &session).await),
        "bad calls changed nothing"
    );

    let r = a
        .post_json(
            &w.hd.admin_url("/revoke"),
            &json!({"lineage": lineage, "session": sid}),
            &[auth],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(login_page(&with_session(&w, &a, &session).await));
    let v = a
        .get(&w.hd.admin_url("/sessions?subject=alice"), &[auth])
        .await
        .json();
    assert_eq!(v["lineages"][0]["sessions"][0]["state"], "revoked");

    // Everything of a subject.
    let (_, s2, _) = transfer_login(&mut w, &a, "alice").await;
    let r = a
        .post_json(
            &w.hd.admin_url("/revoke"),
            &json!({"subject": "alice"}),
            &[auth],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(login_page(&with_session(&w, &a, &s2).await));
    w.assert_no_leaks();
}

/// Back-channel logout: a logout token from the IdP ends the transfer session of
/// its `sid` (or all of its `sub`); forged, expired or malformed tokens change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_ends_sessions_and_refuses_forgeries() {
    let mut w = World::with(
        true,
        IdpOptions::default(),
        opts(false, "[backchannel_logout]\naudiences = [\"web-app\"]\n"),
    )
    .await;
    let a = Client::device_a();
    let (_, session, code) = transfer_login(&mut w, &a, "alice").await;
    assert_eq!(
        exchange(&mut w, &a, &code).await.status,
        200,
        "the code exchange links the IdP's sid"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let event = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let idp_sid = TestIdp::session_id(&session);
    let good = json!({"iss": w.idp.issuer(), "aud": "web-app", "iat": now, "jti": "j1", "events": event, "sid": idp_sid});
    let url = w.hd.url("/handoff/backchannel-logout");

    let forged = {
        let other = TestIdp::start(IdpOptions::default()).await;
        let mut c = good.clone();
        c["iss"] = json!(w.idp.issuer());
        other.sign_jwt(&c)
    };
    let mut stale = good.clone();
    stale["iat"] = json!(now - 3600);
    let mut nonce = good.clone();
    nonce["nonce"] = json!("n");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    for (token, what) in [
        (forged, "forged"),
        (w.idp.sign_jwt(&stale), "stale"),
        (w.idp.sign_jwt(&nonce), "nonce"),
        (w.idp.sign_jwt(&wrong_aud), "wrong aud"),
        ("garbage".to_string(), "garbage"),
    ] {
        let r = a.post_form(&url, &[("logout_token", &token)], &[]).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
    }
    assert_eq!(
        a.post_form(&url, &[("nothing", "here")], &[]).await.status,
        400
    );
    assert!(
        logged_in(&with_session(&w, &a, &session).await),
        "refused tokens changed nothing"
    );

    let r = a
        .post_form(&url, &[("logout_token", &w.idp.sign_jwt(&good))], &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        login_page(&with_session(&w, &a, &session).await),
        "the session of that sid ended"
    );

    // By sub.
    let (_, s2, _) = transfer_login(&mut w, &a, "alice").await;
    let by_sub = json!({"iss": w.idp.issuer(), "aud": "web-app", "iat": now, "jti": "j2", "events": event, "sub": "alice"});
    let r = a
        .post_form(&url, &[("logout_token", &w.idp.sign_jwt(&by_sub))], &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(login_page(&with_session(&w, &a, &s2).await));
    w.assert_no_leaks();
}

/// Bad input at the token and revocation endpoints: clear errors, nothing stored changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mediation_requests_get_clear_errors() {
    let mut w = World::with(true, IdpOptions::default(), opts(true, "")).await;
    let a = Client::device_a();
    let (_, session, _) = transfer_login(&mut w, &a, "alice").await;
    for url in [w.hd.url("/oauth/token"), w.hd.url("/oauth/revoke")] {
        for (ct, body) in [
            ("application/json", &b"{"[..]),
            ("application/x-www-form-urlencoded", b"token=\xff"),
            ("text/xml", b"<a/>"),
        ] {
            let r = a
                .send("POST", &url, &[("content-type", ct)], body.to_vec())
                .await;
            assert_eq!(
                (r.status, r.json()["error"].as_str()),
                (400, Some("invalid_request")),
                "{url} {ct}"
            );
        }
        let r = a
            .post_form(&url, &[("token", &"x".repeat(70_000))], &[])
            .await;
        assert_eq!(r.status, 413);
    }
    // Unknown refresh tokens and codes pass through to the IdP, which refuses them.
    assert_eq!(refresh(&mut w, &a, "unknown").await.status, 400);
    assert_eq!(exchange(&mut w, &a, "unknown-code").await.status, 400);
    assert!(logged_in(&with_session(&w, &a, &session).await));
    w.assert_no_leaks();
}

/// Invariants 8 and 9: when the store cannot record a code issued inside a
/// transfer session, the code does not reach the web app (an RFC 6749 error
/// redirect instead), so its token response can never escape mediation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecordable_code_is_withheld_from_the_web_app() {
    let mut w = World::with(
        true,
        IdpOptions::default(),
        opts(false, "[session]\noutage_grace = \"30s\"\n"),
    )
    .await;
    let a = Client::device_a();
    let (_, session, _) = transfer_login(&mut w, &a, "alice").await;
    assert!(
        logged_in(&with_session(&w, &a, &session).await),
        "warms the session cache"
    );
    w.redis.as_mut().unwrap().stop();
    let r = with_session(&w, &a, &session).await;
    assert_eq!(r.status, 302, "{r:?}");
    let loc = r.header("location").unwrap();
    assert!(!loc.contains("code="), "{loc}");
    assert!(
        loc.contains("error=temporarily_unavailable") && loc.contains("state=s1"),
        "{loc}"
    );
    w.assert_no_leaks();
}

/// Every value handoff keeps in Redis, read back whatever its type.
fn redis_values(w: &World) -> Vec<String> {
    let Some(r) = &w.redis else {
        return Vec::new();
    };
    let mut c = r.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    let mut out = keys.clone();
    for k in keys {
        let t: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
        let vals: Vec<String> = match t.as_str() {
            "string" => vec![redis::cmd("GET").arg(&k).query(&mut c).unwrap()],
            "hash" => redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&k).query(&mut c).unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap(),
            other => panic!("unexpected key type {other} at {k}"),
        };
        out.extend(vals);
    }
    out
}

async fn userinfo_status(w: &World, c: &Client, access_token: &str) -> u16 {
    c.get(
        &format!("{}/userinfo", w.idp.issuer()),
        &[("authorization", &format!("Bearer {access_token}"))],
    )
    .await
    .status
}

/// Waits (real time: the sweeper runs in the background) until `cond` holds.
async fn eventually(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < until, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 16, defect 2 (SPEC §2.5): the refresh token handoff withholds from the web
/// app is revoked at the IdP when the web session ends — by revocation (retried
/// while the IdP is down) or by its idle limit (which slides with use) — and not at
/// login, where the IdP (RFC 7009 §2.1; the stand-in, like oidc-provider, revokes
/// the access token issued with it) would take the web app's access token with it.
/// It is kept sealed: neither it nor the access token is in the store in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_refresh_token_is_revoked_when_its_session_ends_not_at_login() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("web-app.secret");
    std::fs::write(&secret, "web-app-secret\n").unwrap();
    let extra = format!(
        "[clients.\"web-app\"]\nsecret_file = \"{}\"\n",
        secret.display()
    );
    for redis in [true, false] {
        for end in ["revoked", "idle"] {
            let why = format!("redis={redis} end={end}");
            let mut w = World::with(redis, IdpOptions::default(), opts(false, &extra)).await;
            let a = Client::device_a();
            let (_, session, code) = transfer_login(&mut w, &a, "alice").await;
            let r = exchange(&mut w, &a, &code).await;
            assert_eq!(r.status, 200, "{why}: {}", r.body);
            let v = r.json();
            assert!(v.get("refresh_token").is_none(), "{why}: withheld");
            let at = v["access_token"].as_str().unwrap().to_string();

            // Longer than the old background revocation took: the web app's access
            // token still works and the IdP still holds the refresh token.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            assert_eq!(
                userinfo_status(&w, &a, &at).await,
                200,
                "{why}: the web app's access token works after its login"
            );
            let rts = w.idp.refresh_tokens_of("web-app");
            assert_eq!(
                rts.len(),
                1,
                "{why}: the withheld refresh token is not revoked at login"
            );
            let rt = rts[0].clone();
            w.secrets.push(rt.clone());
            // Still refused at handoff, whoever presents it.
            assert_eq!(refresh(&mut w, &a, &rt).await.status, 400, "{why}");
            // Kept only sealed.
            for value in redis_values(&w) {
                assert!(
                    !value.contains(&rt) && !value.contains(&at),
                    "{why}: a token in the store in the clear"
                );
            }

            let hash = handoff::secret::SecretHash::of(session.as_bytes());
            let s =
                w.hd.h
                    .store
                    .session_by_cookie(&hash)
                    .await
                    .unwrap()
                    .unwrap();
            if end == "revoked" {
                // The IdP is down when the session is revoked: not lost, retried.
                w.idp.set_down(true);
                assert!(
                    handoff::revocation::revoke_session(&w.hd.h, &s.lineage, &s.sid, "admin")
                        .await
                        .unwrap()
                );
                tokio::time::sleep(Duration::from_millis(2500)).await;
                w.idp.set_down(false);
                assert!(w.idp.refresh_token_active(&rt), "{why}: the IdP was down");
                w.hd.clock.advance_secs(61); // the retry is due
            } else {
                // Use slides the idle limit: 50 s, a request, 50 s more (100 s after
                // the login, 50 s after its last use: alive).
                w.hd.clock.advance_secs(50);
                assert!(logged_in(&with_session(&w, &a, &session).await), "{why}");
                w.hd.clock.advance_secs(50);
                tokio::time::sleep(Duration::from_millis(2500)).await;
                assert!(
                    w.idp.refresh_token_active(&rt),
                    "{why}: the session is alive (idle slid): its token is not revoked"
                );
                assert_eq!(userinfo_status(&w, &a, &at).await, 200, "{why}");
                // Then it idles out.
                w.hd.clock.advance_secs(65);
            }
            eventually(&format!("{why}: revoked at the IdP"), 10, || {
                !w.idp.refresh_token_active(&rt)
            })
            .await;
            assert!(login_page(&with_session(&w, &a, &session).await), "{why}");
            let revocations: Vec<_> = w
                .idp
                .requests()
                .into_iter()
                .filter(|r| r.path() == "/oauth/revoke" && r.contains(&rt))
                .collect();
            assert!(!revocations.is_empty(), "{why}");
            assert!(
                revocations
                    .iter()
                    .all(|r| r.header("authorization")
                        == Some("Basic d2ViLWFwcDp3ZWItYXBwLXNlY3JldA==")),
                "{why}: as web-app, with its secret"
            );
            // Forgotten once revoked: nothing of it is kept.
            for value in redis_values(&w) {
                assert!(
                    !value.contains(":wh"),
                    "{why}: the sealed record is gone: {value}"
                );
            }
            w.assert_no_leaks();
        }
    }
}
