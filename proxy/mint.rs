//! Minting (SPEC §2.1): a native app trades its refresh token for a session
//! transfer token.
//!
//! The request arrives at the IdP's token endpoint, which handoff fronts; what marks
//! it as a mint is `audience = urn:{public host}:session_transfer` ([`classify_audience`]:
//! the host case-insensitively, with or without its port). Any other
//! `urn:*:session_transfer` audience is refused (`invalid_request`), never passed on:
//! an SDK would take the IdP's plain token answer for an STT and put a real access
//! token in a cookie or URL. In order:
//! 0. the source network's rate limit ([`crate::ratelimit`]) → else 429;
//! 1. parse the body (JSON or form) — malformed → `invalid_request`;
//! 2. the client must be a native client allowed to mint → else `unauthorized_client`;
//!    then the client's rate limit → else 429;
//! 3. a refresh token that came out of a transfer session may not mint (no nesting);
//!    its lineage is looked up (or a new one is started) — store down → 503; a known
//!    lineage's rate limit → else 429, before the IdP could rotate the token;
//! 4. the refresh grant goes to the IdP without the special audience: the IdP, not
//!    handoff, decides whether the token is good; rejection → `invalid_grant`;
//! 5. the user is the verified id_token's `sub`, or userinfo's;
//! 6. the STT is minted and recorded (only its hash), and the answer has Auth0's shape,
//!    with the IdP's rotated refresh token passed through.
//!
//! After step 4 the IdP may have rotated the refresh token: from then on, every
//! answer — error or not — carries the new `refresh_token`, because a native app
//! that loses it is logged out.

use crate::app::{Handoff, LINEAGE_TTL};
use crate::secret::{LineageId, Secret, SecretHash, TransferToken};
use crate::store::{MintContext, MintWrite, RefreshKind};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// The `issued_token_type` of an STT (Auth0's).
pub const ISSUED_TOKEN_TYPE: &str = "urn:auth0:params:oauth:token-type:session_transfer_token";

/// Parameters of a token-endpoint request, in order, as strings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenParams(pub Vec<(String, String)>);

impl std::fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values include refresh tokens and client secrets.
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl TokenParams {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order (a body may repeat a parameter; callers that
    /// must not guess which one the IdP reads look at all of them).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Form-encodes every parameter except those in `except`.
    pub fn to_form(&self, except: &[&str]) -> String {
        let kept: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(k, _)| !except.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        serde_urlencoded::to_string(kept).expect("string pairs always encode")
    }
}

/// An OAuth error answer (RFC 6749 §5.2) — never with a token in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// HTTP status.
    pub status: u16,
    /// `error`.
    pub error: &'static str,
    /// `error_description`.
    pub description: String,
}

impl OAuthError {
    /// A 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError {
            status: 400,
            error: "invalid_request",
            description: description.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

/// What a token request's `audience` makes of it (SPEC §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// `urn:{public host}:session_transfer`: a mint.
    Mint,
    /// Some other `urn:*:session_transfer` (another host, or more than one
    /// audience of which one asks for a transfer): refused with `invalid_request`,
    /// never passed to the IdP — an SDK would take the plain token answer for an STT.
    ForeignTransfer,
    /// No session-transfer audience: an ordinary token request, proxied.
    Other,
}

