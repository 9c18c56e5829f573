//! The baseline: a bare pingora pass-through proxy — the same pingora version,
//! server settings and thread count as handoff, with no logic of its own beyond
//! choosing the upstream. Whatever handoff costs on top of this is handoff's.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::time::Duration;

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // The same peer options handoff's gateway sets.
        let mut peer = HttpPeer::new(self.upstream.as_str(), false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        peer.options.total_connection_timeout = Some(Duration::from_secs(5));
        Ok(Box::new(peer))
    }
}

/// Runs the proxy on `listen` in front of `upstream` with `threads` workers.
pub fn run(listen: &str, upstream: &str, threads: usize) -> ! {
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Bare {
            upstream: upstream.to_string(),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}
