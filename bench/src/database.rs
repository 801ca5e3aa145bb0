//! The database's own ceiling: pgbench running the SQL one one-to-one message costs
//! (the session lookup, the recipient lookup, and the sending transaction, whose
//! notification carries the message to the recipient's server), one transaction per
//! message.

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

/// The script, for users `<prefix>_0` to `<prefix>_<users - 1>`.
fn script(prefix: &str, users: usize, ciphertext: &str, sig: &str, wrapped_key: &str) -> String {
    format!(
        r#"\set a random(0, {last})
\set b (:a + random(1, {last})) % {users}
SELECT user_id FROM sessions WHERE token_hash = sha256(('bench' || :a)::bytea) AND expires_at > now();
SELECT id AS sender FROM users WHERE username = '{prefix}_' || :a \gset
SELECT id AS recipient FROM users WHERE username = '{prefix}_' || :b \gset
BEGIN;
INSERT INTO messages (sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig)
  VALUES (:sender, :recipient, gen_random_uuid(), 'text', 'AAAAAAAAAAAAAAAA', '{ciphertext}', '{sig}')
  ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id AS message \gset
INSERT INTO message_keys (message_id, user_id, wrapped_key)
  VALUES (:message, :sender, '{wrapped_key}'), (:message, :recipient, '{wrapped_key}');
UPDATE inboxes SET last_seq = last_seq + 1 WHERE user_id = :recipient RETURNING last_seq \gset
INSERT INTO inbox_events (user_id, seq, message_id) VALUES (:recipient, :last_seq, :message);
SELECT pg_notify('fastchat_bench', 'event:' || :recipient::bigint || ':' || json_build_object(
  'seq', :last_seq::bigint, 'message', json_build_object('id', :message::bigint,
  'sender', '{prefix}_' || :a::int, 'recipient', '{prefix}_' || :b::int, 'kind', 'text',
  'client_id', gen_random_uuid(), 'sent_at', now(),
  'nonce', 'AAAAAAAAAAAAAAAA', 'ciphertext', '{ciphertext}', 'sig', '{sig}',
  'wrapped_key', '{wrapped_key}')));
COMMIT;
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
    pub fn run(&self, prefix: &str, users: usize) -> anyhow::Result<DatabaseReport> {
        if users < 2 {
            bail!("pgbench needs at least two users");
        }
        let path = self.out_dir.join("message.pgbench.sql");
        let random = |n| {
            use base64::Engine;
            let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        std::fs::write(
            &path,
            script(prefix, users, &random(128), &random(256), &random(256)),
        )?;
        let seconds = self.length.as_secs().max(1);
        let output = Command::new(self.program)
            .args(["--no-vacuum", "--protocol=prepared"])
            .arg(format!("--client={}", self.clients))
            .arg("--jobs=2")
            .arg(format!("--time={seconds}"))
            .arg(format!("--file={}", path.display()))
            .arg(self.database_url)
            .output()
            .with_context(|| format!("running {}", self.program))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "pgbench failed: {}\n{stdout}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
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
}