/// True when `audience` asks for a session transfer token: `urn:…:session_transfer`,
/// ASCII case-insensitively and ignoring surrounding whitespace (the dangerous
/// reading: an IdP or SDK might be that lenient).
pub fn is_transfer_audience(audience: &str) -> bool {
    let a = audience.trim().as_bytes();
    let (prefix, suffix) = (b"urn:", b":session_transfer");
    a.len() >= prefix.len() + suffix.len()
        && a[..prefix.len()].eq_ignore_ascii_case(prefix)
        && a[a.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// The forms of `public_host` an SDK may put in the audience: as configured, and
/// without its port (Auth0.swift and Auth0.Android build the audience from the
/// domain, lower-cased, without a port); an IPv6 literal also without brackets.
fn audience_hosts(public_host: &str) -> Vec<&str> {
    let mut out = vec![public_host];
    let bare = if let Some(rest) = public_host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        rest.split_once(']').and_then(|(v6, tail)| {
            (tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port)).then(|| {
                out.push(&public_host[..v6.len() + 2]);
                v6
            })
        })
    } else {
        match public_host.split_once(':') {
            Some((host, port)) if !port.contains(':') && is_port(port) => Some(host),
            _ => None,
        }
    };
    if let Some(b) = bare {
        out.push(b);
    }
    out
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Classifies a token request by its `audience` values against handoff's public
/// host (SPEC §2.1). The host part matches case-insensitively, with or without the
/// configured port; every `audience` value counts (a body that repeats it and asks
/// for a transfer in any of them is not a clean mint); whatever other
/// `urn:*:session_transfer` is asked for is [`Audience::ForeignTransfer`].
pub fn classify_audience(public_host: &str, params: &TokenParams) -> Audience {
    let values: Vec<&str> = params.all("audience").collect();
    if !values.iter().any(|a| is_transfer_audience(a)) {
        return Audience::Other;
    }
    let [only] = values[..] else {
        return Audience::ForeignTransfer;
    };
    // Exact shape (no whitespace), host compared without regard to ASCII case.
    let host = only
        .get(4..only.len().saturating_sub(":session_transfer".len()))
        .filter(|_| only.len() == only.trim().len());
    match host {
        Some(h)
            if audience_hosts(public_host)
                .iter()
                .any(|c| c.eq_ignore_ascii_case(h)) =>
        {
            Audience::Mint
        }
        _ => Audience::ForeignTransfer,
    }
}

/// An object's members in order, duplicates kept (`serde_json::Map` would keep only
/// the last of a repeated key, while the IdP may read the first).
struct JsonMembers(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for JsonMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = JsonMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonMembers, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = map.next_entry::<String, Value>()? {
                    out.push(kv);
                }
                Ok(JsonMembers(out))
            }
        }
        d.deserialize_map(Members)
    }
}

