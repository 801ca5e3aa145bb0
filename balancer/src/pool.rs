//! The api servers and how loaded each is. Load is what the balancer itself counts as
//! requests pass: open event streams (the load that lasts) plus requests in flight. A
//! new request goes to the healthy server with the least load; among equals, the next
//! in turn after the last pick, so ties spread evenly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Named on the command line (kept) or found in the server registry (dropped when
    /// it leaves the registry).
    pub fixed: bool,
    healthy: AtomicBool,
    failures: AtomicU32,
    streams: AtomicI64,
    inflight: AtomicI64,
}

/// What a picked request counts as, until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Stream,
    Request,
}

impl Backend {
    pub fn new(addr: SocketAddr, fixed: bool, healthy: bool) -> Arc<Self> {
        Arc::new(Self {
            addr,
            fixed,
            healthy: AtomicBool::new(healthy),
            failures: AtomicU32::new(0),
            streams: AtomicI64::new(0),
            inflight: AtomicI64::new(0),
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

    /// A health check (or a connection) succeeded.
    pub fn mark_up(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        !self.healthy.swap(true, Ordering::Relaxed)
    }

    /// A health check failed; `threshold` failures in a row take it out. Returns true
    /// when this failure did.
    pub fn mark_failure(&self, threshold: u32) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures >= threshold && self.healthy.swap(false, Ordering::Relaxed)
    }

    /// A connection to it failed outright: out at once.
    pub fn mark_down(&self) -> bool {
        self.healthy.swap(false, Ordering::Relaxed)
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

    /// Adds a server unless it is already known.
    pub fn add(&self, backend: Arc<Backend>) -> bool {
        let mut backends = self.backends.write().unwrap_or_else(|e| e.into_inner());
        if backends.iter().any(|b| b.addr == backend.addr) {
            return false;
        }
        backends.push(backend);
        true
    }

    /// Keeps the fixed servers and the registered ones still in `registered`.
    pub fn retain_registered(&self, registered: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut backends = self.backends.write().unwrap_or_else(|e| e.into_inner());
        let mut removed = Vec::new();
        backends.retain(|b| {
            let keep = b.fixed || registered.contains(&b.addr);
            if !keep {
                removed.push(b.addr);
            }
            keep
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

    fn pool(ports: &[u16]) -> Pool {
        let pool = Pool::default();
        for port in ports {
            pool.add(Backend::new(addr(*port), true, true));
        }
        pool
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
        pool.add(Backend::new(addr(3), false, true));
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
        for _ in 0..5 {
            assert_eq!(pool.pick(Load::Request, &[]).expect("b").addr, addr(2));
        }
        assert!(pool.pick(Load::Request, &[addr(2)]).is_none());
        assert!(all[0].mark_up());
        assert_eq!(
            pool.pick(Load::Request, &[addr(2)]).expect("b").addr,
            addr(1)
        );
    }

    #[test]
    fn registered_servers_leave_fixed_ones_stay() {
        let pool = pool(&[1]);
        pool.add(Backend::new(addr(2), false, true));
        pool.add(Backend::new(addr(3), false, true));
        assert!(
            !pool.add(Backend::new(addr(3), false, true)),
            "no duplicates"
        );
        assert_eq!(pool.retain_registered(&[addr(3)]), vec![addr(2)]);
        let left: Vec<_> = pool.all().iter().map(|b| b.addr).collect();
        assert_eq!(left, vec![addr(1), addr(3)]);
    }
}
