//! Event streams, relayed byte for byte beside pingora's HTTP proxy. An idle stream is
//! most of what a balancer holds, for hours, and pingora keeps its whole per-request
//! state (the request's futures, header buffers and maps: about 47 KiB) with every one.
//! The relay keeps a socket each way, a small task, and no buffer while nothing moves.
//!
//! It does for a stream what the proxy does for one: per-address rate limits, 503 with
//! `Retry-After` when no server can take it, the least-loaded server, a connect that
//! fails tried on another, the client's address in [`CLIENT_HEADER`] (whatever the
//! client put there dropped), a client that takes nothing within the stall limit cut,
//! a server that says nothing for [`STREAM_READ_TIMEOUT`] let go, and the server's
//! socket kept so that a server taken out of rotation cuts its streams.
//!
//! Once the request is passed on, nothing more from the client is: an event stream's
//! client only listens, and a byte it sends ends the stream (so that no second request
//! can ride the connection to the server without the balancer reading it).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastchat_protocol::problem::ErrorCode;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};

use crate::limits::{Class, RateLimits};
use crate::metrics::Metrics;
use crate::pool::{Backend, Load, Pool};
use crate::problem;
use crate::proxy::{CLIENT_HEADER, CONNECT_TIMEOUT, RETRY_UNAVAILABLE, STREAM_READ_TIMEOUT};

/// What an event stream's request begins with, up to the byte after its path.
pub const STREAM_REQUEST: &[u8] = b"GET /v1/events";

/// The largest request head taken.
const HEAD_LIMIT: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// How long a client may take to send its request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused client's further bytes are read before its connection closes.
const LINGER: Duration = Duration::from_secs(2);
/// What is read from the server at a time, while it has something to send.
const CHUNK: usize = 16 * 1024;

/// Headers that are the connection's own, not the request's: the relay sets them.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
];

/// Whether a request's first bytes (at least [`STREAM_REQUEST`]'s length and one more)
/// ask for an event stream: `GET /v1/events`, then its query or the end of its path.
pub fn is_stream_request(first: &[u8]) -> bool {
    first.len() > STREAM_REQUEST.len()
        && first.starts_with(STREAM_REQUEST)
        && matches!(first[STREAM_REQUEST.len()], b' ' | b'?')
}

pub struct Relay {
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<RateLimits>,
    /// How long a stream's client may take nothing.
    pub stream_stall: Duration,
}

/// Why a request's head was not taken.
#[derive(Debug)]
enum HeadError {
    /// The client left, or sent nothing in time: there is no one to answer.
    Gone,
    /// Answered with 400 and this detail.
    Bad(&'static str),
}

/// An event stream's hold on its server, released however the relay ends.
struct Held {
    backend: Arc<Backend>,
    socket_key: Option<u64>,
    /// The status the server answered with, once its first bytes are in (0 until then:
    /// a stream the server never answered is not counted as a request it served).
    status: u16,
    metrics: Arc<Metrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(key) = self.socket_key.take() {
            self.backend.stream_ended(key);
        }
        self.backend.end(Load::Stream);
        if self.status == 0 {
            return;
        }
        let backend = self.backend.addr.to_string();
        let status = self.status.to_string();
        self.metrics
            .requests
            .with_label_values(&[backend.as_str(), status.as_str()])
            .inc();
    }
}