/// Parses a token-endpoint body: `application/json` (an object of strings) or
/// `application/x-www-form-urlencoded`. Repeated parameters are refused (RFC 6749 §3.2).
pub fn parse_token_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenParams, OAuthError> {
    let ct = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    let pairs: Vec<(String, String)> = match ct.as_str() {
        "application/json" => {
            let obj = match serde_json::from_str::<JsonMembers>(text) {
                Ok(m) => m.0,
                Err(_) if serde_json::from_str::<Value>(text).is_ok() => {
                    return Err(OAuthError::invalid_request("the JSON body must be an object"))
                }
                Err(_) => return Err(OAuthError::invalid_request("the body is not valid JSON")),
            };
            let mut out = Vec::with_capacity(obj.len());
            for (k, v) in obj {
                let s = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(OAuthError::invalid_request(format!("parameter {:?} must be a string", k.chars().take(64).collect::<String>()))),
                };
                out.push((k, s));
            }
            out
        }
        "application/x-www-form-urlencoded" | "" => serde_urlencoded::from_str(text)
            .map_err(|_| OAuthError::invalid_request("the body is not valid application/x-www-form-urlencoded"))?,
        other => {
            return Err(OAuthError::invalid_request(format!(
                "unsupported content type {:?}: use application/x-www-form-urlencoded or application/json",
                other.chars().take(64).collect::<String>()
            )))
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.as_str()) {
            return Err(OAuthError::invalid_request(format!(
                "parameter {:?} is repeated",
                k.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(TokenParams(pairs))
}

/// The answer to a mint request: status and JSON body.
#[derive(Debug)]
pub struct MintAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// `Retry-After` in seconds (429 answers).
    pub retry_after: Option<u64>,
}

impl MintAnswer {
    /// The response headers: JSON, never cached, and `Retry-After` when set.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
            ("pragma", "no-cache".to_string()),
        ];
        if let Some(s) = self.retry_after {
            h.push(("retry-after", s.to_string()));
        }
        h
    }

    /// `429 Too Many Requests` for a mint a rate limit refused: `Retry-After` and an
    /// RFC 6749 body with `temporarily_unavailable` — the code RFC 6749 gives "try
    /// again later". Not `invalid_grant`, which SDKs take for a dead refresh token
    /// (and log the user out), not `slow_down` (RFC 8628, device-code polling only).
    /// Auth0.swift and Auth0.Android surface any non-2xx answer as a failed SSO
    /// exchange, so it never looks like success; no `refresh_token` is in it, because
    /// the presented one was neither sent to the IdP nor spent.
    fn rate_limited(l: crate::ratelimit::Limited) -> Self {
        let e = OAuthError {
            status: 429,
            error: "temporarily_unavailable",
            description: format!(
                "too many session transfer requests; retry after {} s",
                l.retry_after_secs
            ),
        };
        MintAnswer {
            status: 429,
            body: e.body(),
            retry_after: Some(l.retry_after_secs),
        }
    }

    fn error(e: OAuthError, rotated: Option<&str>) -> Self {
        let mut body = e.body();
        if let Some(rt) = rotated {
            // The IdP already rotated the native refresh token: hand the new one back
            // even on failure, or the app is logged out.
            body["refresh_token"] = Value::String(rt.to_string());
        }
        MintAnswer {
            status: e.status,
            body,
            retry_after: None,
        }
    }
}

fn rate_limited(
    h: &Handoff,
    l: crate::ratelimit::Limited,
    client_id: Option<&str>,
    client_ip: IpAddr,
) -> MintAnswer {
    h.metrics
        .mint_rate_limited
        .with_label_values(&[l.scope.as_str()])
        .inc();
    tracing::info!(
        scope = l.scope.as_str(),
        client_id,
        %client_ip,
        retry_after = l.retry_after_secs,
        "mint refused: rate limit"
    );
    MintAnswer::rate_limited(l)
}

fn unavailable(what: &str) -> OAuthError {
    OAuthError {
        status: 503,
        error: "temporarily_unavailable",
        description: format!("{what}; try again"),
    }
}

/// Runs a mint for the request `params` from `client_ip` with device `fingerprint`.
pub async fn mint(
    h: &Handoff,
    params: &TokenParams,
    client_ip: IpAddr,
    fingerprint: Option<[u8; 32]>,
) -> MintAnswer {
    let answer = mint_inner(h, params, client_ip, fingerprint).await;
    let outcome = match answer.status {
        200 => "minted",
        429 => "rate_limited",
        503 => "unavailable",
        _ => match answer.body.get("error").and_then(Value::as_str) {
            Some("invalid_grant") => "invalid_grant",
            Some("unauthorized_client") => "unauthorized_client",
            Some("invalid_client") => "invalid_client",
            _ => "invalid_request",
        },
    };
    h.metrics.mints.with_label_values(&[outcome]).inc();
    answer
}

async fn mint_inner(
    h: &Handoff,
    params: &TokenParams,
    client_ip: IpAddr,
    fingerprint: Option<[u8; 32]>,
) -> MintAnswer {
    match mint_steps(h, params, client_ip, fingerprint).await {
        Ok(answer) | Err(answer) => answer,
    }
}

/// The steps of SPEC §2.1 in order; a refusal is the `Err` answer.
async fn mint_steps(
    h: &Handoff,
    params: &TokenParams,
    client_ip: IpAddr,
    fingerprint: Option<[u8; 32]>,
) -> Result<MintAnswer, MintAnswer> {
    // 0. the source network's rate limit, before anything else
    if let Err(l) = h.mint_limits.check_network(client_ip, h.clock.now_ms()) {
        return Err(rate_limited(h, l, None, client_ip));
    }
    // 1. shape
    let MintRequest {
        client_id,
        refresh_token,
    } = validate_request(h, params, client_ip)?;
    // 2. policy, then the client's rate limit
    let grant = client_policy(h, client_id, client_ip)?;
    // 3. lineage and nesting
    let presented = refresh_token.hash();
    let lineage = lineage_of(h, &presented, client_id, client_ip).await?;
    // 4. the IdP decides whether the refresh token is good
    let refreshed = refresh_at_idp(h, params, client_id, client_ip).await?;
    // 5. who is the user
    let sub = verify_user(h, &refreshed, client_id).await?;
    // 6. mint and record
    let now = h.clock.now_secs();
    let exp = now + grant.ttl.as_secs();
    let stt = TransferToken::generate(&lineage, exp);
    let ctx = MintContext {
        sub,
        native_client_id: client_id.to_string(),
        lineage: lineage.clone(),
        scope: refreshed
            .scope()
            .or(params.get("scope"))
            .unwrap_or("")
            .to_string(),
        ip: client_ip,
        asn: grant.asn,
        fingerprint: fingerprint.map(|f| crate::secret::hex(&f)),
        iat: now,
        exp,
    };
    record(h, &stt, &ctx, presented, &refreshed).await?;
    tracing::info!(token = %stt, %lineage, client_id, %client_ip, expires_in = grant.ttl.as_secs(), "session transfer token minted");
    Ok(answer(&stt, grant.ttl, &refreshed))
}

/// What step 1 takes from a mint request's body.
struct MintRequest<'a> {
    client_id: &'a str,
    refresh_token: Secret,
}

