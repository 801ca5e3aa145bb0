//! The admin listener: the balancer's metrics and probes, on an address of its own that
//! clients never reach.

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::pool::Pool;

pub struct Admin {
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request = session.req_header();
        let (status, content_type, body) = match (&request.method, request.uri.path()) {
            (&Method::GET, "/metrics") => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(&self.pool).into_bytes(),
            ),
            // Alive.
            (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            // Able to route: some api server is in rotation.
            (&Method::GET, "/readyz") if self.pool.any_healthy() => {
                (StatusCode::OK, "text/plain", b"ready\n".to_vec())
            }
            (&Method::GET, "/readyz") => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"no api server in rotation\n".to_vec(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        let length = body.len();
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, length)
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
