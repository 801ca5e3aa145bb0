//! Messages: sending (idempotent by `client_id`, with inbox seqs handed out in commit
//! order) and conversation history. The server checks an envelope's shape and who it
//! is addressed to; it can read none of it.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use fastchat_protocol::envelope::{self, Destination, Envelope, Kind};
use fastchat_protocol::names::is_valid_name;
use fastchat_protocol::wire::{Message, MessagePage, MessageSent, SendMessage};
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::blobs;
use crate::db::{self, function_call, PgConn, PgPool};
use crate::error::ApiError;
use crate::groups::{self, Lock};
use crate::schema::{messages, users};
use crate::startup::AppState;
use crate::wakeup;

/// RSA signatures and wrapped keys: 2048 to 8192-bit keys.
const RSA_BLOCK_BYTES: std::ops::RangeInclusive<usize> = 256..=1024;
const HISTORY_DEFAULT_LIMIT: i64 = 50;
const HISTORY_MAX_LIMIT: i64 = 500;

fn invalid_envelope(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_envelope", detail)
}

fn decoded_len(field: &str, value: &str) -> Result<usize, ApiError> {
    BASE64
        .decode(value)
        .map(|bytes| bytes.len())
        .map_err(|_| invalid_envelope(format!("{field} is not standard padded base64")))
}

/// Checks everything about an envelope the server can check without reading it.
fn check_envelope(env: &Envelope, max_ciphertext: usize) -> Result<(), ApiError> {
    if env.v != envelope::VERSION || env.alg != envelope::ALGORITHM {
        return Err(invalid_envelope(format!(
            "only v {} with alg {} is accepted",
            envelope::VERSION,
            envelope::ALGORITHM
        )));
    }
    // Refuse an oversized ciphertext before decoding it.
    if env.ciphertext.len() > max_ciphertext.div_ceil(3) * 4
        || decoded_len("ciphertext", &env.ciphertext)? > max_ciphertext
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            format!("the ciphertext is over {max_ciphertext} bytes"),
        ));
    }
    if decoded_len("nonce", &env.nonce)? != envelope::NONCE_LEN {
        return Err(invalid_envelope("nonce must be 12 bytes"));
    }
    if !RSA_BLOCK_BYTES.contains(&decoded_len("sig", &env.sig)?) {
        return Err(invalid_envelope("sig is not an RSA signature"));
    }
    for (user, wrapped) in &env.keys {
        if !is_valid_name(user) {
            return Err(invalid_envelope(format!("keys names {user:?}, not a user")));
        }
        if !RSA_BLOCK_BYTES.contains(&decoded_len("a wrapped key", wrapped)?) {
            return Err(invalid_envelope(format!(
                "the key for {user} is not RSA-wrapped"
            )));
        }
    }
    Ok(())
}

#[derive(Clone, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage {
    sender_id: i64,
    recipient_id: Option<i64>,
    group_id: Option<i64>,
    client_id: uuid::Uuid,
    kind: String,
    nonce: String,
    ciphertext: String,
    sig: String,
    attachments: Vec<String>,
}

/// A member of the conversation: who gets a wrapped key.
pub struct Member {
    user_id: i64,
    username: String,
}

/// `POST /v1/messages`
pub async fn send(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: web::Json<SendMessage>,
) -> Result<HttpResponse, ApiError> {
    let SendMessage {
        to,
        group,
        client_id,
        kind,
        envelope,
        attachments,
    } = body.into_inner();
    let client_id = uuid::Uuid::parse_str(&client_id)
        .map_err(|_| ApiError::bad_request("invalid_client_id", "client_id must be a UUID"))?;
    let kind = Kind::parse(&kind)
        .ok_or_else(|| ApiError::bad_request("invalid_kind", "kind is text or image"))?;
    let destination = match (to, group) {
        (Some(to), None) => Destination::User(to),
        (None, Some(group)) => Destination::Group(group),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_recipient",
                "name exactly one of to and group",
            ))
        }
    };
    if destination == Destination::User(caller.username.clone()) {
        return Err(ApiError::bad_request(
            "invalid_recipient",
            "you cannot send a message to yourself",
        ));
    }
    check_envelope(&envelope, state.config.ciphertext_max_bytes)?;

    let sender = Member {
        user_id: caller.user_id,
        username: caller.username.clone(),
    };
    let new = NewMessage {
        sender_id: sender.user_id,
        recipient_id: None,
        group_id: None,
        client_id,
        kind: kind.as_str().to_owned(),
        nonce: envelope.nonce.clone(),
        ciphertext: envelope.ciphertext.clone(),
        sig: envelope.sig.clone(),
        attachments,
    };
    let sent = match destination {
        Destination::User(recipient) => state
            .direct_sends
            .call(DirectSend {
                sender,
                recipient,
                new,
                envelope,
            })
            .await
            .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))??,
        Destination::Group(name) => {
            db::run(&state.pool, move |conn| {
                send_to_group(conn, sender, &name, new, &envelope)
            })
            .await?
        }
    };
    Ok(HttpResponse::Created().json(sent))
}

