//! Which messages are on their way to whom, and how long each delivery took: every
//! arrival on a stream is matched to its send, so losses and duplicates show.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use uuid::Uuid;

/// Latencies are kept in microseconds, up to a minute.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

struct Pending {
    sent_at: Instant,
    /// Recipients that have not had it yet.
    remaining: u32,
    /// Send start to the first recipient's arrival.
    first: Option<u64>,
}

struct State {
    pending: HashMap<Uuid, Pending>,
    /// (message, recipient) pairs seen, to catch a second delivery.
    seen: HashSet<(Uuid, u32)>,
    /// Send start to arrival, per delivery.
    deliveries: Histogram<u64>,
    /// Send start to the last recipient's arrival, per message.
    completions: Histogram<u64>,
    /// Send start to the first recipient's arrival, per message that reached all.
    firsts: Histogram<u64>,
    /// Send start to the sender's 201, per message stored.
    answers: Histogram<u64>,
    sent: u64,
    delivered: u64,
    duplicates: u64,
    strays: u64,
    failed_sends: u64,
    first_send: Option<Instant>,
    last_arrival: Option<Instant>,
    streams_ended: u64,
    /// (scheduled send, arrival) of each delivery, for the longest stall.
    arrivals: Vec<(Instant, Instant)>,
}

impl State {
    fn new() -> Self {
        State {
            pending: HashMap::new(),
            seen: HashSet::new(),
            deliveries: histogram(),
            completions: histogram(),
            firsts: histogram(),
            answers: histogram(),
            sent: 0,
            delivered: 0,
            duplicates: 0,
            strays: 0,
            failed_sends: 0,
            first_send: None,
            last_arrival: None,
            streams_ended: 0,
            arrivals: Vec::new(),
        }
    }
}

/// What one measured run saw.
pub struct Tally {
    pub sent: u64,
    pub delivered: u64,
    /// Deliveries still missing when the run was closed.
    pub lost: u64,
    pub duplicates: u64,
    /// Arrivals of messages this run did not send.
    pub strays: u64,
    pub failed_sends: u64,
    pub streams_ended: u64,
    pub deliveries: Histogram<u64>,
    pub completions: Histogram<u64>,
    pub firsts: Histogram<u64>,
    pub answers: Histogram<u64>,
    /// First send to last arrival.
    pub span: Duration,
    /// The longest time in which a delivery was due and none arrived: see
    /// [`longest_stall`].
    pub longest_stall: Duration,
}

/// The longest time in which some delivery was due (its send had been scheduled) and no
/// delivery arrived, from (scheduled send, arrival) pairs. In a flowing system it is
/// about the time between two arrivals; a pause anywhere on the path shows whole, even
/// where it is too rare to move the p99.
pub fn longest_stall(arrivals: &mut [(Instant, Instant)]) -> Duration {
    arrivals.sort_unstable_by_key(|&(_, arrived)| arrived);
    // earliest_due[i]: the earliest scheduled send among deliveries i.. (by arrival).
    let mut earliest_due: Vec<Instant> = arrivals.iter().map(|&(due, _)| due).collect();
    for i in (0..earliest_due.len().saturating_sub(1)).rev() {
        earliest_due[i] = earliest_due[i].min(earliest_due[i + 1]);
    }
    let mut longest = Duration::ZERO;
    let mut last_arrival: Option<Instant> = None;
    for (i, &(_, arrived)) in arrivals.iter().enumerate() {
        let waiting_since = last_arrival.map_or(earliest_due[i], |last| last.max(earliest_due[i]));
        longest = longest.max(arrived.saturating_duration_since(waiting_since));
        last_arrival = Some(arrived);
    }
    longest
}

/// A duration as the histograms keep it.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