impl Relay {
    /// Serves one event stream's request from `client`, to its end.
    pub async fn serve(&self, mut client: Stream, shutdown: ShutdownWatch) {
        let request = match read_head(&mut client).await {
            Ok(request) => request,
            Err(HeadError::Gone) => return,
            Err(HeadError::Bad(why)) => {
                // As the proxy answers a request it cannot read: a bare 400.
                tracing::debug!(why, "an event stream's request refused");
                let answer =
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                self.answer_and_close(&mut client, answer).await;
                return;
            }
        };
        let client_ip = client
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(SocketAddr::ip));
        if let Some(ip) = client_ip {
            if let Err(wait) = self.limits.take(Class::Any, ip, Instant::now()) {
                let detail = "too many requests from this address";
                let class = Class::Any.as_str();
                self.refuse(
                    &mut client,
                    ErrorCode::RateLimited,
                    detail,
                    Some(wait),
                    class,
                )
                .await;
                return;
            }
        }
        let head = upstream_head(&request, client_ip);
        let (mut held, upstream) = match self.connect(&head).await {
            Ok(connected) => connected,
            Err(unconnected) => {
                let (reason, detail) = match unconnected {
                    Unconnected::NoServer => ("no_server", "no FastChat api server is available"),
                    Unconnected::Here => {
                        ("busy", "the FastChat balancer can take no more connections")
                    }
                };
                let retry = Some(RETRY_UNAVAILABLE);
                self.refuse(&mut client, ErrorCode::Unavailable, detail, retry, reason)
                    .await;
                return;
            }
        };
        self.carry(&mut held, &upstream, &mut client, shutdown)
            .await;
    }

    /// Answers the client with a problem of the balancer's own, and counts it.
    async fn refuse(
        &self,
        client: &mut Stream,
        code: ErrorCode,
        detail: &str,
        retry_after: Option<Duration>,
        reason: &str,
    ) {
        self.metrics.refused.with_label_values(&[reason]).inc();
        let answer = problem::response_bytes(code, detail, retry_after);
        self.answer_and_close(client, &answer).await;
    }

    /// Writes `answer`, then closes the connection the way that lets it arrive: the
    /// sending side first, then what the client still sends read and dropped for a
    /// moment (closing a socket with unread bytes resets it, and a reset can take the
    /// answer with it).
    async fn answer_and_close(&self, client: &mut Stream, answer: &[u8]) {
        let written = async {
            client.write_all(answer).await?;
            client.flush().await?;
            client.shutdown().await
        };
        if self.within_stall(written).await.is_err() {
            return;
        }
        let drained = async {
            let mut sink = [0u8; 1024];
            let mut left = HEAD_LIMIT;
            while left > 0 {
                match client.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drained).await;
    }

    /// Connects to the least-loaded server that takes the connection and passes the
    /// request on; a server that cannot be reached is taken out and another tried.
    async fn connect(&self, head: &[u8]) -> Result<(Held, TcpStream), Unconnected> {
        let mut tried = Vec::new();
        loop {
            let backend = self
                .pool
                .pick(Load::Stream, &tried)
                .ok_or(Unconnected::NoServer)?;
            let mut held = Held {
                backend,
                socket_key: None,
                status: 0,
                metrics: Arc::clone(&self.metrics),
            };
            let addr = held.backend.addr;
            match open(addr, head).await {
                Ok(upstream) => {
                    match upstream.as_fd().try_clone_to_owned() {
                        Ok(socket) => held.socket_key = Some(held.backend.stream_opened(socket)),
                        Err(e) => tracing::warn!(error = %e, "keeping a stream's socket to cut"),
                    }
                    return Ok((held, upstream));
                }
                Err(Failure::Here(e)) => {
                    // No fault of the server's (out of descriptors or local ports): its
                    // streams must not be cut.
                    tracing::warn!(backend = %addr, error = %e, "cannot make a connection here");
                    return Err(Unconnected::Here);
                }
                Err(Failure::Server(e)) => {
                    tried.push(addr);
                    if held.backend.mark_down() {
                        tracing::warn!(backend = %addr, error = %e, "cannot connect; taken out");
                    }
                    self.metrics
                        .errors
                        .with_label_values(&[addr.to_string().as_str()])
                        .inc();
                }
            }
        }
    }

    /// Moves the server's answer to the client until either side ends, the client
    /// stalls, the server falls silent, or the balancer shuts down.
    async fn carry(
        &self,
        held: &mut Held,
        upstream: &TcpStream,
        client: &mut Stream,
        mut shutdown: ShutdownWatch,
    ) {
        // Only to see the client leave: it has nothing to send.
        let mut probe = [0u8; 1];
        loop {
            let ready = tokio::select! {
                ready = tokio::time::timeout(STREAM_READ_TIMEOUT, upstream.readable()) => ready,
                _ = client.read(&mut probe) => return,
                _ = shutting_down(&mut shutdown) => return,
            };
            match ready {
                Ok(Ok(())) => {}
                // Silent past its keep-alives, or broken.
                Ok(Err(_)) | Err(_) => return,
            }
            match self.forward(held, upstream, client).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }

    /// Writes to the client all the server has sent so far; false once the server has
    /// closed. The buffer lives only while there is something to move.
    async fn forward(
        &self,
        held: &mut Held,
        upstream: &TcpStream,
        client: &mut Stream,
    ) -> io::Result<bool> {
        // Read into spare capacity: nothing to zero first.
        let mut buffer = BytesMut::with_capacity(CHUNK);
        let socket = socket2::SockRef::from(upstream);
        let mut open = true;
        loop {
            buffer.clear();
            let read = upstream.try_io(Interest::READABLE, || {
                let spare = buffer.spare_capacity_mut();
                let room = spare.len();
                let n = socket.recv(spare)?;
                // SAFETY: `recv` initialised the first `n` bytes of the spare capacity,
                // and the buffer was empty.
                unsafe { buffer.set_len(n) };
                // A read that left room emptied the socket: saying so clears its
                // readiness without a second read to learn it (those were a third of
                // the relay's system calls). Whatever arrives after the read is
                // announced anew, so nothing waits unseen.
                if n > 0 && n < room {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                }
            });
            let drained = match read {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(_) => false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) => return Err(e),
            };
            if !buffer.is_empty() {
                if held.status == 0 {
                    held.status = status_of(&buffer);
                    held.backend.answered();
                }
                self.within_stall(client.write_all(&buffer)).await?;
            }
            if drained {
                break;
            }
        }
        self.within_stall(client.flush()).await?;
        Ok(open)
    }

    /// A write to the client, cut when the client takes nothing for the stall limit.
    async fn within_stall(
        &self,
        write: impl std::future::Future<Output = io::Result<()>>,
    ) -> io::Result<()> {
        tokio::time::timeout(self.stream_stall, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client takes nothing"))?
    }
}

/// Resolves when the balancer begins to shut down (never, if it cannot tell).
async fn shutting_down(shutdown: &mut ShutdownWatch) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Why a stream was not carried to any server.
enum Unconnected {
    /// None in rotation, or every one tried failed.
    NoServer,
    /// This balancer could not make a connection.
    Here,
}

/// Why a server was not reached.
enum Failure {
    /// This balancer could not make the socket.
    Here(io::Error),
    /// The server did not take the connection or the request.
    Server(io::Error),
}

/// Connects to `addr` and sends `head`; nothing has reached the server unless this
/// succeeds, so a failure is safe to try elsewhere (and an event stream's request
/// changes nothing anyway).
async fn open(addr: SocketAddr, head: &[u8]) -> Result<TcpStream, Failure> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(Failure::Here)?;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
    let mut upstream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| Failure::Server(timed_out()))?
        .map_err(Failure::Server)?;
    upstream.set_nodelay(true).map_err(Failure::Server)?;
    tokio::time::timeout(CONNECT_TIMEOUT, upstream.write_all(head))
        .await
        .map_err(|_| Failure::Server(timed_out()))?
        .map_err(Failure::Server)?;
    Ok(upstream)
}

