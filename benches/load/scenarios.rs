//! The scenarios of a local run, as a table ([`TABLE`]), and the run through
//! them: a pre-flight, logged-in browsers for the session scenario, then at each
//! concurrency level the cheap scenarios in interleaved rounds, the costly ones
//! (IdP grant, mint, redeem) once, and the store probes; then the RSS point, the
//! mint's own cost and Redis memory per outstanding STT.

use crate::client::{Gen, Mode};
use crate::lab::{Fresh, Handoff, Lab};
use crate::measure::{mint_gen, Run};
use crate::procs::{Proc, RedisProbe};
use crate::report::{self, Point, Report, StoreMemory};
use crate::requests::{browser_get, Pool, Redeem, SessionReq, StaticReq, TokenGrant};
use crate::settings::MAX_RUN;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scenario: its key (`--scenarios`, the report), which keys ask for it,
/// and how it runs.
pub struct Scenario {
    pub key: &'static str,
    /// It runs when `--scenarios` names any of these (always without `--scenarios`).
    wanted_by: &'static [&'static str],
    kind: Kind,
}

/// Where a scenario's handoff keeps its state.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    Redis,
    Memory,
}

/// Builds a scenario's point at a level (None: it does not run there).
type BuildRun = for<'a> fn(&Level<'a>) -> Option<Run<'a>>;
/// What a scenario's store round-trip probe sends.
type BuildProbe = for<'a> fn(&Level<'a>) -> Option<Arc<dyn Gen>>;
/// Where a request goes and what it is.
type Target = (SocketAddr, Arc<dyn Gen>);

enum Kind {
    /// Cheap: runs in the interleaved rounds (and at the RSS point); `probe`, when
    /// given, is what the store round-trip probe sends afterwards.
    Rounds {
        run: BuildRun,
        probe: Option<BuildProbe>,
    },
    /// The IdP's own refresh-token grant (mint's baseline), once per level.
    IdpToken,
    /// A native app's mint, once per level.
    Mint(Store),
    /// A browser's redemption of a freshly minted token, once per level.
    Redeem(Store),
}

/// Every scenario, in the order a level runs them.
pub const TABLE: &[Scenario] = &[
    Scenario {
        key: "direct",
        wanted_by: &["direct"],
        kind: Kind::Rounds {
            run: direct,
            probe: None,
        },
    },
    Scenario {
        key: "pingora",
        wanted_by: &["pingora"],
        kind: Kind::Rounds {
            run: pingora,
            probe: None,
        },
    },
    Scenario {
        key: "nginx",
        wanted_by: &["nginx"],
        kind: Kind::Rounds {
            run: nginx,
            probe: None,
        },
    },
    Scenario {
        key: "pass",
        wanted_by: &["pass"],
        kind: Kind::Rounds {
            run: pass,
            probe: Some(pass_probe),
        },
    },
    Scenario {
        key: "session",
        wanted_by: &["session"],
        kind: Kind::Rounds {
            run: session,
            probe: Some(session_probe),
        },
    },
    Scenario {
        key: "idp-token",
        wanted_by: &["idp-token", "mint"],
        kind: Kind::IdpToken,
    },
    Scenario {
        key: "mint",
        wanted_by: &["mint"],
        kind: Kind::Mint(Store::Redis),
    },
    Scenario {
        key: "redeem",
        wanted_by: &["redeem"],
        kind: Kind::Redeem(Store::Redis),
    },
    Scenario {
        key: "mint-mem",
        wanted_by: &["mint-mem"],
        kind: Kind::Mint(Store::Memory),
    },
    Scenario {
        key: "redeem-mem",
        wanted_by: &["redeem-mem"],
        kind: Kind::Redeem(Store::Memory),
    },
];

// ---- what each scenario sends, where ---------------------------------------------

/// A browser's GET of `/account` (no token, no session).
fn page(host: String, addr: SocketAddr) -> Target {
    let gen = Arc::new(StaticReq {
        req: browser_get(&host, "/account", "").into_bytes(),
        status: 200,
        needle: None,
    });
    (addr, gen)
}

/// A browser redeeming the tokens of `pool` at `h`.
fn redeem_gen(h: &Handoff, pool: &Arc<Pool>) -> Arc<dyn Gen> {
    Arc::new(Redeem {
        host: h.host(),
        pool: pool.clone(),
        sessions: None,
    })
}

