//! Messages: storing them (idempotent by the sender's `client_id`) and reading history.
//! One-to-one messages take one path, attachments or not: `fastchat_send_direct_messages`,
//! fed in batches by [`direct_send_batcher`]. Group messages, fed in batches by
//! [`group_send_batcher`], are stored under their group's share lock, so the members
//! they are encrypted for are the members they reach.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use fastchat_protocol::envelope::{Envelope, Kind};
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::wire::{Message, MessagePage, MessageSent};

use crate::batch::{BatchMetrics, Batcher, QUEUE_MAX};
use crate::db::{self, PgConn, PgPool};
use crate::error::ApiError;
use crate::ids::{GroupId, MessageId, UserId};
use crate::schema::messages;
use crate::store::blobs;
use crate::store::functions::SendDirectMessages;
use crate::store::group_pushes::GroupPush;
use crate::store::groups::{self, Lock, LockedGroup};
use crate::store::inbox;
use crate::store::message_view::{MessageView, SharedFields};
use crate::store::sessions::SessionUser;
use crate::wakeups;

/// A message checked as far as it can be without the database: its sender, what it
/// says (opaque) and the blobs it lists (parsed, each once).
pub struct Outgoing {
    pub sender: SessionUser,
    pub client_id: uuid::Uuid,
    pub kind: Kind,
    pub envelope: Envelope,
    pub attachments: Vec<uuid::Uuid>,
}

impl Outgoing {
    fn key_for(&self, username: &str) -> String {
        self.envelope
            .keys
            .get(username)
            .cloned()
            .unwrap_or_default()
    }

    fn signed_at(&self) -> String {
        self.envelope.sent_at.clone().unwrap_or_default()
    }
}

/// The envelope must carry a key for exactly the conversation's members.
fn check_keys<'a>(
    envelope: &Envelope,
    members: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let expected: BTreeSet<&str> = members.into_iter().collect();
    let given: BTreeSet<&str> = envelope.keys.keys().map(String::as_str).collect();
    if expected == given {
        return Ok(());
    }
    Err(ApiError::RecipientsMismatch {
        members: expected.into_iter().map(str::to_owned).collect(),
    })
}

/// A one-to-one message.
pub struct DirectSend {
    pub message: Outgoing,
    pub recipient: Username,
}

impl DirectSend {
    /// Its keys must be for exactly the sender and the recipient.
    fn check_keys(&self) -> Result<(), ApiError> {
        check_keys(
            &self.message.envelope,
            [
                self.message.sender.username.as_str(),
                self.recipient.as_str(),
            ],
        )
    }
}

/// At most this many one-to-one messages are stored together: one transaction, short.
const DIRECT_BATCH_MAX: usize = 256;

pub type SendAnswer = Result<MessageSent, ApiError>;

/// Starts `workers` threads that serve [`send_direct_batch`].
pub fn direct_send_batcher(
    pool: PgPool,
    workers: usize,
    metrics: BatchMetrics,
) -> std::io::Result<Batcher<DirectSend, SendAnswer>> {
    Batcher::start(
        "direct-sends",
        workers,
        DIRECT_BATCH_MAX,
        QUEUE_MAX,
        metrics,
        move |sends| send_direct_batch(&pool, &sends),
    )
}

/// Stores one-to-one messages that arrived together, each answered as if it had come
/// alone. They go in one statement; should it fail, each is stored on its own, so one
/// bad message cannot sink the others. Blocks.
pub fn send_direct_batch(pool: &PgPool, sends: &[DirectSend]) -> Vec<SendAnswer> {
    together_or_one_by_one(pool, sends, "one-to-one", send_direct, Err)
}

/// Stores `sends` with one call of `store`; should that fail, each with a call of its
/// own, so that one bad message cannot sink the others. An answer each, in order; a
/// send that could not be stored is answered `failed(why)`.
fn together_or_one_by_one<S, A, E: Into<ApiError> + std::fmt::Display>(
    pool: &PgPool,
    sends: &[S],
    kind: &str,
    store: impl Fn(&mut PgConn, &[S]) -> Result<Vec<A>, E>,
    failed: impl Fn(ApiError) -> A,
) -> Vec<A> {
    let stored = db::with_conn(pool, |conn| {
        Ok(match store(conn, sends) {
            Ok(answers) => answers,
            Err(e) if sends.len() == 1 => vec![failed(e.into())],
            Err(e) => {
                tracing::warn!(error = %e, count = sends.len(), kind, "storing a batch of messages failed; storing them one by one");
                sends
                    .chunks(1)
                    .map(|one| match store(conn, one) {
                        Ok(mut answers) => answers.pop().unwrap_or_else(|| {
                            failed(ApiError::internal("a send went unanswered"))
                        }),
                        Err(e) => failed(e.into()),
                    })
                    .collect()
            }
        })
    });
    stored.unwrap_or_else(|e| sends.iter().map(|_| failed(e.for_one_of_many())).collect())
}

