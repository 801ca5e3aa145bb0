//! Idle event streams held through the balancer, and what each costs in memory in the
//! api servers and in the balancer (resident memory before and after, over the count).

use std::time::Instant;

use serde::Serialize;

use crate::setup::Bench;
use crate::system::{open_file_limit, rss_bytes};

/// Descriptors kept back for everything that is not a stream.
const FD_RESERVE: u64 = 2_000;

#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub requested: usize,
    pub held: usize,
    /// Why fewer than requested were opened.
    pub limited_by: Option<String>,
    pub seconds_to_open: f64,
    pub api_bytes_before: u64,
    pub api_bytes_after: u64,
    pub balancer_bytes_before: u64,
    pub balancer_bytes_after: u64,
    pub api_bytes_per_stream: f64,
    pub balancer_bytes_per_stream: f64,
}

pub async fn run(
    bench: &mut Bench,
    requested: usize,
    api_pids: &[u32],
    balancer_pid: u32,
) -> anyhow::Result<IdleReport> {
    // The balancer holds three descriptors a stream (client side, server side, and a
    // duplicate of the server side with which it can cut the stream when its server
    // fails), and every process here runs under the same limit as this one.
    let online = bench.users.len() as u64;
    let capacity = open_file_limit()
        .map(|limit| (limit.saturating_sub(FD_RESERVE) / 3).saturating_sub(online))
        .unwrap_or(u64::MAX);
    let held = requested.min(usize::try_from(capacity).unwrap_or(usize::MAX));
    let limited_by = (held < requested).then(|| {
        format!(
            "the open file limit ({}) leaves the balancer room for {held} more streams",
            open_file_limit().unwrap_or_default()
        )
    });
    if let Some(why) = &limited_by {
        println!("  holding {held} streams, not {requested}: {why}");
    }

    let users = bench.sign_up(bench.users.len(), held).await?;
    let api_memory = || -> anyhow::Result<u64> { api_pids.iter().map(|&p| rss_bytes(p)).sum() };
    let api_bytes_before = api_memory()?;
    let balancer_bytes_before = rss_bytes(balancer_pid)?;
    let started = Instant::now();
    let keep = bench.users.len();
    bench.go_online(users).await?;
    let seconds_to_open = started.elapsed().as_secs_f64();
    let api_bytes_after = api_memory()?;
    let balancer_bytes_after = rss_bytes(balancer_pid)?;
    bench.go_offline_after(keep).await?;

    let per_stream =
        |before: u64, after: u64| after.saturating_sub(before) as f64 / held.max(1) as f64;
    Ok(IdleReport {
        requested,
        held,
        limited_by,
        seconds_to_open,
        api_bytes_before,
        api_bytes_after,
        balancer_bytes_before,
        balancer_bytes_after,
        api_bytes_per_stream: per_stream(api_bytes_before, api_bytes_after),
        balancer_bytes_per_stream: per_stream(balancer_bytes_before, balancer_bytes_after),
    })
}
