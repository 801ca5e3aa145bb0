//! One open event stream: everything the reader's inbox holds after its cursor, then,
//! after each wake-up, what came since. The response body polls it directly, with no task
//! or queue of its own: an idle stream costs only this struct and a registration in the
//! hub, and it is dropped with the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web_lab::sse;
use fastchat_protocol::wire::Event;
use futures_util::{stream, Stream};

use crate::batch::Batcher;
use crate::ids::Seq;
use crate::live::hub::{Subscription, Wake};
use crate::live::pushed::Pushed;
use crate::metrics::Metrics;
use crate::store::inbox::{InboxPage, InboxRead};
use crate::store::sessions::SessionUser;

/// Events read per query by a stream that is catching up: what a stream holds while
/// its client has not taken it yet (a client that reads slowly costs at most this).
const PAGE: i64 = 16;

pub struct Feed {
    reads: Batcher<InboxRead, InboxPage>,
    metrics: Arc<Metrics>,
    reader: SessionUser,
    /// The last seq read from the inbox.
    cursor: Seq,
    subscription: Subscription,
    /// Read from the inbox and not yet sent, oldest first.
    unsent: std::vec::IntoIter<Event>,
    /// When the wake-up behind `unsent` came (none for the first catch-up).
    woken_at: Option<Instant>,
    /// The last read found everything up to the inbox's end.
    caught_up: bool,
}

impl Feed {
    /// `subscription` must have been taken before `cursor` was read, so that no wake-up
    /// falls between the two.
    pub fn new(
        reads: Batcher<InboxRead, InboxPage>,
        metrics: Arc<Metrics>,
        reader: SessionUser,
        cursor: Seq,
        subscription: Subscription,
    ) -> Self {
        metrics.streams_open.inc();
        Self {
            reads,
            metrics,
            reader,
            cursor,
            subscription,
            unsent: Vec::new().into_iter(),
            woken_at: None,
            caught_up: false,
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = sse::Event> {
        stream::unfold(self, |mut feed| async move {
            let event = feed.next_event().await?;
            Some((event, feed))
        })
    }

    /// The event of a message handed over whole: no read, and encoded but for this
    /// reader's part.
    fn pushed(&self, pushed: &Pushed) -> sse::Event {
        let data = sse::Data::new(pushed.event_json(&self.reader.username))
            .event("message")
            .id(pushed.seq.0.to_string());
        self.observe_delay(&self.metrics.pushed_delays);
        sse::Event::Data(data)
    }

    /// How long the event about to be handed over took since its wake-up (into
    /// `delays`): the part of a delivery spent in this server after the notification (a
    /// read, if it was not pushed, and encoding).
    fn observe_delay(&self, delays: &prometheus::Histogram) {
        if let Some(woken_at) = self.woken_at {
            delays.observe(woken_at.elapsed().as_secs_f64());
        }
    }

    /// The next event to send; `None` when the hub has closed this stream, or its
    /// session has ended.
    async fn next_event(&mut self) -> Option<sse::Event> {
        loop {
            if self.subscription.is_revoked() {
                return None;
            }
            if let Some(event) = self.unsent.next() {
                let seq = event.seq;
                match sse::Data::new_json(&event) {
                    Ok(data) => {
                        let data = data.event(event.body.type_name()).id(seq.to_string());
                        self.observe_delay(&self.metrics.read_delays);
                        return Some(sse::Event::Data(data));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, seq, "encoding an event");
                        continue;
                    }
                }
            }
            if self.caught_up {
                let woken = self.subscription.woken().await;
                self.woken_at = Some(Instant::now());
                match woken {
                    None => return None,
                    // The next event, whole: no read.
                    Some(Wake::Pushed(pushed)) if pushed.seq == self.cursor.next() => {
                        self.metrics.events_pushed.inc();
                        self.cursor = pushed.seq;
                        return Some(self.pushed(&pushed));
                    }
                    // Wake-ups come in seq order: this one and all before it were read.
                    Some(Wake::Pushed(pushed)) if pushed.seq <= self.cursor => continue,
                    // Something in between was missed, or the inbox grew: read it.
                    Some(_) => {}
                }
            }
            // Marked before the read, so that a wake-up during it is not lost.
            self.subscription.mark_seen();
            let read = self
                .reads
                .call(InboxRead {
                    user_id: self.reader.user_id,
                    reader: self.reader.username.clone(),
                    after: self.cursor,
                    limit: PAGE,
                })
                .await
                .unwrap_or_else(|stopped| Err(stopped.into()));
            match read {
                Ok(events) => {
                    self.metrics.events_read.inc_by(events.len() as u64);
                    self.caught_up = i64::try_from(events.len()).is_ok_and(|n| n < PAGE);
                    self.cursor = events.last().map_or(self.cursor, |e| Seq(e.seq));
                    self.unsent = events.into_iter();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading an inbox for a stream");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.caught_up = false;
                }
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.metrics.streams_open.dec();
    }
}
