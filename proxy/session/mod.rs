//! Web sessions (SPEC §2.4, §3): enforcing the limits of sessions created by a
//! session transfer.
//!
//! A transfer session is known by the hash of the IdP's session cookie it is
//! bound to. Every request that carries one of the IdP's session cookies is
//! checked here: an unbound cookie (a session the IdP made without handoff) passes
//! untouched; a bound one past its absolute or idle limit, or revoked, is dead —
//! the gateway removes it from the request and expires it in the browser.
//!
//! Costs on the hot path: state is served from a small local cache for at most
//! `session.cache_ttl` (≤ 1 s, the revocation propagation bound), so a busy session
//! costs about one store read per second per instance, not one per request. Idle
//! time slides with use, but the store is written at most once per `idle/10`.
//!
//! When the store is unreachable, a cached state is trusted for
//! `session.outage_grace` after it was last read; past that — or with nothing
//! cached — the cookie is treated as expired (fail closed, SPEC §5).

use crate::app::Handoff;
use crate::labels::SessionEnd;
use crate::secret::SecretHash;
use crate::store::{BindOutcome, WebSession};

/// What a session cookie is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Not bound by handoff: pass untouched.
    Unbound,
    /// A live transfer session, with the hash of the cookie its current record is under.
    Alive(SecretHash, Box<WebSession>),
    /// Expired or revoked (the reason is a metric label).
    Dead(SessionEnd),
}

pub use cache::SessionCache;

pub mod cache;

fn grace_ms(h: &Handoff) -> u64 {
    (h.config.session.outage_grace.as_millis() as u64)
        .max(h.config.session.cache_ttl.as_millis() as u64)
}

fn judge(s: &WebSession, now: u64) -> Option<SessionEnd> {
    if s.revoked {
        Some(SessionEnd::Revoked)
    } else if now >= s.absolute_exp {
        Some(SessionEnd::ExpiredAbsolute)
    } else if now >= s.idle_exp() {
        Some(SessionEnd::ExpiredIdle)
    } else {
        None
    }
}

/// Reads a cookie's session state: fresh from the cache, else from the store,
/// else (store down) the last known state within the outage grace.
async fn load(
    h: &Handoff,
    cookie: &SecretHash,
    now_ms: u64,
) -> Result<(Option<WebSession>, bool), SessionEnd> {
    let cfg = &h.config.session;
    let cached = h.sessions.get(cookie);
    let invalidated = h.sessions.invalidated_ms();
    let fresh = cached.as_ref().filter(|c| {
        c.fetched_ms > invalidated
            && now_ms.saturating_sub(c.fetched_ms) < cfg.cache_ttl.as_millis() as u64
    });
    if let Some(c) = fresh {
        return Ok((c.session.clone(), true));
    }
    let read = match h.store.session_by_cookie(cookie).await {
        // The lineage's marker too: a cascade that could not tombstone every session
        // (a timeout half-way) still ends them all.
        Ok(Some(mut s)) if !s.revoked => match h.store.is_lineage_revoked(&s.lineage).await {
            Ok(revoked) => {
                s.revoked = revoked;
                Ok(Some(s))
            }
            Err(e) => Err(e),
        },
        other => other,
    };
    match read {
        Ok(s) => {
            h.sessions.put(*cookie, s.clone(), now_ms, grace_ms(h));
            Ok((s, false))
        }
        Err(e) => {
            match cached.filter(|c| {
                now_ms.saturating_sub(c.fetched_ms) < cfg.outage_grace.as_millis() as u64
            }) {
                Some(c) => {
                    tracing::warn!(error = %e, cookie = ?cookie, "store unavailable: using the last known session state");
                    Ok((c.session, true))
                }
                None => {
                    tracing::warn!(error = %e, cookie = ?cookie, "store unavailable and no recent state: treating the session as expired");
                    Err(SessionEnd::StoreUnavailable)
                }
            }
        }
    }
}

/// How many cookie rotations a lookup follows.
const MAX_MOVES: usize = 8;

