//! A user's inbox: paged (`GET /v1/inbox`) and live over server-sent events
//! (`GET /v1/events`). Both read the `inbox_events` table by cursor, so a stream that
//! resumes after seq n gets exactly the events after n, whichever server it lands on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, Responder};
use actix_web_lab::sse::{self, Sse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use fastchat_protocol::wire::{Event, EventBody, InboxPage};
use futures_util::{stream, Stream};
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::db::{self, function_call, PgPool};
use crate::error::ApiError;
use crate::hub::{Subscription, Wake};
use crate::messages::MessageRow;
use crate::schema::inboxes;
use crate::startup::AppState;

const INBOX_DEFAULT_LIMIT: i64 = 100;
const INBOX_MAX_LIMIT: i64 = 1000;
/// Events read per query by a stream that is catching up.
const STREAM_PAGE: i64 = 500;
/// What clients are told to wait before reconnecting.
const RETRY_HINT: Duration = Duration::from_secs(2);

/// One reader's request for the events of its inbox after `after`.
pub struct InboxRead {
    pub user_id: i64,
    pub reader: String,
    pub after: i64,
    pub limit: i64,
}

/// An inbox event with its message as the reader sees it, if it is one.
#[derive(QueryableByName)]
struct EventRow {
    /// Which request of the batch this row answers, from 1.
    #[diesel(sql_type = BigInt)]
    request: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    message_id: Option<i64>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    group_event: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    sender: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    recipient: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    group_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    kind: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    client_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    sent_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    nonce: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ciphertext: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    sig: Option<String>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    attachments: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Text>)]
    wrapped_key: Option<String>,
}

/// The fields of a message that are the same for every reader. A batch's rows carry
/// them only on the first row of each message; the rest take them from there.
#[derive(Clone)]
struct SharedMessage {
    sender: String,
    recipient: Option<String>,
    group_name: Option<String>,
    kind: String,
    client_id: uuid::Uuid,
    sent_at: DateTime<Utc>,
    nonce: String,
    ciphertext: String,
    sig: String,
    attachments: Vec<String>,
}

impl EventRow {
    /// The message's shared fields, when this row is the one that carries them.
    fn take_shared(&mut self) -> Option<SharedMessage> {
        self.sender.as_ref()?;
        Some(SharedMessage {
            sender: self.sender.take()?,
            recipient: self.recipient.take(),
            group_name: self.group_name.take(),
            kind: self.kind.take()?,
            client_id: self.client_id?,
            sent_at: self.sent_at?,
            nonce: self.nonce.take()?,
            ciphertext: self.ciphertext.take()?,
            sig: self.sig.take()?,
            attachments: self.attachments.take()?,
        })
    }

    /// `shared` is this row's message, as its first row carried it; the message is
    /// only whole with this reader's key.
    fn into_event(self, reader: &str, shared: Option<&SharedMessage>) -> Result<Event, ApiError> {
        let body = match (self.message_id, self.group_event) {
            (Some(id), _) => match (shared, self.wrapped_key) {
                (Some(shared), Some(wrapped_key)) => {
                    let shared = shared.clone();
                    let message = MessageRow {
                        id,
                        sender: shared.sender,
                        recipient: shared.recipient,
                        group_name: shared.group_name,
                        kind: shared.kind,
                        client_id: shared.client_id,
                        sent_at: shared.sent_at,
                        nonce: shared.nonce,
                        ciphertext: shared.ciphertext,
                        sig: shared.sig,
                        attachments: shared.attachments,
                        wrapped_key,
                    };
                    EventBody::Message {
                        message: Box::new(message.into_message(reader)),
                    }
                }
                _ => {
                    return Err(ApiError::Internal(anyhow::anyhow!(
                    "inbox event {} names message {id}, which is gone or has no key for its reader",
                    self.seq
                )))
                }
            },
            (None, Some(event)) => serde_json::from_value(event).map_err(|e| {
                ApiError::Internal(anyhow::anyhow!("inbox event {}: {e}", self.seq))
            })?,
            (None, None) => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "inbox event {} is empty",
                    self.seq
                )))
            }
        };
        Ok(Event {
            seq: self.seq,
            body,
        })
    }
}

