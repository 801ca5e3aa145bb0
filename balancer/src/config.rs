//! The balancer's settings: every one a flag and a `FASTCHAT_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::limits::Rate;
use crate::pool::ServerAddr;

#[derive(Debug, Parser)]
#[command(
    name = "fastchat-balancer",
    version,
    about = "Routes clients to the least-loaded healthy FastChat api server"
)]
pub struct Config {
    /// Address to listen on for clients.
    #[arg(
        long,
        env = "FASTCHAT_BALANCER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`): keep it
    /// private.
    #[arg(
        long,
        env = "FASTCHAT_BALANCER_ADMIN_LISTEN",
        default_value = "127.0.0.1:9080"
    )]
    pub admin_listen: SocketAddr,

    /// PEM certificate chain: serve clients over TLS (with --tls-key). Read again
    /// whenever the file changes.
    #[arg(long, env = "FASTCHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "FASTCHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// An api server, `host:port` or `host:port@host:port` naming its admin listener
    /// too (health checks go there); repeat, or separate with commas.
    #[arg(long = "backend", env = "FASTCHAT_BACKENDS", value_delimiter = ',')]
    pub backends: Vec<ServerAddr>,

    /// PostgreSQL URL: also route to the api servers registered there.
    #[arg(long, env = "FASTCHAT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Milliseconds between health checks (and registry reads).
    #[arg(long, env = "FASTCHAT_HEALTH_INTERVAL_MS", default_value_t = 500)]
    pub health_interval_ms: u64,

    /// Milliseconds a health check may take.
    #[arg(long, env = "FASTCHAT_HEALTH_TIMEOUT_MS", default_value_t = 600)]
    pub health_timeout_ms: u64,

    /// Milliseconds a registry read may take before it counts as failed.
    #[arg(long, env = "FASTCHAT_REGISTRY_TIMEOUT_MS", default_value_t = 1000)]
    pub registry_timeout_ms: u64,

    /// Signups one client address may make per hour (0: no limit).
    #[arg(long, env = "FASTCHAT_BALANCER_SIGNUPS_PER_HOUR", default_value_t = 30)]
    pub signups_per_hour: u32,

    /// Logins one client address may try per minute (0: no limit). The api servers
    /// also hold back repeated failures per (name, address).
    #[arg(
        long,
        env = "FASTCHAT_BALANCER_LOGINS_PER_MINUTE",
        default_value_t = 30
    )]
    pub logins_per_minute: u32,

    /// Requests of any kind one client address may make per second, as a burst of that
    /// many (0: no limit).
    #[arg(
        long,
        env = "FASTCHAT_BALANCER_REQUESTS_PER_SECOND",
        default_value_t = 50
    )]
    pub requests_per_second: u32,

    /// Requests (not event streams) one api server may have in flight; past it, and
    /// with every server as busy, new requests are refused with 503 and Retry-After.
    #[arg(long, env = "FASTCHAT_BALANCER_MAX_INFLIGHT", default_value_t = 256)]
    pub max_inflight: i64,

    /// Seconds an event stream's client may take nothing before its stream is cut (it
    /// resumes with Last-Event-ID). More than the api servers' keep-alive interval.
    #[arg(
        long,
        env = "FASTCHAT_BALANCER_STREAM_STALL_SECS",
        default_value_t = 45
    )]
    pub stream_stall_secs: u64,

    /// Worker threads [default: one per core].
    #[arg(long, env = "FASTCHAT_BALANCER_THREADS")]
    pub threads: Option<usize>,
}

impl Config {
    fn rate(per_period: u32, period: Duration) -> Option<Rate> {
        (per_period > 0).then_some(Rate { per_period, period })
    }

    pub fn signup_rate(&self) -> Option<Rate> {
        Self::rate(self.signups_per_hour, Duration::from_secs(3600))
    }

    pub fn login_rate(&self) -> Option<Rate> {
        Self::rate(self.logins_per_minute, Duration::from_secs(60))
    }

    pub fn request_rate(&self) -> Option<Rate> {
        Self::rate(self.requests_per_second, Duration::from_secs(1))
    }
}
