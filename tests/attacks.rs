//! The adversarial review's attacks (issue 9), each pinned by a test that fails on
//! the code before its fix, against the IdP stand-in (the same shapes run against
//! the real oidc-provider in `tests/e2e/test/attacks.test.js`). The rule they
//! prove (SPEC §7.11): where handoff cannot be sure how the IdP reads a request,
//! it takes the dangerous reading.

mod support;

use serde_json::json;
use support::fixtures::{code_exchange, options, rules};
use support::handoff::Options;
use support::http::Client;
use support::idp::{IdpOptions, SESSION_COOKIE};
use support::world::{code_of, logged_in, login_page, with_session, World, AUTHORIZE, REDIRECT};

fn opts() -> Options {
    options(rules(""), "")
}

async fn world(redis: bool) -> World {
    World::with(redis, IdpOptions::default(), opts()).await
}

/// Deletes handoff's record of an authorization code, as if its redirect had come
/// back where handoff could not see it (a form_post page, a fragment).
fn forget_code(w: &World, code: &str) {
    let mut c = w.redis.as_ref().unwrap().conn();
    let key =
        handoff::store::Keys::new("ho").code(&handoff::secret::SecretHash::of(code.as_bytes()));
    let removed: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
    assert_eq!(removed, 1, "{key}");
}

/// The last request the IdP received.
fn last_seen(w: &World) -> support::idp::RecordedRequest {
    w.idp
        .requests()
        .into_iter()
        .next_back()
        .expect("the IdP saw a request")
}

/// Attack 1: a dead session's cookie re-spelled (quotes at either end, the npm
/// `cookie` parser's first-and-last-character reading, percent-encoding, blanks,
/// a `,` join, a re-cased or encoded name, a duplicate) never reaches the IdP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_sessions_do_not_revive_in_other_spellings() {
    let mut w = world(true).await;
    let a = Client::device_a();
    let (s, _) = w.login(&a, "alice").await;
    w.hd.clock.advance_secs(61); // past the idle limit
    let pct: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
    let variants = [
        format!("_session=\"{s}"),
        format!("_session=\"{s}~"),
        format!("_session={s}\""),
        format!("_session=\"{s}\""),
        format!("_session={pct}"),
        format!("_session= {s} "),
        format!("a=1, _session={s}"),
        format!("_Session={s}"),
        format!("%5Fsession={s}"),
        format!("_session=junk; _session={s}"),
        format!("_session={s}, x=1"),
    ];
    for v in &variants {
        let r = a.get(&w.hd.url(AUTHORIZE), &[("cookie", v)]).await;
        assert!(login_page(&r), "{v}: {r:?}");
        let seen = last_seen(&w);
        assert!(
            !seen.header("cookie").is_some_and(|c| c.contains(&s)),
            "{v}: the IdP received the dead session's value: {:?}",
            seen.header("cookie")
        );
    }
    // An unbound value in a non-canonical form is stripped too; a plain one passes.
    a.get(&w.hd.url(AUTHORIZE), &[("cookie", "_session=\"unbound")])
        .await;
    assert_eq!(last_seen(&w).header("cookie"), None);
    a.get(&w.hd.url(AUTHORIZE), &[("cookie", "_session=unbound")])
        .await;
    assert_eq!(last_seen(&w).header("cookie"), Some("_session=unbound"));
    w.assert_no_leaks();
}

/// Attack 1, the live side: a live bound session quoted the RFC 6265 way still
/// works (its reading is the live one), so the fix costs users nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_in_quotes_still_works() {
    let mut w = world(false).await;
    let a = Client::device_a();
    let (s, _) = w.login(&a, "alice").await;
    a.get(
        &w.hd.url(AUTHORIZE),
        &[("cookie", &format!("_session=\"{s}\""))],
    )
    .await;
    assert_eq!(
        last_seen(&w).header("cookie"),
        Some(format!("_session=\"{s}\"").as_str()),
        "its live reading lets it pass, byte for byte"
    );
}

