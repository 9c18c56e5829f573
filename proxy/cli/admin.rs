//! `handoff admin ...`: one call to a running handoff's admin listener (address
//! and token from the config).

use super::AdminCmd;
use handoff::config::Config;

/// One call to the admin API; prints the JSON answer; fails on a non-2xx status.
pub fn call(c: &Config, what: &AdminCmd) -> Result<(), String> {
    let addr = c
        .admin
        .listen
        .as_deref()
        .ok_or("the admin listener is disabled in this config")?;
    let (method, path, body) = request(what)?;
    send(c, addr, method, &path, body)
}

/// The method, path and JSON body of a subcommand's call.
fn request(what: &AdminCmd) -> Result<(&'static str, String, String), String> {
    Ok(match what {
        AdminCmd::List { subject } => (
            "GET",
            format!(
                "/sessions?subject={}",
                form_urlencoded::byte_serialize(subject.as_bytes()).collect::<String>()
            ),
            String::new(),
        ),
        AdminCmd::Revoke {
            lineage,
            session,
            subject,
            lineages,
        } => {
            let body = match (lineage, session, subject) {
                (Some(l), Some(s), _) => serde_json::json!({"lineage": l, "session": s}),
                (Some(l), None, _) => serde_json::json!({"lineage": l}),
                (None, _, Some(sub)) => serde_json::json!({"subject": sub, "lineages": lineages}),
                _ => return Err("give --lineage [--session], or --subject".into()),
            };
            ("POST", "/revoke".to_string(), body.to_string())
        }
        AdminCmd::Reload => ("POST", "/rules/reload".to_string(), String::new()),
    })
}

/// Sends one request to the admin listener at `addr`, with the config's token.
fn send(c: &Config, addr: &str, method: &str, path: &str, body: String) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<bytes::Bytes>>();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/json");
        if let Some(t) = &c.admin.token {
            req = req.header("authorization", format!("Bearer {}", t.expose()));
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| format!("admin listener {addr}: timed out"))?
            .map_err(|e| format!("admin listener {addr}: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        println!("{}", String::from_utf8_lossy(&bytes));
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("admin listener answered {status}"))
        }
    })
}
