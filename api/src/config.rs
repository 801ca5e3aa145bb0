//! Server configuration: every setting is a flag and a `FASTCHAT_*` environment variable.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "fastchat-api",
    version,
    about = "FastChat's stateless HTTP api server"
)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (printed on stdout at start).
    #[arg(long, env = "FASTCHAT_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Address of the admin listener: `/metrics`, `/healthz` and `/readyz`, off the
    /// public port (bind it where only operators and the balancer reach); port 0 picks
    /// one and prints it.
    #[arg(long, env = "FASTCHAT_ADMIN_LISTEN", default_value = "127.0.0.1:9081")]
    pub admin_listen: SocketAddr,

    /// PostgreSQL connection URL.
    #[arg(long, env = "FASTCHAT_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Largest number of database connections this server holds.
    #[arg(long, env = "FASTCHAT_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "FASTCHAT_WORKERS")]
    pub workers: Option<usize>,

    /// Threads storing one-to-one messages, each one transaction at a time; messages
    /// that arrive meanwhile wait and go together in the next. As many again store
    /// group messages the same way.
    #[arg(long, env = "FASTCHAT_SEND_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub send_workers: u16,

    /// bcrypt cost for stored passwords. Lower it only in tests.
    #[arg(long, env = "FASTCHAT_BCRYPT_COST", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// How long a session token stays valid, in seconds (default 30 days).
    #[arg(long, env = "FASTCHAT_SESSION_TTL_SECS", default_value_t = 30 * 24 * 3600,
          value_parser = clap::value_parser!(i64).range(60..=MAX_DURATION_SECS))]
    pub session_ttl_secs: i64,

    /// Login attempts for one username from one client address, within the window,
    /// before that pair is held back for the lockout.
    #[arg(long, env = "FASTCHAT_LOGIN_MAX_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub login_max_failures: i32,

    /// Login attempts from one client address, whatever the names, within the window,
    /// before that address is held back for the lockout.
    #[arg(long, env = "FASTCHAT_LOGIN_MAX_PER_ADDRESS", default_value_t = 20,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub login_max_per_address: i32,

    /// The window in which login attempts are counted, in seconds.
    #[arg(long, env = "FASTCHAT_LOGIN_WINDOW_SECS", default_value_t = 15 * 60,
          value_parser = clap::value_parser!(i64).range(1..=MAX_DURATION_SECS))]
    pub login_window_secs: i64,

    /// How long a held-back (username, address) or address answers 429, in seconds.
    #[arg(long, env = "FASTCHAT_LOGIN_LOCKOUT_SECS", default_value_t = 5 * 60,
          value_parser = clap::value_parser!(i64).range(1..=MAX_DURATION_SECS))]
    pub login_lockout_secs: i64,

    /// Proxies (the balancer) whose `X-FastChat-Client` header names the client's
    /// address; from anyone else the header is ignored. Comma-separated addresses.
    #[arg(
        long,
        env = "FASTCHAT_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Event streams one session may hold open on this server at once.
    #[arg(long, env = "FASTCHAT_STREAMS_PER_SESSION", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub streams_per_session: u64,

    /// Event streams one user may hold open on this server at once, over all sessions.
    #[arg(long, env = "FASTCHAT_STREAMS_PER_USER", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub streams_per_user: u64,

    /// Shortest accepted password, in bytes.
    #[arg(long, env = "FASTCHAT_PASSWORD_MIN_BYTES", default_value_t = 8)]
    pub password_min_bytes: usize,

    /// Largest accepted key backup, in bytes.
    #[arg(long, env = "FASTCHAT_KEY_BACKUP_MAX_BYTES", default_value_t = 16 * 1024)]
    pub key_backup_max_bytes: usize,

    /// Largest contacts backup (the client's encrypted pins and verifications), in bytes.
    #[arg(long, env = "FASTCHAT_CONTACTS_BACKUP_MAX_BYTES", default_value_t = 256 * 1024)]
    pub contacts_backup_max_bytes: usize,

    /// Largest JSON request body, in bytes; larger ones get 413 before they are read.
    #[arg(long, env = "FASTCHAT_JSON_BODY_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub json_body_max_bytes: usize,

    /// Largest message ciphertext, in bytes (wrapped keys are counted apart).
    #[arg(long, env = "FASTCHAT_CIPHERTEXT_MAX_BYTES", default_value_t = 64 * 1024)]
    pub ciphertext_max_bytes: usize,

    /// Largest blob (an encrypted image), in bytes; larger uploads get 413.
    #[arg(long, env = "FASTCHAT_BLOB_MAX_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub blob_max_bytes: usize,

    /// Uploads one user may make in an hour.
    #[arg(long, env = "FASTCHAT_BLOB_UPLOADS_PER_HOUR", default_value_t = 60)]
    pub blob_uploads_per_hour: i64,

    /// Blob bytes one user may upload in a day.
    #[arg(long, env = "FASTCHAT_BLOB_BYTES_PER_DAY", default_value_t = 256 * 1024 * 1024)]
    pub blob_bytes_per_day: i64,

    /// Blobs no message lists are deleted after this many seconds.
    #[arg(long, env = "FASTCHAT_BLOB_UNREFERENCED_TTL_SECS", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(i64).range(1..=MAX_DURATION_SECS))]
    pub blob_unreferenced_ttl_secs: i64,

    /// Seconds between sweeps for expired sessions and unused blobs.
    #[arg(long, env = "FASTCHAT_PURGE_INTERVAL_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub purge_interval_secs: u64,

    /// Largest group, counting every member.
    #[arg(long, env = "FASTCHAT_GROUP_MAX_MEMBERS", default_value_t = 1000)]
    pub group_max_members: usize,

    /// Seconds between keep-alive comments on idle event streams.
    #[arg(long, env = "FASTCHAT_SSE_KEEPALIVE_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub sse_keepalive_secs: u64,

    /// Seconds an event stream may go without its client taking anything (its buffers
    /// full) before it is cut; the client resumes with `Last-Event-ID`. More than the
    /// keep-alive, which a healthy idle stream takes.
    #[arg(long, env = "FASTCHAT_STREAM_STALL_SECS", default_value_t = 45,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub stream_stall_secs: u64,

    /// The URL other machines reach this server at [default: http://<listen address>].
    #[arg(long, env = "FASTCHAT_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// The URL the balancer reaches this server's admin listener at [default:
    /// http://<admin listen address>].
    #[arg(long, env = "FASTCHAT_ADVERTISE_ADMIN_URL")]
    pub advertise_admin_url: Option<String>,

    /// NATS (`nats://[user:password@]host:port`) to carry inbox wake-ups between api
    /// servers instead of PostgreSQL NOTIFY, which past one busy database becomes the
    /// bottleneck. Every server of one deployment must agree. Revocations still come
    /// through PostgreSQL
    #[arg(long, env = "FASTCHAT_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "FASTCHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds in-flight requests get to finish on SIGTERM.
    #[arg(long, env = "FASTCHAT_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Ten years: the longest duration any setting takes.
const MAX_DURATION_SECS: i64 = 10 * 365 * 24 * 3600;

/// bcrypt reads only the first 72 bytes: longer passwords would be silently truncated.
pub const PASSWORD_MAX_BYTES: usize = 72;