/// A request head as the client sent it, parsed.
struct Request {
    path: String,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

/// Reads the request's head, and checks that nothing follows it.
async fn read_head(client: &mut (impl AsyncRead + Unpin)) -> Result<Request, HeadError> {
    let mut bytes = Vec::with_capacity(1024);
    let read = async {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&bytes) {
                Ok(httparse::Status::Complete(len)) => return request_of(&parsed, len, &bytes),
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HeadError::Bad("too many request headers"))
                }
                Err(_) => return Err(HeadError::Bad("a request that is not HTTP/1")),
            }
            if bytes.len() >= HEAD_LIMIT {
                return Err(HeadError::Bad("the request's head is too large"));
            }
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await.map_err(|_| HeadError::Gone)?;
            if n == 0 {
                return Err(HeadError::Gone);
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .unwrap_or(Err(HeadError::Gone))
}

fn request_of(
    parsed: &httparse::Request<'_, '_>,
    len: usize,
    bytes: &[u8],
) -> Result<Request, HeadError> {
    if len < bytes.len() {
        return Err(HeadError::Bad("an event stream's request has no body"));
    }
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let empty_body = name == "content-length" && header.value.trim_ascii() == b"0";
        if (name == "content-length" && !empty_body) || name == "transfer-encoding" {
            return Err(HeadError::Bad("an event stream's request has no body"));
        }
        headers.push((name, header.value.to_vec()));
    }
    Ok(Request {
        path: parsed.path.unwrap_or("/").to_owned(),
        minor_version: parsed.version.unwrap_or(1),
        headers,
    })
}

