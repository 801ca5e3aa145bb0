//! Coalescing: requests that arrive while earlier ones are being served wait, and are
//! then served together, with one query or one transaction for the lot. Under light
//! load a batch is a single request and nothing waits; under heavy load the work per
//! request shrinks as batches grow, which is what lets one database keep up with many
//! clients.

use std::sync::{Arc, Mutex};

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};

/// A handle for submitting requests; clone it freely.
pub struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<(Req, oneshot::Sender<Resp>)>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

/// The batcher's workers have stopped (the server is shutting down).
#[derive(Debug)]
pub struct Stopped;

type Queue<Req, Resp> = mpsc::UnboundedReceiver<(Req, oneshot::Sender<Resp>)>;

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts `workers` threads named `name`, each taking up to `max_batch` queued
    /// requests at a time and handing them to `serve`, which answers each in order: its
    /// result's nth item is the answer to the batch's nth request. Each batch's size is
    /// observed in `sizes`.
    ///
    /// `serve` blocks (it talks to the database); running it on threads of its own
    /// takes a request from its handler to the database and back in two thread
    /// wake-ups, where a task that hands work to a blocking pool needs four. The
    /// threads end once every handle is dropped.
    pub fn start<F>(
        name: &str,
        workers: usize,
        max_batch: usize,
        sizes: Histogram,
        serve: F,
    ) -> std::io::Result<Self>
    where
        F: Fn(Vec<Req>) -> Vec<Resp> + Send + Sync + 'static,
    {
        let (queue, receiver) = mpsc::unbounded_channel::<(Req, oneshot::Sender<Resp>)>();
        let receiver = Arc::new(Mutex::new(receiver));
        let serve = Arc::new(serve);
        for _ in 0..workers.max(1) {
            let receiver = Arc::clone(&receiver);
            let serve = Arc::clone(&serve);
            let sizes = sizes.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    let mut batch = Vec::with_capacity(max_batch);
                    while gather(&receiver, &mut batch, max_batch) {
                        sizes.observe(batch.len() as f64);
                        let (requests, replies): (Vec<Req>, Vec<oneshot::Sender<Resp>>) =
                            batch.drain(..).unzip();
                        let answers = serve(requests);
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            // The caller may have gone away; its answer is not needed.
                            let _ = reply.send(answer);
                        }
                    }
                })?;
        }
        Ok(Batcher { queue })
    }

    /// Queues `request` and waits for its answer.
    pub async fn call(&self, request: Req) -> Result<Resp, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((request, reply)).map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

/// Waits for a request, then takes whatever else is queued, up to `max`; `false` once
/// every handle is gone. One worker gathers at a time; the others are busy serving.
fn gather<Req, Resp>(
    receiver: &Mutex<Queue<Req, Resp>>,
    batch: &mut Vec<(Req, oneshot::Sender<Resp>)>,
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

    #[tokio::test]
    async fn answers_every_request_and_serves_waiting_ones_together() {
        use futures_util::FutureExt;

        let batches = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&batches);
        let sizes = Histogram::with_opts(prometheus::HistogramOpts::new("sizes", "sizes"))
            .expect("a valid histogram");
        // The first batch is held until every request is queued behind it.
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let doubler = Batcher::start("doubler", 1, 64, sizes.clone(), move |xs: Vec<u32>| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = gate.lock().expect("gate").recv();
            }
            xs.into_iter().map(|x| x * 2).collect()
        })
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
        assert_eq!(sizes.get_sample_count(), n as u64);
        assert_eq!(sizes.get_sample_sum(), 100.0);
    }

    #[tokio::test]
    async fn its_threads_end_when_every_handle_is_gone() {
        let sizes = Histogram::with_opts(prometheus::HistogramOpts::new("sizes", "sizes"))
            .expect("a valid histogram");
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let echo = Batcher::start("echo", 2, 8, sizes, move |xs: Vec<u8>| {
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
