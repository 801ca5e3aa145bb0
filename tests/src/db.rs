//! PostgreSQL for the tests: one private cluster for the run, one migrated template for
//! each set of migrations, and a database of its own for each test, cloned from the
//! template and dropped when the test ends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use crate::binaries::root;
use crate::wait::eventually;

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

/// Guards the making of templates across test processes (an advisory lock, taken on the
/// `postgres` database): any fixed number.
const TEMPLATE_LOCK: i64 = 0x0fa5_7c4a_7e57_0001;

/// The name of the template for the migrations in the workspace now:
/// `fastchat_tpl_` and the start of a SHA-256 over each `migrations/*/up.sql`, path and
/// content, so that a changed migration gets a template of its own.
fn template_name() -> String {
    let dir = root().join("migrations");
    let mut ups: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a migrations entry").file_name())
        .map(|name| format!("{}/up.sql", name.to_string_lossy()))
        .filter(|up| dir.join(up).is_file())
        .collect();
    ups.sort();
    let mut digest = Sha256::new();
    for up in &ups {
        let sql = std::fs::read(dir.join(up)).unwrap_or_else(|e| panic!("reading {up}: {e}"));
        digest.update(up.as_bytes());
        digest.update([0]);
        digest.update(&sql);
        digest.update([0]);
    }
    format!("fastchat_tpl_{}", &hex::encode(digest.finalize())[..12])
}

/// The migrated template every [`TestDb`] is cloned from: made once per test process, or
/// found made by an earlier one.
pub async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE.get_or_init(prepare_template).await
}

/// Finds or makes the template, under the advisory lock so that test processes starting
/// together make it once. Only a fully migrated template ever bears the final name: it is
/// migrated under another and renamed when done.
async fn prepare_template() -> String {
    let name = template_name();
    let admin = connect(&format!("{}/postgres", admin_url())).await;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("taking the template lock");
    let ready = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate",
            &[&name],
        )
        .await
        .expect("looking for the template")
        .is_some();
    if !ready {
        make_template(&admin, &name).await;
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("releasing the template lock");
    name
}

async fn make_template(admin: &tokio_postgres::Client, name: &str) {
    // Templates of other migrations, and whatever a run that stopped halfway left.
    let leftovers = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'fastchat\\_tpl\\_%'",
            &[],
        )
        .await
        .expect("listing old templates");
    for row in leftovers {
        let old: String = row.get(0);
        for sql in [
            format!("ALTER DATABASE {old} WITH IS_TEMPLATE false"),
            format!("DROP DATABASE {old} WITH (FORCE)"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    let building = format!("{name}_building");
    admin
        .batch_execute(&format!("CREATE DATABASE {building}"))
        .await
        .expect("creating the template database");
    let url = format!("{}/{building}", admin_url());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let pool = fastchat_api::db::build_pool(&url, 1)?;
        fastchat_api::db::run_migrations(&pool)
        // The pool, and with it its connection, closes here.
    })
    .await
    .expect("the migrating thread")
    .unwrap_or_else(|e| panic!("migrating the template database: {e:#}"));

    // PostgreSQL clones (and renames) only a database nobody is connected to.
    eventually(
        Duration::from_secs(30),
        "the migration's connection to the template to close",
        || async {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&building],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 0).then_some(())
        },
    )
    .await;
    for sql in [
        format!("ALTER DATABASE {building} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
        format!("ALTER DATABASE {building} RENAME TO {name}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A copy of the migrated [`template`].
    pub async fn create() -> Self {
        let template = template().await;
        Self::create_as(&format!("TEMPLATE {template}")).await
    }

    /// An empty database, for tests of how servers migrate one.
    pub async fn create_empty() -> Self {
        Self::create_as("").await
    }

    async fn create_as(options: &str) -> Self {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&format!("{}/postgres", admin_url())).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} {options}"))
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
