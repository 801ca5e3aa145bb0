//! `fastchat-balancer`: one address in front of any number of FastChat api servers.
//!
//! - [`config`]: the settings.
//! - [`front`]: the public listener, which looks at each request ahead ([`lookahead`])
//!   and hands event streams to the [`relay`] and everything else to the [`proxy`]: routing, rate limits ([`limits`]) and the
//!   balancer's own answers ([`problem`]).
//! - [`pool`]: the servers and their load; [`health`]: health checks and the registry.
//! - [`tls`]: the public listener's certificate, reloaded when it changes.
//! - [`admin`] and [`metrics`]: the private admin listener.

mod admin;
mod config;
mod front;
mod health;
mod limits;
mod lookahead;
mod metrics;
mod pool;
mod problem;
mod proxy;
mod relay;
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::Parser;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora::protocols::TcpKeepalive;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, GenBackgroundService};
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::config::Config;
use crate::front::Front;
use crate::health::Checker;
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::pool::{Backend, Pool};
use crate::proxy::Balancer;
use crate::relay::Relay;
use crate::tls::ReloadingCert;

/// Small periodic chores: the certificate's files, and forgetting quiet addresses.
struct Housekeeping {
    cert: Option<Arc<ReloadingCert>>,
    limits: Arc<RateLimits>,
}

const CERT_CHECK_EVERY: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(CERT_CHECK_EVERY);
        let mut pruned = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Some(cert) = &self.cert {
                cert.reload_if_changed();
            }
            release_free_memory();
            if pruned.elapsed() >= PRUNE_EVERY {
                self.limits.prune(Instant::now());
                pruned = Instant::now();
            }
        }
    }
}

/// Hands memory freed after a burst (thousands of connections' buffers) back to the
/// system: glibc's allocator keeps it in its arenas otherwise.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Clients' sockets: a send buffer of a fixed size (the kernel would grow it to
/// megabytes for a client that reads nothing), and keep-alive probes, so that a client
/// that vanished without a word is let go within seconds, not when its server next
/// writes and the retransmissions give up.
fn client_socket_options() -> TcpSocketOptions {
    let mut options = TcpSocketOptions::default();
    options.tcp_snd_buf = Some(256 * 1024);
    options.tcp_keepalive = Some(TcpKeepalive {
        idle: Duration::from_secs(5),
        interval: Duration::from_secs(2),
        count: 3,
        user_timeout: Duration::from_secs(20),
    });
    options
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("fastchat-balancer: {what}: {e}");
    std::process::exit(2);
}

fn main() {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FASTCHAT_LOG")
                // pingora reports every client that leaves an event stream as an error.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pingora_proxy=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    if config.backends.is_empty() && config.database_url.is_none() {
        fail(
            "no api servers",
            "name them with --backend, or a registry with --database-url",
        );
    }
    let cert = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(
            ReloadingCert::load(cert.clone(), key.clone())
                .unwrap_or_else(|e| fail("the TLS certificate", e)),
        ),
        _ => None,
    };

    let pool = Arc::new(Pool::default());
    for addr in &config.backends {
        // Named servers are trusted until a health check says otherwise.
        pool.add(Backend::new(*addr, true, true));
    }
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| fail("metrics", e)));
    let limits = Arc::new(RateLimits::new(
        config.signup_rate(),
        config.login_rate(),
        config.request_rate(),
    ));

    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let checker = Checker {
        pool: Arc::clone(&pool),
        metrics: Arc::clone(&metrics),
        interval: Duration::from_millis(config.health_interval_ms),
        timeout: Duration::from_millis(config.health_timeout_ms),
        database_url: config.database_url.clone(),
        registry_timeout: Duration::from_millis(config.registry_timeout_ms),
    };
    let stream_stall = Duration::from_secs(config.stream_stall_secs);
    let front = Front {
        proxy: Arc::new(pingora::proxy::http_proxy(
            &server.configuration,
            Balancer {
                pool: Arc::clone(&pool),
                metrics: Arc::clone(&metrics),
                limits: Arc::clone(&limits),
                max_inflight: config.max_inflight,
                stream_stall,
            },
        )),
        relay: Arc::new(Relay {
            pool: Arc::clone(&pool),
            metrics: Arc::clone(&metrics),
            limits: Arc::clone(&limits),
            stream_stall,
        }),
    };
    let mut proxy = Service::new("proxy".into(), front);
    // pingora gives every client connection a 64 KiB read buffer by default. Requests
    // are read into its own header buffer anyway, and an idle event stream would keep
    // 64 KiB resident for nothing.
    let listen = config.listen.to_string();
    let sockets = client_socket_options();
    let scheme = match (&cert, &config.tls_cert, &config.tls_key) {
        (Some(cert), Some(cert_path), Some(key_path)) => {
            let mut settings = TlsSettings::intermediate(
                &cert_path.to_string_lossy(),
                &key_path.to_string_lossy(),
            )
            .unwrap_or_else(|e| fail("TLS settings", e));
            // The resolver, not the files as first read, answers every handshake.
            settings.set_cert_resolver(Arc::clone(cert) as _);
            proxy.add_tls_with_settings(&listen, Some(sockets), settings);
            "https"
        }
        _ => {
            proxy.add_listener(
                ListenerConfig::tcp(listen)
                    .tcp_socket_options(sockets)
                    .l4_buffer(L4BufferSettings::default().read(0)),
            );
            "http"
        }
    };
    let mut admin = Service::new(
        "admin".into(),
        HttpServer::new_app(Admin {
            pool: Arc::clone(&pool),
            metrics,
        }),
    );
    admin.add_tcp(&config.admin_listen.to_string());
    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(GenBackgroundService::new(
        "health checks".into(),
        Arc::new(checker),
    ));
    server.add_service(GenBackgroundService::new(
        "housekeeping".into(),
        Arc::new(Housekeeping { cert, limits }),
    ));
    tracing::info!(listen = %config.listen, admin = %config.admin_listen, "fastchat-balancer listening");
    println!("listening on {scheme}://{}", config.listen);
    println!("admin on http://{}", config.admin_listen);
    server.run_forever();
}
