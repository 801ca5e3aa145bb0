//! Background work: active health checks (`GET /healthz`) and, with a database, the
//! live server set from the registry the api servers heartbeat into.

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
use crate::pool::{Backend, Pool};

/// Failed checks in a row that take a server out.
const FAILURES_TO_FAIL: u32 = 2;
/// A registered server is alive while its heartbeat is younger than this.
const HEARTBEAT_FRESH_SECS: i32 = 6;

pub struct Checker {
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    pub interval: Duration,
    pub timeout: Duration,
    pub database_url: Option<String>,
}

/// One `GET /healthz`: true for a 200 within the timeout.
async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: fastchat\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}

impl Checker {
    async fn check_all(&self) {
        let checks = self.pool.all().into_iter().map(|backend| {
            let timeout = self.timeout;
            async move {
                let up = probe(backend.addr, timeout).await;
                (backend, up)
            }
        });
        let handles: Vec<_> = checks.map(tokio::spawn).collect();
        for handle in handles {
            let Ok((backend, up)) = handle.await else {
                continue;
            };
            if up {
                if backend.mark_up() {
                    tracing::info!(backend = %backend.addr, "server is healthy");
                }
            } else if backend.mark_failure(FAILURES_TO_FAIL) {
                tracing::warn!(backend = %backend.addr, "server failed its health checks; taken out");
            }
        }
        self.metrics.observe(&self.pool);
    }

    /// Reads the registry and brings the pool in line with it.
    async fn discover(&self, client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT address FROM servers
                  WHERE heartbeat_at > now() - make_interval(secs => $1)",
                &[&f64::from(HEARTBEAT_FRESH_SECS)],
            )
            .await?;
        let registered: Vec<SocketAddr> = rows
            .iter()
            .filter_map(|row| {
                let address: String = row.get(0);
                let parsed = address
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .parse();
                if parsed.is_err() {
                    tracing::warn!(%address, "registered server address is not host:port");
                }
                parsed.ok()
            })
            .collect();
        for addr in &registered {
            // New servers start out of rotation until a health check passes.
            if self.pool.add(Backend::new(*addr, false, false)) {
                tracing::info!(backend = %addr, "server registered");
            }
        }
        for addr in self.pool.retain_registered(&registered) {
            tracing::info!(backend = %addr, "server left the registry");
        }
        Ok(())
    }

    async fn connect(&self) -> Option<tokio_postgres::Client> {
        let url = self.database_url.as_ref()?;
        match tokio_postgres::connect(url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                Some(client)
            }
            Err(e) => {
                tracing::warn!(error = %e, "connecting to the server registry");
                None
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Checker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        let mut registry = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if self.database_url.is_some() {
                if registry.is_none() {
                    registry = self.connect().await;
                }
                if let Some(client) = &registry {
                    if let Err(e) = self.discover(client).await {
                        tracing::warn!(error = %e, "reading the server registry");
                        registry = None;
                    }
                }
            }
            self.check_all().await;
        }
    }
}
