//! Event streams whose clients stopped reading. A stream is written only as fast as its
//! client reads: once the socket's buffers are full, actix stops polling the response
//! body, and with it the [`Feed`](crate::live::feed::Feed), so nothing more is read from
//! the inbox for it. A healthy stream is polled at least every keep-alive; one that has
//! not been polled for longer than the stall limit has a client that takes nothing. Its
//! socket is shut down, which ends the connection and frees what it held; the client
//! resumes from its `Last-Event-ID` when it reads again.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Extensions;
use actix_web::web::Bytes;

/// The socket of a connection, as `HttpServer::on_connect` saw it.
#[derive(Clone, Copy)]
pub struct ConnectionFd(RawFd);

/// For `HttpServer::on_connect`: remembers each TCP connection's socket.
pub fn remember_socket(connection: &dyn std::any::Any, data: &mut Extensions) {
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        data.insert(ConnectionFd(tcp.as_raw_fd()));
    }
}

struct Watched {
    /// Milliseconds since the watch started, when the body was last polled.
    last_poll: Arc<AtomicU64>,
    /// A duplicate of the connection's socket, to shut it down with.
    socket: TcpStream,
}

pub struct StallWatch {
    started: Instant,
    next_id: AtomicU64,
    streams: Mutex<HashMap<u64, Watched>>,
}

impl StallWatch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            streams: Mutex::new(HashMap::new()),
        })
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<u64, Watched>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Watches `body`, sent on the connection `fd`, while a handler of that
    /// connection's request runs. Without a socket (not TCP), the body is unwatched.
    pub fn watch<B: MessageBody>(
        self: &Arc<Self>,
        fd: Option<ConnectionFd>,
        body: B,
    ) -> WatchedBody<B> {
        // SAFETY: the handler calling this serves a request of the connection that owns
        // `fd`, so the socket is open while the duplicate is made.
        let socket = fd.and_then(|ConnectionFd(fd)| {
            unsafe { BorrowedFd::borrow_raw(fd) }
                .try_clone_to_owned()
                .ok()
        });
        let watching = socket.map(|socket| {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let last_poll = Arc::new(AtomicU64::new(self.now_ms()));
            self.streams().insert(
                id,
                Watched {
                    last_poll: Arc::clone(&last_poll),
                    socket: TcpStream::from(socket),
                },
            );
            Watching {
                watch: Arc::clone(self),
                id,
                last_poll,
            }
        });
        WatchedBody {
            body: Box::pin(body),
            watching,
        }
    }

    /// Shuts down the sockets of streams not polled for `limit`; returns how many.
    pub fn cut_stalled(&self, limit: Duration) -> usize {
        let now = self.now_ms();
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let mut streams = self.streams();
        let stalled: Vec<u64> = streams
            .iter()
            .filter(|(_, w)| now.saturating_sub(w.last_poll.load(Ordering::Relaxed)) > limit)
            .map(|(id, _)| *id)
            .collect();
        for id in &stalled {
            if let Some(watched) = streams.remove(id) {
                // The connection ends with an error on its next write; its body is
                // dropped then.
                let _ = watched.socket.shutdown(Shutdown::Both);
            }
        }
        stalled.len()
    }

    /// Checks for stalled streams every quarter of `limit`, for as long as the server runs.
    pub async fn run(self: Arc<Self>, limit: Duration) {
        let mut every = tokio::time::interval((limit / 4).max(Duration::from_millis(100)));
        loop {
            every.tick().await;
            let cut = self.cut_stalled(limit);
            if cut > 0 {
                tracing::info!(streams = cut, "streams whose clients stopped reading cut");
            }
        }
    }
}

/// One watched stream's registration; dropping it closes the duplicate socket.
struct Watching {
    watch: Arc<StallWatch>,
    id: u64,
    last_poll: Arc<AtomicU64>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.watch.streams().remove(&self.id);
    }
}

/// A response body that records when it is polled.
pub struct WatchedBody<B> {
    body: Pin<Box<B>>,
    watching: Option<Watching>,
}

impl<B: MessageBody> MessageBody for WatchedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        if let Some(watching) = &self.watching {
            watching
                .last_poll
                .store(watching.watch.now_ms(), Ordering::Relaxed);
        }
        self.body.as_mut().poll_next(cx)
    }
}