/// `sends` stored by one call of `fastchat_send_direct_messages` (an answer each, in
/// order), or the error that stored none of them.
fn send_direct(conn: &mut PgConn, sends: &[DirectSend]) -> Result<Vec<SendAnswer>, ApiError> {
    #[derive(QueryableByName)]
    struct Sent {
        #[diesel(sql_type = BigInt)]
        ord: i64,
        #[diesel(sql_type = Text)]
        outcome: String,
        #[diesel(sql_type = Nullable<BigInt>)]
        recipient_id: Option<UserId>,
        #[diesel(sql_type = Nullable<BigInt>)]
        id: Option<MessageId>,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        sent_at: Option<DateTime<Utc>>,
        #[diesel(sql_type = Nullable<Text>)]
        push: Option<String>,
    }
    let texts =
        |f: &dyn Fn(&DirectSend) -> String| -> Vec<String> { sends.iter().map(f).collect() };
    let (attachment_ords, attachment_ids) = sends
        .iter()
        .zip(1..)
        .flat_map(|(send, ord)| send.message.attachments.iter().map(move |id| (ord, *id)))
        .unzip();
    let mut rows: Vec<Sent> = SendDirectMessages {
        sender_ids: sends.iter().map(|s| s.message.sender.user_id).collect(),
        recipients: texts(&|s| s.recipient.to_string()),
        stores: sends.iter().map(|s| s.check_keys().is_ok()).collect(),
        client_ids: sends.iter().map(|s| s.message.client_id).collect(),
        kinds: texts(&|s| s.message.kind.as_str().to_owned()),
        nonces: texts(&|s| s.message.envelope.nonce.clone()),
        ciphertexts: texts(&|s| s.message.envelope.ciphertext.clone()),
        sigs: texts(&|s| s.message.envelope.sig.clone()),
        signed_ats: texts(&|s| s.message.signed_at()),
        sender_keys: texts(&|s| s.message.key_for(&s.message.sender.username)),
        recipient_keys: texts(&|s| s.message.key_for(s.recipient.as_str())),
        attachment_ords,
        attachment_ids,
    }
    .load(conn)?;
    if rows.len() != sends.len() || rows.iter().zip(1..).any(|(r, ord)| r.ord != ord) {
        return Err(ApiError::internal(format!(
            "fastchat_send_direct_messages answered {} of {} sends",
            rows.len(),
            sends.len()
        )));
    }
    for row in &mut rows {
        match (row.outcome.as_str(), row.recipient_id, row.push.take()) {
            ("stored", Some(_), Some(push)) => wakeups::note_push(push),
            // Too big to push. A retry is woken again too: the server that stored the
            // message may have stopped before it sent the wake-up.
            ("stored" | "retry", Some(recipient), _) => wakeups::note([recipient]),
            _ => {}
        }
    }
    Ok(sends
        .iter()
        .zip(rows)
        .map(
            |(send, row)| match (row.outcome.as_str(), row.id, row.sent_at) {
                ("stored" | "retry", Some(id), Some(sent_at)) => {
                    Ok(MessageSent { id: id.0, sent_at })
                }
                ("no_recipient", ..) => Err(ApiError::user_not_found()),
                ("keys_mismatch", ..) => send
                    .check_keys()
                    .and(Err(ApiError::internal("keys refused, then found right"))),
                ("invalid_attachment", ..) => Err(ApiError::attachment_not_yours()),
                ("client_id_reused", ..) => Err(ApiError::client_id_reused()),
                (outcome, ..) => Err(ApiError::internal(format!(
                    "fastchat_send_direct_messages answered {outcome:?}"
                ))),
            },
        )
        .collect())
}

#[derive(Insertable)]
#[diesel(table_name = messages)]
struct NewGroupMessage<'a> {
    sender_id: UserId,
    group_id: GroupId,
    client_id: uuid::Uuid,
    kind: &'a str,
    nonce: &'a str,
    ciphertext: &'a str,
    sig: &'a str,
    attachments: Vec<Option<String>>,
    signed_at: String,
    group_epoch: i64,
    group_head: String,
}

