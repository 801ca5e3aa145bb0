//! The report: JSON for machines, a Markdown table for people, with the targets and
//! whether this run met them.

use serde::Serialize;

use crate::ceiling::CeilingReport;
use crate::database::DatabaseReport;
use crate::direct::DirectReport;
use crate::group::GroupReport;
use crate::idle::IdleReport;
use crate::latency::Latency;
use crate::waits::summary;

/// Idle streams enough for the memory a stream to be judged, when fewer were held than
/// asked.
const IDLE_STREAMS_ENOUGH: usize = 1_000;

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub open_file_limit: Option<u64>,
    pub api_servers: usize,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub commit: Option<String>,
    pub machine: Machine,
    /// One-to-one request body, bytes.
    pub message_body_bytes: usize,
    pub ceiling: Option<CeilingReport>,
    pub direct: Option<DirectReport>,
    pub group: Option<GroupReport>,
    pub idle: Option<IdleReport>,
    pub database: Option<DatabaseReport>,
    pub targets: Vec<Target>,
}

impl Report {
    /// The targets, judged against what this run measured. The rates are judged as
    /// ratios to the yardsticks measured in the same run (the do-nothing ceiling and the
    /// database alone), since this machine's speed wanders from hour to hour.
    pub fn judge(&mut self) {
        let mut targets = Vec::new();
        if let Some(direct) = &self.direct {
            let rate = f64::from(direct.sustainable_rate.unwrap_or(0));
            if let Some(c) = &self.ceiling {
                let share = rate / c.requests_per_second.max(1.0);
                targets.push(Target {
                    what: "one-to-one sustainable rate, as a share of the ceiling".into(),
                    goal: "≥ 25%".into(),
                    measured: format!(
                        "{:.1}% ({rate:.0} of {:.0}/s)",
                        share * 100.0,
                        c.requests_per_second
                    ),
                    met: share >= 0.25,
                });
            }
            if let Some(d) = &self.database {
                let ratio = rate / d.messages_per_second.max(1.0);
                targets.push(Target {
                    what: "one-to-one sustainable rate, against pgbench one message a transaction"
                        .into(),
                    goal: "≥ 2×".into(),
                    measured: format!(
                        "{ratio:.2}× ({rate:.0} against {:.0}/s)",
                        d.messages_per_second
                    ),
                    met: ratio >= 2.0,
                });
            }
            targets.push(Target {
                what: "one-to-one sustainable rate (p99 under 100 ms, nothing lost)".into(),
                goal: "10,000 msg/s (where we aim)".into(),
                measured: format!("{rate:.0} msg/s"),
                met: rate >= 10_000.0,
            });
            if let Some(step) = direct.steps.iter().find(|s| s.offered_rate == 1_000) {
                targets.push(Target {
                    what: "one-to-one p99 at 1,000 msg/s".into(),
                    goal: "< 10 ms".into(),
                    measured: format!("{:.1} ms", step.latency.p99_ms),
                    met: step.held && step.latency.p99_ms < 10.0,
                });
                targets.push(Target {
                    what: "longest stall at 1,000 msg/s".into(),
                    goal: "≤ 50 ms".into(),
                    measured: format!("{:.1} ms", step.longest_stall_ms),
                    met: step.held && step.longest_stall_ms <= 50.0,
                });
                targets.push(Target {
                    what: "CPU per delivered message at 1,000 msg/s, the whole system".into(),
                    goal: "≤ 0.35 ms".into(),
                    measured: format!("{:.2} ms", step.cpu.total_ms),
                    met: step.held && step.cpu.total_ms <= 0.35,
                });
            }
        }
        if let Some(group) = &self.group {
            let whole = group.members >= 1_000;
            let sound = group.lost == 0 && group.duplicates == 0 && group.failed_sends == 0;
            targets.push(Target {
                what: format!(
                    "{}-member group message, p99 time to the last member",
                    group.members
                ),
                goal: "< 50 ms (1,000 members)".into(),
                measured: format!("{:.1} ms", group.time_to_last.p99_ms),
                met: whole && sound && group.time_to_last.p99_ms < 50.0,
            });
            targets.push(Target {
                what: format!(
                    "{} group messages/s to {} members, p99 delivery, nothing lost",
                    group.sustained.rate, group.members
                ),
                goal: "20/s to 1,000, < 250 ms".into(),
                measured: format!(
                    "{:.1} ms, {:.0} deliveries/s",
                    group.sustained.latency.p99_ms, group.sustained.deliveries_per_second
                ),
                met: whole
                    && sound
                    && group.sustained.rate >= 20
                    && group.sustained.latency.p99_ms < 250.0,
            });
        }
        if let Some(idle) = &self.idle {
            let per_stream = idle.api_bytes_per_stream + idle.balancer_bytes_per_stream;
            // The target is memory a stream; where the open-file limit holds the count
            // below what was asked, thousands of streams still make a sound average.
            let enough = idle.held >= idle.requested.min(IDLE_STREAMS_ENOUGH);
            let held = if idle.held < idle.requested {
                format!("{} (of {} asked)", idle.held, idle.requested)
            } else {
                idle.held.to_string()
            };
            targets.push(Target {
                what: "idle streams through the balancer, memory each (api + balancer)".into(),
                goal: "≤ 24 KiB".into(),
                measured: format!("{held} at {:.1} KiB", per_stream / 1024.0),
                met: enough && per_stream <= 24.0 * 1024.0,
            });
        }
        self.targets = targets;
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let mut line = |s: String| {
            md.push_str(&s);
            md.push('\n');
        };
        line("# FastChat benchmark".into());
        line(String::new());
        line(format!(
            "{} · {} · {} cores · {} api servers behind the balancer · PostgreSQL on the same machine{}",
            self.generated_at,
            self.machine.cpu,
            self.machine.cores,
            self.machine.api_servers,
            self.commit.as_ref().map(|c| format!(" · commit {c}")).unwrap_or_default()
        ));
        line(String::new());
        line("## Targets".into());
        line(String::new());
        line("| | goal | measured | met |".into());
        line("|---|---|---|---|".into());
        for t in &self.targets {
            line(format!(
                "| {} | {} | {} | {} |",
                t.what,
                t.goal,
                t.measured,
                if t.met { "yes" } else { "**no**" }
            ));
        }
        if let Some(direct) = &self.direct {
            line(String::new());
            line(format!(
                "## One-to-one ({} online users, {}-byte requests)",
                direct.users, self.message_body_bytes
            ));
            line(String::new());
            line("Send start (as scheduled) to arrival on the recipient's event stream.".into());
            line(String::new());
            line("The longest stall is the longest time in which a message was due and none arrived anywhere.".into());
            line(String::new());
            line("| offered msg/s | delivered msg/s | p50 ms | p90 ms | p99 ms | max ms | longest stall ms | lost | duplicated | refused | held |".into());
            line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|".into());
            for s in &direct.steps {
                line(format!(
                    "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
                    s.offered_rate,
                    s.delivered_rate,
                    s.latency.p50_ms,
                    s.latency.p90_ms,
                    s.latency.p99_ms,
                    s.latency.max_ms,
                    s.longest_stall_ms,
                    s.lost,
                    s.duplicates,
                    s.failed_sends,
                    if s.held { "yes" } else { "no" }
                ));
            }
            line(String::new());
            line(
                "CPU per delivered message, in milliseconds, and how busy the machine was:".into(),
            );
            line(String::new());
            line("| offered msg/s | api servers | balancer | PostgreSQL | bench (clients) | total | cores busy |".into());
            line("|---:|---:|---:|---:|---:|---:|---:|".into());
            for s in &direct.steps {
                let cpu = &s.cpu;
                line(format!(
                    "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0}% |",
                    s.offered_rate,
                    cpu.api_ms,
                    cpu.balancer_ms,
                    cpu.postgres_ms,
                    cpu.bench_ms,
                    cpu.total_ms,
                    cpu.machine_busy * 100.0
                ));
            }
            if direct.steps.iter().any(|s| s.servers.is_some()) {
                line(String::new());
                line("Where a message's time went, on average unless said: send start to the sender's 201 (p50 and p99); then, from the api servers' metrics, the session lookup's wait in its queue and its batch's time; the send's wait in its queue for a storing transaction, that transaction's time and how many sends it carried; the share of events that reached their streams whole (pushed, not read back from the inbox); and how long a stream's server took from the wake-up to handing the event to the response, pushed or read. Times in ms:".into());
                line(String::new());
                line("| offered msg/s | answered p50 | answered p99 | lookup queued | lookup batch | send queued | send transaction | sends a transaction | events pushed | wake-up to stream, pushed | … read |".into());
                line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".into());
                for s in &direct.steps {
                    if let Some(work) = &s.servers {
                        line(format!(
                            "| {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0}% | {:.3} | {:.2} |",
                            s.offered_rate,
                            s.answered.p50_ms,
                            s.answered.p99_ms,
                            work.mean_lookup_queue_ms(),
                            work.mean_lookup_batch_ms(),
                            work.mean_send_queue_ms(),
                            work.mean_send_batch_ms(),
                            work.mean_send_batch(),
                            work.pushed_share() * 100.0,
                            work.mean_pushed_delay_ms(),
                            work.mean_read_delay_ms()
                        ));
                    }
                }
            }
            if direct.steps.iter().any(|s| s.waits.is_some()) {
                line(String::new());
                line("Where PostgreSQL's backends waited (`pg_stat_activity` every 10 ms: the share of active backends seen in each wait event; `CPU` is none), with the checkpoints and autovacuum runs meanwhile:".into());
                line(String::new());
                line(
                    "| offered msg/s | backends active | wait events | NOTIFY queue, most | checkpoints | autovacuum runs |".into(),
                );
                line("|---:|---:|---|---:|---:|---:|".into());
                for s in &direct.steps {
                    if let Some(w) = &s.waits {
                        line(format!(
                            "| {} | {:.2} | {} | {:.4}% | {} | {} |",
                            s.offered_rate,
                            w.mean_active,
                            summary(&w.events, 5),
                            w.notify_queue_max * 100.0,
                            w.checkpoints,
                            w.autovacuums
                        ));
                    }
                }
                line(String::new());
                line("The heavyweight locks they waited for (`pg_locks`, the share of the lock waits seen), how often some backend held the NOTIFY commit lock (which a transaction that notifies takes at commit and holds until its commit record is on disk, so such commits go one at a time), and what that holder itself waited on meanwhile:".into());
                line(String::new());
                line("| offered msg/s | locks waited for | commit lock held | its holder meanwhile |".into());
                line("|---:|---|---:|---|".into());
                for s in &direct.steps {
                    if let Some(w) = &s.waits {
                        line(format!(
                            "| {} | {} | {:.0}% | {} |",
                            s.offered_rate,
                            summary(&w.locks, 3),
                            w.commit_lock_held * 100.0,
                            summary(&w.commit_lock_holder, 4),
                        ));
                    }
                }
            }
            line(String::new());
            line(format!(
                "Sustainable rate: **{}**. {}",
                direct
                    .sustainable_rate
                    .map_or("none".to_owned(), |r| format!("{r} msg/s")),
                direct.stopped
            ));
            line(String::new());
            line("![latency percentiles over offered rate](latency-percentiles.svg)".into());
            line("![latency CDF](latency-cdf.svg)".into());
        }
        if let Some(g) = &self.group {
            line(String::new());
            line(format!("## A group of {} online members", g.members));
            line(String::new());
            line("| | p50 ms | p90 ms | p99 ms | max ms |".into());
            line("|---|---:|---:|---:|---:|".into());
            let row = |what: &str, l: &Latency| {
                format!(
                    "| {what} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                )
            };
            line(row(
                &format!(
                    "one message at a time, time to the last member ({} messages)",
                    g.samples
                ),
                &g.time_to_last,
            ));
            line(row(
                "one message at a time, the sender's request until its 201",
                &g.send,
            ));
            line(row(
                "one message at a time, time to the first member",
                &g.time_to_first,
            ));
            line(row(
                &format!(
                    "{} msg/s sustained, time to the last member",
                    g.sustained.rate
                ),
                &g.sustained.time_to_last,
            ));
            line(row(
                &format!(
                    "{} msg/s sustained, the sender's request until its 201",
                    g.sustained.rate
                ),
                &g.sustained.send,
            ));
            line(row(
                &format!("{} msg/s sustained, each delivery", g.sustained.rate),
                &g.sustained.latency,
            ));
            line(String::new());
            line(format!(
                "Sustained: {} messages in {:.1} s, {} deliveries, **{:.0} deliveries/s**. Lost {}, duplicated {}, refused {}.",
                g.sustained.messages,
                g.sustained.seconds,
                g.sustained.deliveries,
                g.sustained.deliveries_per_second,
                g.lost,
                g.duplicates,
                g.failed_sends
            ));
            let cpu = &g.cpu;
            line(String::new());
            line(format!(
                "CPU one message at a time cost, all of the system together: {:.1} ms a message (api {:.1}, balancer {:.1}, PostgreSQL {:.1}, bench {:.1}), {:.0} µs a delivery. The last member has it only once all of that is done: on {} cores, {:.1} ms at the least.",
                cpu.total_ms,
                cpu.api_ms,
                cpu.balancer_ms,
                cpu.postgres_ms,
                cpu.bench_ms,
                cpu.total_ms * 1e3 / (g.members.max(2) - 1) as f64,
                self.machine.cores,
                cpu.total_ms / self.machine.cores.max(1) as f64
            ));
            if let Some(w) = &g.servers {
                line(String::new());
                line(format!(
                    "Where one message at a time went in the api servers, on average: its storing transaction {:.1} ms; then {:.1} reads of the message and its members' keys, {:.1} ms each; {:.0}% of the events handed to streams pushed whole, the rest in {:.1} inbox-read batches of {:.0} reads each, a batch {:.1} ms; from the wake-up to the event handed to its stream {:.1} ms.",
                    w.store_ms,
                    w.push_reads,
                    w.push_read_ms,
                    w.pushed_share * 100.0,
                    w.read_batches,
                    w.reads_per_batch,
                    w.read_batch_ms,
                    w.wake_to_stream_ms
                ));
            }
        }
        if let Some(i) = &self.idle {
            line(String::new());
            line("## Idle event streams through the balancer".into());
            line(String::new());
            line("| streams | opened in | api servers, per stream | balancer, per stream |".into());
            line("|---:|---:|---:|---:|".into());
            line(format!(
                "| {} | {:.1} s | {:.1} KiB | {:.1} KiB |",
                i.held,
                i.seconds_to_open,
                i.api_bytes_per_stream / 1024.0,
                i.balancer_bytes_per_stream / 1024.0
            ));
            if let Some(why) = &i.limited_by {
                line(String::new());
                line(format!("{} requested; {why}.", i.requested));
            }
        }
        if let Some(c) = &self.ceiling {
            line(String::new());
            line("## The ceiling: requests that do no work".into());
            line(String::new());
            line(format!(
                "`GET {}` through the balancer, {} at a time, for {:.0} s, before anything else ran: **{:.0} requests/s**, p50 {:.1} ms, p99 {:.1} ms, {} failed.",
                c.path,
                c.concurrency,
                c.seconds,
                c.requests_per_second,
                c.latency.p50_ms,
                c.latency.p99_ms,
                c.failed
            ));
            line(String::new());
            line("CPU per request, in milliseconds:".into());
            line(String::new());
            line(
                "| api servers | balancer | PostgreSQL | bench (clients) | total | cores busy |"
                    .into(),
            );
            line("|---:|---:|---:|---:|---:|---:|".into());
            line(format!(
                "| {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0}% |",
                c.cpu.api_ms,
                c.cpu.balancer_ms,
                c.cpu.postgres_ms,
                c.cpu.bench_ms,
                c.cpu.total_ms,
                c.cpu.machine_busy * 100.0
            ));
            line(String::new());
            line("A one-to-one message is a request like this one, plus its work in the api server and PostgreSQL, plus an event pushed back through the balancer: no message rate on this machine can reach this request rate.".into());
            if let Some(rate) = self.direct.as_ref().and_then(|d| d.sustainable_rate) {
                line(String::new());
                line(format!(
                    "FastChat's sustainable one-to-one rate is {:.0}% of it.",
                    100.0 * f64::from(rate) / c.requests_per_second.max(1.0)
                ));
            }
        }
        if let Some(d) = &self.database {
            line(String::new());
            line("## The database alone".into());
            line(String::new());
            line(format!(
                "pgbench, {} clients for {} s, calling the SQL functions the server calls for one one-to-one message (`fastchat_find_live_sessions`, then `fastchat_send_direct_messages`: store, inbox event, notification), one transaction per message: **{:.0} msg/s**{}.",
                d.clients,
                d.seconds,
                d.messages_per_second,
                d.mean_latency_ms.map(|l| format!(", {l:.2} ms mean")).unwrap_or_default()
            ));
            if let Some(rate) = self.direct.as_ref().and_then(|d| d.sustainable_rate) {
                line(String::new());
                line(format!(
                    "FastChat's sustainable one-to-one rate is {:.0}% of that.",
                    100.0 * f64::from(rate) / d.messages_per_second.max(1.0)
                ));
            }
        }
        md
    }
}
