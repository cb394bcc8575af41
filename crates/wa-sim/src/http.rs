//! How a client built for WhatsApp reaches the simulator's CDN.
//!
//! whatsapp-rust builds media URLs as `https://{host}{path}` from the hosts `media_conn`
//! names; the simulator names `127.0.0.1:PORT`, which serves plain HTTP. [`LoopbackMedia`] wraps
//! the client's HTTP client and turns exactly those URLs, and no others, into `http://`: a URL
//! to any other host goes out unchanged, over TLS.

use std::net::SocketAddr;

use async_trait::async_trait;
use wacore::net::{HttpClient, HttpRequest, HttpResponse, StreamingHttpResponse, UploadBody};

/// An [`HttpClient`] that speaks plain HTTP to loopback hosts only.
#[derive(Debug, Clone)]
pub struct LoopbackMedia<C>(pub C);

/// `https://127.0.0.1:PORT/...` (or `[::1]`) as `http://`; anything else unchanged.
pub fn loopback_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback()) {
            return format!("http://{rest}");
        }
    }
    url.to_owned()
}

fn rewrite(mut request: HttpRequest) -> HttpRequest {
    request.url = loopback_url(&request.url);
    request
}

#[async_trait]
impl<C: HttpClient> HttpClient for LoopbackMedia<C> {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        self.0.execute(rewrite(request)).await
    }

    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(&self, request: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        self.0.execute_streaming(rewrite(request))
    }

    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }

    fn execute_upload(&self, request: HttpRequest, body: UploadBody, len: u64) -> anyhow::Result<HttpResponse> {
        self.0.execute_upload(rewrite(request), body, len)
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_url;

    #[test]
    fn only_loopback_hosts_lose_tls() {
        assert_eq!(loopback_url("https://127.0.0.1:4000/v/x.enc?auth=a"), "http://127.0.0.1:4000/v/x.enc?auth=a");
        assert_eq!(loopback_url("https://[::1]:4000/mms/image/t"), "http://[::1]:4000/mms/image/t");
        for kept in [
            "https://mmg.whatsapp.net/v/x.enc",
            "https://127.0.0.1.evil.example:4000/v",
            "https://10.0.0.1:4000/v",
            "http://127.0.0.1:4000/v",
        ] {
            assert_eq!(loopback_url(kept), kept);
        }
    }
}