/// Attack 4: one request with thousands of session cookies is refused (431) or
/// stripped unread; it does not cost the store a read per cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_cannot_cost_thousands_of_store_reads() {
    let w = world(true).await;
    let a = Client::device_a();
    let flood: String = (0..20_000).map(|i| format!("_session=x{i}; ")).collect();
    let r = a.get(&w.hd.url(AUTHORIZE), &[("cookie", &flood)]).await;
    assert_eq!(r.status, 431, "{}", r.body);
    let mut c = w.redis.as_ref().unwrap().conn();
    let before = commands(&mut c);
    let many: String = (0..500).map(|i| format!("_session=y{i}; ")).collect();
    assert!(many.len() < 16 * 1024);
    let r = a.get(&w.hd.url(AUTHORIZE), &[("cookie", &many)]).await;
    assert!(login_page(&r));
    assert_eq!(last_seen(&w).header("cookie"), None, "stripped unread");
    let spent = commands(&mut c) - before;
    assert!(spent < 10, "{spent} store commands for one request");
    assert_eq!(
        w.hd.h
            .metrics
            .sessions
            .with_label_values(&["over_limit"])
            .get(),
        1
    );
}

fn commands(c: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("stats").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .unwrap()
        .trim()
        .parse::<i64>()
        .unwrap()
        - 1 // this INFO itself
}

/// Attack 3: against a Java-style router (dot segments resolved, `;params`
/// dropped, `\` and `%2f` as `/`), no path variant reaches the token endpoint
/// unmediated: handoff refuses every raw path it cannot read one way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_variants_do_not_reach_a_java_router_unmediated() {
    let idp = IdpOptions {
        java_router: true,
        ..IdpOptions::default()
    };
    let mut w = World::with(false, idp, opts()).await;
    let a = Client::device_a();
    let (_, code) = w.login(&a, "alice").await;
    let form = code_exchange(&code);
    let posts = w
        .idp
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    for p in [
        "/oauth/token;jsessionid=x",
        "/x/../oauth/token",
        "/oauth/token/.;/",
        "/oauth/x/%2e%2e/token",
        "/oauth%2ftoken",
        "/oauth\\token",
        "/oauth%5ctoken",
        "/oauth/token;/",
        "/oauth/%2e/token",
    ] {
        let r = a.post_form(&w.hd.url(p), &form, &[]).await;
        assert_eq!(r.status, 400, "{p}: {r:?}");
        assert!(!r.body.contains("refresh_token"), "{p}");
    }
    assert_eq!(
        w.idp
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        posts,
        "the IdP saw none of them"
    );
    // The canonical path still works, mediated.
    let r = a.post_form(&w.hd.url("/oauth/token"), &form, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("refresh_token").is_none());
    w.secrets
        .push(r.json()["access_token"].as_str().unwrap().to_string());
    w.assert_no_leaks();
}

/// Attack 8: the cascade is recorded before the IdP is told; when the store cannot
/// record it, handoff answers 503 and the IdP keeps the token, so a retry cascades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_error_does_not_lose_the_cascade() {
    let mut w = world(true).await;
    let a = Client::device_a();
    let rt = w.refresh_token("alice");
    let r = w.mint_as(&a, "native-app", &rt).await;
    let stt = r.json()["access_token"].as_str().unwrap().to_string();
    let native = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    let s = r.set_cookie(SESSION_COOKIE).unwrap();
    w.secrets.push(s.clone());
    let revoke = [("token", native.as_str()), ("client_id", "native-app")];
    // Persisted, so the restarted Redis still knows the lineage.
    let _: () = redis::cmd("SAVE")
        .query(&mut w.redis.as_ref().unwrap().conn())
        .unwrap();
    w.redis.as_mut().unwrap().stop();
    let r = a.post_form(&w.hd.url("/oauth/revoke"), &revoke, &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        w.idp.refresh_token_active(&native),
        "the IdP was not told while handoff could not record it"
    );
    w.redis.as_mut().unwrap().restart();
    let mut ok = false;
    for _ in 0..50 {
        let r = a.post_form(&w.hd.url("/oauth/revoke"), &revoke, &[]).await;
        if r.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the retry went through");
    assert!(!w.idp.refresh_token_active(&native));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = with_session(&w, &a, &s).await;
    assert!(login_page(&r), "the retry cascaded: {r:?}");
    w.assert_no_leaks();
}

