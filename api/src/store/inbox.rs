//! Inboxes: every user has one, and every event in it has the next seq. Events are
//! appended by `fastchat_deliver`, which locks the recipients' inbox counters in user id
//! order until commit, so each inbox's seqs follow commit order with no gaps: a reader
//! that has seen seq n has seen everything before it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use fastchat_protocol::wire::{Event, EventBody};

use crate::batch::{BatchMetrics, Batcher, QUEUE_MAX};
use crate::db::{self, PgConn, PgPool};
use crate::error::ApiError;
use crate::ids::{MessageId, Seq, UserId};
use crate::schema::inboxes;
use crate::store::functions::{Deliver, ReadInboxEvents, Wake};
use crate::store::message_view::{MessageView, SharedFields};
use crate::{notification, wakeups};

/// What an inbox event holds.
#[derive(Debug, Clone)]
pub enum Delivery {
    Message(MessageId),
    /// A group event, stored as its JSON (`{type, group, username, by}`).
    GroupEvent(serde_json::Value),
}

/// An event `fastchat_deliver` appended.
#[derive(QueryableByName)]
struct Appended {
    #[diesel(sql_type = BigInt)]
    user_id: UserId,
    #[diesel(sql_type = BigInt)]
    seq: Seq,
    #[diesel(sql_type = Nullable<BigInt>)]
    message_id: Option<MessageId>,
}

/// The call that appends each (user, event) to that user's inbox, in the order given;
/// it answers with the events appended ([`Appended`]).
fn append(deliveries: Vec<(UserId, Delivery)>) -> Deliver {
    let mut user_ids = Vec::with_capacity(deliveries.len());
    let mut message_ids = Vec::with_capacity(deliveries.len());
    let mut group_events = Vec::with_capacity(deliveries.len());
    for (user, what) in deliveries {
        user_ids.push(user);
        match what {
            Delivery::Message(id) => {
                message_ids.push(Some(id));
                group_events.push(None);
            }
            Delivery::GroupEvent(event) => {
                message_ids.push(None);
                group_events.push(Some(event));
            }
        }
    }
    Deliver {
        user_ids,
        message_ids,
        group_events,
    }
}

/// Appends each (user, event) to that user's inbox, in the order given, and wakes those
/// users, inside the caller's transaction.
pub fn deliver(conn: &mut PgConn, deliveries: Vec<(UserId, Delivery)>) -> QueryResult<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let user_ids: Vec<UserId> = deliveries.iter().map(|(user, _)| *user).collect();
    // The wake-up first: NOTIFY sends it at commit whatever its place in the
    // transaction, and the inbox counters, locked from the delivery on until commit,
    // are held that much less.
    if wakeups::elsewhere() {
        wakeups::note(user_ids);
    } else {
        Wake { user_ids }.execute(conn)?;
    }
    append(deliveries).execute(conn).map(drop)
}

/// Appends each (member, group message) to that member's inbox, in the order given,
/// inside the caller's transaction, and tells every server which seq of each inbox
/// holds which message: the servers holding those members' streams hand it over whole,
/// and no stream reads its inbox back. Answers with those seqs, by message.
pub fn deliver_group_messages(
    conn: &mut PgConn,
    deliveries: Vec<(UserId, MessageId)>,
) -> QueryResult<BTreeMap<MessageId, Vec<(UserId, Seq)>>> {
    if deliveries.is_empty() {
        return Ok(BTreeMap::new());
    }
    let appended: Vec<Appended> = append(
        deliveries
            .into_iter()
            .map(|(user, message)| (user, Delivery::Message(message)))
            .collect(),
    )
    .load(conn)?;
    // Message ids grow with each message stored, so this is the order they were sent.
    let mut seqs: BTreeMap<MessageId, Vec<(UserId, Seq)>> = BTreeMap::new();
    for event in appended {
        if let Some(message) = event.message_id {
            seqs.entry(message)
                .or_default()
                .push((event.user_id, event.seq));
        }
    }
    let payloads: Vec<String> = seqs
        .iter()
        .flat_map(|(message, seqs)| notification::group_message_payloads(*message, seqs))
        .collect();
    if wakeups::elsewhere() {
        payloads.into_iter().for_each(wakeups::note_push);
    } else {
        diesel::sql_query(
            "SELECT pg_notify(fastchat_notification_channel(), payload) FROM unnest($1) AS payload",
        )
        .bind::<Array<Text>, _>(payloads)
        .execute(conn)?;
    }
    Ok(seqs)
}

