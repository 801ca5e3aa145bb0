//! PostgreSQL for the tests: one private cluster for the run, and a database of its own
//! for each test, dropped when the test ends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use tokio_postgres::NoTls;

use crate::binaries::root;

/// The admin URL of the test cluster (no database part): FASTCHAT_TEST_DATABASE_URL, or
/// the cluster scripts/lib.sh starts in .data/test-pg on FASTCHAT_TEST_PG_PORT (54331
/// unless set), as scripts/test does.
pub fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("FASTCHAT_TEST_DATABASE_URL") {
            return url;
        }
        let port = std::env::var("FASTCHAT_TEST_PG_PORT").unwrap_or_else(|_| "54331".to_owned());
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1" && pg_start test-pg "$2""#)
            .arg("bash")
            .arg(root().join("scripts/lib.sh"))
            .arg(&port)
            .env("FASTCHAT_PG_FSYNC", "off")
            .output()
            .expect("running scripts/lib.sh");
        assert!(
            out.status.success(),
            "starting the test PostgreSQL on port {port} failed:\n{}",
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
