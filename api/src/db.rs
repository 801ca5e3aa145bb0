//! The PostgreSQL pool, the embedded migrations, [`run`], which keeps diesel's
//! synchronous queries on the blocking pool and off the async workers, and
//! [`function_call!`], with which `store::functions` declares the SQL functions.

use std::time::Duration;

use anyhow::Context;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{sql_query, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::ApiError;
use crate::wakeups;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PgConn = PooledConnection<ConnectionManager<PgConnection>>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");
/// Any fixed number; every api server takes this advisory lock to migrate.
const MIGRATION_LOCK_KEY: i64 = 0x0fa5_7c4a_7000_0001;

/// Tells each new connection that wake-ups travel on another bus, when they do.
#[derive(Debug)]
struct SilentWakeups;

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SilentWakeups {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        sql_query(wakeups::SILENCE_THE_DATABASE)
            .execute(conn)
            .map(drop)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The pool; when another bus carries wake-ups ([`wakeups::install`] first), its
/// connections send none through the database.
pub fn build_pool(database_url: &str, size: u32) -> anyhow::Result<PgPool> {
    let manager = ConnectionManager::<PgConnection>::new(database_url);
    let builder = if wakeups::elsewhere() {
        Pool::builder().connection_customizer(Box::new(SilentWakeups))
    } else {
        Pool::builder()
    };
    builder
        .max_size(size)
        .min_idle(Some(1))
        // After a database restart every idle connection is dead, and diesel does not
        // mark a connection broken when a query on it fails: tested on checkout, a dead
        // one is dropped and another made, never handed out. (One round trip per
        // checkout; the batched paths check out once per batch.)
        .test_on_check_out(true)
        // Waiting long for a connection only queues work: answer 503 soon instead.
        .connection_timeout(Duration::from_secs(2))
        .build(manager)
        .context("connecting to PostgreSQL")
}

/// Runs the pending migrations. Servers starting together serialise on an advisory
/// lock, so exactly one applies each migration and the others find nothing to do.
pub fn run_migrations(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.get().context("connecting to PostgreSQL to migrate")?;
    sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)
        .context("taking the migration lock")?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.len())
        .map_err(|e| anyhow::anyhow!("running migrations: {e}"));
    sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)
        .context("releasing the migration lock")?;
    let applied = applied?;
    if applied > 0 {
        tracing::info!(applied, "database migrated");
    }
    Ok(())
}

/// Runs `query` with a pooled connection, on this thread: for threads that may block.
pub fn with_conn<T>(
    pool: &PgPool,
    query: impl FnOnce(&mut PgConn) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut conn = pool.get().map_err(ApiError::no_database)?;
    let answer = query(&mut conn);
    // Whatever it committed is visible now: wake whom it woke.
    wakeups::flush();
    answer
}

/// Runs `query` with a pooled connection on the blocking thread pool.
pub async fn run<T, F>(pool: &PgPool, query: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut PgConn) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || with_conn(&pool, query))
        .await
        .map_err(|e| ApiError::internal(format!("a database task failed: {e}")))?
}

/// Runs CPU-bound `work` (bcrypt) on the blocking thread pool, off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("a blocking task failed: {e}")))
}

/// True when the database answers a trivial query.
pub async fn is_ready(pool: &PgPool) -> bool {
    run(pool, |conn| {
        sql_query("SELECT 1").execute(conn)?;
        Ok(())
    })
    .await
    .is_ok()
}

/// Declares a query, `SELECT * FROM function($1, $2, ...)` with the given fields bound in
/// order, that diesel prepares once per connection and then only binds and executes. (It
/// parses and plans a `sql_query` anew on every call, which was a fifth of PostgreSQL's
/// time on the hottest queries.) Load its rows as `QueryableByName`, or `execute` it for
/// a function that returns nothing. Servers that are running keep the statement
/// prepared, so a migration that changes such a function's columns must give it a new
/// name.
macro_rules! function_call {
    ($(
        $(#[$doc:meta])*
        struct $name:ident = $function:literal (
            $first:ident: $first_ty:ty as $first_sql:ty $(, $field:ident: $ty:ty as $sql:ty)* $(,)?
        );
    )+) => {$(
        $(#[$doc])*
        pub struct $name {
            pub $first: $first_ty,
            $(pub $field: $ty,)*
        }

        impl diesel::query_builder::QueryId for $name {
            type QueryId = $name;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl diesel::query_builder::Query for $name {
            type SqlType = diesel::sql_types::Untyped;
        }

        impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
            ) -> diesel::QueryResult<()> {
                out.push_sql(concat!("SELECT * FROM ", $function, "("));
                out.push_bind_param::<$first_sql, $first_ty>(&self.$first)?;
                $(
                    out.push_sql(", ");
                    out.push_bind_param::<$sql, $ty>(&self.$field)?;
                )*
                out.push_sql(")");
                Ok(())
            }
        }

        impl diesel::RunQueryDsl<diesel::pg::PgConnection> for $name {}
    )+};
}
pub(crate) use function_call;