/// A message to a group.
pub struct GroupSend {
    pub message: Outgoing,
    pub group: GroupName,
}

/// At most this many group messages are stored together. One to a 1,000-member group is
/// 1,000 inbox events and 1,000 keys; a batch of them is still one short transaction.
const GROUP_BATCH_MAX: usize = 16;

/// Who hears of the group messages this server stores: its own streams of their members
/// can have them at once, with no read.
pub trait GroupMessagesStored: Send + Sync + 'static {
    /// `messages` are delivered, and about to be committed (their notifications may
    /// come back before [`GroupMessagesStored::stored`] is called).
    fn committing(&self, messages: &[MessageId]);
    /// A message committed, as its members see it, before its sender is answered.
    fn stored(&self, push: GroupPush);
}

/// Starts `workers` threads that serve [`send_group_batch`], telling `told` of each
/// message stored.
pub fn group_send_batcher(
    pool: PgPool,
    workers: usize,
    metrics: BatchMetrics,
    told: impl GroupMessagesStored,
) -> std::io::Result<Batcher<GroupSend, SendAnswer>> {
    Batcher::start(
        "group-sends",
        workers,
        GROUP_BATCH_MAX,
        QUEUE_MAX,
        metrics,
        move |sends| {
            send_group_batch(&pool, &sends, &told)
                .into_iter()
                .map(|sent| {
                    if let Some(push) = sent.push {
                        told.stored(push);
                    }
                    sent.answer
                })
                .collect()
        },
    )
}

/// A group send's answer and, if it stored a message, the message as its members see it
/// with each member's seq and wrapped key, as stored.
pub struct GroupSent {
    pub answer: SendAnswer,
    pub push: Option<GroupPush>,
}

impl From<ApiError> for GroupSent {
    fn from(e: ApiError) -> Self {
        Self {
            answer: Err(e),
            push: None,
        }
    }
}

/// A group message stored in the transaction in hand, until its members' seqs are known.
struct StoredGroupMessage {
    id: MessageId,
    shared: SharedFields,
    /// The members it is delivered to (all but the sender), with their wrapped keys.
    recipients: BTreeMap<UserId, String>,
}

/// Stores group messages that arrived together, each answered as if it had come alone,
/// in one transaction that delivers them all at its end. A group message holds every
/// member's inbox counter until commit, so messages to one group are stored one after
/// another; together, they take the counters once and commit once. Should the
/// transaction fail, each is stored on its own, so one bad message cannot sink the
/// others. Blocks.
pub fn send_group_batch(
    pool: &PgPool,
    sends: &[GroupSend],
    told: &impl GroupMessagesStored,
) -> Vec<GroupSent> {
    let store = |conn: &mut PgConn, sends: &[GroupSend]| send_to_groups(conn, sends, told);
    together_or_one_by_one(pool, sends, "group", store, GroupSent::from)
}

/// `sends` stored in one transaction (an answer each, in order), or the database error
/// that stored none of them. Each group's row stays share-locked until commit:
/// membership cannot change between checking a message's keys and delivering it.
fn send_to_groups(
    conn: &mut PgConn,
    sends: &[GroupSend],
    told: &impl GroupMessagesStored,
) -> QueryResult<Vec<GroupSent>> {
    let mut answers: Vec<Option<SendAnswer>> = Vec::with_capacity(sends.len());
    for send in sends {
        let message = &send.message;
        let yours = blobs::all_uploaded_by(conn, message.sender.user_id, &message.attachments)?;
        answers.push((!yours).then(|| Err(ApiError::attachment_not_yours())));
    }
    conn.transaction(|conn| {
        // Each group once, in name order (membership changes lock one group at a time).
        let mut groups: BTreeMap<&str, Option<LockedGroup>> = sends
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_none())
            .map(|(send, _)| (send.group.as_str(), None))
            .collect();
        for (name, group) in &mut groups {
            *group = groups::lock_by_name(conn, name, Lock::Share)?;
        }
        let mut stored = Vec::new();
        for (n, (send, answer)) in sends.iter().zip(&mut answers).enumerate() {
            if answer.is_none() {
                let group = groups.get(send.group.as_str()).and_then(Option::as_ref);
                *answer = Some(store_group_message(conn, group, &send.message)?.map(
                    |(sent, message)| {
                        stored.extend(message.map(|m| (n, m)));
                        sent
                    },
                ));
            }
        }
        // Every member's events in the order their messages were sent.
        let deliveries = stored
            .iter()
            .flat_map(|(_, m)| m.recipients.keys().map(|&user| (user, m.id)))
            .collect();
        let mut seqs = inbox::deliver_group_messages(conn, deliveries)?;
        told.committing(&stored.iter().map(|(_, m)| m.id).collect::<Vec<_>>());
        let mut sent: Vec<GroupSent> = answers
            .into_iter()
            .map(|answer| GroupSent {
                answer: answer
                    .unwrap_or_else(|| Err(ApiError::internal("a group send went unanswered"))),
                push: None,
            })
            .collect();
        for (n, mut message) in stored {
            let members = seqs
                .remove(&message.id)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(user, seq)| Some((user, seq, message.recipients.remove(&user)?)))
                .collect();
            if let Some(sent) = sent.get_mut(n) {
                sent.push = Some(GroupPush {
                    message: message.id,
                    shared: message.shared,
                    members,
                });
            }
        }
        Ok(sent)
    })
}