/// Attack 9: a recorded code exchanged after its lineage was revoked gets nothing;
/// the IdP is not even asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_worthless_after_a_revocation() {
    let mut w = world(false).await;
    let a = Client::device_a();
    let (s, code) = w.login(&a, "alice").await;
    let lineage = w.hd.lineage_of(&s).await;
    let r = a
        .post_json(
            &w.hd.admin_url("/revoke"),
            &json!({"lineage": lineage.as_str()}),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let posts_before = w
        .idp
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    let r = a
        .post_form(&w.hd.url("/oauth/token"), &code_exchange(&code), &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        w.idp
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        posts_before,
        "the IdP was not asked"
    );
}

/// Attack 11: `_` spellings of the headers handoff strips or sets never reach the
/// IdP (CGI, WSGI, Rack and PHP read them as the real ones), nor do headers that
/// reroute a request at some servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_spellings_of_protected_headers_are_dropped() {
    let w = world(false).await;
    let a = Client::device_a();
    a.get(
        &w.hd.url(AUTHORIZE),
        &[
            ("X_Handoff_Assertion", "forged"),
            ("x_handoff-assertion", "forged"),
            ("X_Forwarded_For", "203.0.113.9"),
            ("x_forwarded_host", "evil.example"),
            ("X_Forwarded_Proto", "https"),
            ("X-Original-URL", "/oauth/token"),
            ("X-HTTP-Method-Override", "POST"),
            ("X-Forwarded-Prefix", "/evil"),
        ],
    )
    .await;
    let seen = last_seen(&w);
    for (k, v) in &seen.headers {
        assert!(
            !v.contains("forged") && !v.contains("203.0.113.9") && !v.contains("evil"),
            "{k}: {v} reached the IdP"
        );
        assert!(!k.contains('_'), "{k} reached the IdP");
        assert!(
            !matches!(
                k.as_str(),
                "x-original-url" | "x-http-method-override" | "x-forwarded-prefix"
            ),
            "{k} reached the IdP"
        );
    }
}