/// Stores a group message. The group's row stays share-locked until commit:
/// membership cannot change between checking the keys and delivering.
fn send_to_group(
    conn: &mut PgConn,
    sender: Member,
    name: &str,
    mut new: NewMessage,
    envelope: &Envelope,
) -> Result<MessageSent, ApiError> {
    let blob_ids = blobs::check_attachments(conn, sender.user_id, &new.attachments)?;
    conn.transaction(|conn| {
        let group = groups::lock(conn, name, sender.user_id, Lock::Share)?;
        new.group_id = Some(group.id);
        let members: Vec<Member> = group
            .members
            .into_iter()
            .map(|m| Member {
                user_id: m.user_id,
                username: m.username,
            })
            .collect();
        check_recipients(envelope, members.iter().map(|m| m.username.as_str()))?;
        store(conn, &new, &members, envelope, &blob_ids)
    })
}

/// Stores a message, its keys and attachments, and delivers it to every member but
/// the sender, inside the caller's transaction. A message already stored under this
/// client_id is answered as it is.
fn store(
    conn: &mut PgConn,
    new: &NewMessage,
    members: &[Member],
    envelope: &Envelope,
    blob_ids: &[uuid::Uuid],
) -> Result<MessageSent, ApiError> {
    let inserted = diesel::insert_into(messages::table)
        .values(new)
        .on_conflict((messages::sender_id, messages::client_id))
        .do_nothing()
        .returning((messages::id, messages::sent_at))
        .get_result::<(i64, DateTime<Utc>)>(conn)
        .optional()?;
    let Some((id, sent_at)) = inserted else {
        return existing(conn, new);
    };
    let keys: Vec<WrappedKey> = members
        .iter()
        .filter_map(|m| {
            envelope.keys.get(&m.username).map(|k| WrappedKey {
                message_id: id,
                user_id: m.user_id,
                key: k.clone(),
            })
        })
        .collect();
    insert_keys(conn, &keys)?;
    blobs::attach(conn, id, blob_ids)?;
    let recipients: Vec<i64> = members
        .iter()
        .map(|m| m.user_id)
        .filter(|&u| u != new.sender_id)
        .collect();
    deliver(conn, &recipients, Delivery::Message(id))?;
    Ok(MessageSent { id, sent_at })
}

/// A one-to-one message, checked as far as it can be without the database.
pub struct DirectSend {
    sender: Member,
    recipient: String,
    new: NewMessage,
    envelope: Envelope,
}

impl DirectSend {
    /// The envelope must carry keys for exactly the sender and the recipient.
    fn check_keys(&self) -> Result<(), ApiError> {
        check_recipients(
            &self.envelope,
            [self.sender.username.as_str(), self.recipient.as_str()],
        )
    }

    fn key_for(&self, username: &str) -> String {
        self.envelope
            .keys
            .get(username)
            .cloned()
            .unwrap_or_default()
    }
}

/// At most this many one-to-one messages are stored together (see `fastchat_send_direct`:
/// one notification, under PostgreSQL's 8000-byte limit, must name every recipient).
pub const DIRECT_BATCH_MAX: usize = 256;
const _: () = assert!(
    DIRECT_BATCH_MAX * 20 < 7900,
    "a batch's wake-up must fit one NOTIFY"
);

/// Stores one-to-one messages that arrived together, each answered as if it had come
/// alone. Those without attachments (nearly all) go in one statement; should it fail,
/// each is stored on its own, so one bad message cannot sink the others.
pub fn store_direct_batch(
    pool: &PgPool,
    sends: Vec<DirectSend>,
) -> Vec<Result<MessageSent, ApiError>> {
    match db::with_conn(pool, |conn| Ok(store_direct(conn, &sends))) {
        Ok(answers) => answers,
        // No connection.
        Err(e) => e.for_each_of(sends.len()),
    }
}