/// Step 1: a mint for this host, a refresh grant, a `client_id` and a
/// `refresh_token` → else `invalid_request`.
fn validate_request<'a>(
    h: &Handoff,
    params: &'a TokenParams,
    client_ip: IpAddr,
) -> Result<MintRequest<'a>, MintAnswer> {
    let invalid = |d: &str| MintAnswer::error(OAuthError::invalid_request(d), None);
    if classify_audience(&h.config.public_host, params) != Audience::Mint {
        tracing::warn!(%client_ip, "mint refused: a session transfer audience for another host");
        return Err(invalid(
            "this audience asks for a session transfer token of another host; use urn:{this host}:session_transfer",
        ));
    }
    if params.get("grant_type") != Some("refresh_token") {
        return Err(invalid(
            "a session transfer token is minted with grant_type=refresh_token",
        ));
    }
    let Some(client_id) = params
        .get("client_id")
        .filter(|c| !c.is_empty() && c.len() <= 256)
    else {
        return Err(invalid("client_id is required"));
    };
    let Some(refresh_token) = params
        .get("refresh_token")
        .filter(|t| !t.is_empty() && t.len() <= 4096)
        .map(Secret::new)
    else {
        return Err(invalid("refresh_token is required"));
    };
    Ok(MintRequest {
        client_id,
        refresh_token,
    })
}

/// What the rules give a client that may mint.
struct Grant {
    /// The STT's lifetime.
    ttl: std::time::Duration,
    /// The source network's ASN, recorded for the redemption's binding.
    asn: Option<u32>,
}

/// Step 2: a native client allowed to mint from here → else `unauthorized_client`;
/// then the client's rate limit → else 429.
fn client_policy(h: &Handoff, client_id: &str, client_ip: IpAddr) -> Result<Grant, MintAnswer> {
    let grant = {
        let policy = h.policy.load();
        match policy.native_client(client_id) {
            Some(n) if policy.may_mint(client_id, client_ip) => Grant {
                ttl: n.transfer_token_ttl,
                asn: policy.asn_of(client_ip),
            },
            _ => {
                tracing::info!(
                    client_id,
                    "mint refused: client may not create session transfer tokens"
                );
                return Err(MintAnswer::error(
                    OAuthError {
                        status: 400,
                        error: "unauthorized_client",
                        description: "this client may not create session transfer tokens".into(),
                    },
                    None,
                ));
            }
        }
    };
    if let Err(l) = h.mint_limits.check_client(client_id, h.clock.now_ms()) {
        return Err(rate_limited(h, l, Some(client_id), client_ip));
    }
    Ok(grant)
}

/// Step 3: the presented refresh token's lineage, or a new one. One that came out of
/// a transfer session may not mint (no nesting); a known lineage's rate limit is
/// checked here.
async fn lineage_of(
    h: &Handoff,
    presented: &SecretHash,
    client_id: &str,
    client_ip: IpAddr,
) -> Result<LineageId, MintAnswer> {
    match h.store.refresh_token_info(presented).await {
        Err(e) => {
            tracing::warn!(error = %e, "mint: store unavailable");
            Err(MintAnswer::error(
                unavailable("the session store is unavailable"),
                None,
            ))
        }
        Ok(Some(info)) if info.kind == RefreshKind::Web => {
            tracing::warn!(client_id, lineage = %info.lineage, "mint refused: refresh token came from a session transfer");
            Err(MintAnswer::error(
                OAuthError {
                    status: 400,
                    error: "unauthorized_client",
                    description: "a refresh token from a session transfer cannot mint another"
                        .into(),
                },
                None,
            ))
        }
        Ok(Some(info)) => {
            // Before the IdP is asked (and may rotate): a refused mint leaves the
            // presented refresh token as good as it was.
            if let Err(l) = h
                .mint_limits
                .check_lineage(&info.lineage.to_string(), h.clock.now_ms())
            {
                return Err(rate_limited(h, l, Some(client_id), client_ip));
            }
            Ok(info.lineage)
        }
        Ok(None) => Ok(LineageId::generate()),
    }
}

