//! Messages: sending (idempotent by `client_id`, with inbox seqs handed out in commit
//! order) and conversation history. The server checks an envelope's shape and who it
//! is addressed to; it can read none of it.

use std::collections::{BTreeSet, HashMap};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use fastchat_protocol::envelope::{self, Destination, Envelope, Kind};
use fastchat_protocol::names::is_valid_name;
use fastchat_protocol::wire::{Message, MessagePage, MessageSent, SendMessage};
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::blobs;
use crate::db::{self, PgConn, PgPool};
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
        check_recipients(envelope, &members)?;
        let inserted = diesel::insert_into(messages::table)
            .values(&new)
            .on_conflict((messages::sender_id, messages::client_id))
            .do_nothing()
            .returning((messages::id, messages::sent_at))
            .get_result::<(i64, DateTime<Utc>)>(conn)
            .optional()?;
        let Some((id, sent_at)) = inserted else {
            return existing(conn, &new);
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
        blobs::attach(conn, id, &blob_ids)?;
        let recipients: Vec<i64> = members
            .iter()
            .map(|m| m.user_id)
            .filter(|&u| u != new.sender_id)
            .collect();
        deliver(conn, &recipients, Delivery::Message(id))?;
        Ok(MessageSent { id, sent_at })
    })
}

/// A one-to-one message, checked as far as it can be without the database.
pub struct DirectSend {
    sender: Member,
    recipient: String,
    new: NewMessage,
    envelope: Envelope,
}

/// Stores one-to-one messages that arrived together: one transaction and one wake-up
/// for the lot, each answered as if it had come alone. Should the transaction fail,
/// each is stored on its own, so one bad message cannot sink the others.
pub async fn store_direct_batch(
    pool: PgPool,
    sends: Vec<DirectSend>,
) -> Vec<Result<MessageSent, ApiError>> {
    let count = sends.len();
    let stored = db::run(&pool, move |conn| {
        if sends.len() > 1 {
            match conn.transaction(|conn| store_direct(conn, &sends)) {
                Ok(results) => return Ok(results),
                Err(e) => tracing::warn!(error = %e, count, "storing a batch failed; storing its messages one by one"),
            }
        }
        Ok(sends
            .iter()
            .map(|send| {
                conn.transaction(|conn| store_direct(conn, std::slice::from_ref(send)))
                    .and_then(|mut results| results.pop().unwrap_or_else(|| Err(ApiError::Internal(anyhow::anyhow!("a send went unanswered")))))
            })
            .collect())
    })
    .await;
    match stored {
        Ok(results) => results,
        // No connection, or the blocking pool is gone: every send hears why.
        Err(e) => {
            let message = e.to_string();
            (0..count)
                .map(|_| Err(ApiError::Unavailable(message.clone())))
                .collect()
        }
    }
}

