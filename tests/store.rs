//! One test suite, two stores: every test here runs against the embedded memory
//! store and against a real redis-server, and must see the same semantics.

mod support;

use handoff::clock::{ManualClock, SharedClock};
use handoff::secret::{LineageId, SecretHash, TransferToken};
use handoff::store::memory::MemoryStore;
use handoff::store::redis::RedisStore;
use handoff::store::{Consumed, MintContext, MintWrite, RefreshKind, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use support::redis::{RedisServer, SentinelServer};

struct Subject {
    name: &'static str,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    _redis: Option<RedisServer>,
    _sentinel: Option<SentinelServer>,
}

fn subjects() -> Vec<Subject> {
    let mc = ManualClock::new();
    let memory = Subject {
        name: "memory",
        store: Arc::new(MemoryStore::new(mc.clone() as SharedClock)),
        clock: mc,
        _redis: None,
        _sentinel: None,
    };
    let redis = RedisServer::start();
    let rc = ManualClock::new();
    let store = RedisStore::new(
        &redis.url(),
        "ho",
        Duration::from_millis(500),
        rc.clone() as SharedClock,
    )
    .unwrap();
    // The same suite once more through Redis Sentinel (the master looked up by name).
    let master = RedisServer::start();
    let sentinel = SentinelServer::start(master.port());
    let sc = ManualClock::new();
    let via_sentinel = RedisStore::with_sentinel(
        &[sentinel.url()],
        "mymaster",
        "ho",
        Duration::from_millis(500),
        sc.clone() as SharedClock,
    )
    .unwrap();
    vec![
        memory,
        Subject {
            name: "redis",
            store: Arc::new(store),
            clock: rc,
            _redis: Some(redis),
            _sentinel: None,
        },
        Subject {
            name: "redis-sentinel",
            store: Arc::new(via_sentinel),
            clock: sc,
            _redis: Some(master),
            _sentinel: Some(sentinel),
        },
    ]
}

fn ctx(lineage: &LineageId, now: u64, ttl: u64) -> MintContext {
    MintContext {
        sub: "alice".into(),
        native_client_id: "native-app".into(),
        lineage: lineage.clone(),
        scope: "openid".into(),
        ip: "127.0.0.1".parse().unwrap(),
        asn: Some(64500),
        fingerprint: None,
        iat: now,
        exp: now + ttl,
    }
}

fn mint(s: &Subject, lineage: &LineageId, ttl: u64) -> (TransferToken, MintContext) {
    let now = s.clock.now_secs();
    let t = TransferToken::generate(lineage, now + ttl);
    (t, ctx(lineage, now, ttl))
}

use handoff::clock::Clock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_consumed_once_then_recognised_as_a_replay() {
    for s in subjects() {
        let l = LineageId::generate();
        let (t, c) = mint(&s, &l, 60);
        assert_eq!(
            s.store
                .record_mint(t.hash(), &c, &[], Duration::from_secs(60))
                .await
                .unwrap(),
            MintWrite::Stored,
            "{}",
            s.name
        );
        match s
            .store
            .consume_transfer_token(&l, t.hash(), "web-app")
            .await
            .unwrap()
        {
            Consumed::Fresh {
                ctx,
                lineage_revoked,
            } => {
                assert_eq!(ctx, c, "{}", s.name);
                assert!(!lineage_revoked);
            }
            other => panic!("{}: {other:?}", s.name),
        }
        // The replay reports the web client of the first consumption, whatever
        // client the replaying request names.
        assert_eq!(
            s.store
                .consume_transfer_token(&l, t.hash(), "other-web")
                .await
                .unwrap(),
            Consumed::Replayed {
                ctx: c.clone(),
                first_web_client: Some("web-app".into())
            },
            "{}",
            s.name
        );
        // Unknown token, and a known hash under the wrong lineage.
        let other = TransferToken::generate(&l, 1);
        assert_eq!(
            s.store
                .consume_transfer_token(&l, other.hash(), "web-app")
                .await
                .unwrap(),
            Consumed::Unknown,
            "{}",
            s.name
        );
        assert_eq!(
            s.store
                .consume_transfer_token(&LineageId::generate(), t.hash(), "web-app")
                .await
                .unwrap(),
            Consumed::Unknown,
            "{}",
            s.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_consumers_see_exactly_one_fresh() {
    for s in subjects() {
        let l = LineageId::generate();
        let (t, c) = mint(&s, &l, 60);
        s.store
            .record_mint(t.hash(), &c, &[], Duration::from_secs(60))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (store, l, h) = (s.store.clone(), l.clone(), *t.hash());
            tasks.push(tokio::spawn(async move {
                store
                    .consume_transfer_token(&l, &h, "web-app")
                    .await
                    .unwrap()
            }));
        }
        let mut fresh = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Consumed::Fresh { .. }) {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "{}", s.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_lineages_refuse_mints_and_flag_redemptions() {
    for s in subjects() {
        let l = LineageId::generate();
        let (t, c) = mint(&s, &l, 60);
        s.store
            .record_mint(t.hash(), &c, &[], Duration::from_secs(60))
            .await
            .unwrap();
        assert!(!s.store.is_lineage_revoked(&l).await.unwrap());
        s.store
            .revoke_lineage(&l, Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(s.store.is_lineage_revoked(&l).await.unwrap(), "{}", s.name);
        let (t2, c2) = mint(&s, &l, 60);
        assert_eq!(
            s.store
                .record_mint(t2.hash(), &c2, &[], Duration::from_secs(60))
                .await
                .unwrap(),
            MintWrite::LineageRevoked,
            "{}",
            s.name
        );
        assert_eq!(
            s.store
                .consume_transfer_token(&l, t2.hash(), "web-app")
                .await
                .unwrap(),
            Consumed::Unknown,
            "{}: nothing was stored",
            s.name
        );
        match s
            .store
            .consume_transfer_token(&l, t.hash(), "web-app")
            .await
            .unwrap()
        {
            Consumed::Fresh {
                lineage_revoked, ..
            } => assert!(lineage_revoked, "{}", s.name),
            other => panic!("{}: {other:?}", s.name),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_map_to_their_lineage() {
    for s in subjects() {
        let l = LineageId::generate();
        let (t, c) = mint(&s, &l, 60);
        let old = SecretHash::of(b"old refresh token");
        let new = SecretHash::of(b"new refresh token");
        assert_eq!(s.store.refresh_token_info(&old).await.unwrap(), None);
        s.store
            .record_mint(t.hash(), &c, &[old, new], Duration::from_secs(60))
            .await
            .unwrap();
        for h in [old, new] {
            let info = s.store.refresh_token_info(&h).await.unwrap().unwrap();
            assert_eq!(
                (info.lineage, info.kind),
                (l.clone(), RefreshKind::Native),
                "{}",
                s.name
            );
        }
    }
}

/// Every key has a TTL (Redis), and expired entries are gone (both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_expires() {
    for s in subjects() {
        let l = LineageId::generate();
        let (t, c) = mint(&s, &l, 2);
        s.store
            .record_mint(
                t.hash(),
                &c,
                &[SecretHash::of(b"rt")],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        s.store
            .revoke_lineage(&LineageId::generate(), Duration::from_secs(5))
            .await
            .unwrap();
        if let Some(r) = &s._redis {
            let mut conn = r.conn();
            let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
            assert!(!keys.is_empty());
            for k in keys {
                let ttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut conn).unwrap();
                assert!(ttl > 0, "key {k} has no TTL");
                assert!(!k.contains(t.expose()), "keys hold hashes, never tokens");
            }
        } else {
            s.clock.advance_secs(3);
            assert_eq!(
                s.store
                    .consume_transfer_token(&l, t.hash(), "web-app")
                    .await
                    .unwrap(),
                Consumed::Unknown
            );
        }
    }
}

/// Values hold no secret either: the token's text is nowhere in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_secret() {
    let s = subjects().swap_remove(1);
    let l = LineageId::generate();
    let (t, c) = mint(&s, &l, 60);
    s.store
        .record_mint(
            t.hash(),
            &c,
            &[SecretHash::of(b"my-refresh-token")],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mut conn = s._redis.as_ref().unwrap().conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let secret_part = &t.expose()[t.expose().len() - 43..];
    for k in keys {
        let v: String = redis::cmd("GET").arg(&k).query(&mut conn).unwrap();
        assert!(!k.contains(secret_part) && !v.contains(secret_part));
        assert!(!v.contains("my-refresh-token"));
    }
}

/// A store that is down answers errors — never a success, never a panic — and the
/// Redis store recovers by itself when the server returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_an_error_then_recovers() {
    let mut redis = RedisServer::start();
    let clock = ManualClock::new();
    let store = RedisStore::new(
        &redis.url(),
        "ho",
        Duration::from_millis(200),
        clock.clone() as SharedClock,
    )
    .unwrap();
    let l = LineageId::generate();
    let now = clock.now_secs();
    let t = TransferToken::generate(&l, now + 60);
    store
        .record_mint(t.hash(), &ctx(&l, now, 60), &[], Duration::from_secs(60))
        .await
        .unwrap();
    redis.stop();
    let e = store
        .consume_transfer_token(&l, t.hash(), "web-app")
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Timeout | StoreError::Unavailable(_)),
        "{e:?}"
    );
    assert!(store.ping().await.is_err());
    // A server that never existed: an error from the first call, not at construction.
    let nowhere = RedisStore::new(
        "redis://127.0.0.1:1",
        "ho",
        Duration::from_millis(100),
        clock.clone() as SharedClock,
    )
    .unwrap();
    assert!(nowhere.ping().await.is_err());
    redis.restart();
    let mut ok = false;
    for _ in 0..50 {
        if store.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the store did not reconnect");
    // The server restarted empty (no persistence in the test): the token is gone, not resurrected.
    assert_eq!(
        store
            .consume_transfer_token(&l, t.hash(), "web-app")
            .await
            .unwrap(),
        Consumed::Unknown
    );
}

/// Through Sentinel: the master goes away and comes back; the store recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_store_recovers_when_the_master_returns() {
    let mut master = RedisServer::start();
    let sentinel = SentinelServer::start(master.port());
    let clock = ManualClock::new();
    let store = RedisStore::with_sentinel(
        &[sentinel.url()],
        "mymaster",
        "ho",
        Duration::from_millis(200),
        clock.clone() as SharedClock,
    )
    .unwrap();
    store.ping().await.unwrap();
    master.stop();
    assert!(store.ping().await.is_err());
    master.restart();
    let mut ok = false;
    for _ in 0..50 {
        if store.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the store did not reconnect through Sentinel");
    // A Sentinel that knows no such master: an error, not a panic.
    let wrong = RedisStore::with_sentinel(
        &[sentinel.url()],
        "no-such-master",
        "ho",
        Duration::from_millis(200),
        clock as SharedClock,
    )
    .unwrap();
    assert!(wrong.ping().await.is_err());
}

fn web_session(lineage: &LineageId, now: u64) -> handoff::store::WebSession {
    handoff::store::WebSession {
        sid: "sid-1".into(),
        sub: "alice".into(),
        lineage: lineage.clone(),
        web_client: "web-app".into(),
        native_client: "native-app".into(),
        created: now,
        absolute_exp: now + 300,
        idle_secs: 60,
        last_seen: now,
        ip: "127.0.0.1".parse().unwrap(),
        revoked: false,
        moved_to: None,
        refresh: Default::default(),
    }
}

/// Web sessions: bind, touch, rotate, cascade — the same on every store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_sessions_bind_rotate_and_die_by_cascade() {
    use handoff::store::BindOutcome;
    for s in subjects() {
        let l = LineageId::generate();
        let now = s.clock.now_secs();
        let ws = web_session(&l, now);
        let c1 = SecretHash::of(b"cookie-1");
        let c2 = SecretHash::of(b"cookie-2");
        assert_eq!(
            s.store
                .bind_session(&ws, &c1, Some("tx1"), Duration::from_secs(3600))
                .await
                .unwrap(),
            BindOutcome::Bound,
            "{}",
            s.name
        );
        assert!(
            !s.store
                .tx_hop(&l, "tx1", 10, Duration::from_secs(60))
                .await
                .unwrap(),
            "{}: binding ends the transaction",
            s.name
        );
        assert_eq!(
            s.store.session_by_cookie(&c1).await.unwrap().unwrap(),
            ws,
            "{}",
            s.name
        );
        // Rotation: c1 now points at c2.
        s.store
            .bind_session(&ws, &c2, None, Duration::from_secs(3600))
            .await
            .unwrap();
        s.store.move_session(&c1, &c2).await.unwrap();
        assert_eq!(
            s.store
                .session_by_cookie(&c1)
                .await
                .unwrap()
                .unwrap()
                .moved_to,
            Some(c2.hex()),
            "{}",
            s.name
        );
        assert_eq!(
            s.store.lineage_sessions(&l).await.unwrap().len(),
            2,
            "{}",
            s.name
        );
        assert_eq!(
            s.store.subject_lineages("alice").await.unwrap(),
            vec![l.clone()],
            "{}",
            s.name
        );
        // Cascade: both records become tombstones; touch never writes over one.
        assert_eq!(
            s.store
                .revoke_lineage(&l, Duration::from_secs(3600))
                .await
                .unwrap(),
            2,
            "{}",
            s.name
        );
        for c in [c1, c2] {
            assert!(
                s.store
                    .session_by_cookie(&c)
                    .await
                    .unwrap()
                    .unwrap()
                    .revoked,
                "{}",
                s.name
            );
        }
        let mut touched = ws.clone();
        touched.last_seen += 10;
        s.store.touch_session(&c2, &touched).await.unwrap();
        assert!(
            s.store
                .session_by_cookie(&c2)
                .await
                .unwrap()
                .unwrap()
                .revoked,
            "{}: touch resurrected a tombstone",
            s.name
        );
        // A revoked lineage binds nothing new (or only a tombstone).
        let c3 = SecretHash::of(b"cookie-3");
        assert_eq!(
            s.store
                .bind_session(&ws, &c3, None, Duration::from_secs(3600))
                .await
                .unwrap(),
            BindOutcome::LineageRevoked,
            "{}",
            s.name
        );
        assert!(
            s.store
                .session_by_cookie(&c3)
                .await
                .unwrap()
                .is_none_or(|r| r.revoked),
            "{}",
            s.name
        );
    }
}

/// A consumed-token marker remembers the first consumption's web client: none
/// when it named none or one too long to keep; a replay never overwrites it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_report_the_first_consumptions_web_client() {
    let long = "w".repeat(handoff::store::MAX_RECORDED_WEB_CLIENT + 1);
    for s in subjects() {
        for (first, recorded) in [
            ("", None),
            (long.as_str(), None),
            ("web \"quoted\" \\ ü", Some("web \"quoted\" \\ ü")),
        ] {
            let l = LineageId::generate();
            let (t, c) = mint(&s, &l, 60);
            s.store
                .record_mint(t.hash(), &c, &[], Duration::from_secs(60))
                .await
                .unwrap();
            assert!(matches!(
                s.store
                    .consume_transfer_token(&l, t.hash(), first)
                    .await
                    .unwrap(),
                Consumed::Fresh { .. }
            ));
            for replayer in ["web-app", "", "another"] {
                assert_eq!(
                    s.store
                        .consume_transfer_token(&l, t.hash(), replayer)
                        .await
                        .unwrap(),
                    Consumed::Replayed {
                        ctx: c.clone(),
                        first_web_client: recorded.map(str::to_string)
                    },
                    "{}: first {first:?}, replayed as {replayer:?}",
                    s.name
                );
            }
        }
    }
}

/// A replay marker written before markers recorded the web client (the bare mint
/// record) still reads as a replay, with no web client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_replay_markers_still_read_as_replays() {
    let s = subjects().swap_remove(1);
    let l = LineageId::generate();
    let (t, c) = mint(&s, &l, 60);
    let keys = handoff::store::Keys::new("ho");
    let mut conn = s._redis.as_ref().unwrap().conn();
    let record = serde_json::to_string(&c).unwrap();
    let _: () = redis::cmd("SET")
        .arg(keys.used(&l, t.hash()))
        .arg(record)
        .arg("EX")
        .arg(60)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        s.store
            .consume_transfer_token(&l, t.hash(), "web-app")
            .await
            .unwrap(),
        Consumed::Replayed {
            ctx: c,
            first_web_client: None
        }
    );
}

/// `remember_once` is "set if absent": true once, false while remembered, true
/// again after it expires or is forgotten (`forget_once`); and its key has a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_once_is_set_if_absent() {
    for s in subjects() {
        let ttl = Duration::from_millis(1500);
        assert!(
            s.store.remember_once("jti-1", ttl).await.unwrap(),
            "{}",
            s.name
        );
        assert!(
            !s.store.remember_once("jti-1", ttl).await.unwrap(),
            "{}",
            s.name
        );
        assert!(
            s.store.remember_once("jti-2", ttl).await.unwrap(),
            "{}",
            s.name
        );
        // Forgotten (a claim released), it can be remembered again, once.
        s.store.forget_once("jti-2").await.unwrap();
        s.store.forget_once("never remembered").await.unwrap();
        assert!(
            s.store.remember_once("jti-2", ttl).await.unwrap(),
            "{}",
            s.name
        );
        assert!(
            !s.store.remember_once("jti-2", ttl).await.unwrap(),
            "{}",
            s.name
        );
        // Parallel callers: exactly one wins.
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = s.store.clone();
            tasks.push(tokio::spawn(async move {
                store.remember_once("jti-race", ttl).await.unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "{}", s.name);
        if let Some(r) = &s._redis {
            let mut conn = r.conn();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("ho:once:*")
                .query(&mut conn)
                .unwrap();
            assert_eq!(keys.len(), 3, "{}", s.name);
            for k in keys {
                assert!(!k.contains("jti"), "the key is a hash of the name");
                let ttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut conn).unwrap();
                assert!(ttl > 0 && ttl <= 1500, "{k}: {ttl}");
            }
            tokio::time::sleep(Duration::from_millis(1600)).await;
        } else {
            s.clock.advance_secs(2);
        }
        assert!(
            s.store.remember_once("jti-1", ttl).await.unwrap(),
            "{}: forgotten after its TTL",
            s.name
        );
    }
}

/// `expire_refresh_token` shortens a mapping's TTL, never lengthens it, never
/// creates one; the mapping reads the same until it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_out_refresh_mappings_expire_soon() {
    for s in subjects() {
        let l = LineageId::generate();
        let (t, c) = mint(&s, &l, 60);
        let old = SecretHash::of(b"rotated-out");
        let new = SecretHash::of(b"successor");
        let short = SecretHash::of(b"already short");
        let absent = SecretHash::of(b"never recorded");
        s.store
            .record_mint(t.hash(), &c, &[old, new], Duration::from_secs(3600))
            .await
            .unwrap();
        s.store
            .record_refresh_token(
                &short,
                &handoff::store::RefreshTokenInfo::native(l.clone()),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        let ttl = Duration::from_secs(2);
        for h in [old, short, absent] {
            s.store.expire_refresh_token(&h, ttl).await.unwrap();
        }
        assert_eq!(
            s.store
                .refresh_token_info(&old)
                .await
                .unwrap()
                .map(|i| i.lineage),
            Some(l.clone()),
            "{}: still mapped until it expires",
            s.name
        );
        if let Some(r) = &s._redis {
            let keys = handoff::store::Keys::new("ho");
            let mut conn = r.conn();
            let pttl = |h: &SecretHash, conn: &mut redis::Connection| -> i64 {
                redis::cmd("PTTL").arg(keys.refresh(h)).query(conn).unwrap()
            };
            assert!((1..=2000).contains(&pttl(&old, &mut conn)), "{}", s.name);
            assert!(
                (1..=1000).contains(&pttl(&short, &mut conn)),
                "{}: never lengthened",
                s.name
            );
            assert_eq!(pttl(&absent, &mut conn), -2, "{}: never created", s.name);
            assert!(
                pttl(&new, &mut conn) > 3_000_000,
                "{}: the successor keeps its TTL",
                s.name
            );
            tokio::time::sleep(Duration::from_millis(2100)).await;
        } else {
            s.clock.advance_secs(1);
            assert_eq!(
                s.store.refresh_token_info(&short).await.unwrap(),
                None,
                "never lengthened"
            );
            s.clock.advance_secs(1);
        }
        for h in [old, short, absent] {
            assert_eq!(
                s.store.refresh_token_info(&h).await.unwrap(),
                None,
                "{}",
                s.name
            );
        }
        assert!(
            s.store.refresh_token_info(&new).await.unwrap().is_some(),
            "{}",
            s.name
        );
    }
}

/// The memory store's cap: past it, writes that add keys fail (and change
/// nothing), nothing live is evicted, expired entries make room, and revocations
/// and consumptions still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_is_capped_without_evicting() {
    let clock = ManualClock::new();
    let store = MemoryStore::with_max_entries(clock.clone() as SharedClock, 4);
    let l = LineageId::generate();
    let now = clock.now_secs();
    let t = TransferToken::generate(&l, now + 60);
    let c = ctx(&l, now, 60);
    store
        .record_mint(
            t.hash(),
            &c,
            &[SecretHash::of(b"rt")],
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    store
        .revoke_lineage(&l, Duration::from_secs(3600))
        .await
        .unwrap();
    let short = SecretHash::of(b"short-lived");
    store
        .record_refresh_token(
            &short,
            &handoff::store::RefreshTokenInfo::native(l.clone()),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(store.len(), 4);
    // Full: a write that adds a key fails, and writes nothing.
    let code = SecretHash::of(b"code");
    assert!(matches!(
        store
            .record_refresh_token(
                &SecretHash::of(b"another"),
                &handoff::store::RefreshTokenInfo::native(l.clone()),
                Duration::from_secs(60)
            )
            .await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(store
        .remember_once("jti", Duration::from_secs(60))
        .await
        .is_err());
    let t2 = TransferToken::generate(&l, now + 60);
    assert!(store
        .record_mint(
            t2.hash(),
            &c,
            &[SecretHash::of(b"rt2")],
            Duration::from_secs(60)
        )
        .await
        .is_err());
    assert_eq!(
        store
            .refresh_token_info(&SecretHash::of(b"rt2"))
            .await
            .unwrap(),
        None,
        "all or nothing"
    );
    // Nothing was evicted; a consumption (one key out, one in) still works.
    assert_eq!(store.len(), 4);
    assert!(store.is_lineage_revoked(&l).await.unwrap());
    assert!(matches!(
        store
            .consume_transfer_token(&l, t.hash(), "web-app")
            .await
            .unwrap(),
        Consumed::Fresh {
            lineage_revoked: true,
            ..
        }
    ));
    // A revocation is never refused for capacity.
    let l2 = LineageId::generate();
    store
        .revoke_lineage(&l2, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(store.is_lineage_revoked(&l2).await.unwrap());
    // Expired entries make room (here: the short mapping and the consumed-token
    // marker; the revocations went over the cap).
    clock.advance_secs(121);
    assert_eq!(store.refresh_token_info(&short).await.unwrap(), None);
    store
        .record_code(
            &code,
            &handoff::store::CodeRecord {
                lineage: l.clone(),
                sid: "s".into(),
                session_cookie: None,
                web_client: "web-app".into(),
                sub: "alice".into(),
                refresh: Default::default(),
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(store.is_lineage_revoked(&l).await.unwrap());
    assert!(store.is_lineage_revoked(&l2).await.unwrap());
}

/// Withheld refresh tokens (issue 16, SPEC §2.5): kept per lineage with a TTL, the
/// schedule only ever brought forward, and a due lineage claimed exactly once even
/// by parallel claimers (one sweeper per due entry across instances).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn withheld_tokens_are_kept_scheduled_and_claimed_once() {
    use handoff::store::WithheldToken;
    for s in subjects() {
        let name = s.name;
        let l = LineageId::generate();
        let other = LineageId::generate();
        let rec = |sid: &str| WithheldToken {
            sid: sid.into(),
            session_cookie: SecretHash::of(sid.as_bytes()).hex(),
            web_client: "web-app".into(),
            sealed: "sealed".into(),
        };
        let (t1, t2) = (SecretHash::of(b"rt1"), SecretHash::of(b"rt2"));
        let ttl = Duration::from_secs(100);
        s.store
            .hold_withheld(&l, &t1, &rec("s1"), ttl)
            .await
            .unwrap();
        s.store
            .hold_withheld(&l, &t2, &rec("s2"), ttl)
            .await
            .unwrap();
        let mut held = s.store.withheld_tokens(&l).await.unwrap();
        held.sort_by_key(|(_, r)| r.sid.clone());
        assert_eq!(held, vec![(t1, rec("s1")), (t2, rec("s2"))], "{name}");
        assert!(s.store.withheld_tokens(&other).await.unwrap().is_empty());
        s.store.drop_withheld(&l, &t1).await.unwrap();
        assert_eq!(
            s.store.withheld_tokens(&l).await.unwrap(),
            vec![(t2, rec("s2"))]
        );

        let now = 1_000_000;
        s.store.schedule_withheld(&l, now + 50).await.unwrap();
        s.store.schedule_withheld(&l, now + 90).await.unwrap(); // not pushed back
        s.store.schedule_withheld(&other, now + 10).await.unwrap();
        assert_eq!(
            s.store.claim_withheld_due(now, 10).await.unwrap(),
            vec![],
            "{name}"
        );
        assert_eq!(
            s.store.claim_withheld_due(now + 10, 10).await.unwrap(),
            vec![other.clone()],
            "{name}"
        );
        assert_eq!(
            s.store.claim_withheld_due(now + 10, 10).await.unwrap(),
            vec![]
        );
        // Parallel claimers: one gets it.
        let claims = futures_claims(&s, now + 50).await;
        assert_eq!(claims, vec![l.clone()], "{name}: claimed once");
        // Brought forward.
        s.store.schedule_withheld(&l, now + 500).await.unwrap();
        s.store.schedule_withheld(&l, now + 20).await.unwrap();
        assert_eq!(
            s.store.claim_withheld_due(now + 20, 10).await.unwrap(),
            vec![l.clone()]
        );

        if let Some(r) = &s._redis {
            s.store.schedule_withheld(&l, now).await.unwrap();
            let mut conn = r.conn();
            let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
            assert!(keys.iter().any(|k| k.ends_with(":wh")), "{keys:?}");
            assert!(keys.iter().any(|k| k.ends_with(":whdue")), "{keys:?}");
            for k in keys {
                let ttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut conn).unwrap();
                assert!(ttl > 0, "key {k} has no TTL");
            }
        } else {
            s.clock.advance_secs(101);
            assert!(
                s.store.withheld_tokens(&l).await.unwrap().is_empty(),
                "expired"
            );
        }
    }
}

async fn futures_claims(s: &Subject, now: u64) -> Vec<LineageId> {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = s.store.clone();
        tasks.push(tokio::spawn(async move {
            st.claim_withheld_due(now, 10).await.unwrap()
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}
