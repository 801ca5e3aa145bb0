//! Where PostgreSQL's backends wait while a step runs: `pg_stat_activity` sampled every
//! 10 ms, each active backend of the database counted under its wait event (`CPU` when
//! it waits on nothing), with the NOTIFY queue's fill. A stall on the database shows as
//! the event that piles up: `Lock:object` is the database-wide lock every transaction
//! that NOTIFYs takes at commit, `LWLock:WALWrite` and `IO:WALSync` are commits waiting
//! on the log, `Lock:tuple` / `Lock:transactionid` are rows waited on. Each sample also
//! names the heavyweight locks waited on (from `pg_locks`), and what the backend holding
//! the NOTIFY commit lock was waiting on itself meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

const EVERY: Duration = Duration::from_millis(10);

const SAMPLE: &str = "\
    SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) \
      FROM pg_stat_activity \
     WHERE state = 'active' AND pid <> pg_backend_pid() AND datname = current_database() \
     GROUP BY 1";

/// The NOTIFY commit lock: an exclusive lock on the shared object (pg_database, 0).
const COMMIT_LOCK: &str = "l.locktype = 'object' AND l.database = 0 \
     AND l.classid = 'pg_database'::regclass AND l.objid = 0";

/// The heavyweight locks this database's backends wait for, by what they lock.
fn locks_waited() -> String {
    format!(
        "SELECT CASE WHEN {COMMIT_LOCK} THEN 'the NOTIFY commit lock' \
                     WHEN l.relation IS NOT NULL THEN l.locktype || ' on ' || l.relation::regclass \
                     ELSE l.locktype END, count(*) \
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
          WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> pg_backend_pid() \
          GROUP BY 1"
    )
}

