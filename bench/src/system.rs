//! What the bench reads off the machine: process memory and CPU time, the file limit,
//! the CPU, and the api servers' own count of open streams.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

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

/// `/proc` counts CPU time in USER_HZ ticks, which Linux fixes at 100 a second for
/// user space whatever the kernel's own tick rate.
const USER_HZ: u64 = 100;

/// CPU time (user and system, all threads) a process has used so far; `None` once it
/// has gone.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// The fields of `/proc/PID/stat` after the process name, which may hold spaces and
/// parentheses of its own.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace().collect())
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat_fields(&stat)?.get(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

/// The parts of the system whose CPU time the bench counts.
#[derive(Debug, Clone, Default)]
pub struct Processes {
    pub api: Vec<u32>,
    pub balancer: Option<u32>,
    /// PostgreSQL's postmaster; its backends are its children.
    pub postgres: Option<u32>,
    /// Backends of the bench's own (its wait sampler's), not counted.
    pub ignored_backends: Vec<u32>,
}

/// CPU time used so far, by part.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub api: Duration,
    pub balancer: Duration,
    pub postgres: Duration,
    pub bench: Duration,
}

impl Processes {
    /// The same, not counting these backends.
    pub fn ignoring(&self, backends: impl IntoIterator<Item = u32>) -> Processes {
        let mut processes = self.clone();
        processes.ignored_backends.extend(backends);
        processes
    }

    pub fn cpu_times(&self) -> CpuTimes {
        let sum = |pids: &mut dyn Iterator<Item = u32>| pids.filter_map(cpu_time).sum();
        CpuTimes {
            api: sum(&mut self.api.iter().copied()),
            balancer: sum(&mut self.balancer.into_iter()),
            // Backends that exited since the last reading take their time with them;
            // the api servers' pools keep theirs open.
            postgres: self.postgres.map_or(Duration::ZERO, |postmaster| {
                sum(&mut std::iter::once(postmaster)
                    .chain(children(postmaster))
                    .filter(|pid| !self.ignored_backends.contains(pid)))
            }),
            bench: cpu_time(std::process::id()).unwrap_or_default(),
        }
    }
}

/// CPU milliseconds per unit of work (a delivered message, a request), by part of the
/// system.
#[derive(Debug, Serialize)]
pub struct CpuCost {
    pub api_ms: f64,
    pub balancer_ms: f64,
    pub postgres_ms: f64,
    /// The clients: this bench.
    pub bench_ms: f64,
    pub total_ms: f64,
    /// The share of all cores busy with any of it while it was measured.
    pub machine_busy: f64,
}

impl CpuCost {
    pub fn between(before: CpuTimes, after: CpuTimes, units: u64, elapsed: Duration) -> Self {
        let per = |a: Duration, b: Duration| {
            b.saturating_sub(a).as_secs_f64() * 1e3 / units.max(1) as f64
        };
        let api_ms = per(before.api, after.api);
        let balancer_ms = per(before.balancer, after.balancer);
        let postgres_ms = per(before.postgres, after.postgres);
        let bench_ms = per(before.bench, after.bench);
        let total_ms = api_ms + balancer_ms + postgres_ms + bench_ms;
        CpuCost {
            api_ms,
            balancer_ms,
            postgres_ms,
            bench_ms,
            total_ms,
            machine_busy: total_ms * units as f64
                / 1e3
                / (elapsed.as_secs_f64() * cores() as f64).max(1e-3),
        }
    }
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

/// (busy, total) jiffies of all cores since boot, from `/proc/stat`.
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_jiffies(&stat)
}

fn parse_machine_jiffies(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Waits (up to `deadline`) until the machine is at rest: under a tenth of its cores
/// busy for a second. What one scenario leaves behind (PostgreSQL's autovacuum after a
/// burst of writes, say) should not be measured as part of the next. Returns how long
/// it waited, or `None` if the machine never settled.
pub async fn settle(deadline: Duration) -> Option<Duration> {
    const WINDOW: Duration = Duration::from_secs(1);
    let start = Instant::now();
    let mut before = machine_jiffies()?;
    loop {
        tokio::time::sleep(WINDOW).await;
        let now = machine_jiffies()?;
        let busy = (now.0 - before.0) as f64 / (now.1 - before.1).max(1) as f64;
        if busy < 0.10 {
            return Some(start.elapsed());
        }
        if start.elapsed() > deadline {
            return None;
        }
        before = now;
    }
}

/// The sum over the api servers of each of these series (`name{labels}` as the
/// metrics page prints them), in order.
pub async fn metric_sums<const N: usize>(
    http: &reqwest::Client,
    apis: &[String],
    series: [&str; N],
) -> anyhow::Result<[f64; N]> {
    let mut totals = [0.0; N];
    for api in apis {
        let text = http
            .get(format!("{}/metrics", api.trim_end_matches('/')))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        for (total, name) in totals.iter_mut().zip(series) {
            *total += series_value(&text, name)
                .with_context(|| format!("{api}/metrics has no {name}"))?;
        }
    }
    Ok(totals)
}

/// The value of the series `name` (with its labels, as printed) on a metrics page.
fn series_value(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// The sum of `fastchat_sse_streams_open` over the api servers.
pub async fn open_streams(http: &reqwest::Client, apis: &[String]) -> anyhow::Result<u64> {
    let [open] = metric_sums(http, apis, ["fastchat_sse_streams_open"]).await?;
    Ok(open as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_series_by_its_whole_name_and_labels() {
        let page = "# HELP fastchat_sse_events_total Events\n\
            fastchat_sse_events_total{source=\"inbox\"} 12\n\
            fastchat_sse_events_total{source=\"pushed\"} 3045\n\
            fastchat_sse_streams_open 7\n\
            fastchat_sse_streams_opened 9\n";
        let pushed = "fastchat_sse_events_total{source=\"pushed\"}";
        assert_eq!(series_value(page, pushed), Some(3045.0));
        assert_eq!(series_value(page, "fastchat_sse_streams_open"), Some(7.0));
        assert_eq!(
            series_value(page, "fastchat_sse_events_total"),
            None,
            "labels count"
        );
        assert_eq!(series_value(page, "fastchat_nothing"), None);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 7 0 0\ncpu0 50 2 25 500 10 1 1 3 0 0\n";
        // user + nice + system + irq + softirq + steal; all eight counted in the total.
        assert_eq!(parse_machine_jiffies(stat), Some((167, 1187)));
        assert_eq!(parse_machine_jiffies("intr 1 2 3"), None);
    }

    #[test]
    fn reads_stat_fields_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (pg: a) b) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1";
        let fields = stat_fields(stat).expect("fields");
        assert_eq!(fields[0], "S");
        assert_eq!(fields[1], "17", "the parent");
        assert_eq!((fields[11], fields[12]), ("250", "75"), "utime and stime");
    }

    #[test]
    fn counts_this_process_and_finds_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        assert!(children(std::process::id()).contains(&child.id()));
        assert!(cpu_time(std::process::id()).is_some());
        assert!(cpu_time(child.id()).is_some());
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(!children(std::process::id()).contains(&child.id()));
    }
}
