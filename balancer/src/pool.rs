//! The api servers and how loaded each is. Load is what the balancer itself counts as
//! requests pass: open event streams (the load that lasts) plus requests in flight. A
//! new request goes to the healthy server with the least load; among equals, the next
//! in turn after the last pick, so ties spread evenly.
//!
//! A server taken out of rotation has its event streams cut, so that their clients
//! reconnect (and resume) on a server that answers.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Instant;

/// Where an api server is: its public address, and the admin listener that answers its
/// health checks (which answers even while the public workers are all busy, and not at
/// all when the process is stopped), if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerAddr {
    pub public: SocketAddr,
    pub admin: Option<SocketAddr>,
}

impl std::str::FromStr for ServerAddr {
    type Err = String;

    /// `host:port`, or `host:port@host:port` naming the admin listener too.
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |part: &str| {
            part.trim()
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse::<SocketAddr>()
                .map_err(|e| format!("{part:?} is not host:port ({e})"))
        };
        match s.split_once('@') {
            Some((public, admin)) => Ok(ServerAddr {
                public: parse(public)?,
                admin: Some(parse(admin)?),
            }),
            None => Ok(ServerAddr {
                public: parse(s)?,
                admin: None,
            }),
        }
    }
}

/// Milliseconds since the balancer started, from 1 (0 is "never"): the clock of
/// [`Backend::last_answer`].
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).map_or(u64::MAX, |ms| ms.saturating_add(1))
}

#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Where its health checks go (its admin listener, else its public address).
    pub probe_addr: SocketAddr,
    /// Named on the command line (kept) or found in the server registry (dropped when
    /// it leaves the registry).
    pub fixed: bool,
    healthy: AtomicBool,
    failures: AtomicU32,
    streams: AtomicI64,
    inflight: AtomicI64,
    /// When it last answered a proxied request ([`now_ms`]): a server that answers
    /// is busy, not stopped, whatever a late health check says.
    last_answer: AtomicU64,
    /// Duplicates of the upstream sockets of its open event streams, to cut them with.
    open_streams: Mutex<HashMap<u64, TcpStream>>,
    next_stream: AtomicU64,
}

/// What a picked request counts as, until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Stream,
    Request,
}