/// The work of [`store_direct_batch`] inside its transaction: an answer per send, or
/// an error that rolls them all back.
fn store_direct(
    conn: &mut PgConn,
    sends: &[DirectSend],
) -> Result<Vec<Result<MessageSent, ApiError>>, ApiError> {
    let mut answers: Vec<Option<Result<MessageSent, ApiError>>> =
        sends.iter().map(|_| None).collect();

    let names: Vec<&str> = sends
        .iter()
        .map(|s| s.recipient.as_str())
        .filter(|n| is_valid_name(n))
        .collect();
    let user_ids: HashMap<String, i64> = users::table
        .filter(users::username.eq_any(&names))
        .select((users::username, users::id))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();

    // What each send needs checked: its recipient, its keys, its attachments.
    let mut ready: Vec<(usize, NewMessage, Vec<uuid::Uuid>)> = Vec::with_capacity(sends.len());
    for (i, send) in sends.iter().enumerate() {
        let checked = (|| {
            let recipient_id = *user_ids
                .get(&send.recipient)
                .ok_or_else(|| ApiError::not_found("user_not_found", "no user has that name"))?;
            let members = [
                Member {
                    user_id: send.sender.user_id,
                    username: send.sender.username.clone(),
                },
                Member {
                    user_id: recipient_id,
                    username: send.recipient.clone(),
                },
            ];
            check_recipients(&send.envelope, &members)?;
            let blob_ids =
                blobs::check_attachments(conn, send.sender.user_id, &send.new.attachments)?;
            let mut new = send.new.clone();
            new.recipient_id = Some(recipient_id);
            Ok((new, blob_ids))
        })();
        match checked {
            Ok((new, blob_ids)) => ready.push((i, new, blob_ids)),
            Err(e) => answers[i] = Some(Err(e)),
        }
    }

    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Timestamptz)]
        sent_at: DateTime<Utc>,
        #[diesel(sql_type = BigInt)]
        sender_id: i64,
        #[diesel(sql_type = SqlUuid)]
        client_id: uuid::Uuid,
    }
    let column = |f: fn(&NewMessage) -> String| -> Vec<String> {
        ready.iter().map(|(_, new, _)| f(new)).collect()
    };
    let mut inserted: HashMap<(i64, uuid::Uuid), (i64, DateTime<Utc>)> = diesel::sql_query(
        "INSERT INTO messages (sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig, attachments)
         SELECT sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig, '{}'
           FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[])
             AS t(sender_id, recipient_id, client_id, kind, nonce, ciphertext, sig)
         ON CONFLICT (sender_id, client_id) DO NOTHING
         RETURNING id, sent_at, sender_id, client_id",
    )
    .bind::<Array<BigInt>, _>(ready.iter().map(|(_, n, _)| n.sender_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(
        ready.iter().map(|(_, n, _)| n.recipient_id).collect::<Vec<_>>(),
    )
    .bind::<Array<SqlUuid>, _>(ready.iter().map(|(_, n, _)| n.client_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(column(|n| n.kind.clone()))
    .bind::<Array<Text>, _>(column(|n| n.nonce.clone()))
    .bind::<Array<Text>, _>(column(|n| n.ciphertext.clone()))
    .bind::<Array<Text>, _>(column(|n| n.sig.clone()))
    .load::<Inserted>(conn)?
    .into_iter()
    .map(|r| ((r.sender_id, r.client_id), (r.id, r.sent_at)))
    .collect();

    let mut keys = Vec::with_capacity(ready.len() * 2);
    let mut deliveries = Vec::with_capacity(ready.len());
    for (i, new, blob_ids) in &ready {
        // Taken, so a second copy of a message in this batch is answered as a retry.
        let Some((id, sent_at)) = inserted.remove(&(new.sender_id, new.client_id)) else {
            answers[*i] = Some(existing(conn, new));
            continue;
        };
        let send = &sends[*i];
        let recipient_id = new.recipient_id.unwrap_or_default();
        for (user_id, username) in [
            (new.sender_id, &send.sender.username),
            (recipient_id, &send.recipient),
        ] {
            if let Some(key) = send.envelope.keys.get(username) {
                keys.push(WrappedKey {
                    message_id: id,
                    user_id,
                    key: key.clone(),
                });
            }
        }
        if !blob_ids.is_empty() {
            diesel::update(messages::table.find(id))
                .set(messages::attachments.eq(&new.attachments))
                .execute(conn)?;
            blobs::attach(conn, id, blob_ids)?;
        }
        deliveries.push((recipient_id, Delivery::Message(id)));
        answers[*i] = Some(Ok(MessageSent { id, sent_at }));
    }
    insert_keys(conn, &keys)?;
    deliver_all(conn, deliveries)?;
    Ok(answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| {
                Err(ApiError::Internal(anyhow::anyhow!(
                    "a send went unanswered"
                )))
            })
        })
        .collect())
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
fn check_recipients(envelope: &Envelope, members: &[Member]) -> Result<(), ApiError> {
    let expected: BTreeSet<&str> = members.iter().map(|m| m.username.as_str()).collect();
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

/// A message as one reader sees it, from the queries below.
#[derive(QueryableByName)]
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