/// Attack 6: a `Host` that is not handoff's gets 421, and the IdP builds its URLs
/// from the configured public host only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_header_cannot_steer_the_idp() {
    let w = world(false).await;
    let a = Client::device_a();
    for host in ["evil.example", "127.0.0.1:1", "127.0.0.1.evil.example"] {
        let r = a
            .get(
                &w.hd.url("/.well-known/openid-configuration"),
                &[("host", host)],
            )
            .await;
        assert_eq!(r.status, 421, "{host}: {r:?}");
    }
    let public = w.hd.audience();
    let public = public
        .strip_prefix("urn:")
        .and_then(|p| p.strip_suffix(":session_transfer"))
        .unwrap()
        .to_string();
    let r = a
        .get(
            &w.hd.url("/.well-known/openid-configuration"),
            &[
                ("host", &public.to_uppercase()),
                ("x-forwarded-host", "evil.example"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "the public host in any case is ours");
    assert_eq!(
        last_seen(&w).header("x-forwarded-host"),
        Some(public.as_str())
    );
}

/// Attack 13: an STT-shaped value reaches the IdP from no part of a request — not
/// from another query parameter or a non-redemption path (a 303 cleans the URL),
/// a Referer, another header, another cookie, a body or a path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_tokens_reach_the_idp_from_nowhere() {
    let mut w = world(false).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    // In the query of a non-redemption path, under its own name or another.
    for q in [
        format!("/interaction/x?session_transfer_token={stt}&a=1"),
        format!("/anything?next={stt}"),
        format!(
            "/authorize?client_id=web-app&state={}",
            stt.replace('.', "%2E")
        ),
    ] {
        let r = a.get(&w.hd.url(&q), &[]).await;
        assert_eq!(r.status, 303, "{q}: {r:?}");
        let loc = r.header("location").unwrap();
        assert!(!loc.contains(&stt[stt.len() - 43..]), "{loc}");
        assert!(loc.starts_with('/') && !loc.starts_with("//"), "{loc}");
    }
    // In a Referer, another header, another cookie.
    let referer = format!("https://app.example/?session_transfer_token={stt}");
    a.get(
        &w.hd.url(AUTHORIZE),
        &[
            ("referer", &referer),
            ("x-token", &stt),
            ("cookie", &format!("other={stt}; keep=1")),
        ],
    )
    .await;
    let seen = last_seen(&w);
    assert_eq!(seen.header("referer"), None);
    assert_eq!(seen.header("x-token"), None);
    assert_eq!(seen.header("cookie"), Some("keep=1"));
    // In a body or a path: refused.
    let r = a
        .post_form(
            &w.hd.url("/authorize"),
            &[("session_transfer_token", &stt)],
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = a
        .post_form(&w.hd.url("/interaction/x/login"), &[("note", &stt)], &[])
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = a.get(&w.hd.url(&format!("/authorize/{stt}")), &[]).await;
    assert_eq!(r.status, 400, "{r:?}");
    w.assert_no_leaks();
}

/// Attack 14: the clean-URL redirect is always a path with exactly one leading `/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_url_redirects_never_leave_the_origin() {
    let mut w = World::with(
        false,
        IdpOptions::default(),
        Options {
            extra: "[paths]\nredemption = [\"/authorize\"]\n".into(),
            ..opts()
        },
    )
    .await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    for p in ["//authorize", "///authorize", "//evil.example/authorize"] {
        let r = a
            .get(
                &w.hd.url(&format!(
                    "{p}?client_id=web-app&session_transfer_token={stt}"
                )),
                &[],
            )
            .await;
        assert_eq!(r.status, 303, "{p}: {r:?}");
        let loc = r.header("location").unwrap();
        assert!(loc.starts_with('/') && !loc.starts_with("//"), "{p}: {loc}");
    }
    w.assert_no_leaks();
}

/// Attack 2: a redemption whose code would come back where handoff cannot see it
/// (form_post, fragment, web_message, JARM, hybrid, PAR, a request object, a POSTed
/// authorize) gets an ordinary login, and the token is not spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmediatable_authorize_shapes_get_no_transfer_login() {
    let mut w = world(false).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let cookie = format!("auth0_session_transfer_token={stt}");
    for extra in [
        "&response_mode=form_post",
        "&response_mode=fragment",
        "&response_mode=web_message",
        "&response_mode=jwt",
        "&response_mode=query&response_mode=form_post",
        "&Response_Mode=form_post",
        "&response_type=code%20id_token",
        "&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Ax",
        "&request=eyJhbGciOiJub25lIn0.e30.",
        ";response_mode=form_post",
    ] {
        let r = a
            .get(
                &w.hd.url(&format!("{AUTHORIZE}{extra}")),
                &[("cookie", &cookie)],
            )
            .await;
        assert!(!logged_in(&r), "{extra}: {r:?}");
        assert_eq!(
            last_seen(&w).header("x-handoff-assertion"),
            None,
            "{extra}: no assertion"
        );
    }
    // A POSTed authorize hides its parameters in the body: read, and refused.
    let r = a
        .send(
            "POST",
            &w.hd.url("/authorize?client_id=web-app"),
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "response_type=code&response_mode=form_post&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
        )
        .await;
    assert!(!logged_in(&r), "{r:?}");
    assert_eq!(last_seen(&w).header("x-handoff-assertion"), None);
    assert!(w.redemption("unmediatable") >= 11);
    // The token was never spent: the plain shape still logs in.
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert!(logged_in(&r), "{r:?}");
    w.secrets.push(r.set_cookie(SESSION_COOKIE).unwrap());
    w.assert_no_leaks();
}

