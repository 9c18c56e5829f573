//! Web sessions end to end (SPEC §2.3, §2.4, §3): the login transaction, the IdP
//! session cookie's hardening and binding, and the session's absolute and idle
//! limits (invariant 6), through a running handoff in front of the IdP stand-in.

mod support;

use support::fixtures;
use support::handoff::Options;
use support::http::Client;
use support::idp::IdpOptions;
use support::world::{logged_in, login_page, with_session, World, AUTHORIZE};

/// web-app sessions: 5 minutes absolute, 1 minute idle.
fn opts(extra: &str) -> Options {
    fixtures::options_with_start(fixtures::rules(""), extra)
}

async fn world(redis: bool) -> World {
    World::with(redis, IdpOptions::default(), opts("")).await
}

fn attrs(line: &str) -> Vec<String> {
    line.split(';')
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

fn max_age(line: &str) -> i64 {
    attrs(line)
        .iter()
        .find_map(|a| a.strip_prefix("max-age=").map(|v| v.parse().unwrap()))
        .unwrap()
}

/// Logs `sub` in through a cookie redemption; returns the IdP's `_session` value.
async fn login(w: &mut World, c: &Client, sub: &str) -> String {
    w.login(c, sub).await.0
}

/// §2.4: the IdP's session cookie is Secure, HttpOnly, SameSite=Lax, host-only, and
/// expires no later than the absolute limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_hardened_and_capped() {
    let mut w = world(true).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert!(logged_in(&r));
    let line = r.set_cookie_line("_session").unwrap();
    let at = attrs(line);
    for want in ["secure", "httponly", "samesite=lax"] {
        assert!(at.contains(&want.to_string()), "{line}");
    }
    assert!(!at.iter().any(|a| a.starts_with("domain")), "{line}");
    let ma = max_age(line);
    assert!(
        (295..=300).contains(&ma),
        "Max-Age capped at the 5-minute absolute limit: {line}"
    );
    assert!(at.iter().any(|a| a.starts_with("expires=")), "{line}");
    assert_eq!(
        w.hd.h.metrics.sessions.with_label_values(&["bound"]).get(),
        1
    );
    w.assert_no_leaks();
}

/// Invariant 6, idle: the session dies one idle period after its last use; use
/// slides the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_6_session_dies_at_its_idle_limit_and_use_slides_it() {
    for redis in [true, false] {
        let mut w = world(redis).await;
        let a = Client::device_a();
        let s = login(&mut w, &a, "alice").await;
        // Used at +40 s and +80 s: alive at +120 s although that is past 60 s from login.
        for _ in 0..3 {
            w.hd.clock.advance_secs(40);
            let r = with_session(&w, &a, &s).await;
            assert!(
                logged_in(&r),
                "redis={redis}: SSO through the bound session: {r:?}"
            );
        }
        // Now 61 s without use.
        w.hd.clock.advance_secs(61);
        let r = with_session(&w, &a, &s).await;
        assert!(login_page(&r), "redis={redis}: {r:?}");
        let line = r.set_cookie_line("_session").unwrap();
        assert_eq!(max_age(line), 0, "expired in the browser: {line}");
        let last = w.idp.requests().into_iter().next_back().unwrap();
        assert_eq!(last.header("cookie"), None, "the IdP saw no session");
        assert_eq!(
            w.hd.h
                .metrics
                .sessions
                .with_label_values(&["expired_idle"])
                .get(),
            1
        );
        w.assert_no_leaks();
    }
}

