//! fastchat-bench: drives a running FastChat system (PostgreSQL, api servers, the
//! balancer) from outside, over HTTP and server-sent events, and writes a report:
//! `report.json`, `report.md` and two SVG plots. `scripts/bench` starts the system and
//! runs this; see README.md, "Performance".

mod ceiling;
mod client;
mod database;
mod direct;
mod group;
mod idle;
mod latency;
mod plot;
mod profile;
mod report;
mod setup;
mod system;
mod tracker;
mod waits;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};

use crate::client::Http;
use crate::report::{Machine, Report};
use crate::setup::Bench;
use crate::system::Processes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Ceiling,
    Direct,
    Group,
    Idle,
    Database,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Measures a running FastChat system and writes a report"
)]
struct Args {
    /// The balancer, where every client request goes.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    balancer: String,
    /// Each api server's admin listener (for its metrics); repeat the flag.
    #[arg(long = "api", required = true)]
    apis: Vec<String>,
    /// Each api server's process id, to read its memory; repeat the flag.
    #[arg(long = "api-pid")]
    api_pids: Vec<u32>,
    #[arg(long)]
    balancer_pid: Option<u32>,
    /// PostgreSQL's postmaster, to count its backends' CPU time.
    #[arg(long)]
    postgres_pid: Option<u32>,
    /// The database the api servers use, for pgbench.
    #[arg(long, env = "FASTCHAT_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, default_value = "pgbench")]
    pgbench: String,
    /// Where the report goes.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// A few seconds of everything at low load: checks the bench and the system work.
    #[arg(long)]
    smoke: bool,
    /// Which scenarios to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,direct,group,idle,database"
    )]
    only: Vec<Scenario>,
    /// One-to-one offered rates to sweep, messages per second.
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u32>>,
    /// Seconds each rate is offered for.
    #[arg(long)]
    step_secs: Option<f64>,
    /// Online users in the one-to-one sweep.
    #[arg(long)]
    users: Option<usize>,
    #[arg(long)]
    group_size: Option<usize>,
    /// Group messages per second in the sustained run.
    #[arg(long)]
    group_rate: Option<u32>,
    #[arg(long)]
    idle_streams: Option<usize>,
    /// Loopback source addresses to spread connections over (127.0.0.1 to .N).
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Records a CPU profile of the whole machine (`perf record`) during each one-to-one
    /// step and the group's sustained run, into this directory (`scripts/profile` reads
    /// it).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Recorded in the report.
    #[arg(long, env = "FASTCHAT_COMMIT")]
    commit: Option<String>,
}

struct Settings {
    rates: Vec<u32>,
    step: Duration,
    users: usize,
    group_size: usize,
    group_samples: u64,
    group_rate: u32,
    group_length: Duration,
    idle_streams: usize,
    pgbench_length: Duration,
    ceiling_concurrency: usize,
    ceiling_length: Duration,
}

impl Settings {
    fn from(args: &Args) -> Self {
        let base = if args.smoke {
            Settings {
                rates: vec![20, 50],
                step: Duration::from_secs(1),
                users: 20,
                group_size: 20,
                group_samples: 3,
                group_rate: 5,
                group_length: Duration::from_secs(1),
                idle_streams: 200,
                pgbench_length: Duration::from_secs(1),
                ceiling_concurrency: 8,
                ceiling_length: Duration::from_secs(1),
            }
        } else {
            Settings {
                // Long steps, so that a stall that comes every few seconds shows in each.
                rates: vec![
                    250, 500, 1_000, 1_500, 2_000, 3_000, 4_000, 6_000, 8_000, 10_000, 12_000,
                    15_000, 20_000,
                ],
                step: Duration::from_secs(20),
                users: 1_000,
                group_size: 1_000,
                group_samples: 100,
                group_rate: 20,
                group_length: Duration::from_secs(5),
                idle_streams: 50_000,
                pgbench_length: Duration::from_secs(10),
                ceiling_concurrency: 64,
                ceiling_length: Duration::from_secs(5),
            }
        };
        Settings {
            rates: args.rates.clone().unwrap_or(base.rates),
            step: args.step_secs.map_or(base.step, Duration::from_secs_f64),
            users: args.users.unwrap_or(base.users).max(2),
            group_size: args.group_size.unwrap_or(base.group_size).max(2),
            group_rate: args.group_rate.unwrap_or(base.group_rate).max(1),
            idle_streams: args.idle_streams.unwrap_or(base.idle_streams),
            ..base
        }
    }
}

