//! The ceiling under everything: how many requests that do no work (`GET /healthz`) the
//! balancer and the api servers carry on this machine, closed loop, as fast as the bench
//! can ask. A one-to-one message is such a request plus real work and an event pushed
//! back through the same balancer, so no message rate here can pass this one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Http;
use crate::latency::Latency;
use crate::system::{CpuCost, Processes};
use crate::tracker::histogram;

const PATH: &str = "/healthz";

#[derive(Debug, Serialize)]
pub struct CeilingReport {
    pub path: &'static str,
    /// Requests in flight at once, each on a connection of its own.
    pub concurrency: usize,
    pub seconds: f64,
    pub requests: u64,
    pub failed: u64,
    pub requests_per_second: f64,
    pub latency: Latency,
    /// Per request.
    pub cpu: CpuCost,
}

pub async fn run(
    http: &Arc<Http>,
    processes: &Processes,
    concurrency: usize,
    length: Duration,
) -> anyhow::Result<CeilingReport> {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = processes.cpu_times();
    let start = Instant::now();
    let loops: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (http, stop) = (Arc::clone(http), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut latencies = histogram();
                let mut failed = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    if http.get_ok(PATH).await {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        latencies.saturating_record(micros);
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = histogram();
    let mut failed = 0;
    for handle in loops {
        let (h, f) = handle.await?;
        latencies.add(h)?;
        failed += f;
    }
    let elapsed = start.elapsed();
    let requests = latencies.len();
    Ok(CeilingReport {
        path: PATH,
        concurrency,
        seconds: elapsed.as_secs_f64(),
        requests,
        failed,
        requests_per_second: requests as f64 / elapsed.as_secs_f64().max(1e-3),
        latency: Latency::of(&latencies),
        cpu: CpuCost::between(cpu_before, processes.cpu_times(), requests, elapsed),
    })
}
