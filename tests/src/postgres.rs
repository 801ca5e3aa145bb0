//! A PostgreSQL cluster of a test's own, to restart, crash and stall without touching
//! the cluster every other test shares. Started with scripts/lib.sh as `scripts/start`
//! starts one; stopped when dropped.

use std::process::Command;
use std::time::Duration;

use crate::binaries::{lib_sh, root};
use crate::db::connect;

pub struct OwnCluster {
    name: String,
    port: u16,
    /// The admin URL, without a database.
    pub admin_url: String,
    stopped: Vec<u32>,
}

impl OwnCluster {
    /// Starts the cluster `name` (made the first time) on a free port, with an empty
    /// database `fastchat`.
    pub async fn start(name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let port_text = port.to_string();
        let admin_url = lib_sh(r#"pg_start "$1" "$2""#, &[name, &port_text]);
        let admin = connect(&format!("{admin_url}/postgres")).await;
        for sql in [
            "DROP DATABASE IF EXISTS fastchat WITH (FORCE)",
            "CREATE DATABASE fastchat",
        ] {
            admin
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        OwnCluster {
            name: name.to_owned(),
            port,
            admin_url,
            stopped: Vec::new(),
        }
    }

    /// The URL of its `fastchat` database.
    pub fn url(&self) -> String {
        format!("{}/fastchat", self.admin_url)
    }

    /// A clean restart (`pg_ctl stop -m fast`, then start).
    pub fn restart(&self) {
        let port = self.port.to_string();
        lib_sh(
            r#"pg_stop "$1" && pg_start "$1" "$2" >/dev/null"#,
            &[&self.name, &port],
        );
    }

    /// A crash (`pg_ctl stop -m immediate`, so it recovers from its log at start), then
    /// a start.
    pub fn crash_and_start(&self) {
        let port = self.port.to_string();
        lib_sh(
            r#"as_pg "$PG_BIN/pg_ctl" -D "$(pg_dir "$1")/pgdata" -m immediate -w stop >/dev/null &&
               pg_start "$1" "$2" >/dev/null"#,
            &[&self.name, &port],
        );
    }

    /// The postmaster and every process it started.
    fn processes(&self) -> Vec<u32> {
        let pid_file = format!(
            "{}/pgdata/postmaster.pid",
            lib_sh(r#"pg_dir "$1""#, &[&self.name])
        );
        let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
        let postmaster: u32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("the postmaster's pid");
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    fn signal(pids: &[u32], signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(pids.iter().map(u32::to_string))
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pids:?}");
    }

    /// Stops every process of the cluster (SIGSTOP): it neither answers nor refuses.
    pub fn stall(&mut self) {
        let pids = self.processes();
        Self::signal(&pids, "STOP");
        self.stopped = pids;
    }

    /// Lets a stalled cluster go on.
    pub fn resume(&mut self) {
        let pids = std::mem::take(&mut self.stopped);
        if !pids.is_empty() {
            Self::signal(&pids, "CONT");
        }
    }

    /// Waits until it answers a query.
    pub async fn wait_ready(&self, deadline: Duration) {
        let url = format!("{}/postgres", self.admin_url);
        crate::eventually(deadline, "PostgreSQL to answer", || async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(connection);
            client.simple_query("SELECT 1").await.ok().map(drop)
        })
        .await;
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.resume();
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#"source "$0" && pg_stop "$1""#)
            .arg(root().join("scripts/lib.sh"))
            .arg(&self.name)
            .output();
    }
}
