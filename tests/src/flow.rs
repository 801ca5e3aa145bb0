//! A steady flow of messages through a running system, for fault runs: senders at a
//! fixed total rate, each send retried with its `client_id` until acknowledged, and
//! receivers on event streams that resume with `Last-Event-ID` whenever a stream ends or
//! goes quiet. Every answer that is not a success is counted by status; every
//! acknowledgement and delivery is kept with its time, so that a run can say what was
//! lost or repeated and how long clients took to work again after a fault.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::api::{direct_message, opaque_envelope, Api};
use crate::sse::SseClient;
use crate::user::TestUser;

#[derive(Debug, Clone, Copy)]
pub struct FlowSettings {
    pub senders: usize,
    pub receivers: usize,
    /// Messages per second, over all senders.
    pub rate: f64,
    /// How long a client waits for an answer before it counts the attempt as failed.
    pub timeout: Duration,
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings {
            senders: 4,
            receivers: 6,
            rate: 60.0,
            timeout: Duration::from_secs(2),
        }
    }
}

struct Acked {
    sender: usize,
    receiver: usize,
    id: i64,
    at: Instant,
}

struct Delivered {
    seq: i64,
    id: i64,
    at: Instant,
}

#[derive(Default)]
struct Shared {
    acked: Mutex<Vec<Acked>>,
    /// Answers that were not a success, and attempts that got none, by status.
    failures: Mutex<BTreeMap<String, u64>>,
    delivered: Vec<Mutex<Vec<Delivered>>>,
    stop_sending: AtomicBool,
    stop_reading: AtomicBool,
}

impl Shared {
    fn failed(&self, status: String) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }
}

/// What a flow saw, once stopped.
#[derive(Debug, Clone)]
pub struct FlowReport {
    pub acked: usize,
    pub delivered: usize,
    /// Acknowledged and never delivered.
    pub lost: usize,
    /// Delivered more than once to the same receiver.
    pub duplicated: usize,
    /// Deliveries out of seq order on a receiver's streams.
    pub out_of_order: usize,
    pub failures: BTreeMap<String, u64>,
    /// The receivers' names, to check their inboxes with.
    pub receivers: Vec<String>,
}

pub struct Flow {
    shared: Arc<Shared>,
    settings: FlowSettings,
    senders: Vec<JoinHandle<()>>,
    readers: Vec<JoinHandle<()>>,
    receiver_names: Vec<String>,
}

impl Flow {
    /// Signs up the flow's users through `api` (named `{prefix}_s0`.., `{prefix}_r0`..)
    /// and starts them.
    pub async fn start(api: &Api, prefix: &str, settings: FlowSettings) -> Flow {
        let mut senders = Vec::new();
        for i in 0..settings.senders {
            senders.push(api.user(&format!("{prefix}_s{i}")).await);
        }
        let mut receivers = Vec::new();
        for i in 0..settings.receivers {
            receivers.push(api.user(&format!("{prefix}_r{i}")).await);
        }
        let shared = Arc::new(Shared {
            delivered: (0..settings.receivers)
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            ..Shared::default()
        });
        let receiver_names: Vec<String> = receivers.iter().map(|r| r.name.clone()).collect();
        let readers = receivers
            .iter()
            .enumerate()
            .map(|(i, reader)| tokio::spawn(read(Arc::clone(&shared), i, reader.clone(), settings)))
            .collect();
        let senders = senders
            .into_iter()
            .enumerate()
            .map(|(i, sender)| {
                tokio::spawn(send(
                    Arc::clone(&shared),
                    i,
                    sender,
                    receiver_names.clone(),
                    settings,
                ))
            })
            .collect();
        Flow {
            shared,
            settings,
            senders,
            readers,
            receiver_names,
        }
    }