/// The current record of the session a cookie hash was bound to, following the
/// IdP's cookie rotations, read from the store (no cache): for decisions that
/// must not be stale (refresh grants, revocations).
pub async fn current(
    h: &Handoff,
    cookie: &SecretHash,
) -> Result<Option<(SecretHash, WebSession)>, crate::store::StoreError> {
    let mut key = *cookie;
    for _ in 0..=MAX_MOVES {
        let Some(s) = h.store.session_by_cookie(&key).await? else {
            return Ok(None);
        };
        match s.moved_to.as_deref().and_then(SecretHash::from_hex) {
            Some(next) => key = next,
            None => return Ok(Some((key, s))),
        }
    }
    Ok(None)
}

/// Checks the session bound to the cookie with hash `cookie`, sliding its idle time.
///
/// When the IdP replaced the session's cookie (oidc-provider re-keys its session
/// after an interaction), the old cookie's record points at the new one
/// (`moved_to`): one web session, one state, whichever cookie a request carries.
/// The state judged — and touched — is always the current one.
pub async fn check(h: &Handoff, cookie: &SecretHash) -> Check {
    let now_ms = h.clock.now_ms();
    let now = now_ms / 1000;
    let mut key = *cookie;
    let (mut state, mut from_cache) = match load(h, &key, now_ms).await {
        Ok(x) => x,
        Err(reason) => return Check::Dead(reason),
    };
    for _ in 0..MAX_MOVES {
        let Some(next) = state
            .as_ref()
            .and_then(|s| s.moved_to.as_deref())
            .and_then(SecretHash::from_hex)
        else {
            break;
        };
        key = next;
        (state, from_cache) = match load(h, &key, now_ms).await {
            Ok((Some(s), c)) => (Some(s), c),
            // The successor is gone: nothing current to hold the session to.
            Ok((None, _)) => return Check::Dead(SessionEnd::ExpiredAbsolute),
            Err(reason) => return Check::Dead(reason),
        };
    }
    let Some(mut s) = state else {
        return Check::Unbound;
    };
    if s.moved_to.is_some() {
        // More rotations than anyone makes: refuse rather than loop.
        return Check::Dead(SessionEnd::Revoked);
    }
    if let Some(mut reason) = judge(&s, now) {
        if from_cache && reason == SessionEnd::ExpiredIdle {
            // Another instance may have seen the session used since we cached it.
            if let Ok(Some(newer)) = h.store.session_by_cookie(&key).await {
                h.sessions
                    .put(key, Some(newer.clone()), now_ms, grace_ms(h));
                match judge(&newer, now) {
                    None if newer.moved_to.is_none() => return touch(h, &key, newer, now).await,
                    None => reason = SessionEnd::Revoked,
                    Some(r) => reason = r,
                }
                s = newer;
            }
        }
        tracing::info!(sid = %s.sid, lineage = %s.lineage, reason = reason.label(), "web session ended");
        return Check::Dead(reason);
    }
    touch(h, &key, s, now).await
}

async fn touch(h: &Handoff, cookie: &SecretHash, mut s: WebSession, now: u64) -> Check {
    let throttle = (s.idle_secs / 10).max(1);
    if now.saturating_sub(s.last_seen) >= throttle {
        s.last_seen = now;
        match h.store.touch_session(cookie, &s).await {
            Ok(()) => h
                .sessions
                .put(*cookie, Some(s.clone()), h.clock.now_ms(), grace_ms(h)),
            Err(e) => {
                // Not fatal: the session is alive; the next request tries again.
                tracing::debug!(error = %e, "could not record session use");
            }
        }
        h.metrics.session_touches.inc();
    }
    Check::Alive(*cookie, Box::new(s))
}

/// A live transfer session whose cookie a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The IdP's cookie name it came under.
    pub cookie: String,
    /// The hash of the cookie its current record is under.
    pub hash: SecretHash,
    /// The record.
    pub session: WebSession,
}