/// Lets the machine come to rest before a scenario, and says so if it would not.
async fn settle(smoke: bool) {
    let deadline = Duration::from_secs(if smoke { 5 } else { 30 });
    if system::settle(deadline).await.is_none() {
        println!(
            "  (the machine was still busy after {} s; measuring anyway)",
            deadline.as_secs()
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fastchat-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the scenarios and writes the report; `false` if a message was lost or
/// duplicated where nothing should be.
async fn run(args: Args) -> anyhow::Result<bool> {
    let settings = Settings::from(&args);
    let mut sound = true;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let http = Http::new(&args.balancer, args.sources)?;
    http.wait_ready(Duration::from_secs(30)).await?;
    let processes = Processes {
        api: args.api_pids.clone(),
        balancer: args.balancer_pid,
        postgres: args.postgres_pid,
        ignored_backends: Vec::new(),
    };

    // First, while nothing else runs: the system at rest is what it measures.
    let ceiling = if args.only.contains(&Scenario::Ceiling) {
        settle(args.smoke).await;
        println!(
            "the ceiling: {} at once of GET /healthz, {} s",
            settings.ceiling_concurrency,
            settings.ceiling_length.as_secs_f64()
        );
        let ceiling_http = Arc::new(Http::new(&args.balancer, args.sources)?);
        let report = ceiling::run(
            &ceiling_http,
            &processes,
            settings.ceiling_concurrency,
            settings.ceiling_length,
        )
        .await?;
        println!(
            "  {:.0} requests/s, p99 {:.1} ms, {} failed; balancer {:.3} ms CPU a request",
            report.requests_per_second,
            report.latency.p99_ms,
            report.failed,
            report.cpu.balancer_ms
        );
        sound &= report.failed == 0;
        Some(report)
    } else {
        None
    };

    let mut bench = Bench::new(http, args.apis.clone())?;

    let online = if args.only.contains(&Scenario::Group) {
        settings.users.max(settings.group_size)
    } else if args.only.iter().any(|s| *s != Scenario::Ceiling) {
        settings.users
    } else {
        0
    };
    if online > 0 {
        println!("signing up {online} users, each with an event stream");
        let users = bench.sign_up(0, online).await?;
        bench.go_online(users).await?;
    }
    let mut bench = Arc::new(bench);

    let direct = if args.only.contains(&Scenario::Direct) {
        settle(args.smoke).await;
        println!("one-to-one sweep, {} s a step", settings.step.as_secs_f64());
        let users = settings.users;
        // The sweep talks among the first `users`; the rest stay online but quiet.
        let sweep_bench = Arc::clone(&bench);
        let report = direct::sweep(
            &sweep_bench,
            &processes,
            &settings.rates,
            settings.step,
            100.0,
            users,
            direct::Observers {
                database_url: args.database_url.as_deref(),
                profile_dir: args.profile.as_deref(),
            },
        )
        .await;
        sound &= report.steps.iter().all(|s| s.duplicates == 0);
        if args.smoke {
            sound &= report
                .steps
                .iter()
                .all(|s| s.lost == 0 && s.failed_sends == 0);
        }
        Some(report)
    } else {
        None
    };

    let group = if args.only.contains(&Scenario::Group) {
        settle(args.smoke).await;
        println!("a group of {} online members", settings.group_size);
        let report = group::run(
            &bench,
            settings.group_size,
            settings.group_samples,
            settings.group_rate,
            settings.group_length,
            &processes,
            direct::Observers {
                database_url: args.database_url.as_deref(),
                profile_dir: args.profile.as_deref(),
            },
        )
        .await?;
        println!(
            "  time to the last member: p50 {:.1} ms, p99 {:.1} ms; sustained {:.0} deliveries/s",
            report.time_to_last.p50_ms,
            report.time_to_last.p99_ms,
            report.sustained.deliveries_per_second
        );
        sound &= report.lost == 0 && report.duplicates == 0 && report.failed_sends == 0;
        Some(report)
    } else {
        None
    };

    let idle = match (args.only.contains(&Scenario::Idle), args.balancer_pid) {
        (true, Some(balancer_pid)) if !args.api_pids.is_empty() => {
            println!("holding up to {} idle streams", settings.idle_streams);
            // Sends still finishing hold the bench; they end within their timeout.
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while Arc::strong_count(&bench) > 1 && std::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let bench = Arc::get_mut(&mut bench).context("a send is still running")?;
            let report =
                idle::run(bench, settings.idle_streams, &args.api_pids, balancer_pid).await?;
            println!(
                "  {} streams: {:.1} KiB each in the api servers, {:.1} KiB in the balancer",
                report.held,
                report.api_bytes_per_stream / 1024.0,
                report.balancer_bytes_per_stream / 1024.0
            );
            Some(report)
        }
        (true, _) => {
            println!("skipping idle streams: give --api-pid for each server and --balancer-pid");
            None
        }
        (false, _) => None,
    };

    let database = match (&args.database_url, args.only.contains(&Scenario::Database)) {
        (Some(url), true) => {
            settle(args.smoke).await;
            println!("pgbench: the SQL of one message, one transaction each");
            let report = database::Pgbench {
                program: &args.pgbench,
                database_url: url,
                out_dir: &args.out,
                clients: 8,
                length: settings.pgbench_length,
            }
            .run(online)?;
            println!("  {:.0} messages/s", report.messages_per_second);
            Some(report)
        }
        (None, true) => {
            println!("skipping pgbench: no --database-url");
            None
        }
        (_, false) => None,
    };

    let streams_ended = bench.tracker.finish().streams_ended;
    if streams_ended > 0 {
        println!("{streams_ended} event streams ended while in use");
        sound = false;
    }

    let mut report = Report {
        generated_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: args.commit.clone(),
        machine: Machine {
            cpu: system::cpu_model(),
            cores: system::cores(),
            open_file_limit: system::open_file_limit(),
            api_servers: args.apis.len(),
        },
        message_body_bytes: bench.envelopes.direct_body_bytes(),
        ceiling,
        direct,
        group,
        idle,
        database,
        targets: Vec::new(),
    };
    report.judge();
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let markdown = report.markdown();
    std::fs::write(args.out.join("report.md"), &markdown)?;
    if let Some(direct) = &report.direct {
        plot::percentiles(direct, &args.out.join("latency-percentiles.svg"))?;
    }
    plot::cdf(
        report.direct.as_ref(),
        report.group.as_ref(),
        &args.out.join("latency-cdf.svg"),
    )?;
    println!("\n{markdown}");
    println!("report written to {}", args.out.display());
    Ok(sound)
}