fn store_direct(conn: &mut PgConn, sends: &[DirectSend]) -> Vec<Result<MessageSent, ApiError>> {
    let mut answers: Vec<Option<Result<MessageSent, ApiError>>> =
        sends.iter().map(|_| None).collect();
    let (plain, with_attachments): (Vec<usize>, Vec<usize>) =
        (0..sends.len()).partition(|&i| sends[i].new.attachments.is_empty());
    for i in with_attachments {
        answers[i] = Some(conn.transaction(|conn| store_with_attachments(conn, &sends[i])));
    }
    if !plain.is_empty() {
        match send_together(conn, sends, &plain) {
            Ok(together) => {
                for (i, answer) in plain.iter().zip(together) {
                    answers[*i] = Some(answer);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, count = plain.len(), "storing a batch failed; storing its messages one by one");
                for &i in &plain {
                    answers[i] = Some(
                        send_together(conn, sends, &[i])
                            .and_then(|mut one| one.pop().unwrap_or_else(|| Err(unanswered()))),
                    );
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(unanswered())))
        .collect()
}

fn unanswered() -> ApiError {
    ApiError::Internal(anyhow::anyhow!("a send went unanswered"))
}

/// `sends[which]`, without attachments, stored by one call of `fastchat_send_direct`
/// (an answer each, in order), or the error that stored none of them.
fn send_together(
    conn: &mut PgConn,
    sends: &[DirectSend],
    which: &[usize],
) -> Result<Vec<Result<MessageSent, ApiError>>, ApiError> {
    #[derive(QueryableByName)]
    struct Sent {
        #[diesel(sql_type = BigInt)]
        ord: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        recipient_id: Option<i64>,
        #[diesel(sql_type = Nullable<BigInt>)]
        id: Option<i64>,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        sent_at: Option<DateTime<Utc>>,
    }
    let batch: Vec<&DirectSend> = which.iter().map(|&i| &sends[i]).collect();
    let keys_ok: Vec<bool> = batch.iter().map(|s| s.check_keys().is_ok()).collect();
    let texts =
        |f: &dyn Fn(&DirectSend) -> String| -> Vec<String> { batch.iter().map(|s| f(s)).collect() };
    function_call! {
        struct SendDirect = "fastchat_send_direct"(
            sender_ids: Vec<i64> as Array<BigInt>,
            recipients: Vec<String> as Array<Text>,
            stores: Vec<bool> as Array<Bool>,
            client_ids: Vec<uuid::Uuid> as Array<SqlUuid>,
            kinds: Vec<String> as Array<Text>,
            nonces: Vec<String> as Array<Text>,
            ciphertexts: Vec<String> as Array<Text>,
            sigs: Vec<String> as Array<Text>,
            sender_keys: Vec<String> as Array<Text>,
            recipient_keys: Vec<String> as Array<Text>,
        );
    }
    let rows: Vec<Sent> = SendDirect {
        sender_ids: batch.iter().map(|s| s.sender.user_id).collect(),
        recipients: texts(&|s| s.recipient.clone()),
        stores: keys_ok,
        client_ids: batch.iter().map(|s| s.new.client_id).collect(),
        kinds: texts(&|s| s.new.kind.clone()),
        nonces: texts(&|s| s.new.nonce.clone()),
        ciphertexts: texts(&|s| s.new.ciphertext.clone()),
        sigs: texts(&|s| s.new.sig.clone()),
        sender_keys: texts(&|s| s.key_for(&s.sender.username)),
        recipient_keys: texts(&|s| s.key_for(&s.recipient)),
    }
    .load(conn)?;
    if rows.len() != batch.len() || rows.iter().zip(1..).any(|(r, ord)| r.ord != ord) {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "fastchat_send_direct answered {} of {} sends",
            rows.len(),
            batch.len()
        )));
    }
    Ok(batch
        .iter()
        .zip(rows)
        .map(|(send, row)| match row {
            Sent {
                recipient_id: None, ..
            } => Err(ApiError::not_found(
                "user_not_found",
                "no user has that name",
            )),
            Sent {
                recipient_id: Some(recipient_id),
                id,
                sent_at,
                ..
            } => {
                send.check_keys()?;
                match (id, sent_at) {
                    (Some(id), Some(sent_at)) => Ok(MessageSent { id, sent_at }),
                    // Its sender already used this client_id.
                    _ => {
                        let mut new = send.new.clone();
                        new.recipient_id = Some(recipient_id);
                        existing(conn, &new)
                    }
                }
            }
        })
        .collect())
}

