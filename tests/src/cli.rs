//! The real `fastchat` CLI, each user in a home folder of their own.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::api::Api;
use crate::binaries::bin;
use crate::user::TestUser;
use crate::wait::wait_for_exit;

/// The `fastchat` CLI with its own home folder.
pub struct CliHome {
    pub dir: PathBuf,
    /// Who signed up here with [`CliHome::signed_up`], for [`CliHome::log_in_at`].
    name: Option<String>,
    /// The CA it trusts besides the system's (`FASTCHAT_CA_CERT`).
    ca_cert: Option<PathBuf>,
}

/// The password [`CliHome::signed_up`] gives `name`.
pub fn password_of(name: &str) -> String {
    format!("password of {name}")
}

impl CliHome {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("fastchat-home-{}", uuid::Uuid::new_v4()));
        CliHome {
            dir,
            name: None,
            ca_cert: None,
        }
    }

    /// This home's CLI trusts `ca` (as `FASTCHAT_CA_CERT`) for `https://` servers.
    pub fn trusting(mut self, ca: &std::path::Path) -> Self {
        self.ca_cert = Some(ca.to_owned());
        self
    }

    pub fn command(&self, server: &str) -> Command {
        let mut cmd = Command::new(bin("fastchat"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FASTCHAT_HOME", &self.dir)
            .env("FASTCHAT_SERVER", server);
        if let Some(ca) = &self.ca_cert {
            cmd.env("FASTCHAT_CA_CERT", ca);
        }
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
        CliHome::new().sign_up(server, name)
    }

    /// This home with `name` signed up in it (password: "password of <name>").
    pub fn sign_up(self, server: &str, name: &str) -> Self {
        let mut home = self;
        let password = format!("{}\n", password_of(name));
        home.run(server, &["signup", name, "--password-stdin"], &password)
            .success();
        home.name = Some(name.to_owned());
        home
    }

    /// Logs the user of this home in again at `server` (another URL of the same
    /// service: a proxy, another api server), so that the session, which the CLI sends
    /// to its own server only, is there. The session before is ended.
    #[track_caller]
    pub fn log_in_at(&self, server: &str) {
        let session_user = self.dir.join("session.json").exists().then(|| {
            self.session()["username"]
                .as_str()
                .expect("username")
                .to_owned()
        });
        let name = session_user
            .or_else(|| self.name.clone())
            .expect("a home someone signed up or logged in in");
        let name = name.as_str();
        let password = format!("{}\n", password_of(name));
        self.run(server, &["login", name, "--password-stdin"], &password)
            .success();
    }

    /// The session the CLI saved (`session.json`).
    fn session(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.join("session.json")).expect("session file"),
        )
        .expect("session json")
    }

    /// The session token the CLI saved.
    pub fn token(&self) -> String {
        self.session()["token"].as_str().expect("token").to_owned()
    }

    /// Whoever is logged in here, with the CLI's token, talking to `api` directly.
    pub fn user_on(&self, api: &Api) -> TestUser {
        let session = self.session();
        let name = session["username"].as_str().expect("username");
        api.as_user(name, session["token"].as_str().expect("token"))
    }

    /// `fastchat ARGS` on a terminal of its own, as a person runs it.
    pub fn on_terminal(&self, server: &str, args: &[&str]) -> crate::pty::Terminal {
        let mut command = self.command(server);
        command.args(args);
        crate::pty::Terminal::spawn(command)
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
    pub fn finish(mut self, wait: Duration) -> ExitStatus {
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

    /// The `text` of every line of `--json` output but the `page` line of history
    /// (failing on a line without one).
    #[track_caller]
    pub fn texts(&self) -> Vec<String> {
        self.json_lines()
            .iter()
            .filter(|l| l["type"] != "page")
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
