//! Issue 16, defect 1: once the store answers again after an outage, the FIRST
//! request that needs it succeeds — no request pays for the dead connection.
//!
//! Each test: a handoff with a bound web session and an unredeemed STT; Redis
//! goes away for 1 s (killed, like a crash; its data kept in an RDB snapshot, or
//! on the promoted replica for Sentinel), comes back, and 3 s later exactly one
//! mint, one redemption and one session check are sent, in an order that puts a
//! different one first in each variant. Each must succeed on its first try.

mod support;

use std::time::Duration;
use support::handoff::Options;
use support::http::Client;
use support::idp::IdpOptions;
use support::redis::{RedisServer, SentinelServer};
use support::world::{logged_in, login_page, with_session, World, AUTHORIZE};

#[derive(Clone, Copy, Debug)]
enum Step {
    Mint,
    Redeem,
    SessionCheck,
}

/// What the world holds before the outage.
struct Prepared {
    /// A refresh token for one mint after the outage.
    rt: String,
    /// An unredeemed STT.
    stt: String,
    /// A bound web session (the IdP's `_session` cookie).
    session: String,
    /// Spare material for traffic during the outage.
    spare_rt: String,
    spare_stt: String,
}

async fn prepare(w: &mut World, a: &Client) -> Prepared {
    let first = w.refresh_token("alice");
    let rt = w.mint_as(a, "native-app", &first).await;
    assert_eq!(rt.status, 200, "{}", rt.body);
    let stt = rt.json()["access_token"].as_str().unwrap().to_string();
    let r = w.redeem_cookie(a, &stt, AUTHORIZE).await;
    assert!(logged_in(&r), "{r:?}");
    let session = r.set_cookie("_session").unwrap();
    w.secrets.push(session.clone());
    assert!(logged_in(&with_session(w, a, &session).await));
    let stt = w.mint(a, "alice").await;
    let spare_stt = w.mint(a, "alice").await;
    Prepared {
        rt: w.refresh_token("alice"),
        stt,
        session,
        spare_rt: w.refresh_token("alice"),
        spare_stt,
    }
}

fn store_errors(w: &World, op: &str) -> u64 {
    w.hd.h.metrics.store_errors.with_label_values(&[op]).get()
}

/// Sends one request of `step`; true when it succeeded on this first try.
async fn step(w: &mut World, a: &Client, p: &Prepared, s: Step) -> bool {
    match s {
        Step::Mint => {
            let r = w.mint_as(a, "native-app", &p.rt).await;
            if r.status != 200 {
                eprintln!("mint after the store returned: {} {}", r.status, r.body);
            }
            r.status == 200
        }
        Step::Redeem => {
            let before = w.redemption("store_unavailable");
            let r = w.redeem_cookie(a, &p.stt, AUTHORIZE).await;
            let ok = logged_in(&r) && w.redemption("store_unavailable") == before;
            if !ok {
                eprintln!("redemption after the store returned: {r:?}");
            }
            ok
        }
        Step::SessionCheck => {
            // Past the local cache's life, so the check reads the store (a stale
            // cache would hide a failed read within the outage grace: count errors).
            w.hd.clock.advance_secs(2);
            let before = store_errors(w, "session_by_cookie");
            let r = with_session(w, a, &p.session).await;
            let ok = logged_in(&r) && store_errors(w, "session_by_cookie") == before;
            if !ok {
                eprintln!("session check after the store returned: {r:?}");
            }
            ok
        }
    }
}

/// Some requests while the store is away: they must fail closed, as before.
async fn traffic_during_outage(w: &mut World, a: &Client, p: &Prepared) {
    let r = w.mint_as(a, "native-app", &p.spare_rt).await;
    assert_eq!(r.status, 503, "mint while the store is down: {}", r.body);
    let r = w.redeem_cookie(a, &p.spare_stt, AUTHORIZE).await;
    assert!(login_page(&r), "redemption while the store is down: {r:?}");
    let _ = with_session(w, a, &p.session).await;
}