/// The IdP's answer to the refresh grant.
struct Refreshed {
    /// The token response, a JSON object.
    body: Map<String, Value>,
    /// The rotated refresh token, if the IdP rotated it.
    rotated: Option<Secret>,
}

impl Refreshed {
    fn rotated_text(&self) -> Option<&str> {
        self.rotated.as_ref().map(|s| s.expose())
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }

    fn id_token(&self) -> Option<&str> {
        self.field("id_token")
    }

    fn scope(&self) -> Option<&str> {
        self.field("scope")
    }
}

/// Step 4: the refresh grant, without the special audience, to the IdP; a
/// rejection → `invalid_grant` (or the IdP's own client error).
async fn refresh_at_idp(
    h: &Handoff,
    params: &TokenParams,
    client_id: &str,
    client_ip: IpAddr,
) -> Result<Refreshed, MintAnswer> {
    let form = params.to_form(&["audience"]);
    let upstream = h
        .idp
        .send(
            http::Method::POST,
            &h.config.paths.token,
            &[
                ("content-type", "application/x-www-form-urlencoded".into()),
                ("accept", "application/json".into()),
                ("x-forwarded-for", client_ip.to_string()),
            ],
            Bytes::from(form),
        )
        .await;
    let resp = match upstream {
        Err(e) => {
            tracing::warn!(error = %e, "mint: identity provider unavailable");
            return Err(MintAnswer::error(
                unavailable("the identity provider is unavailable"),
                None,
            ));
        }
        Ok(r) => r,
    };
    let body: Option<Map<String, Value>> = serde_json::from_slice(&resp.body).ok();
    if resp.status != 200 {
        return Err(idp_rejected(client_id, resp.status, body.as_ref()));
    }
    let Some(body) = body else {
        tracing::error!("mint: the identity provider's token response is not a JSON object");
        return Err(MintAnswer::error(
            unavailable("the identity provider answered unexpectedly"),
            None,
        ));
    };
    let rotated = body
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    Ok(Refreshed { body, rotated })
}

/// The answer when the IdP refused the refresh grant with `status`.
fn idp_rejected(client_id: &str, status: u16, body: Option<&Map<String, Value>>) -> MintAnswer {
    let idp_error = body
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("");
    tracing::info!(
        client_id,
        status,
        idp_error,
        "mint: identity provider rejected the refresh grant"
    );
    let (status, error) = match idp_error {
        "invalid_client" => (401, "invalid_client"),
        "invalid_scope" => (400, "invalid_scope"),
        "unauthorized_client" => (400, "unauthorized_client"),
        _ => (400, "invalid_grant"),
    };
    MintAnswer::error(
        OAuthError {
            status,
            error,
            description: "the identity provider rejected the refresh token".into(),
        },
        None,
    )
}

/// Step 5: the user is the verified id_token's `sub`, or userinfo's.
async fn verify_user(
    h: &Handoff,
    refreshed: &Refreshed,
    client_id: &str,
) -> Result<String, MintAnswer> {
    let sub = match (refreshed.id_token(), refreshed.field("access_token")) {
        (Some(t), _) => h.idp.id_token_subject(t, client_id).await,
        (None, Some(at)) => h.idp.userinfo_subject(at).await,
        (None, None) => Err(crate::idp::IdpError::Invalid(
            "neither id_token nor access_token".into(),
        )),
    };
    sub.map_err(|e| {
        tracing::error!(error = %e, client_id, "mint: cannot establish the user");
        MintAnswer::error(
            unavailable("the user could not be verified"),
            refreshed.rotated_text(),
        )
    })
}

