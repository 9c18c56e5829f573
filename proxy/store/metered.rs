//! The one metered seam in front of every store (SPEC §6): each call is timed into
//! `handoff_store_seconds{op}`, each failure counted in
//! `handoff_store_errors_total{op}` and logged once, and the error names the
//! operation that failed. Callers decide what a failure means for their flow;
//! none of them counts or logs store errors by hand.

use super::*;
use crate::labels::StoreOp;
use prometheus::{HistogramVec, IntCounterVec};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// A store whose every operation is measured (see the module doc).
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Store>,
    seconds: HistogramVec,
    errors: IntCounterVec,
}

impl Metered {
    /// Wraps `inner`, recording into the given metrics.
    pub fn new(inner: Arc<dyn Store>, seconds: HistogramVec, errors: IntCounterVec) -> Self {
        Metered {
            inner,
            seconds,
            errors,
        }
    }

    async fn run<T>(
        &self,
        op: StoreOp,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let out = f.await;
        let label = op.label();
        self.seconds
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        out.map_err(|e| {
            self.errors.with_label_values(&[label]).inc();
            tracing::warn!(op = label, error = %e, "store operation failed");
            e.during(label)
        })
    }
}

#[async_trait]
impl Store for Metered {
    async fn refresh_token_info(
        &self,
        token: &SecretHash,
    ) -> Result<Option<RefreshTokenInfo>, StoreError> {
        self.run(
            StoreOp::RefreshTokenInfo,
            self.inner.refresh_token_info(token),
        )
        .await
    }

    async fn record_mint(
        &self,
        stt: &SecretHash,
        ctx: &MintContext,
        refresh_tokens: &[SecretHash],
        refresh_ttl: Duration,
    ) -> Result<MintWrite, StoreError> {
        let f = self
            .inner
            .record_mint(stt, ctx, refresh_tokens, refresh_ttl);
        self.run(StoreOp::RecordMint, f).await
    }

    async fn consume_transfer_token(
        &self,
        lineage: &LineageId,
        stt: &SecretHash,
        web_client: &str,
    ) -> Result<Consumed, StoreError> {
        let f = self.inner.consume_transfer_token(lineage, stt, web_client);
        self.run(StoreOp::Consume, f).await
    }

    async fn revoke_lineage(
        &self,
        lineage: &LineageId,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        self.run(
            StoreOp::RevokeLineage,
            self.inner.revoke_lineage(lineage, ttl),
        )
        .await
    }

    async fn lineage_sessions(
        &self,
        lineage: &LineageId,
    ) -> Result<Vec<(SecretHash, WebSession)>, StoreError> {
        self.run(
            StoreOp::LineageSessions,
            self.inner.lineage_sessions(lineage),
        )
        .await
    }

    async fn subject_lineages(&self, sub: &str) -> Result<Vec<LineageId>, StoreError> {
        self.run(StoreOp::SubjectLineages, self.inner.subject_lineages(sub))
            .await
    }

    async fn record_code(
        &self,
        code: &SecretHash,
        rec: &CodeRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.run(StoreOp::RecordCode, self.inner.record_code(code, rec, ttl))
            .await
    }

    async fn take_code(&self, code: &SecretHash) -> Result<Option<CodeRecord>, StoreError> {
        self.run(StoreOp::TakeCode, self.inner.take_code(code))
            .await
    }

    async fn record_refresh_token(
        &self,
        token: &SecretHash,
        info: &RefreshTokenInfo,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let f = self.inner.record_refresh_token(token, info, ttl);
        self.run(StoreOp::RecordRefreshToken, f).await
    }

    async fn link_idp_session(
        &self,
        idp_sid: &str,
        link: &SessionLink,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let f = self.inner.link_idp_session(idp_sid, link, ttl);
        self.run(StoreOp::LinkIdpSession, f).await
    }

    async fn idp_session(&self, idp_sid: &str) -> Result<Option<SessionLink>, StoreError> {
        self.run(StoreOp::IdpSession, self.inner.idp_session(idp_sid))
            .await
    }