/// What the backend holding the NOTIFY commit lock is waiting on (`CPU` when nothing).
fn commit_lock_holder() -> String {
    format!(
        "SELECT coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU'), count(*) \
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
          WHERE l.granted AND {COMMIT_LOCK} AND a.datname = current_database() \
          GROUP BY 1"
    )
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Waits {
    pub samples: u64,
    /// Active backends seen per sample, on average.
    pub mean_active: f64,
    /// (wait event, share of the active backends seen), largest first.
    pub events: Vec<(String, f64)>,
    /// (lock, share of the lock waits seen), largest first.
    pub locks: Vec<(String, f64)>,
    /// The share of samples in which some backend held the NOTIFY commit lock: how busy
    /// that one-at-a-time resource was.
    pub commit_lock_held: f64,
    /// (what the commit lock's holder waited on, share of the samples it was held in),
    /// largest first.
    pub commit_lock_holder: Vec<(String, f64)>,
    /// The NOTIFY queue's largest fill seen (0 to 1).
    pub notify_queue_max: f64,
    /// Checkpoints begun, and autovacuum or autoanalyze runs finished on the
    /// database's tables, while sampling.
    pub checkpoints: i64,
    pub autovacuums: i64,
}

/// Checkpoints so far, and autovacuum and autoanalyze runs on this database's tables.
const HOUSEKEEPING: &str = "\
    SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter), \
           (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)::BIGINT \
              FROM pg_stat_user_tables)";

async fn housekeeping(client: &tokio_postgres::Client) -> Option<(i64, i64)> {
    let row = client.query_one(HOUSEKEEPING, &[]).await.ok()?;
    Some((row.try_get(0).ok()?, row.try_get(1).ok()?))
}

/// The largest few of `shares`, as `Lock:object 41%, CPU 30%, …`.
pub fn summary(shares: &[(String, f64)], n: usize) -> String {
    shares
        .iter()
        .take(n)
        .map(|(what, share)| format!("{what} {:.0}%", share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts as shares of their total, largest first.
fn shares(counts: BTreeMap<String, u64>) -> Vec<(String, f64)> {
    let total: u64 = counts.values().sum();
    let mut shares: Vec<(String, f64)> = counts
        .into_iter()
        .map(|(what, n)| (what, n as f64 / total.max(1) as f64))
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}

/// Adds each (name, count) row of `query` to `counts`, and says how many it added.
async fn count_rows(
    client: &tokio_postgres::Client,
    query: &str,
    counts: &mut BTreeMap<String, u64>,
) -> Result<u64, tokio_postgres::Error> {
    let mut seen = 0;
    for row in client.query(query, &[]).await? {
        let (Ok(what), Ok(n)) = (row.try_get::<_, String>(0), row.try_get::<_, i64>(1)) else {
            continue;
        };
        let n = u64::try_from(n).unwrap_or(0);
        seen += n;
        *counts.entry(what).or_default() += n;
    }
    Ok(seen)
}

/// A connection of the bench's own to the database at `url`, its driver spawned;
/// `None`, said once, if there is none (`doing` says what it was for).
pub async fn connect(url: &str, doing: &str) -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(url, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(e) => {
            println!("  (not {doing}: {e})");
            None
        }
    }
}

pub struct Sampler {
    stop: oneshot::Sender<()>,
    done: JoinHandle<Waits>,
    /// Its own backend, whose CPU time is the bench's, not the system's.
    pub backend_pid: Option<u32>,
}

impl Sampler {
    /// Starts sampling the database at `url`; `None` (said once) if it cannot connect.
    pub async fn start(url: &str) -> Option<Sampler> {
        let client = connect(url, "sampling PostgreSQL's waits").await?;
        let backend_pid = match client.query_one("SELECT pg_backend_pid()", &[]).await {
            Ok(row) => row
                .try_get::<_, i32>(0)
                .ok()
                .and_then(|pid| u32::try_from(pid).ok()),
            Err(_) => None,
        };
        let housekeeping_before = housekeeping(&client).await;
        let (stop, mut stopped) = oneshot::channel();
        let done = tokio::spawn(async move {
            let (locks_waited, commit_lock_holder) = (locks_waited(), commit_lock_holder());
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut locks: BTreeMap<String, u64> = BTreeMap::new();
            let mut holder: BTreeMap<String, u64> = BTreeMap::new();
            let (mut samples, mut active, mut notify_queue_max) = (0u64, 0u64, 0f64);
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let sampled = async {
                    let seen = count_rows(&client, SAMPLE, &mut counts).await?;
                    count_rows(&client, &locks_waited, &mut locks).await?;
                    count_rows(&client, &commit_lock_holder, &mut holder).await?;
                    Ok::<_, tokio_postgres::Error>(seen)
                };
                match sampled.await {
                    Ok(seen) => active += seen,
                    Err(e) => {
                        println!("  (sampling PostgreSQL's waits stopped: {e})");
                        break;
                    }
                }
                samples += 1;
                if let Ok(row) = client
                    .query_one("SELECT pg_notification_queue_usage()", &[])
                    .await
                {
                    if let Ok(usage) = row.try_get::<_, f64>(0) {
                        notify_queue_max = notify_queue_max.max(usage);
                    }
                }
            }
            // One backend at most holds it in a sample.
            let held: u64 = holder.values().sum();
            let (checkpoints, autovacuums) =
                match (housekeeping_before, housekeeping(&client).await) {
                    (Some(before), Some(after)) => (after.0 - before.0, after.1 - before.1),
                    _ => (0, 0),
                };
            Waits {
                samples,
                mean_active: active as f64 / samples.max(1) as f64,
                events: shares(counts),
                locks: shares(locks),
                commit_lock_held: held as f64 / samples.max(1) as f64,
                commit_lock_holder: shares(holder),
                notify_queue_max,
                checkpoints,
                autovacuums,
            }
        });
        Some(Sampler {
            stop,
            done,
            backend_pid,
        })
    }

    pub async fn stop(self) -> Waits {
        let _ = self.stop.send(());
        self.done.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_become_shares_largest_first_and_read_as_a_summary() {
        let counts = BTreeMap::from([
            ("CPU".to_owned(), 1),
            ("Lock:object".to_owned(), 3),
            ("IO:WALSync".to_owned(), 0),
        ]);
        let shares = shares(counts);
        assert_eq!(
            shares,
            vec![
                ("Lock:object".to_owned(), 0.75),
                ("CPU".to_owned(), 0.25),
                ("IO:WALSync".to_owned(), 0.0)
            ]
        );
        assert_eq!(summary(&shares, 2), "Lock:object 75%, CPU 25%");
        assert!(super::shares(BTreeMap::new()).is_empty());
    }
}
