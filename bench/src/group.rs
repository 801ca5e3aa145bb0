//! A group whose members are all online: how long one message takes to reach the last
//! of them, and how many deliveries per second a steady stream of group messages gets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

use fastchat_protocol::envelope::GroupBinding;
use fastchat_protocol::group::{Change, Statement};
use fastchat_protocol::keys::fingerprint;
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::wire::CreateGroup;

use crate::direct::Observers;
use crate::latency::{cdf, Latency};
use crate::profile::{Recording, Statements};
use crate::setup::Bench;
use crate::system::{CpuCost, Processes};

const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct GroupReport {
    pub members: usize,
    /// One message at a time: send start to the last member's arrival.
    pub samples: u64,
    pub time_to_last: Latency,
    pub time_to_last_cdf: Vec<(f64, f64)>,
    /// One message at a time: the sender's request until its 201 (stored ones).
    pub send: Latency,
    /// One message at a time: send start to the first member's arrival.
    pub time_to_first: Latency,
    /// One message at a time, from the api servers' metrics; `None` when unread.
    pub servers: Option<GroupWork>,
    /// One message at a time: the CPU each message cost, all of the system together.
    pub cpu: CpuCost,
    pub sustained: Sustained,
    pub lost: u64,
    pub duplicates: u64,
    pub failed_sends: u64,
}

/// Where one group message's time went in the api servers, on average over the
/// one-at-a-time messages.
#[derive(Debug, Serialize)]
pub struct GroupWork {
    /// The storing transaction (the members' locks, keys, inbox events, wake-up).
    pub store_ms: f64,
    /// Reads of the message and its members' keys (one a server holding members'
    /// streams) a message caused, over all servers, and a read's time.
    pub push_reads: f64,
    pub push_read_ms: f64,
    /// Of the events handed to streams, the share pushed whole (the rest were read back
    /// from the inboxes).
    pub pushed_share: f64,
    /// Inbox-read batches a message caused, over all servers, and reads in each.
    pub read_batches: f64,
    pub reads_per_batch: f64,
    /// A batch's time.
    pub read_batch_ms: f64,
    /// A stream's server, from the wake-up to handing the event to the response.
    pub wake_to_stream_ms: f64,
}

/// The series behind [`GroupWork`], in the order [`GroupWork::between`] reads them.
const WORK_SERIES: [&str; 11] = [
    "fastchat_batch_seconds_count{kind=\"group_sends\"}",
    "fastchat_batch_seconds_sum{kind=\"group_sends\"}",
    "fastchat_batch_seconds_count{kind=\"group_pushes\"}",
    "fastchat_batch_seconds_sum{kind=\"group_pushes\"}",
    "fastchat_batch_size_count{kind=\"inbox_reads\"}",
    "fastchat_batch_size_sum{kind=\"inbox_reads\"}",
    "fastchat_batch_seconds_sum{kind=\"inbox_reads\"}",
    "fastchat_sse_event_delay_seconds_count{source=\"inbox\"}",
    "fastchat_sse_event_delay_seconds_sum{source=\"inbox\"}",
    "fastchat_sse_event_delay_seconds_count{source=\"pushed\"}",
    "fastchat_sse_event_delay_seconds_sum{source=\"pushed\"}",
];

