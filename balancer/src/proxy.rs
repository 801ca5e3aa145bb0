//! The proxy: each request goes to the least-loaded healthy api server; a request that
//! could not even connect is retried on another server (nothing was sent yet). Event
//! streams are the [`crate::relay`]'s; one that comes here (asked for with an absolute
//! URL, or over HTTP/2, which is not offered) passes through unbuffered, with a read
//! timeout longer than the servers' keep-alive interval, and is cut when its server is
//! taken out of rotation.
//!
//! In front of that: per-address rate limits (429), and 503 with `Retry-After` when no
//! server can take the request (none in rotation, or all as busy as they may be). The
//! client's address goes to the api servers in [`CLIENT_HEADER`], overwriting whatever
//! the client sent there.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fastchat_protocol::problem::ErrorCode;
use pingora::http::{Method, RequestHeader};
use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};

use crate::limits::{Class, RateLimits};
use crate::metrics::Metrics;
use crate::pool::{Backend, Load, Pool};
use crate::problem;

/// The header the api servers read the client's address from (they trust it only from
/// the balancer's address).
pub const CLIENT_HEADER: &str = "x-fastchat-client";

/// Longer than the api servers' 15-second keep-alives on event streams.
pub const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// What clients refused for want of a server are told to wait.
pub const RETRY_UNAVAILABLE: Duration = Duration::from_secs(1);

/// Why no server was picked.
const NO_SERVER: ErrorType = ErrorType::Custom("no api server in rotation");
const ALL_BUSY: ErrorType = ErrorType::Custom("every api server is as busy as it may be");

pub struct Balancer {
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<RateLimits>,
    /// Requests one server may have in flight.
    pub max_inflight: i64,
    /// How long a stream's client may take nothing.
    pub stream_stall: Duration,
}

/// Per-request state: the server carrying it, and those that already failed it.
#[derive(Default)]
pub struct Ctx {
    client: Option<IpAddr>,
    backend: Option<Arc<Backend>>,
    load: Option<Load>,
    /// The key of this stream's upstream socket in its backend's list.
    stream: Option<u64>,
    tried: Vec<SocketAddr>,
}

impl Ctx {
    fn release(&mut self) {
        if let (Some(backend), Some(stream)) = (&self.backend, self.stream.take()) {
            backend.stream_ended(stream);
        }
        if let (Some(backend), Some(load)) = (self.backend.take(), self.load.take()) {
            backend.end(load);
        }
    }
}

fn is_stream(session: &Session) -> bool {
    session.req_header().uri.path() == "/v1/events"
}

/// What the request counts against besides requests in general.
fn class_of(request: &RequestHeader) -> Option<Class> {
    match (&request.method, request.uri.path()) {
        (&Method::POST, "/v1/users") => Some(Class::Signup),
        (&Method::POST, "/v1/sessions") => Some(Class::Login),
        _ => None,
    }
}

#[async_trait]
impl ProxyHttp for Balancer {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(ip) = ctx.client {
            let now = Instant::now();
            let classes = std::iter::once(Class::Any).chain(class_of(session.req_header()));
            for class in classes {
                if let Err(wait) = self.limits.take(class, ip, now) {
                    self.metrics
                        .refused
                        .with_label_values(&[class.as_str()])
                        .inc();
                    let detail = format!("too many {}s from this address", class.as_str());
                    problem::respond(session, ErrorCode::RateLimited, &detail, Some(wait)).await?;
                    return Ok(true);
                }
            }
        }
        if !self.pool.any_healthy() {
            self.metrics.refused.with_label_values(&["no_server"]).inc();
            problem::respond(
                session,
                ErrorCode::Unavailable,
                "no FastChat api server is available",
                Some(RETRY_UNAVAILABLE),
            )
            .await?;
            return Ok(true);
        }
        if is_stream(session) {
            // A client that takes nothing for this long is cut; it resumes.
            session.set_write_timeout(Some(self.stream_stall));
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.release();
        let load = if is_stream(session) {
            Load::Stream
        } else {
            Load::Request
        };
        let Some(backend) = self.pool.pick(load, &ctx.tried) else {
            return Err(Error::explain(NO_SERVER, "no healthy FastChat api server"));
        };
        if load == Load::Request && backend.inflight() > self.max_inflight {
            backend.end(load);
            return Err(Error::explain(ALL_BUSY, "every api server is at its limit"));
        }
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

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        match ctx.client {
            Some(ip) => upstream_request.insert_header(CLIENT_HEADER, ip.to_string())?,
            None => {
                upstream_request.remove_header(CLIENT_HEADER);
            }
        }
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: RawFd,
        _digest: Option<&Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(backend), Some(Load::Stream)) = (&ctx.backend, ctx.load) {
            // SAFETY: pingora calls this with the socket it has just connected (or
            // reused) for this request, open for the duration of the call.
            let socket = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
            match socket {
                Ok(socket) => ctx.stream = Some(backend.stream_opened(socket)),
                Err(e) => tracing::warn!(error = %e, "keeping a stream's socket to cut"),
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(backend) = &ctx.backend {
            backend.answered();
        }
        Ok(())
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
            if e.etype() == &ErrorType::InternalError {
                // This balancer could not make a socket (out of descriptors or local
                // ports): no fault of the server's, whose streams must not be cut.
                tracing::warn!(backend = %backend.addr, error = %e, "cannot make a connection here");
            } else if backend.mark_down() {
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

    /// Failures are answered as the api answers: 503 with `Retry-After` when no server
    /// could take or finish the request (a retry with the same `client_id` is safe),
    /// 400 for a request that could not be read; never a bare 500 for want of a server.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let unavailable =
            matches!(e.etype(), &NO_SERVER | &ALL_BUSY) || e.esource() == &ErrorSource::Upstream;
        let code = if session.response_written().is_some() {
            // Part of an answer is out: all that is left is to end it.
            0
        } else if unavailable {
            let (label, detail) = match *e.etype() {
                ALL_BUSY => ("busy", "every FastChat api server is busy"),
                NO_SERVER => ("no_server", "no FastChat api server is available"),
                _ => ("upstream", "the FastChat api server did not answer"),
            };
            self.metrics.refused.with_label_values(&[label]).inc();
            let answered = problem::respond(
                session,
                ErrorCode::Unavailable,
                detail,
                Some(RETRY_UNAVAILABLE),
            )
            .await;
            if answered.is_ok() {
                503
            } else {
                0
            }
        } else if e.esource() == &ErrorSource::Downstream {
            match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => {
                    let _ = session.respond_error(400).await;
                    400
                }
            }
        } else {
            tracing::error!(error = %e, "proxying");
            let _ = session.respond_error(500).await;
            500
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
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