/// A one-to-one message as its notification carries it to the recipient's server
/// (`fastchat_send_direct`): the recipient's inbox event, whole.
#[derive(Deserialize)]
pub struct PushedMessage {
    pub seq: i64,
    message: MessageRow,
}

impl PushedMessage {
    fn to_event(&self, reader: &str) -> Event {
        Event {
            seq: self.seq,
            body: EventBody::Message {
                message: Box::new(self.message.clone().into_message(reader)),
            },
        }
    }
}

/// Reads the inboxes of every request in one query (`fastchat_read_inboxes`): the
/// events after each cursor, in seq order, with their messages as each reader sees them.
/// Blocks: for the inbox read batcher's threads.
pub fn read_inboxes(pool: &PgPool, reads: Vec<InboxRead>) -> Vec<Result<Vec<Event>, ApiError>> {
    let user_ids: Vec<i64> = reads.iter().map(|r| r.user_id).collect();
    let afters: Vec<i64> = reads.iter().map(|r| r.after).collect();
    let limits: Vec<i64> = reads.iter().map(|r| r.limit).collect();
    let rows = db::with_conn(pool, |conn| {
        function_call! {
            struct ReadInboxes = "fastchat_read_inboxes"(
                user_ids: Vec<i64> as Array<BigInt>,
                afters: Vec<i64> as Array<BigInt>,
                limits: Vec<i64> as Array<BigInt>,
            );
        }
        Ok(ReadInboxes {
            user_ids,
            afters,
            limits,
        }
        .load::<EventRow>(conn)?)
    });
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return e.for_each_of(reads.len()),
    };
    let mut answers: Vec<Result<Vec<Event>, ApiError>> =
        reads.iter().map(|_| Ok(Vec::new())).collect();
    let mut messages: HashMap<i64, SharedMessage> = HashMap::new();
    for mut row in rows {
        if let (Some(id), Some(shared)) = (row.message_id, row.take_shared()) {
            messages.insert(id, shared);
        }
        let shared = row.message_id.and_then(|id| messages.get(&id));
        let Some(index) = usize::try_from(row.request - 1)
            .ok()
            .filter(|&i| i < reads.len())
        else {
            continue;
        };
        if let Ok(events) = &mut answers[index] {
            match row.into_event(&reads[index].reader, shared) {
                Ok(event) => events.push(event),
                Err(e) => answers[index] = Err(e),
            }
        }
    }
    answers
}

