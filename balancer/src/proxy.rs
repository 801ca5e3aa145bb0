//! The proxy: each request goes to the least-loaded healthy api server; a request that
//! could not even connect is retried on another server (nothing was sent yet); event
//! streams pass through unbuffered, with a read timeout longer than the servers'
//! keep-alive interval.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

use crate::metrics::Metrics;
use crate::pool::{Backend, Load, Pool};

/// Longer than the api servers' 15-second keep-alives on event streams.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Balancer {
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
}

/// Per-request state: the server carrying it, and those that already failed it.
#[derive(Default)]
pub struct Ctx {
    backend: Option<Arc<Backend>>,
    load: Option<Load>,
    tried: Vec<SocketAddr>,
}

impl Ctx {
    fn release(&mut self) {
        if let (Some(backend), Some(load)) = (self.backend.take(), self.load.take()) {
            backend.end(load);
        }
    }
}

fn is_stream(session: &Session) -> bool {
    session.req_header().uri.path() == "/v1/events"
}

#[async_trait]
impl ProxyHttp for Balancer {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    /// `/metrics` is the balancer's own; everything else is proxied.
    async fn request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<bool> {
        if session.req_header().uri.path() != "/metrics" {
            return Ok(false);
        }
        let body = Bytes::from(self.metrics.render(&self.pool));
        let mut header = ResponseHeader::build(200, Some(2))?;
        header.insert_header("content-type", "text/plain; version=0.0.4; charset=utf-8")?;
        header.insert_header("content-length", body.len().to_string())?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.release();
        let load = if is_stream(session) {
            Load::Stream
        } else {
            Load::Request
        };
        let Some(backend) = self.pool.pick(load, &ctx.tried) else {
            self.metrics.errors.with_label_values(&["none"]).inc();
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "no healthy FastChat api server",
            ));
        };
        let mut peer = HttpPeer::new(backend.addr, false, String::new());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.total_connection_timeout = Some(CONNECT_TIMEOUT * 2);
        peer.options.read_timeout = Some(match load {
            Load::Stream => STREAM_READ_TIMEOUT,
            Load::Request => REQUEST_READ_TIMEOUT,
        });
        ctx.backend = Some(backend);
        ctx.load = Some(load);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(backend) = &ctx.backend {
            ctx.tried.push(backend.addr);
            if backend.mark_down() {
                tracing::warn!(backend = %backend.addr, "cannot connect; taken out");
            }
            self.metrics
                .errors
                .with_label_values(&[backend.addr.to_string().as_str()])
                .inc();
        }
        // Nothing reached the server: safe to try another.
        tracing::debug!(%peer, "connect failed; retrying elsewhere");
        e.set_retry(true);
        e
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map_or(0, |r| r.status.as_u16())
            .to_string();
        if let Some(backend) = &ctx.backend {
            let label = backend.addr.to_string();
            self.metrics
                .requests
                .with_label_values(&[label.as_str(), status.as_str()])
                .inc();
            if e.is_some() {
                self.metrics
                    .errors
                    .with_label_values(&[label.as_str()])
                    .inc();
            }
        }
        ctx.release();
    }
}
