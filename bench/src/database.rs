//! The database's own ceiling: pgbench running the SQL one one-to-one message costs, as
//! the server runs it (the same SQL functions: the session lookup, then the sending
//! statement with its inbox event and notification), one transaction per message.
//! Its users are its own and offline, so the api servers hear every notification, as
//! they would, and have no stream to push it to.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DatabaseReport {
    pub clients: u32,
    pub seconds: u64,
    /// Messages per second PostgreSQL alone sustains, one transaction each.
    pub messages_per_second: f64,
    pub mean_latency_ms: Option<f64>,
}

/// Users `pgbench_0` to `pgbench_<users - 1>`, each with an inbox and a session whose
/// token hash is `sha256('pgbench' || i)`.
fn setup_script(users: usize) -> String {
    format!(
        r#"INSERT INTO users (username, password_hash, public_key)
  SELECT 'pgbench_' || i, 'not a hash', 'not a key' FROM generate_series(0, {last}) AS i
  ON CONFLICT (username) DO NOTHING;
INSERT INTO inboxes (user_id)
  SELECT id FROM users WHERE username LIKE 'pgbench\_%' ON CONFLICT DO NOTHING;
INSERT INTO sessions (token_hash, user_id, expires_at)
  SELECT sha256(('pgbench' || substr(username, 9))::bytea), id, now() + interval '1 day'
    FROM users WHERE username LIKE 'pgbench\_%'
  ON CONFLICT DO NOTHING;
"#,
        last = users - 1,
    )
}

/// One message from a random user to another, as the server sends it.
fn message_script(
    users: usize,
    nonce: &str,
    ciphertext: &str,
    sig: &str,
    wrapped_key: &str,
) -> String {
    format!(
        r#"\set a random(0, {last})
\set b (:a + random(1, {last})) % {users}
SELECT user_id AS sender FROM fastchat_find_live_sessions(ARRAY[sha256(('pgbench' || :a)::bytea)]) \gset
SELECT outcome FROM fastchat_send_direct_messages(
  ARRAY[:sender]::bigint[], ARRAY['pgbench_' || :b], ARRAY[true], ARRAY[gen_random_uuid()],
  ARRAY['text'], ARRAY['{nonce}'], ARRAY['{ciphertext}'], ARRAY['{sig}'],
  ARRAY['2026-12-01T00:00:00Z'], ARRAY['{wrapped_key}'], ARRAY['{wrapped_key}'],
  '{{}}'::bigint[], '{{}}'::uuid[]);
"#,
        last = users - 1,
    )
}

pub struct Pgbench<'a> {
    pub program: &'a str,
    pub database_url: &'a str,
    pub out_dir: &'a Path,
    pub clients: u32,
    pub length: Duration,
}

impl Pgbench<'_> {
    pub fn run(&self, users: usize) -> anyhow::Result<DatabaseReport> {
        if users < 2 {
            bail!("pgbench needs at least two users");
        }
        let random = |n| {
            use base64::Engine;
            let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let setup = self.out_dir.join("setup.pgbench.sql");
        std::fs::write(&setup, setup_script(users))?;
        self.pgbench(&setup, &["--transactions=1", "--client=1"])?;
        let path = self.out_dir.join("message.pgbench.sql");
        std::fs::write(
            &path,
            message_script(users, &random(12), &random(128), &random(256), &random(256)),
        )?;
        let seconds = self.length.as_secs().max(1);
        let stdout = self.pgbench(
            &path,
            &[
                &format!("--client={}", self.clients),
                "--jobs=2",
                &format!("--time={seconds}"),
            ],
        )?;
        let number_after = |label: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(label))
                .and_then(|rest| {
                    rest.trim_start_matches([' ', '='])
                        .split_whitespace()
                        .next()
                })
                .and_then(|n| n.parse::<f64>().ok())
        };
        Ok(DatabaseReport {
            clients: self.clients,
            seconds,
            messages_per_second: number_after("tps")
                .with_context(|| format!("pgbench printed no tps:\n{stdout}"))?,
            mean_latency_ms: number_after("latency average"),
        })
    }

    /// Runs pgbench on `script` with `args`; its standard output.
    fn pgbench(&self, script: &Path, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(self.program)
            .args(["--no-vacuum", "--protocol=prepared"])
            .args(args)
            .arg(format!("--file={}", script.display()))
            .arg(self.database_url)
            .output()
            .with_context(|| format!("running {}", self.program))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "pgbench failed: {}\n{stdout}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }
}