/// Up to `limit` events of `user_id`'s inbox after `after`, in seq order.
async fn load_events(
    state: &AppState,
    user_id: i64,
    reader: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, ApiError> {
    state
        .inbox_reads
        .call(InboxRead {
            user_id,
            reader: reader.to_owned(),
            after,
            limit,
        })
        .await
        .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?
}

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/inbox?after=&limit=`
pub async fn inbox(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<InboxQuery>,
) -> Result<web::Json<InboxPage>, ApiError> {
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(INBOX_DEFAULT_LIMIT);
    if after < 0 || !(1..=INBOX_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("after is 0 or more; limit is 1 to {INBOX_MAX_LIMIT}"),
        ));
    }
    let events = load_events(&state, caller.user_id, &caller.username, after, limit).await?;
    let next = events.last().map_or(after, |e| e.seq);
    Ok(web::Json(InboxPage { events, next }))
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    after: Option<i64>,
}

/// `GET /v1/events`: resumes after `Last-Event-ID` (which wins, as browsers resend
/// it on the same URL), else after `?after=`, else from now on.
pub async fn stream(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<impl Responder, ApiError> {
    let last_event_id = match req.headers().get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|seq| *seq >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be a seq")
                })?,
        ),
        None => None,
    };
    if query.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request("invalid_query", "after is 0 or more"));
    }
    // Subscribe before reading the cursor, so no wake-up falls between the two.
    let subscription = state.hub.subscribe(caller.user_id);
    let cursor = match last_event_id.or(query.after) {
        Some(seq) => seq,
        None => {
            let user_id = caller.user_id;
            db::run(&state.pool, move |conn| {
                Ok(inboxes::table
                    .find(user_id)
                    .select(inboxes::last_seq)
                    .first::<i64>(conn)?)
            })
            .await?
        }
    };
    let keep_alive = Duration::from_secs(state.config.sse_keepalive_secs);
    let feed = Feed::new(state.into_inner(), caller, cursor, subscription);
    Ok(Sse::from_infallible_stream(feed.into_stream())
        .with_keep_alive(keep_alive)
        .with_retry_duration(RETRY_HINT))
}

/// What one open stream needs between events. The response body polls it directly, with
/// no task or queue of its own: an idle stream costs only this, and it is dropped with
/// the connection.
struct Feed {
    state: Arc<AppState>,
    caller: AuthUser,
    /// The last seq read from the inbox.
    cursor: i64,
    subscription: Subscription,
    /// Read from the inbox and not yet sent, oldest first.
    unsent: std::vec::IntoIter<Event>,
    /// The last read found everything up to the inbox's end.
    caught_up: bool,
}

impl Feed {
    fn new(
        state: Arc<AppState>,
        caller: AuthUser,
        cursor: i64,
        subscription: Subscription,
    ) -> Self {
        state.metrics.streams_open.inc();
        Self {
            state,
            caller,
            cursor,
            subscription,
            unsent: Vec::new().into_iter(),
            caught_up: false,
        }
    }

    /// Whatever the inbox holds after the cursor, then, after each wake-up, what came
    /// since.
    fn into_stream(self) -> impl Stream<Item = sse::Event> {
        stream::unfold(self, |mut feed| async move {
            let event = feed.next_event().await?;
            Some((event, feed))
        })
    }

    /// The next event to send; `None` when the hub has closed this stream.
    async fn next_event(&mut self) -> Option<sse::Event> {
        loop {
            if let Some(event) = self.unsent.next() {
                let seq = event.seq;
                match sse::Data::new_json(&event) {
                    Ok(data) => {
                        let data = data.event(event.body.type_name()).id(seq.to_string());
                        return Some(sse::Event::Data(data));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, seq, "encoding an event");
                        continue;
                    }
                }
            }
            if self.caught_up {
                match self.subscription.woken().await {
                    None => return None,
                    // The next event, whole: no read.
                    Some(Wake::Pushed(message)) if message.seq == self.cursor + 1 => {
                        self.state.metrics.events_pushed.inc();
                        self.cursor = message.seq;
                        self.unsent = vec![message.to_event(&self.caller.username)].into_iter();
                        continue;
                    }
                    // Wake-ups come in seq order: this one and all before it were read.
                    Some(Wake::Pushed(message)) if message.seq <= self.cursor => continue,
                    // Something in between was missed, or the inbox grew: read it.
                    Some(_) => {}
                }
            }
            // Marked before the read, so that a wake-up during it is not lost.
            self.subscription.mark_seen();
            let read = load_events(
                &self.state,
                self.caller.user_id,
                &self.caller.username,
                self.cursor,
                STREAM_PAGE,
            )
            .await;
            match read {
                Ok(events) => {
                    self.state.metrics.events_read.inc_by(events.len() as u64);
                    self.caught_up = i64::try_from(events.len()).is_ok_and(|n| n < STREAM_PAGE);
                    self.cursor = events.last().map_or(self.cursor, |e| e.seq);
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
        self.state.metrics.streams_open.dec();
    }
}
