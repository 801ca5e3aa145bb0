//! `fastchat-balancer`: one address in front of any number of FastChat api servers.

mod health;
mod metrics;
mod pool;
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::GenBackgroundService;

use crate::health::Checker;
use crate::metrics::Metrics;
use crate::pool::{Backend, Pool};
use crate::proxy::Balancer;

#[derive(Debug, Parser)]
#[command(
    name = "fastchat-balancer",
    version,
    about = "Routes clients to the least-loaded healthy FastChat api server"
)]
struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "FASTCHAT_BALANCER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,

    /// An api server (host:port); repeat, or separate with commas.
    #[arg(long = "backend", env = "FASTCHAT_BACKENDS", value_delimiter = ',')]
    backends: Vec<SocketAddr>,

    /// PostgreSQL URL: also route to the api servers registered there.
    #[arg(long, env = "FASTCHAT_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// Milliseconds between health checks (and registry reads).
    #[arg(long, env = "FASTCHAT_HEALTH_INTERVAL_MS", default_value_t = 500)]
    health_interval_ms: u64,

    /// Milliseconds a health check may take.
    #[arg(long, env = "FASTCHAT_HEALTH_TIMEOUT_MS", default_value_t = 600)]
    health_timeout_ms: u64,

    /// Worker threads [default: one per core].
    #[arg(long, env = "FASTCHAT_BALANCER_THREADS")]
    threads: Option<usize>,
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
        eprintln!(
            "fastchat-balancer: name api servers with --backend, or a registry with --database-url"
        );
        std::process::exit(2);
    }

    let pool = Arc::new(Pool::default());
    for addr in &config.backends {
        // Named servers are trusted until a health check says otherwise.
        pool.add(Backend::new(*addr, true, true));
    }
    let metrics = match Metrics::new() {
        Ok(metrics) => Arc::new(metrics),
        Err(e) => {
            eprintln!("fastchat-balancer: metrics: {e}");
            std::process::exit(1);
        }
    };

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
    };
    let background = GenBackgroundService::new("health checks".into(), Arc::new(checker));
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Balancer {
            pool: Arc::clone(&pool),
            metrics,
        },
    );
    // pingora gives every client connection a 64 KiB read buffer by default. Requests
    // are read into its own header buffer anyway, and an idle event stream would keep
    // 64 KiB resident for nothing.
    proxy.add_listener(
        ListenerConfig::tcp(config.listen.to_string())
            .l4_buffer(L4BufferSettings::default().read(0)),
    );
    server.add_service(proxy);
    server.add_service(background);
    tracing::info!(listen = %config.listen, "fastchat-balancer listening");
    println!("listening on http://{}", config.listen);
    server.run_forever();
}
