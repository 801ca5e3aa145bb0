//! Coalescing: requests that arrive while earlier ones are being served wait, and are
//! then served together, with one query or one transaction for the lot. Under light
//! load a batch is a single request and nothing waits; under heavy load the work per
//! request shrinks as batches grow, which is what lets one database keep up with many
//! clients.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};

/// Requests that may wait for one batcher at once: seconds of work at the rates one
/// server sustains. Past it, requests are refused (503) rather than queued.
pub const QUEUE_MAX: usize = 8192;

/// A handle for submitting requests; clone it freely.
pub struct Batcher<Req, Resp> {
    name: &'static str,
    queue: mpsc::Sender<Queued<Req, Resp>>,
}

/// A request, where its answer goes, and when it was queued.
type Queued<Req, Resp> = (Req, oneshot::Sender<Resp>, Instant);

/// What a batcher's work is observed in: each batch's size, how long each request
/// waited in the queue until its batch was taken (the queue's age, where a stall on the
/// database shows first), and how long each batch took to serve.
#[derive(Clone)]
pub struct BatchMetrics {
    pub sizes: Histogram,
    pub waits: Histogram,
    pub serving: Histogram,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher {
            name: self.name,
            queue: self.queue.clone(),
        }
    }
}

/// Why a request was not taken.
#[derive(Debug)]
pub enum Refused {
    /// The batcher's workers have stopped (the server is shutting down).
    Stopped,
    /// Its queue is full: more is waiting than the database gets through soon. Refusing
    /// now, rather than queueing without bound, keeps latency and memory in hand.
    Full(&'static str),
}

type Queue<Req, Resp> = mpsc::Receiver<Queued<Req, Resp>>;

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts `workers` threads named `name`, each taking up to `max_batch` queued
    /// requests at a time and handing them to `serve`, which answers each in order: its
    /// result's nth item is the answer to the batch's nth request. Each batch is
    /// observed in `metrics`.
    ///
    /// `serve` blocks (it talks to the database); running it on threads of its own
    /// takes a request from its handler to the database and back in two thread
    /// wake-ups, where a task that hands work to a blocking pool needs four. The
    /// threads end once every handle is dropped.
    /// At most `capacity` requests wait; more are refused.
    pub fn start<F>(
        name: &'static str,
        workers: usize,
        max_batch: usize,
        capacity: usize,
        metrics: BatchMetrics,
        serve: F,
    ) -> std::io::Result<Self>
    where
        F: Fn(Vec<Req>) -> Vec<Resp> + Send + Sync + 'static,
    {
        let (queue, receiver) = mpsc::channel::<Queued<Req, Resp>>(capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let serve = Arc::new(serve);
        for _ in 0..workers.max(1) {
            let receiver = Arc::clone(&receiver);
            let serve = Arc::clone(&serve);
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    let mut batch = Vec::with_capacity(max_batch);
                    while gather(&receiver, &mut batch, max_batch) {
                        metrics.sizes.observe(batch.len() as f64);
                        let (mut requests, mut replies) = (Vec::new(), Vec::new());
                        for (request, reply, queued) in batch.drain(..) {
                            metrics.waits.observe(queued.elapsed().as_secs_f64());
                            requests.push(request);
                            replies.push(reply);
                        }
                        let started = Instant::now();
                        let answers = serve(requests);
                        metrics.serving.observe(started.elapsed().as_secs_f64());
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            // The caller may have gone away; its answer is not needed.
                            let _ = reply.send(answer);
                        }
                    }
                })?;
        }
        Ok(Batcher { name, queue })
    }

    /// Queues `request` and waits for its answer; refused at once if the queue is full.
    pub async fn call(&self, request: Req) -> Result<Resp, Refused> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send((request, reply, Instant::now()))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full(self.name),
                mpsc::error::TrySendError::Closed(_) => Refused::Stopped,
            })?;
        answer.await.map_err(|_| Refused::Stopped)
    }
}