/// A one-to-one message with attachments (rare): checked and stored on its own.
fn store_with_attachments(conn: &mut PgConn, send: &DirectSend) -> Result<MessageSent, ApiError> {
    let recipient = find_user(conn, &send.recipient)?;
    send.check_keys()?;
    let blob_ids = blobs::check_attachments(conn, send.sender.user_id, &send.new.attachments)?;
    let mut new = send.new.clone();
    new.recipient_id = Some(recipient.user_id);
    let members = [
        Member {
            user_id: send.sender.user_id,
            username: send.sender.username.clone(),
        },
        recipient,
    ];
    store(conn, &new, &members, &send.envelope, &blob_ids)
}

fn find_user(conn: &mut PgConn, username: &str) -> Result<Member, ApiError> {
    if !is_valid_name(username) {
        return Err(ApiError::not_found(
            "user_not_found",
            "no user has that name",
        ));
    }
    users::table
        .filter(users::username.eq(username))
        .select(users::id)
        .first::<i64>(conn)
        .optional()?
        .map(|user_id| Member {
            user_id,
            username: username.to_owned(),
        })
        .ok_or_else(|| ApiError::not_found("user_not_found", "no user has that name"))
}

/// The envelope must carry a key for exactly the conversation's members.
fn check_recipients<'a>(
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

struct WrappedKey {
    message_id: i64,
    user_id: i64,
    key: String,
}

fn insert_keys(conn: &mut PgConn, keys: &[WrappedKey]) -> QueryResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO message_keys (message_id, user_id, wrapped_key)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])",
    )
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.message_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.user_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.key.clone()).collect::<Vec<_>>())
    .execute(conn)
    .map(drop)
}

/// A retry: the same message again is answered as before; a different one is refused.
fn existing(conn: &mut PgConn, new: &NewMessage) -> Result<MessageSent, ApiError> {
    let (id, sent_at, recipient_id, group_id) = messages::table
        .filter(messages::sender_id.eq(new.sender_id))
        .filter(messages::client_id.eq(new.client_id))
        .select((
            messages::id,
            messages::sent_at,
            messages::recipient_id,
            messages::group_id,
        ))
        .first::<(i64, DateTime<Utc>, Option<i64>, Option<i64>)>(conn)?;
    if (recipient_id, group_id) != (new.recipient_id, new.group_id) {
        return Err(ApiError::conflict(
            "client_id_reused",
            "this client_id was used for another message",
        ));
    }
    Ok(MessageSent { id, sent_at })
}

/// What an inbox event holds.
#[derive(Clone)]
pub enum Delivery {
    Message(i64),
    /// A group event, stored as its JSON (`{type, group, username, by}`).
    Event(serde_json::Value),
}

/// Appends the same event to each user's inbox and wakes them, inside the caller's
/// transaction.
pub fn deliver(conn: &mut PgConn, user_ids: &[i64], what: Delivery) -> QueryResult<()> {
    deliver_all(conn, user_ids.iter().map(|&u| (u, what.clone())).collect())
}

/// Appends each (user, event) to that user's inbox, in the order given, and wakes the
/// users, inside the caller's transaction (see `fastchat_deliver` for the locking that
/// keeps each inbox's seq in commit order).
pub fn deliver_all(conn: &mut PgConn, deliveries: Vec<(i64, Delivery)>) -> QueryResult<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
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
            Delivery::Event(event) => {
                message_ids.push(None);
                group_events.push(Some(event));
            }
        }
    }
    diesel::sql_query("SELECT fastchat_deliver($1, $2, $3)")
        .bind::<Array<BigInt>, _>(&user_ids)
        .bind::<Array<Nullable<BigInt>>, _>(&message_ids)
        .bind::<Array<Nullable<Jsonb>>, _>(&group_events)
        .execute(conn)?;
    user_ids.sort_unstable();
    user_ids.dedup();
    wakeup::announce(conn, &user_ids)
}

