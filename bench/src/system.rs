//! What the bench reads off the machine: process memory, the file limit, the CPU, and
//! the api servers' own count of open streams.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the status of process {pid}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .with_context(|| format!("process {pid} reports no VmRSS"))?;
    Ok(kib * 1024)
}

/// This process's limit on open files (the soft one, which is what applies).
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The sum of `fastchat_sse_streams_open` over the api servers.
pub async fn open_streams(http: &reqwest::Client, apis: &[String]) -> anyhow::Result<u64> {
    let mut total = 0.0;
    for api in apis {
        let text = http
            .get(format!("{}/metrics", api.trim_end_matches('/')))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("fastchat_sse_streams_open "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .with_context(|| format!("{api}/metrics has no fastchat_sse_streams_open"))?;
    }
    Ok(total as u64)
}

/// Waits until the api servers hold exactly `expected` streams.
pub async fn wait_for_streams(
    http: &reqwest::Client,
    apis: &[String],
    expected: u64,
    deadline: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let now = open_streams(http, apis).await?;
        if now == expected {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("the api servers hold {now} streams, not {expected}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
