//! The test kit: a private PostgreSQL cluster (one per test run), a fresh database per
//! test, real `fastchat-api` processes on free ports, and the real `fastchat` CLI.
//! Everything waits for conditions with deadlines; nothing sleeps to synchronise.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::NoTls;

pub mod api;
pub mod sse;

pub use api::Api;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// A binary built from this workspace, next to the test executable's `deps` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as scripts/test does)",
        path.display()
    );
    path
}

/// The admin URL of the test cluster (no database part): FASTCHAT_TEST_DATABASE_URL, or
/// the cluster scripts/lib.sh starts in .data/test-pg.
pub fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("FASTCHAT_TEST_DATABASE_URL") {
            return url;
        }
        let script = root().join("scripts/lib.sh");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}' && FASTCHAT_PG_FSYNC=off pg_start test-pg 54331",
                script.display()
            ))
            .output()
            .expect("running scripts/lib.sh");
        assert!(
            out.status.success(),
            "starting the test PostgreSQL failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8 URL")
            .trim()
            .to_owned()
    })
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&format!("{}/postgres", admin_url())).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating the test database");
        let url = format!("{}/{name}", admin_url());
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// `SELECT count(*) FROM table`.
    pub async fn count(&self, table: &str) -> i64 {
        self.client()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("counting rows")
            .get(0)
    }

    /// The whole database as `pg_dump` prints it.
    pub fn dump(&self) -> String {
        let pg_bin = std::env::var("FASTCHAT_PG_BIN")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
        let out = Command::new(Path::new(&pg_bin).join("pg_dump"))
            .arg("--data-only")
            .arg(&self.url)
            .output()
            .expect("running pg_dump");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort, synchronously: psql is simpler here than a runtime in Drop.
        let _ = Command::new("psql")
            .arg(format!("{}/postgres", admin_url()))
            .arg("-qc")
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `child` until it exits, failing the test after `deadline`.
fn wait_for_exit(child: &mut Child, deadline: Duration, what: &str) -> std::process::ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            return status;
        }
        assert!(
            Instant::now() < until,
            "{what} did not exit within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One running `fastchat-api` process.
pub struct ApiServer {
    child: Child,
    pub url: String,
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
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        PendingServer { child, rx }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        wait_for_exit(&mut self.child, deadline, "the server")
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
    /// Waits for the "listening on URL" line.
    pub fn ready(mut self) -> ApiServer {
        let line = match self.rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                panic!("fastchat-api did not start within 60 s (see its log above)");
            }
        };
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from fastchat-api: {line}"))
            .to_owned();
        ApiServer {
            child: self.child,
            url,
        }
    }
}

/// A running `fastchat-balancer`.
pub struct BalancerProcess {
    child: Child,
    pub url: String,
}

