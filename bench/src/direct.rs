//! One-to-one messages, open loop: each step offers a fixed rate for a while, sending on
//! schedule whatever the replies, so latency includes any queueing. The rate goes up
//! step by step until p99 delivery latency passes the limit or a message goes missing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

use crate::latency::{cdf, Latency};
use crate::profile::{Recording, Statements};
use crate::setup::Bench;
use crate::system::{CpuCost, Processes};
use crate::waits::{summary, Sampler, Waits};

/// How long stragglers may take before they count as lost.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct Step {
    pub offered_rate: u32,
    pub seconds: f64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub failed_sends: u64,
    /// Arrivals of messages this step did not send (late ones from the step before).
    pub strays: u64,
    /// Deliveries per second, first send to last arrival.
    pub delivered_rate: f64,
    pub latency: Latency,
    /// Send start (as scheduled) to the sender's 201, per message stored.
    pub answered: Latency,
    /// The longest time in which a message was due and none arrived.
    pub longest_stall_ms: f64,
    /// Where PostgreSQL's backends waited meanwhile.
    pub waits: Option<Waits>,
    /// What the api servers did for the step, from their metrics.
    pub servers: Option<ServerWork>,
    /// (latency in ms, fraction delivered within it)
    pub cdf: Vec<(f64, f64)>,
    pub held: bool,
    /// Where the CPU went, per delivered message, from the step's start until
    /// everything had arrived.
    pub cpu: CpuCost,
}

#[derive(Debug, Serialize)]
pub struct DirectReport {
    pub users: usize,
    pub p99_limit_ms: f64,
    pub steps: Vec<Step>,
    /// The highest offered rate that held.
    pub sustainable_rate: Option<u32>,
    pub stopped: String,
}

/// What watches each step besides the bench's own clients.
#[derive(Clone, Copy, Default)]
pub struct Observers<'a> {
    /// The database, for its backends' wait events.
    pub database_url: Option<&'a str>,
    /// Where a whole-machine CPU profile of each step goes.
    pub profile_dir: Option<&'a Path>,
}

/// How the api servers served a step: how many events reached streams whole (pushed)
/// rather than read back from the inbox, how many sends each transaction stored, and
/// how long sends waited in the queue for their transaction.
#[derive(Debug, Clone, Serialize)]
pub struct ServerWork {
    pub events_pushed: f64,
    pub events_read: f64,
    pub send_batches: f64,
    pub sends: f64,
    pub send_queue_seconds: f64,
    pub send_batch_seconds: f64,
    /// Session lookups, with their seconds queued and their batches' seconds serving.
    pub lookups: f64,
    pub lookup_queue_seconds: f64,
    pub lookup_batches: f64,
    pub lookup_batch_seconds: f64,
    /// Events handed to their streams after a wake-up, pushed and read, with the seconds
    /// from the wake-up to each.
    pub pushed_delays: f64,
    pub pushed_delay_seconds: f64,
    pub read_delays: f64,
    pub read_delay_seconds: f64,
}

/// The series behind each of [`ServerWork`]'s fields, in their order.
const WORK_SERIES: [&str; 14] = [
    "fastchat_sse_events_total{source=\"pushed\"}",
    "fastchat_sse_events_total{source=\"inbox\"}",
    "fastchat_batch_size_count{kind=\"direct_sends\"}",
    "fastchat_batch_size_sum{kind=\"direct_sends\"}",
    "fastchat_batch_wait_seconds_sum{kind=\"direct_sends\"}",
    "fastchat_batch_seconds_sum{kind=\"direct_sends\"}",
    "fastchat_batch_wait_seconds_count{kind=\"session_lookups\"}",
    "fastchat_batch_wait_seconds_sum{kind=\"session_lookups\"}",
    "fastchat_batch_seconds_count{kind=\"session_lookups\"}",
    "fastchat_batch_seconds_sum{kind=\"session_lookups\"}",
    "fastchat_sse_event_delay_seconds_count{source=\"pushed\"}",
    "fastchat_sse_event_delay_seconds_sum{source=\"pushed\"}",
    "fastchat_sse_event_delay_seconds_count{source=\"inbox\"}",
    "fastchat_sse_event_delay_seconds_sum{source=\"inbox\"}",
];