/// The request as the server gets it: the client's headers but the connection's own
/// and [`CLIENT_HEADER`], then the client's address as the balancer saw it, and a
/// connection that closes with the stream (the relay carries one request a connection).
fn upstream_head(request: &Request, client_ip: Option<IpAddr>) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(request.path.as_bytes());
    head.extend_from_slice(format!(" HTTP/1.{}\r\n", request.minor_version).as_bytes());
    for (name, value) in &request.headers {
        if name == CLIENT_HEADER || HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    if let Some(ip) = client_ip {
        head.extend_from_slice(format!("{CLIENT_HEADER}: {ip}\r\n").as_bytes());
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

/// The status of a response that begins with `bytes` (0 if they are not a status line).
fn status_of(bytes: &[u8]) -> u16 {
    bytes
        .get(9..12)
        .filter(|_| bytes.starts_with(b"HTTP/1."))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head_of(bytes: &[u8]) -> Result<Request, HeadError> {
        read_head(&mut &bytes[..]).await
    }

    #[test]
    fn only_event_stream_requests_are_taken() {
        assert!(is_stream_request(b"GET /v1/events HTTP/1.1"));
        assert!(is_stream_request(b"GET /v1/events?after=3 HTTP/1.1"));
        assert!(!is_stream_request(b"GET /v1/eventsx HTTP/1.1"));
        assert!(!is_stream_request(b"GET /v1/events/1 HTTP/1.1"));
        assert!(!is_stream_request(b"POST /v1/events HTTP/1.1"));
        assert!(!is_stream_request(b"GET /v1/events"));
    }

    #[tokio::test]
    async fn the_server_gets_the_clients_address_and_never_the_one_it_claims() {
        let request = head_of(
            b"GET /v1/events HTTP/1.1\r\nHost: chat\r\nAuthorization: Bearer t\r\n\
              X-FastChat-Client: 6.6.6.6\r\nConnection: keep-alive\r\nLast-Event-ID: 7\r\n\r\n",
        )
        .await
        .expect("a head");
        let head = upstream_head(&request, Some(IpAddr::from([10, 0, 0, 9])));
        let text = String::from_utf8(head).expect("text");
        assert_eq!(
            text,
            "GET /v1/events HTTP/1.1\r\nhost: chat\r\nauthorization: Bearer t\r\n\
             last-event-id: 7\r\nx-fastchat-client: 10.0.0.9\r\nconnection: close\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_request_with_a_body_or_more_after_it_is_refused() {
        for bad in [
            &b"GET /v1/events HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"GET /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /v1/events HTTP/1.1\r\n\r\nGET /v1/me HTTP/1.1\r\n\r\n",
            b"GET /v1/events HTTP/1.1\r\nbad header\r\n\r\n",
        ] {
            assert!(
                matches!(head_of(bad).await, Err(HeadError::Bad(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            head_of(b"GET /v1/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
                .await
                .is_ok()
        );
        // A client that leaves halfway is not answered.
        assert!(matches!(
            head_of(b"GET /v1/events HTTP/1.1\r\nHost:").await,
            Err(HeadError::Gone)
        ));
    }

    #[test]
    fn the_status_is_read_from_the_first_bytes() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), 200);
        assert_eq!(status_of(b"HTTP/1.1 401 Unauthorized\r\n"), 401);
        assert_eq!(status_of(b"HTTP/1.1 2"), 0);
        assert_eq!(status_of(b"garbage that is long"), 0);
    }
}