/// A message as one reader sees it, from the queries below (or, for one just sent, from
/// its notification).
#[derive(Clone, QueryableByName, Deserialize)]
pub struct MessageRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub sender: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub recipient: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub group_name: Option<String>,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = SqlUuid)]
    pub client_id: uuid::Uuid,
    #[diesel(sql_type = Timestamptz)]
    pub sent_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub nonce: String,
    #[diesel(sql_type = Text)]
    pub ciphertext: String,
    #[diesel(sql_type = Text)]
    pub sig: String,
    #[diesel(sql_type = Array<Text>)]
    #[serde(default)]
    pub attachments: Vec<String>,
    #[diesel(sql_type = Text)]
    pub wrapped_key: String,
}

/// `SELECT` and `FROM` of every query for [`MessageRow`]s: the messages that carry a
/// key for the reader, `$1`. A reader sees nothing sent to a conversation it was not in.
const MESSAGES_FOR_READER: &str = "
    SELECT m.id, su.username AS sender, ru.username AS recipient, g.name AS group_name,
           m.kind, m.client_id, m.sent_at, m.nonce, m.ciphertext, m.sig, m.attachments,
           k.wrapped_key
      FROM messages m
      JOIN message_keys k ON k.message_id = m.id AND k.user_id = $1
      JOIN users su ON su.id = m.sender_id
      LEFT JOIN users ru ON ru.id = m.recipient_id
      LEFT JOIN groups g ON g.id = m.group_id";

/// A page of a group's history for `reader`, newest first.
pub fn load_group_history(
    conn: &mut PgConn,
    reader: i64,
    group_id: i64,
    before: i64,
    limit: i64,
) -> QueryResult<Vec<MessageRow>> {
    diesel::sql_query(format!(
        "{MESSAGES_FOR_READER} WHERE m.group_id = $2 AND m.id < $3 ORDER BY m.id DESC LIMIT $4"
    ))
    .bind::<BigInt, _>(reader)
    .bind::<BigInt, _>(group_id)
    .bind::<BigInt, _>(before)
    .bind::<BigInt, _>(limit)
    .load(conn)
}

impl MessageRow {
    pub fn into_message(self, reader: &str) -> Message {
        Message {
            id: self.id,
            from: self.sender,
            to: self.recipient,
            group: self.group_name,
            kind: self.kind,
            client_id: self.client_id,
            sent_at: self.sent_at,
            envelope: Envelope {
                v: envelope::VERSION,
                alg: envelope::ALGORITHM.to_owned(),
                nonce: self.nonce,
                ciphertext: self.ciphertext,
                keys: [(reader.to_owned(), self.wrapped_key)].into(),
                sig: self.sig,
            },
            attachments: self.attachments,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

impl HistoryQuery {
    /// `(before, limit)`, checked, with their defaults.
    pub fn validated(self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
        if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("limit is 1 to {HISTORY_MAX_LIMIT}"),
            ));
        }
        Ok((self.before.unwrap_or(i64::MAX), limit))
    }
}

/// `GET /v1/conversations/{username}/messages`: both directions, newest first.
pub async fn conversation(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<MessagePage>, ApiError> {
    let other = path.into_inner();
    let (before, limit) = query.into_inner().validated()?;
    let me = caller.user_id;
    let rows = db::run(&state.pool, move |conn| {
        let other = find_user(conn, &other)?;
        Ok(diesel::sql_query(format!(
            "{MESSAGES_FOR_READER}
              WHERE m.pair_low = LEAST($1, $2) AND m.pair_high = GREATEST($1, $2)
                AND m.recipient_id IS NOT NULL AND m.id < $3
              ORDER BY m.id DESC
              LIMIT $4"
        ))
        .bind::<BigInt, _>(me)
        .bind::<BigInt, _>(other.user_id)
        .bind::<BigInt, _>(before)
        .bind::<BigInt, _>(limit)
        .load::<MessageRow>(conn)?)
    })
    .await?;
    Ok(web::Json(page(rows, limit, &caller.username)))
}

pub fn page(rows: Vec<MessageRow>, limit: i64, reader: &str) -> MessagePage {
    let full = i64::try_from(rows.len()).is_ok_and(|n| n == limit);
    let messages: Vec<Message> = rows.into_iter().map(|r| r.into_message(reader)).collect();
    let next = if full {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    MessagePage { messages, next }
}