/// `seconds` spent over `count` of something, each on average, in milliseconds (0 for none).
fn mean_ms(seconds: f64, count: f64) -> f64 {
    seconds * 1e3 / count.max(1.0)
}

impl ServerWork {
    /// What the counters grew by between two readings.
    fn between(before: [f64; WORK_SERIES.len()], after: [f64; WORK_SERIES.len()]) -> Self {
        let grew = |i: usize| after[i] - before[i];
        ServerWork {
            events_pushed: grew(0),
            events_read: grew(1),
            send_batches: grew(2),
            sends: grew(3),
            send_queue_seconds: grew(4),
            send_batch_seconds: grew(5),
            lookups: grew(6),
            lookup_queue_seconds: grew(7),
            lookup_batches: grew(8),
            lookup_batch_seconds: grew(9),
            pushed_delays: grew(10),
            pushed_delay_seconds: grew(11),
            read_delays: grew(12),
            read_delay_seconds: grew(13),
        }
    }

    /// The share of events that were pushed whole.
    pub fn pushed_share(&self) -> f64 {
        self.events_pushed / (self.events_pushed + self.events_read).max(1.0)
    }

    pub fn mean_send_batch(&self) -> f64 {
        self.sends / self.send_batches.max(1.0)
    }

    /// How long a send waited in its server's queue until its batch was taken, on
    /// average, in milliseconds.
    pub fn mean_send_queue_ms(&self) -> f64 {
        mean_ms(self.send_queue_seconds, self.sends)
    }

    /// How long a storing transaction took, on average, in milliseconds.
    pub fn mean_send_batch_ms(&self) -> f64 {
        mean_ms(self.send_batch_seconds, self.send_batches)
    }

    /// How long a session lookup waited in its queue, on average, in milliseconds.
    pub fn mean_lookup_queue_ms(&self) -> f64 {
        mean_ms(self.lookup_queue_seconds, self.lookups)
    }

    /// How long a batch of session lookups took, on average, in milliseconds.
    pub fn mean_lookup_batch_ms(&self) -> f64 {
        mean_ms(self.lookup_batch_seconds, self.lookup_batches)
    }

    /// From a stream's wake-up to a pushed event handed to its response, on average, in
    /// milliseconds.
    pub fn mean_pushed_delay_ms(&self) -> f64 {
        mean_ms(self.pushed_delay_seconds, self.pushed_delays)
    }

    /// The same for an event read back from the inbox.
    pub fn mean_read_delay_ms(&self) -> f64 {
        mean_ms(self.read_delay_seconds, self.read_delays)
    }
}