pub struct Tracker {
    state: Mutex<State>,
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            state: Mutex::new(State::new()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message is about to be sent (scheduled at `sent_at`) to `recipients` streams.
    pub fn expect(&self, id: Uuid, sent_at: Instant, recipients: u32) {
        let mut s = self.state();
        s.sent += 1;
        s.first_send.get_or_insert(sent_at);
        s.pending.insert(
            id,
            Pending {
                sent_at,
                remaining: recipients,
                first: None,
            },
        );
    }

    /// The server stored a message whose send was scheduled at `sent_at`.
    pub fn answered(&self, sent_at: Instant, at: Instant) {
        self.state()
            .answers
            .saturating_record(micros(at.saturating_duration_since(sent_at)));
    }

    /// The server refused the message or could not be reached: nothing will arrive.
    pub fn send_failed(&self, id: Uuid) {
        let mut s = self.state();
        s.failed_sends += 1;
        s.pending.remove(&id);
    }

    pub fn arrived(&self, id: Uuid, recipient: u32, at: Instant) {
        let mut s = self.state();
        if !s.seen.insert((id, recipient)) {
            s.duplicates += 1;
            return;
        }
        let Some(pending) = s.pending.get_mut(&id) else {
            s.strays += 1;
            return;
        };
        let sent_at = pending.sent_at;
        let latency = micros(at.saturating_duration_since(sent_at));
        let first = *pending.first.get_or_insert(latency);
        pending.remaining = pending.remaining.saturating_sub(1);
        let done = pending.remaining == 0;
        if done {
            s.pending.remove(&id);
        }
        s.deliveries.saturating_record(latency);
        if done {
            s.completions.saturating_record(latency);
            s.firsts.saturating_record(first);
        }
        s.delivered += 1;
        s.last_arrival = Some(at);
        s.arrivals.push((sent_at, at));
    }

    pub fn stream_ended(&self) {
        self.state().streams_ended += 1;
    }

    /// Deliveries still expected.
    pub fn outstanding(&self) -> u64 {
        self.state()
            .pending
            .values()
            .map(|p| u64::from(p.remaining))
            .sum()
    }

    /// Waits until nothing is outstanding, or the deadline passes.
    pub async fn drained(&self, deadline: Instant) -> bool {
        loop {
            if self.outstanding() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Closes the current run: what it saw, with anything still pending counted as
    /// lost. The next run starts from nothing (streams that ended stay counted).
    pub fn finish(&self) -> Tally {
        let mut s = self.state();
        let streams_ended = s.streams_ended;
        let mut done = std::mem::replace(&mut *s, State::new());
        s.streams_ended = streams_ended;
        // Keep what was seen: a late copy of an earlier message is still a duplicate.
        s.seen = done.seen;
        let lost = done.pending.values().map(|p| u64::from(p.remaining)).sum();
        let span = match (done.first_send, done.last_arrival) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        Tally {
            sent: done.sent,
            delivered: done.delivered,
            lost,
            duplicates: done.duplicates,
            strays: done.strays,
            failed_sends: done.failed_sends,
            streams_ended: done.streams_ended,
            deliveries: done.deliveries,
            completions: done.completions,
            firsts: done.firsts,
            answers: done.answers,
            span,
            longest_stall: longest_stall(&mut done.arrivals),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_stall_is_the_longest_wait_for_any_arrival_while_one_is_due() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Sent every 10 ms, each taking 2 ms, except that the sends of 40 to 240 ms all
        // arrive at 250 ms: from 40 ms, when one was due, nothing came for 210 ms.
        let mut arrivals: Vec<(Instant, Instant)> = (0..50)
            .map(|i| {
                let due = ms(i * 10);
                let arrived = if (40..=240).contains(&(i * 10)) {
                    ms(250)
                } else {
                    due + Duration::from_millis(2)
                };
                (due, arrived)
            })
            .collect();
        assert_eq!(longest_stall(&mut arrivals), Duration::from_millis(210));

        let mut flowing: Vec<_> = (0..50).map(|i| (ms(i * 10), ms(i * 10 + 2))).collect();
        assert_eq!(longest_stall(&mut flowing), Duration::from_millis(2));
        assert_eq!(longest_stall(&mut []), Duration::ZERO);
    }

    #[test]
    fn matches_arrivals_to_sends_and_counts_what_went_wrong() {
        let tracker = Tracker::new();
        let t0 = Instant::now();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        tracker.expect(a, t0, 2);
        tracker.expect(b, t0, 1);
        tracker.expect(c, t0, 1);
        tracker.arrived(a, 1, t0 + Duration::from_millis(3));
        tracker.arrived(a, 1, t0 + Duration::from_millis(4));
        tracker.arrived(a, 2, t0 + Duration::from_millis(9));
        tracker.arrived(Uuid::new_v4(), 1, t0);
        tracker.send_failed(c);
        tracker.answered(t0, t0 + Duration::from_millis(5));
        assert_eq!(tracker.outstanding(), 1, "b has not arrived");

        let tally = tracker.finish();
        assert_eq!(tally.sent, 3);
        assert_eq!(tally.delivered, 2);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.strays, 1);
        assert_eq!(tally.failed_sends, 1);
        assert_eq!(tally.lost, 1);
        assert_eq!(
            tally.completions.len(),
            1,
            "only a finished all its recipients"
        );
        assert!(tally.completions.max() >= 9_000 && tally.completions.max() < 9_100);
        assert_eq!(tally.answers.len(), 1);
        assert!(tally.answers.max() >= 5_000 && tally.answers.max() < 5_100);

        tracker.arrived(a, 2, t0);
        assert_eq!(
            tracker.finish().duplicates,
            1,
            "seen survives a finished run"
        );
    }
}