/// Invariant 6, absolute: however busy, the session dies at its absolute limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_6_session_dies_at_its_absolute_limit() {
    for redis in [true, false] {
        let mut w = world(redis).await;
        let a = Client::device_a();
        let s = login(&mut w, &a, "alice").await;
        // Used every 58 s (idle is 60 s, counted in whole seconds, so 59 s steps
        // could straddle a second boundary and idle out).
        for _ in 0..5 {
            w.hd.clock.advance_secs(58);
            assert!(logged_in(&with_session(&w, &a, &s).await), "redis={redis}");
        }
        // +290 s: still inside; +300 s: over.
        w.hd.clock.advance_secs(10);
        let r = with_session(&w, &a, &s).await;
        assert!(login_page(&r), "redis={redis}: {r:?}");
        assert_eq!(
            w.hd.h
                .metrics
                .sessions
                .with_label_values(&["expired_absolute"])
                .get(),
            1
        );
        w.assert_no_leaks();
    }
}

/// Idle time is written at most once per idle/10 per session, not per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_writes_are_throttled() {
    let mut w = world(true).await;
    let a = Client::device_a();
    let s = login(&mut w, &a, "alice").await;
    // 30 requests spread over 15 s: idle is 60 s, so at most one write per 6 s.
    for _ in 0..30 {
        w.hd.clock.advance_ms(500);
        assert!(logged_in(&with_session(&w, &a, &s).await));
    }
    let touches = w.hd.h.metrics.session_touches.get();
    assert!(
        (1..=3).contains(&touches),
        "{touches} writes for 30 requests in 15 s"
    );
}

/// A session the IdP made without handoff (an unbound cookie) passes untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_session_cookies_pass_untouched() {
    let w = world(true).await;
    let a = Client::device_a();
    w.hd.clock.advance_secs(100_000);
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[("cookie", "_session=made-by-the-idp; other=1")],
        )
        .await;
    assert!(r.set_cookie_line("_session").is_none());
    let seen = w.idp.requests().into_iter().next_back().unwrap();
    assert_eq!(
        seen.header("cookie"),
        Some("_session=made-by-the-idp; other=1")
    );
}

/// §2.3: the login transaction carries a fresh assertion on every hop until the
/// IdP sets its session cookie; then it is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_transaction_spans_hops_and_ends_with_the_session() {
    // Like oidc-provider: the assertion login redirects to a later hop (/resume)
    // that sets the session cookie.
    let idp = IdpOptions {
        defer_session: true,
        ..IdpOptions::default()
    };
    let mut w = World::with(true, idp, opts("")).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    // Hop 1: the redemption; the IdP answers with a redirect to /resume.
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert_eq!(r.header("location"), Some("/resume"), "{r:?}");
    let tx_line = r
        .set_cookie_line("__Host-handoff_tx")
        .expect("a transaction cookie")
        .to_string();
    for want in ["secure", "httponly", "samesite=lax", "path=/"] {
        assert!(attrs(&tx_line).contains(&want.to_string()), "{tx_line}");
    }
    assert!(max_age(&tx_line) <= 120);
    let tx = r.set_cookie("__Host-handoff_tx").unwrap();
    let pending = r.set_cookie("_pending").unwrap();
    let first = w
        .idp
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path() == "/authorize")
        .unwrap();
    let first_assertion = first
        .header("x-handoff-assertion")
        .expect("assertion on the redemption hop")
        .to_string();
    // Hop 2: where the IdP's answer pointed, with the transaction cookie.
    let cookie = format!("__Host-handoff_tx={tx}; _pending={pending}");
    let r = a.get(&w.hd.url("/resume"), &[("cookie", &cookie)]).await;
    assert!(logged_in(&r), "{r:?} {:?}", w.idp.assertion_rejections());
    let second = w
        .idp
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path() == "/resume")
        .unwrap();
    let second_assertion = second
        .header("x-handoff-assertion")
        .expect("assertion on the hop the IdP pointed to");
    assert_ne!(
        first_assertion, second_assertion,
        "a fresh assertion (new jti) per hop"
    );
    assert_eq!(
        second.header("cookie"),
        Some(format!("_pending={pending}").as_str()),
        "the IdP never sees the transaction cookie"
    );
    assert!(
        r.set_cookie_line("__Host-handoff_tx")
            .unwrap()
            .contains("Max-Age=0"),
        "the transaction is over"
    );
    assert!(r.set_cookie("_session").is_some());
    // The same transaction cookie again: over, so an ordinary login.
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[("cookie", &format!("__Host-handoff_tx={tx}"))],
        )
        .await;
    assert!(login_page(&r), "{r:?}");
    assert_eq!(w.idp.logins().len(), 1);
    w.secrets.push(tx);
    w.assert_no_leaks();
}