/// Attack 2, defence in depth: a code the IdP issued in a transfer login that
/// handoff did not record (here: its record is gone) still meets the token
/// endpoint — the answer's `amr` says transfer, so no refresh token. A password
/// login's code keeps its refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrecorded_codes_of_transfer_logins_lose_their_refresh_token() {
    let mut w = world(true).await;
    let a = Client::device_a();
    let (_, code) = w.login(&a, "alice").await;
    forget_code(&w, &code);
    let r = a
        .post_form(&w.hd.url("/oauth/token"), &code_exchange(&code), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("refresh_token").is_none(), "{}", r.body);
    assert!(r.json().get("access_token").is_some());
    w.secrets
        .push(r.json()["access_token"].as_str().unwrap().to_string());
    // An ordinary password session of the IdP: its code is the IdP's business.
    let bob = w.idp.password_session("bob");
    w.secrets.push(bob.clone());
    let r = a
        .get(
            &w.hd
                .url(&format!("{AUTHORIZE}&scope=openid%20offline_access")),
            &[("cookie", &format!("_session={bob}"))],
        )
        .await;
    assert!(logged_in(&r), "{r:?}");
    let r = a
        .post_form(&w.hd.url("/oauth/token"), &code_exchange(&code_of(&r)), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    for k in ["access_token", "refresh_token", "id_token"] {
        if let Some(s) = v[k].as_str() {
            w.secrets.push(s.to_string());
        }
    }
    assert!(v.get("refresh_token").is_some(), "{}", r.body);
}

/// Attack 5: Bob, logged in with his password, has Alice's STT planted. Bob's IdP
/// session is kept out of the transfer (the IdP logs Alice in afresh), so nothing of
/// Bob's is ever bound to Alice's lineage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_token_never_binds_the_victims_session() {
    let mut w = world(false).await;
    let a = Client::device_a();
    let bob = w.idp.password_session("bob");
    w.secrets.push(bob.clone());
    let stt = w.mint(&a, "alice").await;
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[(
                "cookie",
                &format!("_session={bob}; auth0_session_transfer_token={stt}"),
            )],
        )
        .await;
    let seen = last_seen(&w);
    assert!(
        !seen.header("cookie").is_some_and(|c| c.contains(&bob)),
        "Bob's session was kept out of the transaction: {:?}",
        seen.header("cookie")
    );
    assert!(logged_in(&r), "{r:?}");
    assert_eq!(w.idp.logins().last().unwrap().sub, "alice");
    let bob_hash = handoff::secret::SecretHash::of(bob.as_bytes());
    assert!(
        w.hd.h
            .store
            .session_by_cookie(&bob_hash)
            .await
            .unwrap()
            .is_none(),
        "Bob's session is not bound"
    );
    w.secrets.push(r.set_cookie(SESSION_COOKIE).unwrap());
    w.assert_no_leaks();
}

/// Attack 5, at the token endpoint: a recorded code whose answer names another
/// subject than the transfer's is refused, and its session revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_answer_for_another_subject_is_refused() {
    let mut w = world(false).await;
    let a = Client::device_a();
    let (s, alice_code) = w.login(&a, "alice").await;
    let rec =
        w.hd.h
            .store
            .take_code(&handoff::secret::SecretHash::of(alice_code.as_bytes()))
            .await
            .unwrap()
            .unwrap();
    // A code the IdP issued for Bob, recorded as if it belonged to Alice's transfer.
    let bob = w.idp.password_session("bob");
    w.secrets.push(bob.clone());
    let r = with_session(&w, &a, &bob).await;
    let bob_code = code_of(&r);
    w.hd.h
        .store
        .record_code(
            &handoff::secret::SecretHash::of(bob_code.as_bytes()),
            &rec,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let r = a
        .post_form(&w.hd.url("/oauth/token"), &code_exchange(&bob_code), &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.contains("access_token"));
    let r = with_session(&w, &a, &s).await;
    assert!(login_page(&r), "the mismatched session was revoked: {r:?}");
}