pub async fn sweep(
    bench: &Arc<Bench>,
    processes: &Processes,
    rates: &[u32],
    step: Duration,
    p99_limit_ms: f64,
    users: usize,
    observers: Observers<'_>,
) -> DirectReport {
    let users = users.min(bench.users.len());
    let mut steps: Vec<Step> = Vec::new();
    let mut stopped = "Every offered rate held.".to_owned();
    for &rate in rates {
        let sampler = match observers.database_url {
            Some(url) => Sampler::start(url).await,
            None => None,
        };
        let name = format!("direct-{rate}");
        let statements = match (observers.profile_dir, observers.database_url) {
            (Some(dir), Some(url)) => Statements::start(url, dir, &name).await,
            _ => None,
        };
        let recording = observers
            .profile_dir
            .and_then(|dir| Recording::start(dir, &name, step));
        let counted = processes.ignoring(sampler.as_ref().and_then(|s| s.backend_pid));
        let mut result = run_step(bench, &counted, users, rate, step, p99_limit_ms).await;
        if let Some(sampler) = sampler {
            result.waits = Some(sampler.stop().await);
        }
        if let Some(recording) = recording {
            recording.finish().await;
        }
        if let Some(statements) = statements {
            statements.finish(result.delivered).await;
        }
        println!(
            "  {rate:>6} msg/s offered: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, longest stall {:.1} ms, {} lost, {} duplicated, {} refused",
            result.latency.p50_ms, result.latency.p99_ms, result.latency.max_ms, result.longest_stall_ms,
            result.lost, result.duplicates, result.failed_sends
        );
        if let Some(work) = &result.servers {
            println!(
                "         api servers: {:.0}% of events pushed whole, {:.1} sends a transaction, {:.2} ms queued",
                work.pushed_share() * 100.0,
                work.mean_send_batch(),
                work.mean_send_queue_ms()
            );
        }
        if let Some(waits) = &result.waits {
            println!(
                "         PostgreSQL, {} samples: {:.2} backends active on average: {}; {} checkpoints, {} autovacuum runs; the commit lock held {:.0}% of the time, its holder: {}",
                waits.samples,
                waits.mean_active,
                summary(&waits.events, 4),
                waits.checkpoints,
                waits.autovacuums,
                waits.commit_lock_held * 100.0,
                summary(&waits.commit_lock_holder, 3)
            );
        }
        let held = result.held;
        if !held {
            stopped = format!(
                "The sweep stopped at {rate} msg/s: p99 {:.1} ms, {} lost, {} duplicated, {} refused.",
                result.latency.p99_ms, result.lost, result.duplicates, result.failed_sends
            );
        }
        steps.push(result);
        if !held {
            break;
        }
    }
    DirectReport {
        users,
        p99_limit_ms,
        sustainable_rate: steps
            .iter()
            .take_while(|s| s.held)
            .last()
            .map(|s| s.offered_rate),
        steps,
        stopped,
    }
}

async fn run_step(
    bench: &Arc<Bench>,
    processes: &Processes,
    online: usize,
    rate: u32,
    length: Duration,
    p99_limit_ms: f64,
) -> Step {
    let count = (f64::from(rate) * length.as_secs_f64()).round() as u64;
    let cpu_before = processes.cpu_times();
    let counters_before = bench.server_counters(WORK_SERIES).await;
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..count {
        // The schedule, not the replies, decides when each message goes.
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let (from, to) = {
            let mut rng = rand::thread_rng();
            let from = rng.gen_range(0..online);
            let to = (from + rng.gen_range(1..online)) % online;
            (from, to)
        };
        let id = Uuid::new_v4();
        bench.tracker.expect(id, due, 1);
        let bench = Arc::clone(bench);
        tokio::spawn(async move {
            let (sender, recipient) = (&bench.users[from], &bench.users[to]);
            let message = bench.envelopes.direct(&sender.name, &recipient.name, id);
            bench
                .http
                .send(&sender.token, &message, &bench.tracker, id, due)
                .await;
        });
    }
    let seconds = start.elapsed().as_secs_f64();
    bench.tracker.drained(Instant::now() + DRAIN).await;
    let tally = bench.tracker.finish();
    // Read once everything has arrived (or the drain gave up waiting).
    let cpu = CpuCost::between(
        cpu_before,
        processes.cpu_times(),
        tally.delivered,
        start.elapsed(),
    );
    let latency = Latency::of(&tally.deliveries);
    let servers = match counters_before {
        Some(before) => bench
            .server_counters(WORK_SERIES)
            .await
            .map(|after| ServerWork::between(before, after)),
        None => None,
    };
    Step {
        offered_rate: rate,
        seconds,
        sent: tally.sent,
        delivered: tally.delivered,
        lost: tally.lost,
        duplicates: tally.duplicates,
        failed_sends: tally.failed_sends,
        strays: tally.strays,
        delivered_rate: tally.delivered as f64 / tally.span.as_secs_f64().max(1e-3),
        held: latency.p99_ms <= p99_limit_ms
            && tally.lost == 0
            && tally.duplicates == 0
            && tally.failed_sends == 0
            && tally.delivered == tally.sent,
        cdf: cdf(&tally.deliveries),
        longest_stall_ms: tally.longest_stall.as_secs_f64() * 1e3,
        waits: None,
        servers,
        latency,
        answered: Latency::of(&tally.answers),
        cpu,
    }
}