/// §2.3: the transaction follows the IdP's own redirect chain. A hop elsewhere —
/// an interaction another request started, say — carries no assertion (and does
/// not end the transaction); the hop the IdP pointed to still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transaction_asserts_only_where_the_idp_pointed() {
    let idp = IdpOptions {
        defer_session: true,
        ..IdpOptions::default()
    };
    let mut w = World::with(true, idp, opts("")).await;
    let a = Client::device_a();
    let stt = w.mint(&a, "alice").await;
    let r = w.redeem_cookie(&a, &stt, AUTHORIZE).await;
    assert_eq!(r.header("location"), Some("/resume"), "{r:?}");
    let tx = r.set_cookie("__Host-handoff_tx").unwrap();
    let pending = r.set_cookie("_pending").unwrap();
    let cookie = format!("__Host-handoff_tx={tx}");
    let r = a
        .get(&w.hd.url("/authorize?client_id=web-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&state=other"), &[("cookie", &cookie)])
        .await;
    assert!(login_page(&r), "off the chain: no assertion: {r:?}");
    assert_eq!(w.idp.logins().len(), 1, "only the redemption's login");
    assert!(
        r.set_cookie_line("__Host-handoff_tx").is_none(),
        "not ended"
    );
    let r = a
        .get(
            &w.hd.url("/resume"),
            &[("cookie", &format!("{cookie}; _pending={pending}"))],
        )
        .await;
    assert!(logged_in(&r), "{r:?}");
    w.secrets.push(tx);
    w.assert_no_leaks();
}

