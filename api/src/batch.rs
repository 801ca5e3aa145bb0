//! Coalescing: requests that arrive while earlier ones are being served wait, and are
//! then served together, with one query or one transaction for the lot. Under light
//! load a batch is a single request and nothing waits; under heavy load the work per
//! request shrinks as batches grow, which is what lets one database keep up with many
//! clients.

use std::future::Future;
use std::sync::Arc;

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot, Mutex};

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

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts `workers` tasks on the current runtime, each taking up to `max_batch`
    /// queued requests at a time and handing them to `serve`, which answers each in
    /// order: its result's nth item is the answer to the batch's nth request. Each
    /// batch's size is observed in `sizes`.
    pub fn start<F, Fut>(workers: usize, max_batch: usize, sizes: Histogram, serve: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let (queue, receiver) = mpsc::unbounded_channel::<(Req, oneshot::Sender<Resp>)>();
        let receiver = Arc::new(Mutex::new(receiver));
        let serve = Arc::new(serve);
        for _ in 0..workers.max(1) {
            let receiver = Arc::clone(&receiver);
            let serve = Arc::clone(&serve);
            let sizes = sizes.clone();
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(max_batch);
                loop {
                    // One worker gathers at a time; the others are busy serving.
                    {
                        let mut receiver = receiver.lock().await;
                        if receiver.recv_many(&mut batch, max_batch).await == 0 {
                            return;
                        }
                    }
                    sizes.observe(batch.len() as f64);
                    let (requests, replies): (Vec<Req>, Vec<oneshot::Sender<Resp>>) =
                        batch.drain(..).unzip();
                    let answers = serve(requests).await;
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        // The caller may have gone away; its answer is not needed.
                        let _ = reply.send(answer);
                    }
                }
            });
        }
        Batcher { queue }
    }

    /// Queues `request` and waits for its answer.
    pub async fn call(&self, request: Req) -> Result<Resp, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((request, reply)).map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn answers_every_request_and_serves_waiting_ones_together() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&batches);
        let sizes = Histogram::with_opts(prometheus::HistogramOpts::new("sizes", "sizes"))
            .expect("a valid histogram");
        let doubler = Batcher::start(1, 64, sizes.clone(), move |xs: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                // Long enough for the other requests to queue behind the first batch.
                tokio::task::yield_now().await;
                xs.into_iter().map(|x| x * 2).collect()
            }
        });
        let calls: Vec<_> = (0..100)
            .map(|x| {
                let doubler = doubler.clone();
                tokio::spawn(async move { doubler.call(x).await })
            })
            .collect();
        for (x, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.expect("joined").expect("answered"), 2 * x as u32);
        }
        let n = batches.load(Ordering::SeqCst);
        assert!((1..100).contains(&n), "100 requests came in {n} batches");
        assert_eq!(sizes.get_sample_count(), n as u64);
        assert_eq!(sizes.get_sample_sum(), 100.0);
    }
}
