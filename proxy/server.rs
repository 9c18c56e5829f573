//! Assembling pingora services from a [`Handoff`] instance.
//!
//! `main` and the end-to-end tests build the same server through [`build`], so the
//! tests exercise exactly what runs in production.

use crate::admin::AdminApp;
use crate::app::Handoff;
use crate::gateway::Gateway;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;
use std::sync::Arc;

/// Builds the pingora server with handoff's public and admin services.
/// `opt` carries pingora's own command-line options (upgrade, daemon, ...).
pub fn build(h: Arc<Handoff>, opt: Option<Opt>) -> Result<Server, String> {
    let mut conf = ServerConf {
        threads: h.config.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    if let Some(ca) = &h.config.upstream.ca_file {
        conf.ca_file = Some(ca.display().to_string());
    }
    if let Some(o) = &opt {
        if o.upgrade {
            conf.grace_period_seconds = Some(30);
        }
    }
    h.watch_rules();
    crate::withheld::start(&h);
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, Gateway::new(h.clone()));
    for l in &h.config.listeners {
        match &l.tls {
            None => proxy.add_tcp(&l.addr),
            Some(t) => proxy
                .add_tls(
                    &l.addr,
                    &t.cert.display().to_string(),
                    &t.key.display().to_string(),
                )
                .map_err(|e| format!("TLS listener {}: {e}", l.addr))?,
        }
    }
    server.add_service(proxy);

    if let Some(addr) = &h.config.admin.listen {
        let mut admin = Service::new(
            "handoff admin".to_string(),
            HttpServer::new_app(AdminApp::new(h.clone())),
        );
        admin.add_tcp(addr);
        server.add_service(admin);
    }
    Ok(server)
}