/// The same event to each of `users`.
pub fn deliver_to_all(conn: &mut PgConn, users: &[UserId], what: Delivery) -> QueryResult<()> {
    deliver(conn, users.iter().map(|&u| (u, what.clone())).collect())
}

/// The seq of the newest event in `user`'s inbox.
pub fn last_seq(conn: &mut PgConn, user: UserId) -> QueryResult<Seq> {
    inboxes::table
        .find(user)
        .select(inboxes::last_seq)
        .first(conn)
}

/// One reader's request for the events of its inbox after `after`.
#[derive(Debug, Clone)]
pub struct InboxRead {
    pub user_id: UserId,
    pub reader: String,
    pub after: Seq,
    pub limit: i64,
}

pub type InboxPage = Result<Vec<Event>, ApiError>;

/// A group message wakes every member's stream at once: their reads fit in one batch.
const READ_BATCH_MAX: usize = 1024;
const READ_WORKERS: usize = 2;

/// Starts the threads that serve [`read_inboxes`] in batches.
pub fn read_batcher(
    pool: PgPool,
    metrics: BatchMetrics,
) -> std::io::Result<Batcher<InboxRead, InboxPage>> {
    Batcher::start(
        "inbox-reads",
        READ_WORKERS,
        READ_BATCH_MAX,
        QUEUE_MAX,
        metrics,
        move |reads| read_inboxes(&pool, reads),
    )
}

/// A row of `fastchat_read_inbox_events`: an inbox event with, if it is a message, that
/// reader's key. Only the first row of each message in a batch carries the message's
/// shared fields; the others take them from there.
#[derive(QueryableByName)]
struct EventRow {
    /// Which request of the batch this row answers, from 1.
    #[diesel(sql_type = BigInt)]
    request: i64,
    #[diesel(sql_type = BigInt)]
    seq: Seq,
    #[diesel(sql_type = Nullable<BigInt>)]
    message_id: Option<MessageId>,
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
    signed_at: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    group_uid: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<BigInt>)]
    group_epoch: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    group_head: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    wrapped_key: Option<String>,
}

impl EventRow {
    /// The message's shared fields, when this row is the one that carries them.
    fn take_shared(&mut self) -> Option<SharedFields> {
        Some(SharedFields {
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
            signed_at: self.signed_at.take(),
            group_uid: self.group_uid,
            group_epoch: self.group_epoch,
            group_head: self.group_head.take(),
        })
    }

    /// `shared` is this row's message as its first row carried it.
    fn into_event(self, reader: &str, shared: Option<&SharedFields>) -> Result<Event, ApiError> {
        let seq = self.seq;
        let body = match (self.message_id, self.group_event) {
            (Some(id), _) => match (shared, self.wrapped_key) {
                (Some(shared), Some(wrapped_key)) => {
                    let view = MessageView {
                        id,
                        shared: shared.clone(),
                        wrapped_key,
                    };
                    EventBody::Message {
                        message: Box::new(view.into_wire(reader)?),
                    }
                }
                _ => {
                    return Err(ApiError::internal(format!(
                        "inbox event {seq} names message {id}, which is gone or has no key for its reader"
                    )))
                }
            },
            (None, Some(event)) => serde_json::from_value(event)
                .map_err(|e| ApiError::internal(format!("inbox event {seq}: {e}")))?,
            (None, None) => return Err(ApiError::internal(format!("inbox event {seq} is empty"))),
        };
        Ok(Event { seq: seq.0, body })
    }
}

/// Reads the inboxes of every request in one query: the events after each cursor, in
/// seq order, with their messages as each reader sees them. Blocks.
pub fn read_inboxes(pool: &PgPool, reads: Vec<InboxRead>) -> Vec<InboxPage> {
    let rows = db::with_conn(pool, |conn| {
        Ok(ReadInboxEvents {
            user_ids: reads.iter().map(|r| r.user_id).collect(),
            afters: reads.iter().map(|r| r.after).collect(),
            limits: reads.iter().map(|r| r.limit).collect(),
        }
        .load::<EventRow>(conn)?)
    });
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return e.for_each_of(reads.len()),
    };
    let mut answers: Vec<InboxPage> = reads.iter().map(|_| Ok(Vec::new())).collect();
    let mut messages: HashMap<MessageId, SharedFields> = HashMap::new();
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