/// A level: its connections and the servers it measures (fresh ones at the RSS
/// point).
pub struct Level<'a> {
    lab: &'a Lab,
    conns: usize,
    rss_only: bool,
    pingora: Option<&'a (Proc, SocketAddr)>,
    nginx: Option<&'a (Proc, SocketAddr)>,
    /// The handoff of the pass-through scenario.
    main: Option<&'a Handoff>,
    /// `_session` cookies of logged-in browsers (empty: no session scenario).
    sessions: &'a [String],
}

impl<'a> Level<'a> {
    fn new(lab: &'a Lab, conns: usize, fresh: Option<&'a Fresh>, sessions: &'a [String]) -> Self {
        let (pingora, nginx, main) = match fresh {
            Some(f) => (f.pingora.as_ref(), f.nginx.as_ref(), f.handoff.as_ref()),
            None => (
                lab.pingora.as_ref(),
                lab.nginx.as_ref(),
                lab.handoff_redis.as_ref().or(lab.handoff_mem.as_ref()),
            ),
        };
        Level {
            lab,
            conns,
            rss_only: fresh.is_some(),
            pingora,
            nginx,
            main,
            sessions,
        }
    }

    /// A point of this level.
    fn run(
        &self,
        key: &'a str,
        (addr, gen): Target,
        procs: Vec<&'a Proc>,
        redis: bool,
        handoff: Option<&'a Handoff>,
    ) -> Run<'a> {
        let s = &self.lab.settings;
        Run {
            key,
            addr,
            gen,
            conns: self.conns,
            warmup: s.warmup,
            max_requests: s.max_requests,
            procs,
            redis,
            handoff,
            mode: None,
        }
    }

    /// A proxy in front of the upstream, measured with it.
    fn proxy(&self, key: &'a str, server: Option<&'a (Proc, SocketAddr)>) -> Option<Run<'a>> {
        let (p, a) = server?;
        let procs = vec![p, &self.lab.upstream];
        Some(self.run(key, page(a.to_string(), *a), procs, false, None))
    }

    fn handoff(&self, store: Store) -> Option<&'a Handoff> {
        match store {
            Store::Redis => self.lab.handoff_redis.as_ref(),
            Store::Memory => self.lab.handoff_mem.as_ref(),
        }
    }

    /// handoff, the upstream and (when `with_redis`) redis-server.
    fn handoff_procs(&self, h: &'a Handoff, with_redis: bool) -> Vec<&'a Proc> {
        let mut procs = vec![&h.proc, &self.lab.upstream];
        if let (true, Some((r, _))) = (with_redis, &self.lab.redis) {
            procs.push(r);
        }
        procs
    }
}

fn direct<'a>(l: &Level<'a>) -> Option<Run<'a>> {
    let up = l.lab.upstream_addr;
    let procs = vec![&l.lab.upstream];
    (!l.rss_only).then(|| l.run("direct", page(up.to_string(), up), procs, false, None))
}

fn pingora<'a>(l: &Level<'a>) -> Option<Run<'a>> {
    l.proxy("pingora", l.pingora)
}

fn nginx<'a>(l: &Level<'a>) -> Option<Run<'a>> {
    l.proxy("nginx", l.nginx)
}

fn pass<'a>(l: &Level<'a>) -> Option<Run<'a>> {
    let h = l.main?;
    let with_redis = l.lab.redis.is_some();
    let procs = l.handoff_procs(h, true);
    Some(l.run("pass", page(h.host(), h.addr), procs, with_redis, Some(h)))
}

fn pass_probe(l: &Level<'_>) -> Option<Arc<dyn Gen>> {
    l.main.map(|h| page(h.host(), h.addr).1)
}

fn session<'a>(l: &Level<'a>) -> Option<Run<'a>> {
    let h = l.lab.handoff_redis.as_ref()?;
    if l.sessions.is_empty() || l.rss_only {
        return None;
    }
    let gen: Arc<dyn Gen> = Arc::new(SessionReq {
        host: h.host(),
        cookies: l.sessions.to_vec(),
    });
    let (r, _) = l
        .lab
        .redis
        .as_ref()
        .expect("a Redis-store handoff has redis");
    let procs = vec![&h.proc, &l.lab.upstream, r];
    Some(l.run("session", (h.addr, gen), procs, true, Some(h)))
}

