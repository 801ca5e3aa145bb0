//! The servers as real processes: `fastchat-api` on free ports, `fastchat-balancer` in
//! front of them, and [`Cluster`], a fresh database with servers on it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::api::Api;
use crate::binaries::bin;
use crate::db::TestDb;
use crate::metrics::{fetch_metrics, metric_sum, metric_values};
use crate::wait::{eventually, wait_for_exit};

/// One running `fastchat-api` process.
pub struct ApiServer {
    child: Child,
    pub url: String,
    /// Its admin listener: `/metrics` and the probes.
    pub admin_url: String,
}

/// Settings every test server gets: cheap bcrypt, quiet logs, a small pool.
const TEST_ENV: &[(&str, &str)] = &[
    ("FASTCHAT_BCRYPT_COST", "4"),
    ("FASTCHAT_LOG", "warn"),
    ("FASTCHAT_DB_POOL_SIZE", "4"),
    ("FASTCHAT_WORKERS", "2"),
];

impl ApiServer {
    /// Starts a server on a free port; `extra` overrides settings (`FASTCHAT_*`).
    pub fn spawn(db_url: &str, extra: &[(&str, &str)]) -> PendingServer {
        let mut cmd = Command::new(bin("fastchat-api"));
        cmd.env("FASTCHAT_DATABASE_URL", db_url)
            .env("FASTCHAT_LISTEN", "127.0.0.1:0")
            .env("FASTCHAT_ADMIN_LISTEN", "127.0.0.1:0")
            .envs(TEST_ENV.iter().copied())
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("starting fastchat-api");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            // Where it listens, then where its admin listener does.
            for _ in 0..2 {
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        PendingServer { child, rx }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// host:port, as the balancer names it.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    /// `host:port@host:port`: the server and its admin listener, for `--backend`.
    pub fn backend(&self) -> String {
        format!(
            "{}@{}",
            self.addr(),
            self.admin_url.trim_start_matches("http://")
        )
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits until the process has exited, returning its status.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        wait_for_exit(&mut self.child, deadline, "the server")
    }

    /// Event streams this server holds now.
    pub async fn open_streams(&self) -> Option<f64> {
        let text = fetch_metrics(&self.admin_url).await?;
        Some(metric_sum(&text, "fastchat_sse_streams_open"))
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started server that has not yet said where it listens.
pub struct PendingServer {
    child: Child,
    rx: mpsc::Receiver<String>,
}

impl PendingServer {
    /// The next line it prints, which must start with `prefix`: the URL after it.
    fn announced(&mut self, prefix: &str) -> String {
        let line = match self.rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                panic!("fastchat-api did not start within 60 s (see its log above)");
            }
        };
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("unexpected line from fastchat-api: {line}"))
            .to_owned()
    }

    /// Waits for the "listening on URL" and "admin on URL" lines.
    pub fn ready(mut self) -> ApiServer {
        let url = self.announced("listening on ");
        let admin_url = self.announced("admin on ");
        ApiServer {
            child: self.child,
            url,
            admin_url,
        }
    }
}

/// A running `fastchat-balancer`.
pub struct BalancerProcess {
    child: Child,
    pub url: String,
    /// Its admin listener: `/metrics` and the probes.
    pub admin_url: String,
}

/// Settings every test balancer gets: quick health checks, quiet logs, and no rate
/// limits (every test client is the same address) unless a test sets them.
const BALANCER_TEST_ENV: &[(&str, &str)] = &[
    ("FASTCHAT_HEALTH_INTERVAL_MS", "200"),
    ("FASTCHAT_HEALTH_TIMEOUT_MS", "400"),
    ("FASTCHAT_LOG", "warn,pingora_proxy=off"),
    ("FASTCHAT_BALANCER_THREADS", "2"),
    ("FASTCHAT_BALANCER_SIGNUPS_PER_HOUR", "0"),
    ("FASTCHAT_BALANCER_LOGINS_PER_MINUTE", "0"),
    ("FASTCHAT_BALANCER_REQUESTS_PER_SECOND", "0"),
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl BalancerProcess {
    /// Starts a balancer on a free port, routing to `backends` (as
    /// [`ApiServer::backend`] names them) and, with a database URL, to the servers
    /// registered there; quick health checks.
    pub fn spawn(database_url: Option<&str>, backends: &[&str]) -> Self {
        Self::spawn_with(database_url, backends, &[])
    }

    /// Like [`spawn`](Self::spawn), with settings `extra` on top of the test defaults.
    pub fn spawn_with(
        database_url: Option<&str>,
        backends: &[&str],
        extra: &[(&str, &str)],
    ) -> Self {
        Self::spawn_on_with(free_port(), database_url, backends, extra)
    }

    /// As [`BalancerProcess::spawn`], on `port` (to start one again where another was).
    pub fn spawn_on(port: u16, database_url: Option<&str>, backends: &[&str]) -> Self {
        Self::spawn_on_with(port, database_url, backends, &[])
    }

    /// As [`BalancerProcess::spawn_with`], on `port`.
    pub fn spawn_on_with(
        port: u16,
        database_url: Option<&str>,
        backends: &[&str],
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start(
            Command::new(bin("fastchat-balancer")),
            port,
            database_url,
            backends,
            extra,
        )
    }

    /// Like [`spawn`](Self::spawn), allowed `open_files` descriptors (`prlimit`), to
    /// run it out of them.
    pub fn spawn_with_open_files(backends: &[&str], open_files: u32) -> Self {
        let mut limited = Command::new("prlimit");
        limited
            .arg(format!("--nofile={open_files}"))
            .arg("--")
            .arg(bin("fastchat-balancer"));
        Self::start(limited, free_port(), None, backends, &[])
    }

    fn start(
        mut cmd: Command,
        port: u16,
        database_url: Option<&str>,
        backends: &[&str],
        extra: &[(&str, &str)],
    ) -> Self {
        let admin_port = free_port();
        cmd.env("FASTCHAT_BALANCER_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "FASTCHAT_BALANCER_ADMIN_LISTEN",
                format!("127.0.0.1:{admin_port}"),
            )
            .env_remove("FASTCHAT_DATABASE_URL")
            .env_remove("FASTCHAT_BACKENDS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in BALANCER_TEST_ENV.iter().chain(extra) {
            cmd.env(key, value);
        }
        if let Some(url) = database_url {
            cmd.env("FASTCHAT_DATABASE_URL", url);
        }
        if !backends.is_empty() {
            cmd.env("FASTCHAT_BACKENDS", backends.join(","));
        }
        let scheme = if extra.iter().any(|(k, _)| *k == "FASTCHAT_TLS_CERT") {
            "https"
        } else {
            "http"
        };
        let child = cmd.spawn().expect("starting fastchat-balancer");
        BalancerProcess {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the process has exited, returning its status.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        wait_for_exit(&mut self.child, deadline, "the balancer")
    }

    /// Sends a signal by name (`KILL`, `STOP`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The balancer's metrics text, from its admin listener, once it answers.
    pub async fn metrics(&self) -> Option<String> {
        fetch_metrics(&self.admin_url).await
    }

    /// Waits until exactly these servers (host:port) are in rotation.
    pub async fn wait_healthy(&self, servers: &[&str]) {
        let want: BTreeSet<String> = servers.iter().map(|s| s.to_string()).collect();
        eventually(
            Duration::from_secs(30),
            &format!("healthy servers {want:?}"),
            || async {
                let text = self.metrics().await?;
                let healthy: BTreeSet<String> =
                    metric_values(&text, "fastchat_balancer_backend_healthy")
                        .into_iter()
                        .filter(|(_, v)| *v == 1.0)
                        .map(|(backend, _)| backend)
                        .collect();
                (healthy == want).then_some(())
            },
        )
        .await;
    }
}

impl BalancerProcess {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the balancer's URL")
    }

    /// Kills it and waits until it is gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BalancerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh database and `n` api servers on it, started together.
pub struct Cluster {
    // Fields drop in order: servers stop before their database is dropped.
    pub servers: Vec<ApiServer>,
    pub db: TestDb,
}

impl Cluster {
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, &[]).await
    }

    /// `n` servers with settings `extra` on a copy of the migrated template.
    pub async fn start_with(n: usize, extra: &[(&str, &str)]) -> Self {
        Self::start_on(TestDb::create().await, n, extra)
    }

    /// `n` servers started together on an empty database, which they migrate themselves.
    pub async fn start_unmigrated(n: usize) -> Self {
        Self::start_on(TestDb::create_empty().await, n, &[])
    }

    fn start_on(db: TestDb, n: usize, extra: &[(&str, &str)]) -> Self {
        let pending: Vec<_> = (0..n).map(|_| ApiServer::spawn(&db.url, extra)).collect();
        let servers = pending.into_iter().map(PendingServer::ready).collect();
        Cluster { servers, db }
    }

    pub fn api(&self, i: usize) -> Api {
        let server = &self.servers[i];
        Api::new(&server.url).with_admin(&server.admin_url)
    }
}
