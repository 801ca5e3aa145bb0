//! Where PostgreSQL's backends wait while a step runs: `pg_stat_activity` sampled every
//! 10 ms, each active backend of the database counted under its wait event (`CPU` when
//! it waits on nothing), with the NOTIFY queue's fill. A stall on the database shows as
//! the event that piles up: `Lock:object` is the database-wide lock every transaction
//! that NOTIFYs takes at commit, `LWLock:WALWrite` and `IO:WALSync` are commits waiting
//! on the log, `Lock:tuple` / `Lock:transactionid` are rows waited on.

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

#[derive(Debug, Clone, Default, Serialize)]
pub struct Waits {
    pub samples: u64,
    /// Active backends seen per sample, on average.
    pub mean_active: f64,
    /// (wait event, share of the active backends seen), largest first.
    pub events: Vec<(String, f64)>,
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

impl Waits {
    /// The largest few, as `Lock:object 41%, CPU 30%, …`.
    pub fn summary(&self, n: usize) -> String {
        self.events
            .iter()
            .take(n)
            .map(|(event, share)| format!("{event} {:.0}%", share * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    }
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
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let (mut samples, mut active, mut notify_queue_max) = (0u64, 0u64, 0f64);
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let rows = match client.query(SAMPLE, &[]).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        println!("  (sampling PostgreSQL's waits stopped: {e})");
                        break;
                    }
                };
                samples += 1;
                for row in rows {
                    let (Ok(event), Ok(n)) =
                        (row.try_get::<_, String>(0), row.try_get::<_, i64>(1))
                    else {
                        continue;
                    };
                    let n = u64::try_from(n).unwrap_or(0);
                    active += n;
                    *counts.entry(event).or_default() += n;
                }
                if let Ok(row) = client
                    .query_one("SELECT pg_notification_queue_usage()", &[])
                    .await
                {
                    if let Ok(usage) = row.try_get::<_, f64>(0) {
                        notify_queue_max = notify_queue_max.max(usage);
                    }
                }
            }
            let mut events: Vec<(String, f64)> = counts
                .into_iter()
                .map(|(event, n)| (event, n as f64 / active.max(1) as f64))
                .collect();
            events.sort_by(|a, b| b.1.total_cmp(&a.1));
            let (checkpoints, autovacuums) =
                match (housekeeping_before, housekeeping(&client).await) {
                    (Some(before), Some(after)) => (after.0 - before.0, after.1 - before.1),
                    _ => (0, 0),
                };
            Waits {
                samples,
                mean_active: active as f64 / samples.max(1) as f64,
                events,
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
