//! Group messages handed to their members' streams whole. The server that stores a group
//! message tells every server which seq of each member's inbox holds it (see
//! [`crate::notification`]); a server holding some of those members' streams reads the
//! message once and their wrapped keys in one lookup, where each stream would otherwise
//! read its inbox back on its own.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt};

use crate::batch::{BatchMetrics, Batcher, QUEUE_MAX};
use crate::db::{self, PgPool};
use crate::error::ApiError;
use crate::ids::{MessageId, Seq, UserId};
use crate::notification::GroupMessageEvents;
use crate::schema::message_keys;
use crate::store::message_view::SharedFields;

/// A group message as its members see it alike, and each member's seq and wrapped key;
/// a member whose key is not found (the message was deleted meanwhile) is left out.
#[derive(Debug)]
pub struct GroupPush {
    pub message: MessageId,
    pub shared: SharedFields,
    pub members: Vec<(UserId, Seq, String)>,
}

/// `None`: the message is gone.
pub type PushedEvents = Result<Option<GroupPush>, ApiError>;

/// Group messages arriving together (a burst to one group) are read together.
const BATCH_MAX: usize = 64;
const WORKERS: usize = 1;

/// Starts the thread that serves [`read`] in batches.
pub fn batcher(
    pool: PgPool,
    metrics: BatchMetrics,
) -> std::io::Result<Batcher<GroupMessageEvents, PushedEvents>> {
    Batcher::start(
        "group-pushes",
        WORKERS,
        BATCH_MAX,
        QUEUE_MAX,
        metrics,
        move |requests| read(&pool, &requests),
    )
}

/// The message's fields that every member sees alike, by id.
#[derive(QueryableByName)]
struct SharedRow {
    #[diesel(sql_type = BigInt)]
    id: MessageId,
    #[diesel(embed)]
    shared: SharedFields,
}

/// Reads the messages of `requests` and their members' keys, two queries for them all,
/// and answers each with its members' events. Blocks.
pub fn read(pool: &PgPool, requests: &[GroupMessageEvents]) -> Vec<PushedEvents> {
    let message_ids: Vec<MessageId> = requests
        .iter()
        .map(|r| r.message)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let user_ids: Vec<UserId> = requests
        .iter()
        .flat_map(|r| r.seqs.iter().map(|(user, _)| *user))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let found = db::with_conn(pool, |conn| {
        let messages = diesel::sql_query(
            "SELECT m.id, su.username AS sender, NULL::text AS recipient, g.name AS group_name,
                    m.kind, m.client_id, m.sent_at, m.nonce, m.ciphertext, m.sig,
                    m.attachments, m.signed_at, g.uid AS group_uid, m.group_epoch,
                    m.group_head
               FROM messages m
               JOIN users su ON su.id = m.sender_id
               JOIN groups g ON g.id = m.group_id
              WHERE m.id = ANY($1)",
        )
        .bind::<Array<BigInt>, _>(&message_ids)
        .load::<SharedRow>(conn)?;
        // Every (message, member) pair of the batch is among these; the few more a
        // batch of several messages finds are passed over below.
        let keys = message_keys::table
            .filter(message_keys::message_id.eq_any(&message_ids))
            .filter(message_keys::user_id.eq_any(&user_ids))
            .select((
                message_keys::message_id,
                message_keys::user_id,
                message_keys::wrapped_key,
            ))
            .load::<(MessageId, UserId, String)>(conn)?;
        Ok((messages, keys))
    });
    let (messages, keys) = match found {
        Ok(found) => found,
        Err(e) => return e.for_each_of(requests.len()),
    };
    let shared: HashMap<MessageId, SharedFields> =
        messages.into_iter().map(|m| (m.id, m.shared)).collect();
    let mut keys: HashMap<(MessageId, UserId), String> = keys
        .into_iter()
        .map(|(message, user, key)| ((message, user), key))
        .collect();
    requests
        .iter()
        .map(|request| {
            let Some(shared) = shared.get(&request.message) else {
                return Ok(None);
            };
            let members = request
                .seqs
                .iter()
                .filter_map(|&(user, seq)| {
                    let wrapped_key = keys.remove(&(request.message, user))?;
                    Some((user, seq, wrapped_key))
                })
                .collect();
            Ok(Some(GroupPush {
                message: request.message,
                // Once a request (a message told in several notifications has several).
                shared: shared.clone(),
                members,
            }))
        })
        .collect()
}