async fn after_return(w: &mut World, a: &Client, p: &Prepared, order: [Step; 3]) -> usize {
    let mut failed = 0;
    for s in order {
        if !step(w, a, p, s).await {
            eprintln!("{s:?} failed on its first try");
            failed += 1;
        }
    }
    eprintln!("requests failed after the store returned: {failed}");
    failed
}

fn world_opts(store: String) -> Options {
    Options {
        extra: store,
        ..Options::default()
    }
}

async fn direct(timeout: &str, during_outage: bool, order: [Step; 3]) {
    let mut redis = RedisServer::start();
    let store = format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\ntimeout = \"{timeout}\"\n",
        redis.url()
    );
    let mut w = World::with(false, IdpOptions::default(), world_opts(store)).await;
    let a = Client::device_a();
    let p = prepare(&mut w, &a).await;
    // Keep the data across the crash (the test server runs without persistence).
    let () = redis::cmd("SAVE").query(&mut redis.conn()).unwrap();

    redis.stop();
    if during_outage {
        traffic_during_outage(&mut w, &a, &p).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| redis.restart());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let failed = after_return(&mut w, &a, &p, order).await;
    assert_eq!(
        failed, 0,
        "timeout {timeout}, traffic during the outage: {during_outage}"
    );
    w.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_mint_after_an_idle_outage_succeeds() {
    direct(
        "50ms",
        false,
        [Step::Mint, Step::Redeem, Step::SessionCheck],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_redemption_after_an_outage_with_traffic_succeeds() {
    direct(
        "250ms",
        true,
        [Step::Redeem, Step::SessionCheck, Step::Mint],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_session_check_after_an_outage_succeeds() {
    direct("50ms", true, [Step::SessionCheck, Step::Mint, Step::Redeem]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_mint_after_an_idle_redis_restart_succeeds() {
    direct(
        "250ms",
        false,
        [Step::Mint, Step::SessionCheck, Step::Redeem],
    )
    .await;
}

fn sentinel_query<T: redis::FromRedisValue>(s: &SentinelServer, args: &[&str]) -> T {
    let mut c = redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut cmd = redis::cmd("SENTINEL");
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(&mut c).unwrap()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Through Sentinel: the master crashes, Sentinel promotes the replica; 3 s after
/// the promotion the first requests succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_requests_after_a_sentinel_failover_succeed() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start();
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(master.port())
        .query(&mut replica.conn())
        .unwrap();
    tokio::task::block_in_place(|| {
        wait_for("the replica syncs", 20, || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica.conn())
                .unwrap();
            info.contains("master_link_status:up")
        })
    });
    let sentinel = SentinelServer::start(master.port());
    let store = format!(
        "[store]\nkind = \"redis-sentinel\"\nsentinels = [\"{}\"]\nmaster = \"mymaster\"\ntimeout = \"50ms\"\n",
        sentinel.url()
    );
    let mut w = World::with(false, IdpOptions::default(), world_opts(store)).await;
    let a = Client::device_a();
    let p = prepare(&mut w, &a).await;
    // Everything written so far is on the replica.
    let mut mc = master.conn();
    let () = redis::cmd("SET")
        .arg("marker")
        .arg("1")
        .query(&mut mc)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut mc).unwrap();
    assert_eq!(acked, 1, "the replica did not acknowledge");
    let replica_port = replica.port().to_string();
    tokio::task::block_in_place(|| {
        wait_for("Sentinel sees the replica", 20, || {
            let replicas: Vec<std::collections::HashMap<String, String>> =
                sentinel_query(&sentinel, &["replicas", "mymaster"]);
            replicas
                .iter()
                .any(|r| r.get("port") == Some(&replica_port))
        });
        master.stop();
        wait_for("Sentinel promotes the replica", 30, || {
            let addr: Vec<String> =
                sentinel_query(&sentinel, &["get-master-addr-by-name", "mymaster"]);
            addr.get(1) == Some(&replica_port)
        });
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    let failed = after_return(
        &mut w,
        &a,
        &p,
        [Step::Mint, Step::Redeem, Step::SessionCheck],
    )
    .await;
    assert_eq!(failed, 0, "after a Sentinel failover");
    w.assert_no_leaks();
}