/// One browser, request after request: after the first, the local cache is
/// fresh, and the store should not be asked.
fn session_probe(l: &Level<'_>) -> Option<Arc<dyn Gen>> {
    let h = l.lab.handoff_redis.as_ref()?;
    let first = l.sessions.first()?;
    Some(Arc::new(SessionReq {
        host: h.host(),
        cookies: vec![first.clone()],
    }))
}

// ---- the run ---------------------------------------------------------------------

/// What the run keeps: the report, whether the harness worked, what was probed.
struct Tally<'r> {
    report: &'r mut Report,
    healthy: bool,
    probed: Vec<&'static str>,
}

impl Tally<'_> {
    /// Keeps a point. Only a scenario that never succeeded fails the run (the
    /// harness is broken); errors are reported, never judged.
    fn keep(&mut self, p: Point) {
        if p.outcome.ok == 0 {
            self.healthy = false;
            self.report.skipped.push(format!(
                "BROKEN: {} at {} conns: {} ok, {} errors ({})",
                report::label(&p.scenario),
                p.conns,
                p.outcome.ok,
                p.outcome.errors,
                p.outcome.first_error.clone().unwrap_or_default()
            ));
        }
        self.report.points.push(p);
    }

    /// Store round trips of `key`, once per run.
    fn probe(&mut self, lab: &Lab, key: &'static str, gen: Arc<dyn Gen>) {
        if !self.probed.contains(&key) {
            self.probed.push(key);
            if let Some(rt) = lab.round_trips(key, gen) {
                self.report.round_trips.push(rt);
            }
        }
    }
}

/// Throughputs of a level that size the redeem point's token pool.
#[derive(Default)]
struct Rates {
    mint: Option<f64>,
    pass: Option<f64>,
}

/// Runs every scenario at every level; false when the harness itself is broken
/// (a scenario with no successful request, or mostly errors) — numbers are never
/// judged here, only whether the machinery worked.
pub fn run_all(lab: &Lab, report: &mut Report) -> Result<bool, String> {
    let s = &lab.settings;
    preflight(lab)?;
    let sessions = log_in_browsers(lab, report);
    let mut tally = Tally {
        report,
        healthy: true,
        probed: Vec::new(),
    };
    let mut levels = s.levels.clone();
    if s.rss_conns > 0 && !levels.contains(&s.rss_conns) {
        levels.push(s.rss_conns);
    }
    for &c in &levels {
        if !lab.time_left() {
            tally.report.skipped.push(format!(
                "{c} conns: the run's time budget ({} min) is spent",
                MAX_RUN.as_secs() / 60
            ));
            continue;
        }
        run_level(lab, c, &sessions, &mut tally)?;
    }
    let healthy = tally.healthy;
    mint_own_cost(lab, report);
    store_memory(lab, report);
    Ok(healthy)
}

/// Every path answers as expected before anything is timed (this also fetches
/// the IdP's discovery document and JWKS into handoff's caches).
fn preflight(lab: &Lab) -> Result<(), String> {
    let up = lab.upstream_addr;
    let mut checks: Vec<(&str, Target)> = Vec::new();
    checks.push(("upstream", page(up.to_string(), up)));
    if let Some((_, a)) = &lab.pingora {
        checks.push(("bare pingora", page(a.to_string(), *a)));
    }
    if let Some((_, a)) = &lab.nginx {
        checks.push(("nginx", page(a.to_string(), *a)));
    }
    for h in lab.handoffs() {
        checks.push(("handoff", page(h.host(), h.addr)));
        let pool = Pool::shared();
        checks.push(("handoff mint", (h.addr, mint_gen(h, &pool))));
        checks.push(("handoff redeem", (h.addr, redeem_gen(h, &pool))));
    }
    for (what, (addr, gen)) in checks {
        let o = lab.drive(addr, gen, 1, 1, Duration::from_secs(15));
        if o.ok != 1 {
            return Err(format!(
                "pre-flight: {what} at {addr} did not answer as expected: {} (logs in {})",
                o.first_error.unwrap_or_else(|| "no answer".into()),
                lab.dir.display()
            ));
        }
    }
    Ok(())
}

