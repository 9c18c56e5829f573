//! The SRE's rules file, live (SPEC §4): reloads under load through the admin API,
//! the file watch, and ASN binding from an ip2asn table.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::handoff::Options;
use support::http::Client;
use support::idp::IdpOptions;
use support::world::{logged_in, login_page, World, AUTHORIZE};

fn version(ttl: &str, web: &str) -> String {
    format!(
        r#"
[native."native-app"]
can_create_session_transfer_token = true
transfer_token_ttl = "{ttl}"
allowed_web_clients = ["{web}"]

[web."{web}"]
allowed_authentication_methods = ["cookie", "query"]
"#
    )
}

const BROKEN: [&str; 3] = [
    "[native.\"native-app\"]\ncan_create_session_transfer_token = true\ntransfer_token_ttl = \"999s\"\n",
    "[native.\"native-app\"\nthis is not toml",
    "[web.\"x\"]\nsession_idle = \"2h\"\nsession_absolute = \"1h\"\nbogus = 1\n",
];

/// 50 reloads while mints flow: alternating two valid versions and broken ones.
/// Every mint is decided by exactly one whole valid version (its TTL and its
/// allowed web client agree), none fails, and broken versions never take effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_never_drops_or_mixes_a_request() {
    let a_rules = version("60s", "web-a");
    let b_rules = version("120s", "web-b");
    let mut w = World::with(
        false,
        IdpOptions {
            rotate_refresh_tokens: false,
            ..IdpOptions::default()
        },
        Options {
            rules: a_rules.clone(),
            // A load test: one lineage mints far beyond what the rate limits allow.
            extra: "[mint.rate_limit]\nlineage = { per_minute = 0 }\nnetwork = { per_minute = 0 }\nclient = { per_minute = 0 }\n".into(),
            ..Options::default()
        },
    )
    .await;
    let rules_path = w.hd.dir.path().join("rules.toml");
    let rt = w.refresh_token("alice");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (url, aud, rt, stop, served) = (
            w.hd.url("/oauth/token"),
            w.hd.audience(),
            rt.clone(),
            stop.clone(),
            served.clone(),
        );
        workers.push(tokio::spawn(async move {
            let c = Client::device_a();
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let r = c
                    .post_form(
                        &url,
                        &[
                            ("grant_type", "refresh_token"),
                            ("client_id", "native-app"),
                            ("refresh_token", &rt),
                            ("audience", &aud),
                        ],
                        &[],
                    )
                    .await;
                assert_eq!(
                    r.status, 200,
                    "a request failed during a reload: {}",
                    r.body
                );
                seen.push(r.json()["expires_in"].as_u64().unwrap());
                served.fetch_add(1, Ordering::SeqCst);
            }
            seen
        }));
    }
    let c = Client::device_a();
    let mut valid = 0;
    let mut rejected = 0;
    for i in 0..50 {
        let text = match i % 4 {
            0 => b_rules.clone(),
            2 => a_rules.clone(),
            _ => BROKEN[i % 3].to_string(),
        };
        std::fs::write(&rules_path, &text).unwrap();
        let r = c
            .send("POST", &w.hd.admin_url("/rules/reload"), &[], "")
            .await;
        if i % 2 == 0 {
            assert_eq!(r.status, 200, "{}", r.body);
            valid += 1;
        } else {
            assert_eq!(r.status, 422, "a broken file is rejected: {}", r.body);
            assert!(
                r.body.contains("rules.toml:"),
                "with file and line: {}",
                r.body
            );
            rejected += 1;
            // The running rules stay: the status says so.
            let st = c.get(&w.hd.admin_url("/rules"), &[]).await.json();
            assert_eq!(st["last_reload"]["ok"], false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for wk in workers {
        all.extend(wk.await.unwrap());
    }
    assert!(
        served.load(Ordering::SeqCst) >= 50,
        "requests flowed during the reloads ({})",
        served.load(Ordering::SeqCst)
    );
    assert!(
        all.iter().all(|t| *t == 60 || *t == 120),
        "only whole valid versions decided: {all:?}"
    );
    assert!(
        all.contains(&60) && all.contains(&120),
        "both versions served"
    );
    let m = &w.hd.h.metrics;
    assert_eq!(m.rules_reloads.with_label_values(&["success"]).get(), valid);
    assert_eq!(
        m.rules_reloads.with_label_values(&["failure"]).get(),
        rejected
    );
    // The last valid version (i = 48 → b) is in force, and a mint shows it.
    let r = w.mint_as(&c, "native-app", &rt).await;
    assert_eq!(r.json()["expires_in"], 120);
    w.assert_no_leaks();
}

/// The file watch picks up a changed rules file by itself; a broken one is
/// rejected and the running rules stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_watch_reloads_changed_rules() {
    let opts = Options {
        rules: version("60s", "web-app"),
        rules_table: "watch_interval = \"50ms\"\n".into(),
        ..Options::default()
    };
    let mut w = World::with(false, IdpOptions::default(), opts).await;
    let c = Client::device_a();
    let path = w.hd.dir.path().join("rules.toml");
    let before = c.get(&w.hd.admin_url("/rules"), &[]).await.json()["sha256"].clone();
    std::fs::write(&path, version("90s", "web-app")).unwrap();
    let t0 = Instant::now();
    loop {
        let st = c.get(&w.hd.admin_url("/rules"), &[]).await.json();
        if st["sha256"] != before {
            assert_eq!(st["last_reload"]["trigger"], "watch");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the watch did not reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rt = w.refresh_token("alice");
    assert_eq!(
        w.mint_as(&c, "native-app", &rt).await.json()["expires_in"],
        90
    );
    std::fs::write(&path, BROKEN[1]).unwrap();
    let t0 = Instant::now();
    while w
        .hd
        .h
        .metrics
        .rules_reloads
        .with_label_values(&["failure"])
        .get()
        == 0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the watch did not try the broken file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rt = w.refresh_token("alice");
    assert_eq!(
        w.mint_as(&c, "native-app", &rt).await.json()["expires_in"],
        90,
        "the running rules stay"
    );
}

/// SPEC §4.2 `asn`: the same autonomous system passes, another one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asn_binding_uses_the_ip2asn_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("ip2asn.tsv");
    std::fs::write(
        &table,
        "127.0.0.1\t127.0.0.2\t64500\tZZ\tTEST-CARRIER\n127.0.0.3\t127.0.0.3\t64501\tZZ\tOTHER\n",
    )
    .unwrap();
    let rules = r#"
[native."native-app"]
can_create_session_transfer_token = true
allowed_web_clients = ["web-app"]

[web."web-app"]
enforce_device_binding = "asn"
"#;
    let opts = Options {
        rules: rules.into(),
        rules_table: format!(
            "asn_table = {:?}\nwatch_interval = \"0s\"\n",
            table.display().to_string()
        ),
        ..Options::default()
    };
    let mut w = World::with(true, IdpOptions::default(), opts).await;
    let stt = w.mint(&Client::device_a(), "alice").await;
    assert!(
        logged_in(&w.redeem_cookie(&Client::device_b(), &stt, AUTHORIZE).await),
        "127.0.0.1 and .2 share AS64500"
    );
    let stt = w.mint(&Client::device_a(), "alice").await;
    assert!(
        login_page(
            &w.redeem_cookie(&Client::new("127.0.0.3", None), &stt, AUTHORIZE)
                .await
        ),
        "127.0.0.3 is AS64501"
    );
    assert_eq!(w.redemption("binding_mismatch"), 1);
    w.assert_no_leaks();
}