/// Waits for a request, then takes whatever else is queued, up to `max`; `false` once
/// every handle is gone. One worker gathers at a time; the others are busy serving.
fn gather<Req, Resp>(
    receiver: &Mutex<Queue<Req, Resp>>,
    batch: &mut Vec<Queued<Req, Resp>>,
    max: usize,
) -> bool {
    // A worker that panicked while gathering left the queue as it was: keep going.
    let mut receiver = receiver.lock().unwrap_or_else(|e| e.into_inner());
    let Some(first) = receiver.blocking_recv() else {
        return false;
    };
    batch.push(first);
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn metrics() -> BatchMetrics {
        let histogram = |name: &str| {
            Histogram::with_opts(prometheus::HistogramOpts::new(name, name))
                .expect("a valid histogram")
        };
        BatchMetrics {
            sizes: histogram("sizes"),
            waits: histogram("waits"),
            serving: histogram("serving"),
        }
    }

    #[tokio::test]
    async fn answers_every_request_and_serves_waiting_ones_together() {
        use futures_util::FutureExt;

        let batches = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&batches);
        let metrics = metrics();
        // The first batch is held until every request is queued behind it.
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let doubler = Batcher::start(
            "doubler",
            1,
            64,
            1000,
            metrics.clone(),
            move |xs: Vec<u32>| {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    let _ = gate.lock().expect("gate").recv();
                }
                xs.into_iter().map(|x| x * 2).collect()
            },
        )
        .expect("started");
        // Polling them all once queues every request.
        let mut calls = Box::pin(futures_util::future::join_all(
            (0..100).map(|x| doubler.call(x)),
        ));
        assert!(calls.as_mut().now_or_never().is_none());
        go.send(()).expect("the first batch waits");
        for (x, answer) in calls.await.into_iter().enumerate() {
            assert_eq!(answer.expect("answered"), 2 * x as u32);
        }
        // The first batch took one or more; the rest came 64 at most at a time.
        let n = batches.load(Ordering::SeqCst);
        assert!((2..=3).contains(&n), "100 requests came in {n} batches");
        assert_eq!(metrics.sizes.get_sample_count(), n as u64);
        assert_eq!(metrics.sizes.get_sample_sum(), 100.0);
        // Every request's wait in the queue, the held ones' among them.
        assert_eq!(metrics.waits.get_sample_count(), 100);
        assert!(metrics.waits.get_sample_sum() > 0.0);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_takes_work_again_once_it_drains() {
        use futures_util::FutureExt;

        let (go, gate) = std::sync::mpsc::channel::<()>();
        let (serving, started) = std::sync::mpsc::channel::<()>();
        let (gate, serving) = (Mutex::new(gate), Mutex::new(serving));
        let held = Batcher::start("held", 1, 1, 2, metrics(), move |xs: Vec<u32>| {
            let _ = serving.lock().expect("serving").send(());
            let _ = gate.lock().expect("gate").recv();
            xs
        })
        .expect("started");
        // One is being served (held at the gate), two wait: the fourth is refused.
        let mut waiting: Vec<_> = (0..3).map(|x| Box::pin(held.call(x))).collect();
        assert!(waiting[0].as_mut().now_or_never().is_none());
        started.recv().expect("the first is being served");
        for call in &mut waiting[1..] {
            assert!(call.as_mut().now_or_never().is_none());
        }
        let fourth = held.call(3).now_or_never();
        assert!(
            matches!(fourth, Some(Err(Refused::Full("held")))),
            "{fourth:?}"
        );
        for _ in 0..3 {
            go.send(()).expect("the gate");
        }
        for (x, call) in waiting.into_iter().enumerate() {
            assert_eq!(call.await.expect("answered"), x as u32);
        }
        go.send(()).expect("the gate");
        let _ = started.try_recv();
        assert_eq!(held.call(4).await.expect("taken again"), 4);
    }

    #[tokio::test]
    async fn its_threads_end_when_every_handle_is_gone() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let echo = Batcher::start("echo", 2, 8, 16, metrics(), move |xs: Vec<u8>| {
            // The threads share this closure: the channel closes when both have ended.
            let _alive = &done_tx;
            xs
        })
        .expect("started");
        assert_eq!(echo.call(7).await.expect("answered"), 7);
        drop(echo);
        let ended = tokio::task::spawn_blocking(move || {
            done_rx.recv_timeout(std::time::Duration::from_secs(10))
        })
        .await
        .expect("joined");
        assert!(
            matches!(ended, Err(std::sync::mpsc::RecvTimeoutError::Disconnected)),
            "the worker threads ended"
        );
    }
}