/// The session scenario needs logged-in browsers: mint, redeem, keep `_session`.
fn log_in_browsers(lab: &Lab, report: &mut Report) -> Vec<String> {
    let s = &lab.settings;
    let available = report
        .skipped
        .iter()
        .all(|x| !x.starts_with("session cookie"));
    let Some(h) = lab.handoff_redis.as_ref() else {
        return Vec::new();
    };
    if !s.wants("session") || !available {
        return Vec::new();
    }
    let n = s.levels.iter().copied().max().unwrap_or(16).clamp(16, 1000) as u64;
    let pool = Pool::shared();
    let limit = Duration::from_secs(60);
    lab.drive(h.addr, mint_gen(h, &pool), 16, n, limit);
    let got = Arc::new(Mutex::new(Vec::new()));
    let gen = Arc::new(Redeem {
        host: h.host(),
        pool,
        sessions: Some(got.clone()),
    });
    lab.drive(h.addr, gen, 16, n, limit);
    let cookies = std::mem::take(&mut *got.lock().unwrap());
    if cookies.is_empty() {
        report
            .skipped
            .push("session cookie scenario: no `_session` cookie came back from the logins".into());
    }
    cookies
}

/// One concurrency level (the RSS point when it is not one of `--concurrency`).
fn run_level(lab: &Lab, c: usize, sessions: &[String], tally: &mut Tally) -> Result<(), String> {
    let s = &lab.settings;
    let rss_only = !s.levels.contains(&c);
    eprintln!(
        "-- {c} connection(s){}",
        if rss_only { " (RSS point)" } else { "" }
    );
    let fresh = if rss_only { Some(lab.fresh()?) } else { None };
    let level = Level::new(lab, c, fresh.as_ref(), sessions);
    let wanted: Vec<&Scenario> = TABLE
        .iter()
        .filter(|sc| sc.wanted_by.iter().any(|k| s.wants(k)))
        .collect();
    let cheap: Vec<Run<'_>> = wanted
        .iter()
        .filter_map(|sc| match sc.kind {
            Kind::Rounds { run, .. } => run(&level),
            _ => None,
        })
        .collect();
    if rss_only {
        keepalive_rss(lab, &cheap, c, tally);
    }
    let mut rates = Rates {
        pass: rounds(lab, &cheap, tally),
        ..Rates::default()
    };
    if rss_only {
        return Ok(());
    }
    for sc in wanted {
        match sc.kind {
            Kind::Rounds { probe, .. } => {
                if let Some(gen) = probe.and_then(|p| p(&level)) {
                    tally.probe(lab, sc.key, gen);
                }
            }
            Kind::IdpToken => idp_token(&level, tally),
            Kind::Mint(store) => mint(&level, sc.key, store, &mut rates, tally),
            Kind::Redeem(store) => redeem(&level, sc.key, store, &rates, tally),
        }
    }
    Ok(())
}