/// Step 6: records the STT (only its hash) and both refresh tokens' mapping to the
/// lineage, unless the lineage is revoked; a rotated-out token's mapping is shortened.
async fn record(
    h: &Handoff,
    stt: &TransferToken,
    ctx: &MintContext,
    presented: SecretHash,
    refreshed: &Refreshed,
) -> Result<(), MintAnswer> {
    let rotated_text = refreshed.rotated_text();
    let mut refresh_hashes = vec![presented];
    if let Some(r) = &refreshed.rotated {
        refresh_hashes.push(r.hash());
    }
    match h
        .store
        .record_mint(stt.hash(), ctx, &refresh_hashes, LINEAGE_TTL)
        .await
    {
        Err(e) => {
            tracing::warn!(error = %e, "mint: store unavailable");
            return Err(MintAnswer::error(
                unavailable("the session store is unavailable"),
                rotated_text,
            ));
        }
        Ok(MintWrite::LineageRevoked) => {
            tracing::warn!(lineage = %ctx.lineage, client_id = ctx.native_client_id.as_str(), "mint refused: lineage revoked");
            return Err(MintAnswer::error(
                OAuthError {
                    status: 400,
                    error: "invalid_grant",
                    description: "the refresh token has been revoked".into(),
                },
                rotated_text,
            ));
        }
        Ok(MintWrite::Stored) => {}
    }
    if refreshed
        .rotated
        .as_ref()
        .is_some_and(|r| r.hash() != presented)
    {
        // Rotated out: its mapping need not outlive the rotation for long.
        if let Err(e) = h
            .store
            .expire_refresh_token(&presented, crate::store::ROTATED_REFRESH_TTL)
            .await
        {
            tracing::warn!(error = %e, "mint: could not shorten the rotated-out refresh token's mapping");
        }
    }
    Ok(())
}