impl BalancerProcess {
    /// Starts a balancer on a free port, routing to `backends` (host:port) and, with a
    /// database URL, to the servers registered there; quick health checks.
    pub fn spawn(database_url: Option<&str>, backends: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = Command::new(bin("fastchat-balancer"));
        cmd.env("FASTCHAT_BALANCER_LISTEN", format!("127.0.0.1:{port}"))
            .env("FASTCHAT_HEALTH_INTERVAL_MS", "200")
            .env("FASTCHAT_HEALTH_TIMEOUT_MS", "400")
            .env("FASTCHAT_LOG", "warn,pingora_proxy=off")
            .env("FASTCHAT_BALANCER_THREADS", "2")
            .env_remove("FASTCHAT_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.env("FASTCHAT_DATABASE_URL", url);
        }
        if !backends.is_empty() {
            cmd.env("FASTCHAT_BACKENDS", backends.join(","));
        }
        let child = cmd.spawn().expect("starting fastchat-balancer");
        BalancerProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The balancer's metrics text, once it answers.
    pub async fn metrics(&self) -> Option<String> {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// Waits until exactly these servers (host:port) are in rotation.
    pub async fn wait_healthy(&self, servers: &[&str]) {
        let want: std::collections::BTreeSet<String> =
            servers.iter().map(|s| s.to_string()).collect();
        eventually(
            Duration::from_secs(30),
            &format!("healthy servers {want:?}"),
            || async {
                let text = self.metrics().await?;
                let healthy: std::collections::BTreeSet<String> =
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

impl Drop for BalancerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(backend label, value)` for every sample of a metric with a `backend` label.
pub fn metric_values(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| {
            let backend = l.split("backend=\"").nth(1)?.split('"').next()?.to_owned();
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((backend, value))
        })
        .collect()
}

/// The sum of a metric's samples that carry `label="value"`.
pub fn metric_where(text: &str, name: &str, label: &str, value: &str) -> f64 {
    let wanted = format!("{label}=\"{value}\"");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            l.split('}')
                .next()
                .is_some_and(|labels| labels.contains(&wanted))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of an unlabelled metric (or the sum over its labels).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl ApiServer {
    /// host:port, as the balancer names it.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    /// Event streams this server holds now.
    pub async fn open_streams(&self) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(metric_sum(&text, "fastchat_sse_streams_open"))
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

    pub async fn start_with(n: usize, extra: &[(&str, &str)]) -> Self {
        let db = TestDb::create().await;
        let pending: Vec<_> = (0..n).map(|_| ApiServer::spawn(&db.url, extra)).collect();
        let servers = pending.into_iter().map(PendingServer::ready).collect();
        Cluster { servers, db }
    }

    pub fn api(&self, i: usize) -> Api {
        Api::new(&self.servers[i].url)
    }
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `fastchat` CLI with its own home folder.
pub struct CliHome {
    pub dir: PathBuf,
}

impl CliHome {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("fastchat-home-{}", uuid::Uuid::new_v4()));
        CliHome { dir }
    }

    pub fn command(&self, server: &str) -> Command {
        let mut cmd = Command::new(bin("fastchat"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FASTCHAT_HOME", &self.dir)
            .env("FASTCHAT_SERVER", server);
        cmd
    }

    /// `fastchat ARGS` with all three standard streams piped.
    fn spawn_piped(&self, server: &str, args: &[&str]) -> Child {
        self.command(server)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting fastchat")
    }

    /// Runs `fastchat ARGS` with `stdin` as its standard input.
    pub fn run(&self, server: &str, args: &[&str], stdin: &str) -> CliOutput {
        use std::io::Write;
        let mut child = self.spawn_piped(server, args);
        let mut input = child.stdin.take().expect("piped stdin");
        // A command that fails early may exit before it reads its input; what it
        // printed says why, and that is what the test checks.
        if let Err(e) = input.write_all(stdin.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
        drop(input);
        CliOutput(child.wait_with_output().expect("running fastchat"))
    }
}

impl CliHome {
    /// A new home in which `name` has signed up (password: "password of <name>").
    pub fn signed_up(server: &str, name: &str) -> Self {
        let home = CliHome::new();
        let password = format!("password of {name}\n");
        home.run(server, &["signup", name, "--password-stdin"], &password)
            .success();
        home
    }

    /// The session token the CLI saved.
    pub fn token(&self) -> String {
        let session: Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.join("session.json")).expect("session file"),
        )
        .expect("session json");
        session["token"].as_str().expect("token").to_owned()
    }

    /// Starts a long-running `fastchat ARGS` (e.g. `recv --follow`) whose stdout lines
    /// arrive on a channel and whose stdin stays open for writing.
    pub fn spawn(&self, server: &str, args: &[&str]) -> RunningCli {
        let mut child = self.spawn_piped(server, args);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        RunningCli {
            child,
            lines,
            stdin,
        }
    }
}

/// A `fastchat` process that keeps running; killed when dropped.
pub struct RunningCli {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stdin: Option<std::process::ChildStdin>,
}

impl RunningCli {
    /// The next stdout line within `wait`.
    pub fn next_line(&self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// The next stdout line, parsed as JSON; fails the test after `wait`.
    #[track_caller]
    pub fn next_json(&self, wait: Duration) -> Value {
        let line = self
            .next_line(wait)
            .unwrap_or_else(|| panic!("fastchat printed nothing within {wait:?}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    pub fn write_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("writing to fastchat");
        stdin.flush().expect("flushing fastchat's stdin");
    }

    /// Closes stdin and waits for the exit status.
    pub fn finish(mut self, wait: Duration) -> std::process::ExitStatus {
        drop(self.stdin.take());
        wait_for_exit(&mut self.child, wait, "fastchat")
    }
}

impl Drop for RunningCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Default for CliHome {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CliHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct CliOutput(pub Output);

/// Parses `--json` output: one JSON value per line.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

impl CliOutput {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts success.
    #[track_caller]
    pub fn success(&self) {
        assert_eq!(self.code(), 0, "fastchat failed: {}", self.stderr());
    }

    /// Asserts success and parses stdout as `--json` output: one value per line.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.success();
        json_lines(&self.stdout())
    }

    /// The `text` of every line of `--json` output (failing on a line without one).
    #[track_caller]
    pub fn texts(&self) -> Vec<String> {
        self.json_lines()
            .iter()
            .map(|l| l["text"].as_str().expect("a line with text").to_owned())
            .collect()
    }

    /// Asserts success and parses stdout as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        assert_eq!(self.code(), 0, "fastchat failed: {}", self.stderr());
        serde_json::from_str(self.stdout().trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout()))
    }
}