/// Fresh servers first hold `c` keep-alive connections that are mostly idle
/// (open loop, one request per connection per second): memory per connection.
/// Then the rounds put `c` requests in flight.
fn keepalive_rss(lab: &Lab, cheap: &[Run<'_>], c: usize, tally: &mut Tally) {
    for r in cheap {
        let mut p = lab.measure(Run {
            mode: Some(Mode::Open(c as f64)),
            ..r.clone()
        });
        p.round = usize::MAX;
        tally.report.keepalive.push(p);
    }
}

/// The cheap scenarios and their baselines run in interleaved rounds, each round
/// in a rotated order, and the table takes each one's median round: a
/// neighbour's burst of CPU then hurts one round, not one scenario. Returns the
/// pass-through's median throughput.
fn rounds(lab: &Lab, cheap: &[Run<'_>], tally: &mut Tally) -> Option<f64> {
    let mut pass_all = Vec::new();
    for round in 0..lab.settings.rounds {
        let n = cheap.len().max(1);
        for i in 0..cheap.len() {
            let mut p = lab.measure(cheap[(i + round) % n].clone());
            p.round = round;
            if p.scenario == "pass" {
                pass_all.push(p.outcome.rps());
            }
            tally.keep(p);
        }
    }
    pass_all.sort_by(f64::total_cmp);
    pass_all.get(pass_all.len() / 2).copied()
}

/// The IdP's own refresh-token grant, straight to the upstream.
fn idp_token(l: &Level<'_>, tally: &mut Tally) {
    let up = l.lab.upstream_addr;
    let gen: Arc<dyn Gen> = Arc::new(TokenGrant {
        host: up.to_string(),
        audience: None,
        pool: None,
    });
    let run = l.run("idp-token", (up, gen), vec![&l.lab.upstream], false, None);
    tally.keep(l.lab.measure(run));
}

fn mint(l: &Level<'_>, key: &'static str, store: Store, rates: &mut Rates, tally: &mut Tally) {
    let Some(h) = l.handoff(store) else { return };
    let redis_backed = store == Store::Redis;
    let procs = l.handoff_procs(h, redis_backed);
    let run = l.run(
        key,
        (h.addr, mint_gen(h, &h.pool)),
        procs,
        redis_backed,
        Some(h),
    );
    let p = l.lab.measure(run);
    rates.mint = Some(p.outcome.rps());
    tally.keep(p);
    if redis_backed {
        tally.probe(l.lab, key, mint_gen(h, &Pool::shared()));
    }
}

/// Each redemption spends a fresh token minted beforehand; a point uses at most
/// `redeem_cap` of them and ends early when they run out.
fn redeem(l: &Level<'_>, key: &'static str, store: Store, rates: &Rates, tally: &mut Tally) {
    let Some(h) = l.handoff(store) else { return };
    let (lab, s) = (l.lab, &l.lab.settings);
    let redis_backed = store == Store::Redis;
    let warm = s.warmup.min(Duration::from_millis(500));
    let est = match (rates.mint, rates.pass) {
        (Some(m), Some(p)) => (2.0 * m).min(p),
        (Some(m), None) => 2.0 * m,
        (None, Some(p)) => p,
        (None, None) => 5000.0,
    }
    .max(500.0);
    let need = ((est * (warm + s.duration).as_secs_f64() * 1.2) as usize).min(s.redeem_cap);
    lab.top_up(h, need);
    let procs = l.handoff_procs(h, redis_backed);
    let mut run = l.run(
        key,
        (h.addr, redeem_gen(h, &h.pool)),
        procs,
        redis_backed,
        Some(h),
    );
    run.warmup = warm;
    run.max_requests = need as u64;
    tally.keep(lab.measure(run));
    if redis_backed && !tally.probed.contains(&key) {
        // Tokens minted by the measured instance, redeemed at the probe
        // instance: they share the store, as instances of one deployment do.
        lab.top_up(h, s.probe as usize + 5);
        tally.probe(lab, key, redeem_gen(h, &h.pool));
    }
}

/// Mint's own cost: at the lowest level, mint p50 minus the IdP's own grant p50.
fn mint_own_cost(lab: &Lab, report: &mut Report) {
    let Some(&c) = lab.settings.levels.iter().min() else {
        return;
    };
    let find = |k: &str| {
        report
            .points
            .iter()
            .find(|p| p.scenario == k && p.conns == c)
    };
    let idp = find("idp-token");
    for key in ["mint", "mint-mem"] {
        if let (Some(m), Some(i), None) = (find(key), idp, report.mint_own) {
            let own = m.outcome.pct_us(0.5) - i.outcome.pct_us(0.5);
            report.mint_own = Some((c, own, m.server_cpu().unwrap_or(f64::NAN)));
        }
    }
}

/// Redis memory per outstanding STT: a batch of fresh mints, never redeemed.
fn store_memory(lab: &Lab, report: &mut Report) {
    let (Some(h), Some((_, port)), true) =
        (&lab.handoff_redis, &lab.redis, lab.settings.wants("mint"))
    else {
        return;
    };
    let Ok(mut redis) = RedisProbe::connect(*port) else {
        return;
    };
    let before = redis.used_memory();
    let batch = lab.settings.memory_batch as u64;
    let gen = mint_gen(h, &Pool::shared());
    let o = lab.drive(h.addr, gen, 16, batch, Duration::from_secs(60));
    let after = redis.used_memory();
    let (keys, mean, min, max) = redis.memory_usage("*:stt:*", 1000);
    let (ukeys, umean, _, _) = redis.memory_usage("*:used:*", 200);
    report.store_memory = Some(StoreMemory {
        keys,
        mean,
        min,
        max,
        used_memory_per_stt: (o.ok > 0).then(|| (after as f64 - before as f64) / o.ok as f64),
        used_marker_mean: (ukeys > 0).then_some(umean),
    });
}