/// Found by a pentest of the fix: an unrecorded code exchanged with client
/// authentication handoff reads another way than the IdP (a lower-case `basic`
/// scheme, no `client_id` in the body) is still mediated — an unattributable
/// caller counts as a client a transfer may log in to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattributable_callers_do_not_escape_mediation() {
    use base64::Engine;
    let mut w = world(true).await;
    let a = Client::device_a();
    let basic = base64::engine::general_purpose::STANDARD.encode("web-app:secret");
    for scheme in ["basic", "BASIC"] {
        let (_, code) = w.login(&a, "alice").await;
        forget_code(&w, &code);
        let auth = format!("{scheme} {basic}");
        let r = a
            .post_form(
                &w.hd.url("/oauth/token"),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                ],
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
        assert!(
            r.json().get("refresh_token").is_none(),
            "{scheme}: {}",
            r.body
        );
        w.secrets
            .push(r.json()["access_token"].as_str().unwrap().to_string());
    }
    w.assert_no_leaks();
}

/// Attack 10: a web page cannot drive the default (tokenless, loopback) admin API:
/// not with a "simple" cross-site POST (text/plain, an Origin), not by DNS
/// rebinding (a foreign Host); the operator's own calls still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_drive_the_admin_api() {
    let w = world(false).await;
    let a = Client::device_a();
    let url = w.hd.admin_url("/revoke");
    let body = r#"{"subject":"alice"}"#;
    let r = a
        .send(
            "POST",
            &url,
            &[
                ("content-type", "text/plain"),
                ("origin", "https://evil.example"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = a
        .send("POST", &url, &[("content-type", "text/plain")], body)
        .await;
    assert_eq!(r.status, 403, "a non-JSON write body: {r:?}");
    let r = a
        .send(
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = a
        .get(
            &w.hd.admin_url("/sessions?subject=alice"),
            &[("host", "rebound.evil.example")],
        )
        .await;
    assert_eq!(r.status, 403, "DNS rebinding: {r:?}");
    let r = a.post_json(&url, &json!({"subject": "alice"}), &[]).await;
    assert_eq!(r.status, 200, "the operator's call: {r:?}");
    assert_eq!(
        a.get(&w.hd.admin_url("/healthz"), &[("host", "probe.internal")])
            .await
            .status,
        200,
        "probes keep working"
    );
}

/// Found by the second pentest: an unrecorded code exchange whose answer cannot be
/// classified (no id_token) withholds the refresh token even for a transfer web
/// client that may have refresh tokens — an unrecorded token can never be bound to
/// its session, so it would outlive the session and the cascade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclassifiable_unrecorded_exchange_gets_no_refresh_token_even_where_allowed() {
    let idp = IdpOptions {
        id_token: false,
        ..IdpOptions::default()
    };
    let mut w = World::with(true, idp, options(rules("allow_refresh_token = true"), "")).await;
    let a = Client::device_a();
    let (_, code) = w.login(&a, "alice").await;
    forget_code(&w, &code);
    let r = a
        .post_form(&w.hd.url("/oauth/token"), &code_exchange(&code), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("id_token").is_none(), "{}", r.body);
    assert!(r.json().get("refresh_token").is_none(), "{}", r.body);
    w.secrets
        .push(r.json()["access_token"].as_str().unwrap().to_string());
    w.assert_no_leaks();
}