    async fn publish_revocation(&self) -> Result<(), StoreError> {
        self.run(StoreOp::PublishRevocation, self.inner.publish_revocation())
            .await
    }

    fn subscribe_revocations(&self, on_event: Arc<dyn Fn(Announcement) + Send + Sync>) {
        self.inner.subscribe_revocations(on_event)
    }

    async fn is_lineage_revoked(&self, lineage: &LineageId) -> Result<bool, StoreError> {
        self.run(
            StoreOp::IsLineageRevoked,
            self.inner.is_lineage_revoked(lineage),
        )
        .await
    }

    async fn tx_hop(
        &self,
        lineage: &LineageId,
        txid: &str,
        max_hops: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let f = self.inner.tx_hop(lineage, txid, max_hops, ttl);
        self.run(StoreOp::TxHop, f).await
    }

    async fn bind_session(
        &self,
        session: &WebSession,
        cookie: &SecretHash,
        txid: Option<&str>,
        retention: Duration,
    ) -> Result<BindOutcome, StoreError> {
        let f = self.inner.bind_session(session, cookie, txid, retention);
        self.run(StoreOp::BindSession, f).await
    }

    async fn session_by_cookie(
        &self,
        cookie: &SecretHash,
    ) -> Result<Option<WebSession>, StoreError> {
        self.run(
            StoreOp::SessionByCookie,
            self.inner.session_by_cookie(cookie),
        )
        .await
    }

    async fn touch_session(
        &self,
        cookie: &SecretHash,
        session: &WebSession,
    ) -> Result<(), StoreError> {
        self.run(
            StoreOp::TouchSession,
            self.inner.touch_session(cookie, session),
        )
        .await
    }

    async fn move_session(&self, old: &SecretHash, new: &SecretHash) -> Result<(), StoreError> {
        self.run(StoreOp::MoveSession, self.inner.move_session(old, new))
            .await
    }

    async fn revoke_session(
        &self,
        cookie: &SecretHash,
        session: &WebSession,
    ) -> Result<(), StoreError> {
        self.run(
            StoreOp::RevokeSession,
            self.inner.revoke_session(cookie, session),
        )
        .await
    }

    async fn expire_refresh_token(
        &self,
        token: &SecretHash,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let f = self.inner.expire_refresh_token(token, ttl);
        self.run(StoreOp::ExpireRefreshToken, f).await
    }

    async fn remember_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.run(StoreOp::RememberOnce, self.inner.remember_once(name, ttl))
            .await
    }

    async fn forget_once(&self, name: &str) -> Result<(), StoreError> {
        self.run(StoreOp::ForgetOnce, self.inner.forget_once(name))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(StoreOp::Ping, self.inner.ping()).await
    }

    async fn hold_withheld(
        &self,
        lineage: &LineageId,
        token: &SecretHash,
        rec: &WithheldToken,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let f = self.inner.hold_withheld(lineage, token, rec, ttl);
        self.run(StoreOp::HoldWithheld, f).await
    }

    async fn withheld_tokens(
        &self,
        lineage: &LineageId,
    ) -> Result<Vec<(SecretHash, WithheldToken)>, StoreError> {
        self.run(StoreOp::WithheldTokens, self.inner.withheld_tokens(lineage))
            .await
    }

    async fn drop_withheld(
        &self,
        lineage: &LineageId,
        token: &SecretHash,
    ) -> Result<(), StoreError> {
        self.run(
            StoreOp::DropWithheld,
            self.inner.drop_withheld(lineage, token),
        )
        .await
    }

    async fn schedule_withheld(
        &self,
        lineage: &LineageId,
        due_secs: u64,
    ) -> Result<(), StoreError> {
        let f = self.inner.schedule_withheld(lineage, due_secs);
        self.run(StoreOp::ScheduleWithheld, f).await
    }

    async fn claim_withheld_due(
        &self,
        now_secs: u64,
        max: usize,
    ) -> Result<Vec<LineageId>, StoreError> {
        let f = self.inner.claim_withheld_due(now_secs, max);
        self.run(StoreOp::ClaimWithheldDue, f).await
    }
}
