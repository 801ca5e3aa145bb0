//! Background work: active health checks (`GET /healthz`, on each server's admin
//! listener where it has one) and, with a database, the live server set from the
//! registry the api servers heartbeat into. The two run apart, so a registry that is
//! slow or away never holds up the health checks, and the registry alone never takes
//! out a server that answers them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

use crate::metrics::Metrics;
use crate::pool::{Backend, Pool, ServerAddr};

/// Failed checks in a row that take a server out.
const FAILURES_TO_FAIL: u32 = 2;
/// A registered server's heartbeat is fresh while younger than this.
const HEARTBEAT_FRESH_SECS: f64 = 6.0;

pub struct Checker {
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    pub interval: Duration,
    pub timeout: Duration,
    pub database_url: Option<String>,
    /// How long a registry read may take.
    pub registry_timeout: Duration,
}

/// One `GET /healthz`: true for a 200 within the timeout.
/// What a health check found.
#[derive(Debug, PartialEq)]
enum Probe {
    Up,
    Down,
    /// This balancer could not even make the connection (out of descriptors, memory or
    /// local ports): it says nothing of the server.
    NotMade,
}

async fn probe(addr: SocketAddr, timeout: Duration) -> Probe {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: fastchat\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(true)) => Probe::Up,
        Ok(Err(e)) if is_local(&e) => Probe::NotMade,
        _ => Probe::Down,
    }
}

/// Errors of this machine's own making, not the peer's.
fn is_local(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// A row of the registry.
struct Registered {
    addr: ServerAddr,
    fresh: bool,
}

impl Checker {
    async fn check_all(&self) {
        let checks = self.pool.all().into_iter().map(|backend| {
            let timeout = self.timeout;
            async move {
                let found = probe(backend.probe_addr, timeout).await;
                (backend, found)
            }
        });
        let handles: Vec<_> = checks.map(tokio::spawn).collect();
        // A server that answered proxied requests within the last check's time is busy,
        // not stopped: a late probe alone does not take it out.
        let busy_window = u64::try_from((self.interval + self.timeout).as_millis()).unwrap_or(0);
        for handle in handles {
            let Ok((backend, found)) = handle.await else {
                continue;
            };
            if found == Probe::NotMade {
                tracing::warn!(backend = %backend.addr, "cannot make a health check here");
            } else if found == Probe::Up {
                if backend.mark_up() {
                    tracing::info!(backend = %backend.addr, "server is healthy");
                }
            } else if backend.answered_within(busy_window) {
                tracing::debug!(backend = %backend.addr, "late health check from a busy server");
            } else if backend.mark_failure(FAILURES_TO_FAIL) {
                tracing::warn!(backend = %backend.addr, "server failed its health checks; taken out");
            }
        }
        self.metrics.observe(&self.pool);
    }

    async fn read_registry(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Vec<Registered>, String> {
        let query = client.query(
            "SELECT address, admin_address, heartbeat_at > now() - make_interval(secs => $1)
               FROM servers",
            &[&HEARTBEAT_FRESH_SECS],
        );
        let rows = tokio::time::timeout(self.registry_timeout, query)
            .await
            .map_err(|_| format!("no answer within {:?}", self.registry_timeout))?
            .map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let address: String = row.get(0);
                let admin: Option<String> = row.get(1);
                let text = match &admin {
                    Some(admin) => format!("{address}@{admin}"),
                    None => address.clone(),
                };
                match text.parse() {
                    Ok(addr) => Some(Registered {
                        addr,
                        fresh: row.get(2),
                    }),
                    Err(e) => {
                        tracing::warn!(%address, error = %e, "a registered address that is not host:port");
                        None
                    }
                }
            })
            .collect())
    }

    /// Brings the pool in line with the registry: servers with a fresh heartbeat join
    /// (out of rotation until a health check passes); a server leaves when its row is
    /// gone (it deregistered), or when its heartbeat is stale and it fails its checks.
    fn apply_registry(&self, registered: &[Registered]) {
        for server in registered.iter().filter(|s| s.fresh) {
            if self.pool.add(Backend::new(server.addr, false, false)) {
                tracing::info!(backend = %server.addr.public, "server registered");
            }
        }
        let removed = self.pool.retain_registered(|backend| {
            registered
                .iter()
                .find(|s| s.addr.public == backend.addr)
                .is_some_and(|s| s.fresh || backend.is_healthy())
        });
        for addr in removed {
            tracing::info!(backend = %addr, "server left the registry");
        }
    }

    async fn connect(&self, url: &str) -> Option<tokio_postgres::Client> {
        let connecting =
            tokio::time::timeout(self.registry_timeout, tokio_postgres::connect(url, NoTls));
        match connecting.await {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                Some(client)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "connecting to the server registry");
                None
            }
            Err(_) => {
                tracing::warn!("connecting to the server registry: no answer");
                None
            }
        }
    }

    async fn health_loop(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            self.check_all().await;
        }
    }

    async fn registry_loop(&self, url: &str, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        let mut registry = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if registry.is_none() {
                registry = self.connect(url).await;
            }
            let Some(client) = &registry else { continue };
            match self.read_registry(client).await {
                Ok(registered) => self.apply_registry(&registered),
                Err(e) => {
                    // Keep the servers as they are: the health checks still judge them.
                    tracing::warn!(error = %e, "reading the server registry");
                    registry = None;
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Checker {
    async fn start(&self, shutdown: ShutdownWatch) {
        match &self.database_url {
            Some(url) => {
                tokio::join!(
                    self.health_loop(shutdown.clone()),
                    self.registry_loop(url, shutdown)
                );
            }
            None => self.health_loop(shutdown).await,
        }
    }
}