/// What a request's IdP session cookies are worth (see `scan_cookies`).
#[derive(Debug, Default)]
pub struct CookieScan {
    /// Live transfer sessions.
    pub live: Vec<LiveSession>,
    /// Names of plain cookies of IdP sessions handoff did not bind.
    pub unbound: Vec<String>,
    /// Names that must not reach the IdP.
    pub strip: Vec<String>,
    /// Names to expire in the browser (their session is over).
    pub expire: Vec<String>,
}

/// Checks every IdP session cookie in `cookie_header`, every way an IdP might read
/// it ([`crate::cookies::scan_session_cookies`]), all readings in one wait (the
/// store client pipelines concurrent calls). The dead reading wins; a value in a
/// non-canonical form no live session explains does not pass; past
/// `session.max_cookie_occurrences` a name is stripped unread. A dead session is
/// expired in the browser too — but not when the store merely could not say (a
/// store outage must not log users out of sessions that may be perfectly good:
/// SPEC §5).
pub(crate) async fn scan_cookies(h: &Handoff, cookie_header: &[u8]) -> CookieScan {
    let cfg = &h.config.session;
    let mut out = CookieScan::default();
    let scans = crate::cookies::scan_session_cookies(
        &[cookie_header],
        &cfg.cookie_names,
        cfg.max_cookie_occurrences,
    );
    let lookups: Vec<(usize, SecretHash)> = scans
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.over_limit)
        .flat_map(|(i, s)| {
            s.readings
                .iter()
                .map(move |r| (i, SecretHash::of(r.as_bytes())))
        })
        .collect();
    let checks =
        futures_util::future::join_all(lookups.iter().map(|(_, hash)| check(h, hash))).await;
    for (i, scan) in scans.iter().enumerate() {
        let name = scan.name.clone();
        if scan.over_limit {
            h.metrics.sessions.with_label_values(&["over_limit"]).inc();
            tracing::info!(cookie = %name, "too many occurrences of a session cookie: stripped unread");
            out.strip.push(name);
            continue;
        }
        let mut live: Vec<LiveSession> = Vec::new();
        let mut dead = None;
        let mine = lookups.iter().zip(&checks).filter(|((j, _), _)| *j == i);
        for (_, c) in mine {
            match c {
                Check::Unbound => {}
                Check::Alive(hash, s) if !live.iter().any(|l| l.hash == *hash) => {
                    live.push(LiveSession {
                        cookie: name.clone(),
                        hash: *hash,
                        session: (**s).clone(),
                    })
                }
                Check::Alive(..) => {}
                Check::Dead(reason) => {
                    h.metrics
                        .sessions
                        .with_label_values(&[reason.label()])
                        .inc();
                    dead.get_or_insert(*reason);
                }
            }
        }
        if let Some(reason) = dead {
            if reason != SessionEnd::StoreUnavailable {
                out.expire.push(name.clone());
            }
            out.strip.push(name);
        } else if !live.is_empty() {
            out.live.extend(live);
        } else if scan.canonical {
            out.unbound.push(name);
        } else {
            // No live session explains the value, and some IdP may read it as one
            // handoff would call dead: it does not pass.
            h.metrics.sessions.with_label_values(&["ambiguous"]).inc();
            tracing::info!(cookie = %name, "a session cookie in a non-canonical form was stripped");
            out.strip.push(name);
        }
    }
    out
}

/// What became of a session cookie the IdP set.
#[derive(Debug)]
pub enum Bind {
    /// Not a transfer session's: the cookie passes as the IdP set it.
    NotOurs,
    /// Bound to a web session (`ends_transaction`: the login transaction's own).
    Bound {
        /// The cookie's hash.
        hash: SecretHash,
        /// The session record.
        session: Box<WebSession>,
        /// It was the login transaction's session (which is now over).
        ends_transaction: bool,
    },
    /// A transfer session handoff cannot hold to its limits: it must not reach the
    /// browser (lineage revoked, store down).
    Withhold,
}