impl GroupWork {
    fn between(before: [f64; WORK_SERIES.len()], after: [f64; WORK_SERIES.len()]) -> Self {
        let grew = |i: usize| after[i] - before[i];
        let per = |total: f64, count: f64| total / count.max(1.0);
        let (stores, push_reads, batches, reads) = (grew(0), grew(2), grew(4), grew(5));
        let (read_events, pushed_events) = (grew(7), grew(9));
        let events = read_events + pushed_events;
        GroupWork {
            store_ms: per(grew(1) * 1e3, stores),
            push_reads: per(push_reads, stores),
            push_read_ms: per(grew(3) * 1e3, push_reads),
            pushed_share: per(pushed_events, events),
            read_batches: per(batches, stores),
            reads_per_batch: per(reads, batches),
            read_batch_ms: per(grew(6) * 1e3, batches),
            wake_to_stream_ms: per((grew(8) + grew(10)) * 1e3, events),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Sustained {
    /// Group messages offered per second.
    pub rate: u32,
    pub seconds: f64,
    pub messages: u64,
    pub deliveries: u64,
    pub deliveries_per_second: f64,
    /// Per delivery.
    pub latency: Latency,
    pub time_to_last: Latency,
    /// From when each message was due until its sender had the 201.
    pub send: Latency,
}

pub async fn run(
    bench: &Arc<Bench>,
    members: usize,
    samples: u64,
    rate: u32,
    length: Duration,
    processes: &Processes,
    observers: Observers<'_>,
) -> anyhow::Result<GroupReport> {
    let members = members.min(bench.users.len());
    let name = format!("{}_crew", bench.prefix);
    let names: Vec<&str> = bench.users[..members]
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    // Every bench user shares one key: the statement names it for each.
    let key_fingerprint = fingerprint(&bench.key.to_public_key());
    let first = Statement {
        group: Uuid::new_v4(),
        name: GroupName::parse(&name)?,
        seq: 0,
        prev: None,
        by: Username::parse(names[0])?,
        at: chrono::Utc::now(),
        change: Change::Create {
            members: names
                .iter()
                .map(|n| Ok((Username::parse(n)?, key_fingerprint.clone())))
                .collect::<Result<_, fastchat_protocol::names::InvalidName>>()?,
        },
    };
    let binding = GroupBinding {
        id: first.group,
        epoch: 0,
        head: fastchat_protocol::group::StatementHash::of(&first.to_text()).to_hex(),
    };
    bench
        .http
        .post_json(
            "/v1/groups",
            &bench.users[0].token,
            &CreateGroup {
                name: name.clone(),
                members: names[1..].iter().map(|&n| n.to_owned()).collect(),
                statement: first.sign(&bench.key),
            },
        )
        .await?;
    let recipients = u32::try_from(members - 1)?;

    // One at a time.
    let counters_before = bench.server_counters(WORK_SERIES).await;
    let (cpu_before, started) = (processes.cpu_times(), Instant::now());
    for _ in 0..samples {
        let id = Uuid::new_v4();
        let message = bench
            .envelopes
            .group(&name, &binding, names.iter().copied(), id);
        let sent_at = Instant::now();
        bench.tracker.expect(id, sent_at, recipients);
        bench
            .http
            .send(&bench.users[0].token, &message, &bench.tracker, id, sent_at)
            .await;
        bench.tracker.drained(Instant::now() + DRAIN).await;
    }
    let one_at_a_time = bench.tracker.finish();
    let cpu = CpuCost::between(
        cpu_before,
        processes.cpu_times(),
        samples,
        started.elapsed(),
    );
    let servers = match counters_before {
        Some(before) => bench
            .server_counters(WORK_SERIES)
            .await
            .map(|after| GroupWork::between(before, after)),
        None => None,
    };

    // A steady rate, from members in turn.
    let profile_name = "group-sustained";
    let statements = match (observers.profile_dir, observers.database_url) {
        (Some(dir), Some(url)) => Statements::start(url, dir, profile_name).await,
        _ => None,
    };
    let recording = observers
        .profile_dir
        .and_then(|dir| Recording::start(dir, profile_name, length));
    let count = (f64::from(rate) * length.as_secs_f64()).round() as u64;
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let id = Uuid::new_v4();
        let sender = rand::thread_rng().gen_range(0..members);
        bench.tracker.expect(id, due, recipients);
        let bench = Arc::clone(bench);
        let (name, binding) = (name.clone(), binding.clone());
        tokio::spawn(async move {
            let names = bench.users[..members].iter().map(|u| u.name.as_str());
            let message = bench.envelopes.group(&name, &binding, names, id);
            bench
                .http
                .send(
                    &bench.users[sender].token,
                    &message,
                    &bench.tracker,
                    id,
                    due,
                )
                .await;
        });
    }
    let seconds = start.elapsed().as_secs_f64();
    bench.tracker.drained(Instant::now() + DRAIN).await;
    let steady = bench.tracker.finish();
    if let Some(recording) = recording {
        recording.finish().await;
    }
    if let Some(statements) = statements {
        statements.finish(steady.delivered).await;
    }

    Ok(GroupReport {
        members,
        samples,
        time_to_last: Latency::of(&one_at_a_time.completions),
        time_to_last_cdf: cdf(&one_at_a_time.completions),
        send: Latency::of(&one_at_a_time.answers),
        time_to_first: Latency::of(&one_at_a_time.firsts),
        servers,
        cpu,
        sustained: Sustained {
            rate,
            seconds,
            messages: steady.sent,
            deliveries: steady.delivered,
            deliveries_per_second: steady.delivered as f64 / steady.span.as_secs_f64().max(1e-3),
            latency: Latency::of(&steady.deliveries),
            time_to_last: Latency::of(&steady.completions),
            send: Latency::of(&steady.answers),
        },
        lost: one_at_a_time.lost + steady.lost,
        duplicates: one_at_a_time.duplicates + steady.duplicates,
        failed_sends: one_at_a_time.failed_sends + steady.failed_sends,
    })
}