/// Stores one message to `group` (share-locked; `None`: there is none), its keys and
/// attachments, and answers with the message stored, to be delivered to every member but
/// the sender. A message already stored under this client_id is answered as it was (and
/// not delivered again). The outer error is the database's, which sinks the
/// transaction; the inner one is this message's answer.
fn store_group_message(
    conn: &mut PgConn,
    group: Option<&LockedGroup>,
    message: &Outgoing,
) -> QueryResult<Result<(MessageSent, Option<StoredGroupMessage>), ApiError>> {
    let sender = &message.sender;
    let Some(group) = group.filter(|g| g.member(sender.user_id).is_some()) else {
        return Ok(Err(ApiError::group_not_found()));
    };
    if let Err(mismatch) = check_keys(
        &message.envelope,
        group.members.iter().map(|m| m.username.as_str()),
    ) {
        return Ok(Err(mismatch));
    }
    // Sealed in the group's state now, or sealed for members who may have changed.
    let current = message.envelope.group.as_ref().is_some_and(|binding| {
        binding.id == group.uid
            && i64::try_from(binding.epoch).is_ok_and(|e| e == group.epoch)
            && binding.head == group.head_hex()
    });
    if !current {
        return Ok(Err(ApiError::RecipientsMismatch {
            members: group.members.iter().map(|m| m.username.clone()).collect(),
        }));
    }
    let attachments: Vec<String> = message
        .attachments
        .iter()
        .map(|id| id.to_string())
        .collect();
    let inserted = diesel::insert_into(messages::table)
        .values(&NewGroupMessage {
            sender_id: sender.user_id,
            group_id: group.id,
            client_id: message.client_id,
            kind: message.kind.as_str(),
            nonce: &message.envelope.nonce,
            ciphertext: &message.envelope.ciphertext,
            sig: &message.envelope.sig,
            attachments: attachments.iter().cloned().map(Some).collect(),
            signed_at: message.signed_at(),
            group_epoch: group.epoch,
            group_head: group.head_hex(),
        })
        .on_conflict((messages::sender_id, messages::client_id))
        .do_nothing()
        .returning((messages::id, messages::sent_at))
        .get_result::<(MessageId, DateTime<Utc>)>(conn)
        .optional()?;
    let Some((id, sent_at)) = inserted else {
        let earlier = earlier_group_send(conn, sender.user_id, message.client_id, group.id)?;
        return Ok(earlier.map(|sent| (sent, None)));
    };
    let (user_ids, keys): (Vec<UserId>, Vec<String>) = group
        .members
        .iter()
        .map(|m| (m.user_id, message.key_for(&m.username)))
        .unzip();
    insert_keys(conn, id, &user_ids, &keys)?;
    blobs::attach(conn, id, &message.attachments)?;
    // What reading the message back would give (see `store::group_pushes`).
    let shared = SharedFields {
        sender: sender.username.clone(),
        recipient: None,
        group_name: Some(group.name.clone()),
        kind: message.kind.as_str().to_owned(),
        client_id: message.client_id,
        sent_at,
        nonce: message.envelope.nonce.clone(),
        ciphertext: message.envelope.ciphertext.clone(),
        sig: message.envelope.sig.clone(),
        attachments,
        signed_at: Some(message.signed_at()),
        group_uid: Some(group.uid),
        group_epoch: Some(group.epoch),
        group_head: Some(group.head_hex()),
    };
    let stored = StoredGroupMessage {
        id,
        shared,
        recipients: user_ids
            .into_iter()
            .zip(keys)
            .filter(|&(user, _)| user != sender.user_id)
            .collect(),
    };
    Ok(Ok((MessageSent { id: id.0, sent_at }, Some(stored))))
}