    pub fn acked(&self) -> usize {
        self.shared
            .acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether every sender had a send acknowledged, and every receiver a delivery, at
    /// or after `since`.
    pub fn all_working_since(&self, since: Instant) -> bool {
        self.recovery_after(since).is_some()
    }

    /// How long after `since` the last of the clients worked again: each sender's first
    /// acknowledgement and each receiver's first delivery at or after it. `None` while
    /// some client has not.
    pub fn recovery_after(&self, since: Instant) -> Option<Duration> {
        let acked = self.shared.acked.lock().unwrap_or_else(|e| e.into_inner());
        let mut latest = Duration::ZERO;
        for sender in 0..self.settings.senders {
            let first = acked
                .iter()
                .filter(|a| a.sender == sender && a.at >= since)
                .map(|a| a.at)
                .min()?;
            latest = latest.max(first - since);
        }
        drop(acked);
        for delivered in &self.shared.delivered {
            let delivered = delivered.lock().unwrap_or_else(|e| e.into_inner());
            let first = delivered
                .iter()
                .filter(|d| d.at >= since)
                .map(|d| d.at)
                .min()?;
            latest = latest.max(first - since);
        }
        Some(latest)
    }

    /// Waits until every client works again after `since` (or the deadline passes) and
    /// says how long that took.
    pub async fn recovery(&self, since: Instant, deadline: Duration) -> Option<Duration> {
        let until = since + deadline;
        loop {
            if let Some(took) = self.recovery_after(since) {
                return Some(took);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops sending, waits (up to `drain`) for every acknowledged message to be
    /// delivered, stops reading, and reports.
    pub async fn stop(self, drain: Duration) -> FlowReport {
        self.shared.stop_sending.store(true, Ordering::Relaxed);
        for sender in self.senders {
            let _ = sender.await;
        }
        let acked: Vec<(usize, i64)> = self
            .shared
            .acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|a| (a.receiver, a.id))
            .collect();
        let until = Instant::now() + drain;
        let delivered_ids = |shared: &Shared| -> Vec<HashSet<i64>> {
            shared
                .delivered
                .iter()
                .map(|d| {
                    d.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|d| d.id)
                        .collect()
                })
                .collect()
        };
        while Instant::now() < until {
            let ids = delivered_ids(&self.shared);
            if acked.iter().all(|(r, id)| ids[*r].contains(id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shared.stop_reading.store(true, Ordering::Relaxed);
        for reader in self.readers {
            let _ = reader.await;
        }

        let ids = delivered_ids(&self.shared);
        let lost = acked.iter().filter(|(r, id)| !ids[*r].contains(id)).count();
        let mut delivered = 0;
        let mut duplicated = 0;
        let mut out_of_order = 0;
        for log in &self.shared.delivered {
            let log = log.lock().unwrap_or_else(|e| e.into_inner());
            let mut seen: HashMap<i64, usize> = HashMap::new();
            for d in log.iter() {
                *seen.entry(d.id).or_default() += 1;
            }
            delivered += seen.len();
            duplicated += seen.values().map(|n| n - 1).sum::<usize>();
            out_of_order += log.windows(2).filter(|w| w[1].seq <= w[0].seq).count();
        }
        FlowReport {
            acked: acked.len(),
            delivered,
            lost,
            duplicated,
            out_of_order,
            failures: self
                .shared
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            receivers: self.receiver_names,
        }
    }
}

/// One sender: a message every `senders / rate` seconds, round the receivers, each
/// retried with the same body (so the same `client_id`) until acknowledged.
async fn send(
    shared: Arc<Shared>,
    index: usize,
    sender: TestUser,
    receivers: Vec<String>,
    settings: FlowSettings,
) {
    let period = Duration::from_secs_f64(settings.senders as f64 / settings.rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = index;
    while !shared.stop_sending.load(Ordering::Relaxed) {
        tick.tick().await;
        let receiver = turn % receivers.len();
        turn += 1;
        let name = &receivers[receiver];
        let body = direct_message(name, opaque_envelope(&[&sender.name, name]));
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout(settings.timeout, sender.try_send(&body)).await {
                Ok(Some(answer)) if answer.status == 201 => {
                    let id = answer.body["id"].as_i64().expect("an id");
                    shared
                        .acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Acked {
                            sender: index,
                            receiver,
                            id,
                            at: Instant::now(),
                        });
                    break;
                }
                Ok(Some(answer)) => {
                    shared.failed(answer.status.as_u16().to_string());
                    assert!(
                        answer.status.as_u16() == 429 || answer.status.is_server_error(),
                        "a send was refused: {}",
                        answer.text
                    );
                }
                Ok(None) => shared.failed("no connection".into()),
                Err(_) => shared.failed("no answer".into()),
            }
            assert!(Instant::now() < give_up, "a send kept failing for a minute");
            // Paces the retries of one send; it waits for nothing.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One receiver: its stream, resumed after the last seq it got whenever it ends, breaks
/// or is quiet for a while.
async fn read(shared: Arc<Shared>, index: usize, reader: TestUser, settings: FlowSettings) {
    let mut last: i64 = 0;
    while !shared.stop_reading.load(Ordering::Relaxed) {
        let connect = SseClient::try_connect(&reader.api.base, &reader.token, Some(last), None);
        let mut stream = match tokio::time::timeout(settings.timeout, connect).await {
            Ok(Some(stream)) => stream,
            Ok(None) => {
                shared.failed("stream refused".into());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                shared.failed("stream no answer".into());
                continue;
            }
        };
        while let Some(event) = stream.next_event(Duration::from_secs(2)).await {
            let (Some(seq), Some(id)) = (
                event.data["seq"].as_i64(),
                event.data["message"]["id"].as_i64(),
            ) else {
                continue;
            };
            last = last.max(seq);
            shared.delivered[index]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Delivered {
                    seq,
                    id,
                    at: Instant::now(),
                });
            if shared.stop_reading.load(Ordering::Relaxed) {
                break;
            }
        }
    }
}

/// A process's resident memory, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
