//! The login transaction (SPEC §2.3): the few IdP hops between a redemption and
//! the IdP setting its session cookie.
//!
//! Real IdPs log a user in over several requests (oidc-provider: `/auth` →
//! `/interaction/:uid` → `/auth/:uid`), and the one that needs the assertion is
//! rarely the one that carried the token. After a successful redemption handoff
//! gives the browser a `__Host-` cookie naming the transaction and attaches a
//! freshly signed assertion to each upstream request that carries it, until:
//! - the IdP sets its session cookie (the transaction ends and the session is bound),
//! - the transaction's time is up (≤ 120 s), or its hop budget is spent,
//! - the lineage is revoked.
//!
//! The cookie's value is sealed (HMAC-SHA-256 under a key derived from the
//! assertion signing key, so every instance that shares the key can open it) and
//! carries everything the redemption decided, so a hop costs no store read for the
//! decision — only one atomic hop count, which is also how a transaction is ended.
//! It is bound to the client IP: a copy replayed from elsewhere does nothing.

//!
//! This module is the flow: `continue_from_cookie` (a request that carries the
//! cookie) and [`start`] (after a successful redemption); the data and the
//! [`TxState`] machine are in `state`.

pub use state::{Transaction, TxCookie, TxKey, TxState};

pub mod state;

use crate::app::Handoff;
use crate::redeem::Redeemed;
use std::net::IpAddr;

/// A request carrying a transaction cookie: open it, check time and IP, count the
/// hop. The state says whether this request may assert, may only bind, or ends it.
/// `hop` is the request's canonical path and query: off the transaction's redirect
/// chain (see [`Transaction::next`]) the request only binds, and spends no hop.
pub(crate) async fn continue_from_cookie(
    h: &Handoff,
    sealed: &str,
    client_ip: IpAddr,
    hop: &str,
) -> TxState {
    let cfg = &h.config.session;
    let now = h.clock.now_secs();
    let Some(tx) = h.tx_key.open(sealed) else {
        return refused(h, "invalid", None, client_ip);
    };
    // Past its absolute limit a session set now would be dead at once: nothing to bind.
    let bindable = tx.absolute_exp > now;
    if tx.ip != client_ip {
        return refused(h, "wrong_ip", bindable.then_some(tx), client_ip);
    }
    if tx.exp <= now {
        return refused(h, "expired", bindable.then_some(tx), client_ip);
    }
    if tx.next.as_deref().is_some_and(|n| n != hop) {
        // Not the hop the IdP's last answer pointed to (another interaction, a
        // favicon): no assertion here, but the transaction goes on.
        h.metrics
            .transaction_hops
            .with_label_values(&["off_chain"])
            .inc();
        return bind_only(tx, bindable, false);
    }
    let hop = h
        .store
        .tx_hop(
            &tx.lineage,
            &tx.txid,
            cfg.transaction_max_hops,
            cfg.transaction_ttl,
        )
        .await;
    match hop {
        Ok(true) => {
            h.metrics.transaction_hops.with_label_values(&["ok"]).inc();
            TxState::Continued { tx, moved: false }
        }
        Ok(false) => {
            h.metrics
                .transaction_hops
                .with_label_values(&["ended"])
                .inc();
            tracing::info!(sid = %tx.sid, "login transaction over (done, out of hops, or lineage revoked)");
            bind_only(tx, bindable, true)
        }
        Err(e) => {
            // No assertion without the hop count (fail closed); the cookie stays,
            // so the next hop can try again once the store is back.
            h.metrics
                .transaction_hops
                .with_label_values(&["store_unavailable"])
                .inc();
            tracing::warn!(error = %e, "login transaction hop not counted: store unavailable");
            bind_only(tx, bindable, false)
        }
    }
}

fn bind_only(tx: Transaction, bindable: bool, expire: bool) -> TxState {
    match (bindable, expire) {
        (true, _) => TxState::BindOnly { tx, expire },
        (false, true) => TxState::Ended,
        (false, false) => TxState::None,
    }
}

fn refused(
    h: &Handoff,
    outcome: &'static str,
    tx: Option<Transaction>,
    client_ip: IpAddr,
) -> TxState {
    h.metrics
        .transaction_hops
        .with_label_values(&[outcome])
        .inc();
    tracing::info!(outcome, client_ip = %client_ip, "login transaction cookie refused");
    match tx {
        Some(tx) => TxState::BindOnly { tx, expire: true },
        None => TxState::Ended,
    }
}

/// After a successful redemption: the transaction for the hops that follow (its
/// sealed cookie goes to the browser with this response, naming the hop the IdP's
/// answer points to).
pub fn start(h: &Handoff, r: &Redeemed, client_ip: IpAddr) -> TxState {
    let now = h.clock.now_secs();
    let tx = Transaction {
        txid: Transaction::new_id(),
        sid: r.sid.clone(),
        sub: r.ctx.sub.clone(),
        lineage: r.ctx.lineage.clone(),
        web_client: r.web_client.clone(),
        native_client: r.ctx.native_client_id.clone(),
        ip: client_ip,
        exp: now + h.config.session.transaction_ttl.as_secs(),
        absolute_exp: now + r.decision.session_absolute.as_secs(),
        idle_secs: r.decision.session_idle.as_secs(),
        refresh: crate::store::RefreshPolicy {
            allow: r.decision.allow_refresh_token,
            online: r.decision.enforce_online_refresh_tokens,
        },
        next: None,
    };
    TxState::Started { tx }
}