/// The answer: Auth0's shape, with the IdP's rotated refresh token and id_token.
fn answer(stt: &TransferToken, ttl: std::time::Duration, refreshed: &Refreshed) -> MintAnswer {
    let mut out = json!({
        "access_token": stt.expose(),
        "issued_token_type": ISSUED_TOKEN_TYPE,
        "token_type": "N_A",
        "expires_in": ttl.as_secs(),
    });
    if let Some(r) = refreshed.rotated_text() {
        out["refresh_token"] = Value::String(r.to_string());
    }
    if let Some(t) = refreshed.id_token() {
        out["id_token"] = Value::String(t.to_string());
    }
    MintAnswer {
        status: 200,
        body: out,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_or_fail_clearly() {
        let p = parse_token_body(
            Some("application/json"),
            br#"{"grant_type":"refresh_token","client_id":"a","n":1}"#,
        )
        .unwrap();
        assert_eq!(p.get("client_id"), Some("a"));
        assert_eq!(p.get("n"), Some("1"));
        let p = parse_token_body(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"a=1&b=x%20y",
        )
        .unwrap();
        assert_eq!(p.get("b"), Some("x y"));
        for (ct, body) in [
            (Some("application/json"), &b"{"[..]),
            (Some("application/json"), b"[1]"),
            (Some("application/json"), br#"{"a":{"b":1}}"#),
            (Some("application/x-www-form-urlencoded"), b"\xff\xfe"),
            (Some("application/x-www-form-urlencoded"), b"a=1&a=2"),
            (Some("text/plain"), b"a=1"),
        ] {
            let e = parse_token_body(ct, body).unwrap_err();
            assert_eq!(e.error, "invalid_request");
        }
    }

    fn aud(values: &[&str]) -> TokenParams {
        TokenParams(
            values
                .iter()
                .map(|v| ("audience".to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_mint_audience_matches_as_the_sdks_build_it() {
        for (host, audience) in [
            (
                "login.example.com",
                "urn:login.example.com:session_transfer",
            ),
            (
                "login.example.com",
                "urn:Login.EXAMPLE.com:session_transfer",
            ),
            (
                "login.example.com",
                "URN:login.example.com:SESSION_TRANSFER",
            ),
            (
                "login.example.com:8443",
                "urn:login.example.com:8443:session_transfer",
            ),
            (
                "login.example.com:8443",
                "urn:LOGIN.example.com:session_transfer",
            ),
            ("127.0.0.1:8080", "urn:127.0.0.1:session_transfer"),
            ("[::1]:8443", "urn:[::1]:8443:session_transfer"),
            ("[::1]:8443", "urn:[::1]:session_transfer"),
            ("[::1]:8443", "urn:::1:session_transfer"),
            ("[2001:DB8::1]", "urn:[2001:db8::1]:session_transfer"),
        ] {
            assert_eq!(
                classify_audience(host, &aud(&[audience])),
                Audience::Mint,
                "{host} {audience}"
            );
        }
    }

    #[test]
    fn any_other_transfer_audience_is_foreign() {
        for (host, values) in [
            (
                "login.example.com",
                &["urn:evil.example:session_transfer"][..],
            ),
            ("login.example.com", &["URN:EVIL.EXAMPLE:SESSION_TRANSFER"]),
            ("login.example.com", &["urn::session_transfer"]),
            (
                "login.example.com",
                &["urn:login.example.com.evil:session_transfer"],
            ),
            (
                "login.example.com",
                &["urn:login.example.com:443:session_transfer"],
            ),
            (
                "login.example.com",
                &[" urn:login.example.com:session_transfer"],
            ),
            (
                "login.example.com",
                &["urn:login.example.com:session_transfer\n"],
            ),
            (
                "login.example.com:8443",
                &["urn:login.example.com:9443:session_transfer"],
            ),
            ("[::1]:8443", &["urn:[::2]:8443:session_transfer"]),
            ("[::1]:8443", &["urn:::1:8443:session_transfer"]),
            // Repeated: ours and another, or ours twice — which does the IdP read?
            (
                "login.example.com",
                &[
                    "urn:login.example.com:session_transfer",
                    "https://api.example",
                ],
            ),
            (
                "login.example.com",
                &[
                    "https://api.example",
                    "urn:login.example.com:session_transfer",
                ],
            ),
            (
                "login.example.com",
                &[
                    "urn:login.example.com:session_transfer",
                    "urn:login.example.com:session_transfer",
                ],
            ),
            (
                "login.example.com",
                &[
                    "urn:evil:session_transfer",
                    "urn:login.example.com:session_transfer",
                ],
            ),
        ] {
            assert_eq!(
                classify_audience(host, &aud(values)),
                Audience::ForeignTransfer,
                "{host} {values:?}"
            );
        }
    }

    #[test]
    fn ordinary_audiences_pass() {
        for values in [
            &[][..],
            &["https://api.example"],
            &["urn:login.example.com:session_transfer_token"],
            &["urn:login.example.com:session"],
            &["session_transfer"],
            &["https://api.example", "https://other.example"],
        ] {
            assert_eq!(
                classify_audience("login.example.com", &aud(values)),
                Audience::Other,
                "{values:?}"
            );
        }
        // Only the `audience` parameter counts.
        let p = TokenParams(vec![(
            "resource".into(),
            "urn:evil:session_transfer".into(),
        )]);
        assert_eq!(classify_audience("h", &p), Audience::Other);
    }

    #[test]
    fn json_bodies_cannot_hide_a_second_audience() {
        // serde_json's Map keeps the last of a repeated key; the IdP may read the
        // first. Refused like a repeated form parameter.
        for body in [
            &br#"{"audience":"urn:evil.example:session_transfer","audience":"https://api"}"#[..],
            br#"{"audience":"https://api","audience":"urn:evil.example:session_transfer"}"#,
            br#"{"audience":["urn:evil.example:session_transfer"]}"#,
            br#"{"audience":{"a":"urn:evil.example:session_transfer"}}"#,
        ] {
            let e = parse_token_body(Some("application/json"), body).unwrap_err();
            assert_eq!(
                e.error,
                "invalid_request",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let e = parse_token_body(Some("application/json"), b"[1]").unwrap_err();
        assert_eq!(e.description, "the JSON body must be an object");
        let e = parse_token_body(Some("application/json"), b"{").unwrap_err();
        assert_eq!(e.description, "the body is not valid JSON");
        let e = parse_token_body(
            Some("application/x-www-form-urlencoded"),
            b"audience=urn%3Aevil%3Asession_transfer&audience=x",
        )
        .unwrap_err();
        assert_eq!(e.error, "invalid_request");
    }

    #[test]
    fn a_rate_limited_answer_is_not_a_success() {
        let a = MintAnswer::rate_limited(crate::ratelimit::Limited {
            scope: crate::ratelimit::Scope::Lineage,
            retry_after_secs: 7,
        });
        assert_eq!(a.status, 429);
        assert_eq!(a.body["error"], "temporarily_unavailable");
        assert!(a.body.get("access_token").is_none());
        assert!(a.body.get("refresh_token").is_none());
        assert!(a.headers().contains(&("retry-after", "7".to_string())));
    }

    #[test]
    fn params_debug_hides_values() {
        let p = TokenParams(vec![("refresh_token".into(), "secret-value".into())]);
        assert!(!format!("{p:?}").contains("secret-value"));
        assert_eq!(p.to_form(&["refresh_token"]), "");
    }
}