fn insert_keys(
    conn: &mut PgConn,
    message: MessageId,
    users: &[UserId],
    keys: &[String],
) -> QueryResult<()> {
    use diesel::sql_types::Array;
    diesel::sql_query(
        "INSERT INTO message_keys (message_id, user_id, wrapped_key)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[])",
    )
    .bind::<BigInt, _>(message)
    .bind::<Array<BigInt>, _>(users)
    .bind::<Array<Text>, _>(keys)
    .execute(conn)
    .map(drop)
}

/// A retry of a group message: answered as before if it is the same message's client_id.
fn earlier_group_send(
    conn: &mut PgConn,
    sender: UserId,
    client_id: uuid::Uuid,
    group: GroupId,
) -> QueryResult<SendAnswer> {
    let (id, sent_at, group_id) = messages::table
        .filter(messages::sender_id.eq(sender))
        .filter(messages::client_id.eq(client_id))
        .select((messages::id, messages::sent_at, messages::group_id))
        .first::<(MessageId, DateTime<Utc>, Option<GroupId>)>(conn)?;
    if group_id != Some(group) {
        return Ok(Err(ApiError::client_id_reused()));
    }
    Ok(Ok(MessageSent { id: id.0, sent_at }))
}

/// `SELECT` and `FROM` of every history query: the messages that carry a key for the
/// reader, `$1`. A reader sees nothing sent to a conversation it was not in.
const MESSAGES_FOR_READER: &str = "
    SELECT m.id, su.username AS sender, ru.username AS recipient, g.name AS group_name,
           m.kind, m.client_id, m.sent_at, m.nonce, m.ciphertext, m.sig, m.attachments,
           m.signed_at, g.uid AS group_uid, m.group_epoch, m.group_head, k.wrapped_key
      FROM messages m
      JOIN message_keys k ON k.message_id = m.id AND k.user_id = $1
      JOIN users su ON su.id = m.sender_id
      LEFT JOIN users ru ON ru.id = m.recipient_id
      LEFT JOIN groups g ON g.id = m.group_id";

/// Where a history page starts and how long it is.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Only messages older than this one.
    pub before: MessageId,
    pub limit: i64,
}

/// A page of `reader`'s conversation with `other`, both directions, newest first.
pub fn conversation_page(
    conn: &mut PgConn,
    reader: &SessionUser,
    other: &Username,
    page: PageRequest,
) -> Result<MessagePage, ApiError> {
    let other = crate::store::users::find_id(conn, other)?.ok_or_else(ApiError::user_not_found)?;
    let rows = diesel::sql_query(format!(
        "{MESSAGES_FOR_READER}
          WHERE m.pair_low = LEAST($1, $2) AND m.pair_high = GREATEST($1, $2)
            AND m.recipient_id IS NOT NULL AND m.id < $3
          ORDER BY m.id DESC
          LIMIT $4"
    ))
    .bind::<BigInt, _>(reader.user_id)
    .bind::<BigInt, _>(other)
    .bind::<BigInt, _>(page.before)
    .bind::<BigInt, _>(page.limit)
    .load::<MessageView>(conn)?;
    into_page(rows, page.limit, &reader.username)
}

/// A page of a group's history for `reader` (a member), newest first: the messages sent
/// while they were a member.
pub fn group_page(
    conn: &mut PgConn,
    reader: &SessionUser,
    group: &GroupName,
    page: PageRequest,
) -> Result<MessagePage, ApiError> {
    let group = conn.transaction(|conn| groups::lock(conn, group, reader.user_id, Lock::Share))?;
    let rows = diesel::sql_query(format!(
        "{MESSAGES_FOR_READER} WHERE m.group_id = $2 AND m.id < $3 ORDER BY m.id DESC LIMIT $4"
    ))
    .bind::<BigInt, _>(reader.user_id)
    .bind::<BigInt, _>(group.id)
    .bind::<BigInt, _>(page.before)
    .bind::<BigInt, _>(page.limit)
    .load::<MessageView>(conn)?;
    into_page(rows, page.limit, &reader.username)
}

fn into_page(rows: Vec<MessageView>, limit: i64, reader: &str) -> Result<MessagePage, ApiError> {
    let full = i64::try_from(rows.len()).is_ok_and(|n| n == limit);
    let messages = rows
        .into_iter()
        .map(|r| r.into_wire(reader))
        .collect::<Result<Vec<Message>, _>>()?;
    let next = if full {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    Ok(MessagePage { messages, next })
}
