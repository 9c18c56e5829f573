//! Labels that several modules compare or count: types, not string literals, so a
//! typo is a compile error and the metrics can register every value up front.
//! A leaf module: it imports nothing of handoff's.

/// Why a redemption fell back to an ordinary login (SPEC §2.2 step 6; the
/// `reason` label of `handoff_redemptions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// The token is not something handoff minted (shape, length, alphabet).
    Malformed,
    /// Unknown, expired or already spent (covers replay).
    NotFoundOrExpired,
    /// The device binding does not hold.
    BindingMismatch,
    /// The web client is not allowed for the token's native client.
    ClientNotAllowed,
    /// The delivery method is not allowed for the web client.
    MethodNotAllowed,
    /// The lineage was revoked.
    LineageRevoked,
    /// A rule denied it.
    DeniedByRule,
    /// The store could not be asked.
    StoreUnavailable,
    /// The browser holds a transfer session of another user.
    DifferentSubject,
    /// The authorize request asks for a response handoff could not mediate.
    Unmediatable,
}

impl Fallback {
    /// Every reason, for metric registration.
    pub const ALL: [Fallback; 10] = [
        Fallback::Malformed,
        Fallback::NotFoundOrExpired,
        Fallback::BindingMismatch,
        Fallback::ClientNotAllowed,
        Fallback::MethodNotAllowed,
        Fallback::LineageRevoked,
        Fallback::DeniedByRule,
        Fallback::StoreUnavailable,
        Fallback::DifferentSubject,
        Fallback::Unmediatable,
    ];

    /// The metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            Fallback::Malformed => "malformed",
            Fallback::NotFoundOrExpired => "not_found_or_expired",
            Fallback::BindingMismatch => "binding_mismatch",
            Fallback::ClientNotAllowed => "client_not_allowed",
            Fallback::MethodNotAllowed => "method_not_allowed",
            Fallback::LineageRevoked => "lineage_revoked",
            Fallback::DeniedByRule => "denied_by_rule",
            Fallback::StoreUnavailable => "store_unavailable",
            Fallback::DifferentSubject => "different_subject",
            Fallback::Unmediatable => "unmediatable",
        }
    }
}

/// Why a web session counts as over (the `event` label of `handoff_sessions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    /// Revoked (directly, by cascade, or by logout).
    Revoked,
    /// Past its absolute limit.
    ExpiredAbsolute,
    /// Past its idle limit.
    ExpiredIdle,
    /// The store could not say, and no recent state was cached (fail closed).
    StoreUnavailable,
}

impl SessionEnd {
    /// The metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            SessionEnd::Revoked => "revoked",
            SessionEnd::ExpiredAbsolute => "expired_absolute",
            SessionEnd::ExpiredIdle => "expired_idle",
            SessionEnd::StoreUnavailable => "store_unavailable",
        }
    }
}

/// A store operation (the `op` label of `handoff_store_seconds` and
/// `handoff_store_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum StoreOp {
    RefreshTokenInfo,
    RecordMint,
    Consume,
    RevokeLineage,
    LineageSessions,
    SubjectLineages,
    RecordCode,
    TakeCode,
    RecordRefreshToken,
    LinkIdpSession,
    IdpSession,
    PublishRevocation,
    IsLineageRevoked,
    TxHop,
    BindSession,
    SessionByCookie,
    TouchSession,
    MoveSession,
    RevokeSession,
    ExpireRefreshToken,
    RememberOnce,
    ForgetOnce,
    HoldWithheld,
    WithheldTokens,
    DropWithheld,
    ScheduleWithheld,
    ClaimWithheldDue,
    Ping,
}

impl StoreOp {
    /// The metric label (the `Store` method's name; `consume` for the STT consume).
    pub fn label(self) -> &'static str {
        match self {
            StoreOp::RefreshTokenInfo => "refresh_token_info",
            StoreOp::RecordMint => "record_mint",
            StoreOp::Consume => "consume",
            StoreOp::RevokeLineage => "revoke_lineage",
            StoreOp::LineageSessions => "lineage_sessions",
            StoreOp::SubjectLineages => "subject_lineages",
            StoreOp::RecordCode => "record_code",
            StoreOp::TakeCode => "take_code",
            StoreOp::RecordRefreshToken => "record_refresh_token",
            StoreOp::LinkIdpSession => "link_idp_session",
            StoreOp::IdpSession => "idp_session",
            StoreOp::PublishRevocation => "publish_revocation",
            StoreOp::IsLineageRevoked => "is_lineage_revoked",
            StoreOp::TxHop => "tx_hop",
            StoreOp::BindSession => "bind_session",
            StoreOp::SessionByCookie => "session_by_cookie",
            StoreOp::TouchSession => "touch_session",
            StoreOp::MoveSession => "move_session",
            StoreOp::RevokeSession => "revoke_session",
            StoreOp::ExpireRefreshToken => "expire_refresh_token",
            StoreOp::RememberOnce => "remember_once",
            StoreOp::ForgetOnce => "forget_once",
            StoreOp::HoldWithheld => "hold_withheld",
            StoreOp::WithheldTokens => "withheld_tokens",
            StoreOp::DropWithheld => "drop_withheld",
            StoreOp::ScheduleWithheld => "schedule_withheld",
            StoreOp::ClaimWithheldDue => "claim_withheld_due",
            StoreOp::Ping => "ping",
        }
    }
}
