//! A small HTTP client for tests: no redirect following, no cookie jar (tests look
//! at every hop), and a chosen source address so one test can play two devices
//! (127.0.0.1 and 127.0.0.2 are both loopback on Linux).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use std::net::IpAddr;
use std::sync::Arc;

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers in order (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body as text (lossy).
    pub body: String,
}

impl Resp {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The value a `Set-Cookie` of this response gives `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.all("set-cookie").into_iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    }

    /// The whole `Set-Cookie` line for `name`.
    pub fn set_cookie_line(&self, name: &str) -> Option<&str> {
        self.all("set-cookie")
            .into_iter()
            .find(|c| c.trim_start().starts_with(&format!("{name}=")))
    }
}

/// The client.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    /// Plain HTTP (and HTTPS trusting `ca_pem`, when given) from source address `ip`.
    pub fn new(ip: &str, ca_pem: Option<&str>) -> Client {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(Some(ip.parse::<IpAddr>().unwrap()));
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = ca_pem {
            for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build(conn),
        }
    }

    /// A device at 127.0.0.1.
    pub fn device_a() -> Client {
        Client::new("127.0.0.1", None)
    }

    /// Another device, at 127.0.0.2.
    pub fn device_b() -> Client {
        Client::new("127.0.0.2", None)
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut b = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .inner
            .request(b.body(Full::new(body.into())).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
        self.finish(resp).await
    }

    /// Sends a request with one header given as raw bytes (may be non-UTF-8).
    pub async fn send_raw_header(&self, method: &str, url: &str, name: &str, value: &[u8]) -> Resp {
        let req = http::Request::builder()
            .method(method)
            .uri(url)
            .header(name, http::HeaderValue::from_bytes(value).unwrap())
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.finish(self.inner.request(req).await.unwrap()).await
    }

    async fn finish(&self, resp: http::Response<hyper::body::Incoming>) -> Resp {
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// GET.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.send("GET", url, headers, Bytes::new()).await
    }

    /// POST a form.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = serde_urlencoded::to_string(form).unwrap();
        let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(headers);
        self.send("POST", url, &h, body).await
    }

    /// POST JSON.
    pub async fn post_json(
        &self,
        url: &str,
        v: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.send("POST", url, &h, v.to_string()).await
    }
}