impl Backend {
    pub fn new(addr: ServerAddr, fixed: bool, healthy: bool) -> Arc<Self> {
        Arc::new(Self {
            addr: addr.public,
            probe_addr: addr.admin.unwrap_or(addr.public),
            fixed,
            healthy: AtomicBool::new(healthy),
            failures: AtomicU32::new(0),
            streams: AtomicI64::new(0),
            inflight: AtomicI64::new(0),
            last_answer: AtomicU64::new(0),
            open_streams: Mutex::new(HashMap::new()),
            next_stream: AtomicU64::new(0),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn streams(&self) -> i64 {
        self.streams.load(Ordering::Relaxed)
    }

    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn load(&self) -> i64 {
        self.streams() + self.inflight()
    }

    fn counter(&self, load: Load) -> &AtomicI64 {
        match load {
            Load::Stream => &self.streams,
            Load::Request => &self.inflight,
        }
    }

    pub fn begin(&self, load: Load) {
        self.counter(load).fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self, load: Load) {
        self.counter(load).fetch_sub(1, Ordering::Relaxed);
    }

    /// It answered a proxied request.
    pub fn answered(&self) {
        self.last_answer.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether it answered a proxied request within the last `ms` milliseconds.
    pub fn answered_within(&self, ms: u64) -> bool {
        let last = self.last_answer.load(Ordering::Relaxed);
        last > 0 && now_ms().saturating_sub(last) <= ms
    }

    /// A health check (or a connection) succeeded.
    pub fn mark_up(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        !self.healthy.swap(true, Ordering::Relaxed)
    }

    /// A health check failed; `threshold` failures in a row take it out. Returns true
    /// when this failure did.
    pub fn mark_failure(&self, threshold: u32) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let out = failures >= threshold && self.healthy.swap(false, Ordering::Relaxed);
        if out {
            self.cut_streams();
        }
        out
    }

    /// A connection to it failed outright: out at once.
    pub fn mark_down(&self) -> bool {
        let out = self.healthy.swap(false, Ordering::Relaxed);
        if out {
            self.cut_streams();
        }
        out
    }

    fn stream_sockets(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.open_streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers an event stream's upstream socket (a duplicate of it) until the stream
    /// ends; returns its key for [`Backend::stream_ended`].
    pub fn stream_opened(&self, socket: OwnedFd) -> u64 {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        self.stream_sockets().insert(id, TcpStream::from(socket));
        id
    }

    pub fn stream_ended(&self, id: u64) {
        self.stream_sockets().remove(&id);
    }

    /// Shuts down the upstream side of every open event stream: each ends, and its
    /// client reconnects (through the balancer, to a server that answers).
    pub fn cut_streams(&self) -> usize {
        let sockets: Vec<TcpStream> = self.stream_sockets().drain().map(|(_, s)| s).collect();
        for socket in &sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
        if !sockets.is_empty() {
            tracing::warn!(backend = %self.addr, streams = sockets.len(), "streams cut");
        }
        sockets.len()
    }
}

#[derive(Default)]
pub struct Pool {
    backends: RwLock<Vec<Arc<Backend>>>,
    turn: AtomicUsize,
}

impl Pool {
    pub fn all(&self) -> Vec<Arc<Backend>> {
        self.backends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether any server is in rotation.
    pub fn any_healthy(&self) -> bool {
        self.backends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|b| b.is_healthy())
    }

    /// Adds a server unless it is already known.
    pub fn add(&self, backend: Arc<Backend>) -> bool {
        let mut backends = self.backends.write().unwrap_or_else(|e| e.into_inner());
        if backends.iter().any(|b| b.addr == backend.addr) {
            return false;
        }
        backends.push(backend);
        true
    }

    /// Drops the registered (not fixed) servers for which `keep` says no.
    pub fn retain_registered(&self, keep: impl Fn(&Backend) -> bool) -> Vec<SocketAddr> {
        let mut backends = self.backends.write().unwrap_or_else(|e| e.into_inner());
        let mut removed = Vec::new();
        backends.retain(|b| {
            let kept = b.fixed || keep(b);
            if !kept {
                removed.push(b.addr);
                b.cut_streams();
            }
            kept
        });
        removed
    }

    /// The least-loaded healthy server not in `exclude`, counted as carrying `load`.
    pub fn pick(&self, load: Load, exclude: &[SocketAddr]) -> Option<Arc<Backend>> {
        let backends = self.backends.read().unwrap_or_else(|e| e.into_inner());
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let chosen = (0..n)
            .map(|i| &backends[(start + i) % n])
            .filter(|b| b.is_healthy() && !exclude.contains(&b.addr))
            .min_by_key(|b| b.load())?;
        chosen.begin(load);
        Some(Arc::clone(chosen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn server(port: u16) -> ServerAddr {
        ServerAddr {
            public: addr(port),
            admin: None,
        }
    }

    fn pool(ports: &[u16]) -> Pool {
        let pool = Pool::default();
        for port in ports {
            pool.add(Backend::new(server(*port), true, true));
        }
        pool
    }

    #[test]
    fn server_addresses_name_an_admin_listener_or_not() {
        let plain: ServerAddr = "127.0.0.1:8081".parse().expect("parses");
        assert_eq!(plain, server(8081));
        let both: ServerAddr = "http://127.0.0.1:8081@127.0.0.1:9081"
            .parse()
            .expect("parses");
        assert_eq!(both.admin, Some(addr(9081)));
        assert_eq!(Backend::new(both, true, true).probe_addr, addr(9081));
        assert!("localhost".parse::<ServerAddr>().is_err());
        assert!("127.0.0.1:1@x".parse::<ServerAddr>().is_err());
    }

    #[test]
    fn streams_spread_evenly_and_go_to_the_least_loaded() {
        let pool = pool(&[1, 2, 3]);
        let picked: Vec<_> = (0..30)
            .map(|_| pool.pick(Load::Stream, &[]).expect("a backend"))
            .collect();
        for backend in pool.all() {
            assert_eq!(backend.streams(), 10, "{}", backend.addr);
        }
        // One server's streams end: the next ten all go there.
        for b in picked.iter().filter(|b| b.addr == addr(2)) {
            b.end(Load::Stream);
        }
        for _ in 0..10 {
            assert_eq!(
                pool.pick(Load::Stream, &[]).expect("a backend").addr,
                addr(2)
            );
        }
    }

    #[test]
    fn a_new_server_takes_the_new_load() {
        let pool = pool(&[1, 2]);
        for _ in 0..10 {
            pool.pick(Load::Stream, &[]);
        }
        pool.add(Backend::new(server(3), false, true));
        let picks: Vec<_> = (0..5)
            .map(|_| pool.pick(Load::Request, &[]).expect("b").addr)
            .collect();
        assert!(picks.iter().all(|a| *a == addr(3)), "{picks:?}");
    }

    #[test]
    fn unhealthy_and_excluded_servers_are_skipped() {
        let pool = pool(&[1, 2]);
        let all = pool.all();
        assert!(!all[0].mark_failure(2), "one failure is not enough");
        assert!(all[0].mark_failure(2));
        assert!(pool.any_healthy());
        for _ in 0..5 {
            assert_eq!(pool.pick(Load::Request, &[]).expect("b").addr, addr(2));
        }
        assert!(pool.pick(Load::Request, &[addr(2)]).is_none());
        assert!(all[0].mark_up());
        assert_eq!(
            pool.pick(Load::Request, &[addr(2)]).expect("b").addr,
            addr(1)
        );
        all[0].mark_down();
        all[1].mark_down();
        assert!(!pool.any_healthy());
    }

    #[test]
    fn registered_servers_leave_fixed_ones_stay() {
        let pool = pool(&[1]);
        pool.add(Backend::new(server(2), false, true));
        pool.add(Backend::new(server(3), false, true));
        assert!(
            !pool.add(Backend::new(server(3), false, true)),
            "no duplicates"
        );
        assert_eq!(pool.retain_registered(|b| b.addr == addr(3)), vec![addr(2)]);
        let left: Vec<_> = pool.all().iter().map(|b| b.addr).collect();
        assert_eq!(left, vec![addr(1), addr(3)]);
    }

    #[test]
    fn taking_a_server_out_cuts_its_streams() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connected");
        let (mut accepted, _) = listener.accept().expect("accepted");
        let backend = Backend::new(server(1), true, true);
        backend.stream_opened(OwnedFd::from(client.try_clone().expect("cloned")));
        assert!(backend.mark_down());
        let mut buf = [0u8; 1];
        let read = std::io::Read::read(&mut accepted, &mut buf).expect("read");
        assert_eq!(read, 0, "the other end sees the stream end");
        assert_eq!(backend.cut_streams(), 0, "each is cut once");
    }

    #[test]
    fn a_server_that_answered_lately_is_busy_not_stopped() {
        let backend = Backend::new(server(1), true, true);
        assert!(!backend.answered_within(1000), "never answered");
        backend.answered();
        assert!(backend.answered_within(1000));
    }
}