/// §2.3: a transaction cookie cannot be replayed from another IP, after its time,
/// or past its hop budget; a forged one does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transaction_cookie_is_bound_to_ip_time_and_hops() {
    let mut w = World::with(
        true,
        IdpOptions::default(),
        opts("[session]\ntransaction_max_hops = 3\n"),
    )
    .await;
    let a = Client::device_a();
    let start = async |w: &mut World| {
        let stt = w.mint(&Client::device_a(), "alice").await;
        let r = w
            .redeem_cookie(&Client::device_a(), &stt, "/start?client_id=web-app")
            .await;
        let tx = r.set_cookie("__Host-handoff_tx").unwrap();
        w.secrets.push(tx.clone());
        format!("__Host-handoff_tx={tx}")
    };
    let assertion_count = |w: &World| {
        w.idp
            .requests()
            .iter()
            .filter(|r| r.header("x-handoff-assertion").is_some())
            .count()
    };

    // Another IP.
    let cookie = start(&mut w).await;
    let before = assertion_count(&w);
    let r = Client::device_b()
        .get(
            &w.hd.url("/start?client_id=web-app"),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(
        assertion_count(&w),
        before,
        "no assertion for a copied cookie"
    );
    assert!(r
        .set_cookie_line("__Host-handoff_tx")
        .unwrap()
        .contains("Max-Age=0"));

    // Hop budget: the redemption was hop 0; three more carry the assertion, the fourth does not.
    let cookie = start(&mut w).await;
    for _ in 0..3 {
        let before = assertion_count(&w);
        a.get(
            &w.hd.url("/start?client_id=web-app"),
            &[("cookie", &cookie)],
        )
        .await;
        assert_eq!(assertion_count(&w), before + 1);
    }
    let before = assertion_count(&w);
    a.get(
        &w.hd.url("/start?client_id=web-app"),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(assertion_count(&w), before, "out of hops");

    // Time: past the transaction's 120 s.
    let cookie = start(&mut w).await;
    w.hd.clock.advance_secs(121);
    let before = assertion_count(&w);
    a.get(
        &w.hd.url("/start?client_id=web-app"),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(assertion_count(&w), before, "expired");
    w.hd.clock.advance_secs(-121);

    // Forged or garbage.
    for forged in [
        "__Host-handoff_tx=eyJ0IjoiYSJ9.AAAA",
        "__Host-handoff_tx=",
        "__Host-handoff_tx=%%%",
    ] {
        let before = assertion_count(&w);
        a.get(&w.hd.url(AUTHORIZE), &[("cookie", forged)]).await;
        assert_eq!(assertion_count(&w), before);
    }
    assert!(
        w.hd.h
            .metrics
            .transaction_hops
            .with_label_values(&["wrong_ip"])
            .get()
            >= 1
    );
    w.assert_no_leaks();
}

/// §2.2: redeeming in a browser that holds another user's transfer session revokes
/// that session and falls back to an ordinary login; the same user proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_subject_revokes_the_old_session_and_logs_in_nobody() {
    let mut w = world(true).await;
    let a = Client::device_a();
    let alice = login(&mut w, &a, "alice").await;
    // Bob's token in Alice's browser.
    let stt = w.mint(&a, "bob").await;
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[(
                "cookie",
                &format!("_session={alice}; auth0_session_transfer_token={stt}"),
            )],
        )
        .await;
    assert!(login_page(&r), "{r:?}");
    assert_eq!(max_age(r.set_cookie_line("_session").unwrap()), 0);
    assert_eq!(w.redemption("different_subject"), 1);
    assert!(w.idp.logins().iter().all(|l| l.sub != "bob"));
    // Alice's session is gone.
    let r = with_session(&w, &a, &alice).await;
    assert!(login_page(&r), "{r:?}");
    // Same subject: proceeds.
    let alice2 = login(&mut w, &a, "alice").await;
    let stt = w.mint(&a, "alice").await;
    let r = a
        .get(
            &w.hd.url(AUTHORIZE),
            &[(
                "cookie",
                &format!("_session={alice2}; auth0_session_transfer_token={stt}"),
            )],
        )
        .await;
    assert!(logged_in(&r), "{r:?}");
    w.assert_no_leaks();
}

/// SPEC §5: with the store down, a bound session keeps its last known state for
/// the outage grace, then counts as expired; unknown cookies fail closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_keeps_known_sessions_for_the_grace_then_expires_them() {
    let mut w = World::with(
        true,
        IdpOptions::default(),
        opts("[session]\noutage_grace = \"10s\"\n"),
    )
    .await;
    let a = Client::device_a();
    let s = login(&mut w, &a, "alice").await;
    assert!(logged_in(&with_session(&w, &a, &s).await));
    w.redis.as_mut().unwrap().stop();
    w.hd.clock.advance_secs(5);
    // Within the grace the session is alive: the IdP sees it and signs the user in;
    // the code it issues cannot be recorded with the store down, so handoff turns
    // it into an error redirect rather than let it escape mediation.
    let r = with_session(&w, &a, &s).await;
    assert_eq!(r.status, 302, "last known state within the grace: {r:?}");
    assert!(r
        .header("location")
        .unwrap()
        .contains("error=temporarily_unavailable"));
    let seen = w.idp.requests().into_iter().next_back().unwrap();
    assert!(
        seen.header("cookie")
            .is_some_and(|c| c.contains("_session=")),
        "the IdP saw the session"
    );
    w.hd.clock.advance_secs(6);
    let r = with_session(&w, &a, &s).await;
    assert!(login_page(&r), "past the grace: treated as expired: {r:?}");
    assert!(
        w.hd.h
            .metrics
            .sessions
            .with_label_values(&["store_unavailable"])
            .get()
            >= 1
    );
    w.assert_no_leaks();
}