/// Binds an IdP session cookie `name=value` the IdP set: to the login transaction
/// `tx` when one is running, or — when the IdP replaced the cookie of a bound
/// session `live` — to that session, carried on (one state, so idle time,
/// refresh-token bindings and revocation follow whichever cookie is presented).
pub async fn bind(
    h: &Handoff,
    name: &str,
    value: &str,
    tx: Option<&crate::transaction::Transaction>,
    live: &[LiveSession],
) -> Bind {
    let hash = SecretHash::of(value.as_bytes());
    let now = h.clock.now_secs();
    let (session, txid, previous) = if let Some(tx) = tx {
        let s = WebSession {
            sid: tx.sid.clone(),
            sub: tx.sub.clone(),
            lineage: tx.lineage.clone(),
            web_client: tx.web_client.clone(),
            native_client: tx.native_client.clone(),
            created: now,
            absolute_exp: tx.absolute_exp,
            idle_secs: tx.idle_secs,
            last_seen: now,
            ip: tx.ip,
            revoked: false,
            moved_to: None,
            refresh: tx.refresh,
        };
        (s, Some(tx.txid.clone()), None)
    } else if let Some(l) = live.iter().find(|l| l.cookie == name && l.hash != hash) {
        let carried = WebSession {
            last_seen: now,
            moved_to: None,
            ..l.session.clone()
        };
        (carried, None, Some(l.hash))
    } else {
        return Bind::NotOurs;
    };
    let bound = h
        .store
        .bind_session(&session, &hash, txid.as_deref(), h.config.session.retention)
        .await;
    match bound {
        Ok(BindOutcome::Bound) => {
            if let Some(old) = previous {
                if let Err(e) = h.store.move_session(&old, &hash).await {
                    tracing::warn!(error = %e, sid = %session.sid, "could not point the old session cookie at the new one");
                }
                h.sessions.forget(&old);
            }
            h.metrics.sessions.with_label_values(&["bound"]).inc();
            tracing::info!(sid = %session.sid, lineage = %session.lineage, cookie = name, absolute_exp = session.absolute_exp, "web session bound");
            Bind::Bound {
                hash,
                session: Box::new(session),
                ends_transaction: txid.is_some(),
            }
        }
        Ok(BindOutcome::LineageRevoked) => {
            h.metrics.sessions.with_label_values(&["revoked"]).inc();
            tracing::warn!(sid = %session.sid, lineage = %session.lineage, "session not bound: lineage revoked");
            Bind::Withhold
        }
        Err(e) => {
            h.metrics
                .sessions
                .with_label_values(&["store_unavailable"])
                .inc();
            tracing::error!(error = %e, sid = %session.sid, "session not bound: store unavailable; the IdP cookie is withheld");
            Bind::Withhold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::LineageId;

    fn session(last_seen: u64, idle: u64, abs: u64) -> WebSession {
        WebSession {
            sid: "s".into(),
            sub: "u".into(),
            lineage: LineageId::generate(),
            web_client: "w".into(),
            native_client: "n".into(),
            created: 0,
            absolute_exp: abs,
            idle_secs: idle,
            last_seen,
            ip: "127.0.0.1".parse().unwrap(),
            revoked: false,
            moved_to: None,
            refresh: Default::default(),
        }
    }

    #[test]
    fn limits() {
        assert_eq!(judge(&session(100, 60, 1000), 159), None);
        assert_eq!(
            judge(&session(100, 60, 1000), 160),
            Some(SessionEnd::ExpiredIdle)
        );
        assert_eq!(
            judge(&session(990, 60, 1000), 1000),
            Some(SessionEnd::ExpiredAbsolute)
        );
        assert_eq!(session(990, 60, 1000).expires_at(), 1000);
        assert_eq!(
            judge(
                &WebSession {
                    revoked: true,
                    ..session(100, 60, 1000)
                },
                101
            ),
            Some(SessionEnd::Revoked)
        );
    }
}
