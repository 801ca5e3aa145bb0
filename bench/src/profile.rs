//! A CPU profile of the whole machine while a step runs: `perf record` sampling every
//! process (api servers, balancer, PostgreSQL, the bench itself) on its software clock,
//! which works where the hardware counters are not offered. `scripts/profile` reads the
//! recording back as shares per process and per function.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Samples a second per core: enough to rank functions over a 20 s step, little enough
/// to leave the measured latencies alone.
const FREQUENCY: &str = "499";

pub struct Recording {
    child: Child,
    path: PathBuf,
}

impl Recording {
    /// Starts recording into `dir/<name>.perf.data` for at most `length`; `None` (said
    /// once) if perf cannot start.
    pub fn start(dir: &Path, name: &str, length: Duration) -> Option<Recording> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            println!("  (not profiling: {}: {e})", dir.display());
            return None;
        }
        let path = dir.join(format!("{name}.perf.data"));
        let spawned = Command::new("perf")
            // Frame-pointer call chains: PostgreSQL keeps its frame pointers, which is
            // enough to tell executor start-up from execution and commit.
            .args(["record", "--all-cpus", "--call-graph", "fp"])
            .args(["--event", "cpu-clock", "--freq", FREQUENCY])
            .arg("--output")
            .arg(&path)
            .args(["--", "sleep"])
            .arg(format!("{:.1}", length.as_secs_f64()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(child) => Some(Recording { child, path }),
            Err(e) => {
                println!("  (not profiling: perf: {e})");
                None
            }
        }
    }

    /// Waits for the recording to be written.
    pub async fn finish(mut self) {
        match self.child.wait().await {
            Ok(status) if status.success() => println!("  profile: {}", self.path.display()),
            Ok(status) => println!("  (perf record ended with {status})"),
            Err(e) => println!("  (perf record: {e})"),
        }
    }
}

/// The statements PostgreSQL ran during a step and what each cost, from
/// `pg_stat_statements` (which the server must preload: `scripts/profile` starts it so).
pub struct Statements {
    client: tokio_postgres::Client,
    path: PathBuf,
}

const TOP_STATEMENTS: &str = "\
    SELECT calls, rows, total_exec_time, toplevel, \
           regexp_replace(left(query, 140), '\\s+', ' ', 'g') \
      FROM pg_stat_statements \
     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     ORDER BY total_exec_time DESC LIMIT 30";

impl Statements {
    /// Clears the counts, to read them again at the step's end; `None` (said once) if
    /// the extension is not there.
    pub async fn start(url: &str, dir: &Path, name: &str) -> Option<Statements> {
        let client = crate::waits::connect(url, "counting statements").await?;
        let ready = client
            .batch_execute(
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
                 SELECT pg_stat_statements_reset()",
            )
            .await;
        if let Err(e) = ready {
            println!("  (not counting statements: {e})");
            return None;
        }
        Some(Statements {
            client,
            path: dir.join(format!("{name}.statements.md")),
        })
    }

    /// Writes the costliest statements since `start`, per delivered message.
    pub async fn finish(self, delivered: u64) {
        let rows = match self.client.query(TOP_STATEMENTS, &[]).await {
            Ok(rows) => rows,
            Err(e) => {
                println!("  (reading pg_stat_statements: {e})");
                return;
            }
        };
        let per = delivered.max(1) as f64;
        let mut table = format!(
            "Statements during the step, costliest first, per delivered message ({delivered} delivered). \
             `nested` ones ran inside a function and are counted in its time too.\n\n\
             | calls / msg | rows / call | exec ms / msg | µs / call | | statement |\n\
             |---:|---:|---:|---:|---|---|\n"
        );
        for row in rows {
            let (Ok(calls), Ok(rows), Ok(total), Ok(top), Ok(query)) = (
                row.try_get::<_, i64>(0),
                row.try_get::<_, i64>(1),
                row.try_get::<_, f64>(2),
                row.try_get::<_, bool>(3),
                row.try_get::<_, String>(4),
            ) else {
                continue;
            };
            let calls_f = calls.max(1) as f64;
            table.push_str(&format!(
                "| {:.3} | {:.1} | {:.3} | {:.0} | {} | `{}` |\n",
                calls as f64 / per,
                rows as f64 / calls_f,
                total / per,
                total * 1e3 / calls_f,
                if top { "" } else { "nested" },
                query.replace('|', "\\|").replace('`', "'"),
            ));
        }
        match std::fs::write(&self.path, table) {
            Ok(()) => println!("  statements: {}", self.path.display()),
            Err(e) => println!("  (writing {}: {e})", self.path.display()),
        }
    }
}
