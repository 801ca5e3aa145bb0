//! Read marks and the list of a user's conversations with their unread counts. A mark
//! is the reader's inbox seq of the message read up to, so "unread" (the messages from
//! others after it in the reader's inbox) follows commit order. Neither query is on a
//! hot path: each reads the caller's own inbox and sent messages.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};

use crate::db::PgConn;
use crate::ids::{GroupId, MessageId, UserId};

/// A conversation as a read mark names it.
#[derive(Debug, Clone, Copy)]
pub enum Conversation {
    With(UserId),
    Group(GroupId),
}

impl Conversation {
    /// `(peer_id, group_id)`, 0 for the one that does not apply.
    fn columns(self) -> (i64, i64) {
        match self {
            Conversation::With(peer) => (peer.0, 0),
            Conversation::Group(group) => (0, group.0),
        }
    }
}

/// One conversation of a user, newest first; exactly one of `peer` and `group`.
#[derive(Debug, QueryableByName)]
pub struct ConversationRow {
    #[diesel(sql_type = Nullable<Text>)]
    pub peer: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub group_name: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub last_message_id: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    pub unread: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub read_up_to: Option<i64>,
}

/// The people `user` has exchanged messages with and the groups they are in, newest
/// activity first, with the messages from others after their read mark.
pub fn conversations(conn: &mut PgConn, user: UserId) -> QueryResult<Vec<ConversationRow>> {
    diesel::sql_query(
        "WITH received AS (
             SELECT e.seq, m.id, m.sent_at,
                    CASE WHEN m.group_id IS NULL THEN m.sender_id ELSE 0 END AS peer_id,
                    coalesce(m.group_id, 0) AS group_id
               FROM inbox_events e JOIN messages m ON m.id = e.message_id
              WHERE e.user_id = $1 AND e.message_id IS NOT NULL AND m.sender_id <> $1
         ), sent AS (
             SELECT m.id, m.sent_at,
                    coalesce(m.recipient_id, 0) AS peer_id, coalesce(m.group_id, 0) AS group_id
               FROM messages m WHERE m.sender_id = $1
         ), activity AS (
             SELECT peer_id, group_id, max(id) AS last_id, max(sent_at) AS last_at
               FROM (SELECT peer_id, group_id, id, sent_at FROM received
                     UNION ALL SELECT peer_id, group_id, id, sent_at FROM sent) a
              GROUP BY peer_id, group_id
         ), conversations AS (
             SELECT a.peer_id, a.group_id, a.last_id, a.last_at FROM activity a
              WHERE a.group_id = 0
             UNION ALL
             SELECT 0, gm.group_id, a.last_id, a.last_at
               FROM group_members gm
               LEFT JOIN activity a ON a.group_id = gm.group_id AND a.peer_id = 0
              WHERE gm.user_id = $1
         )
         SELECT u.username AS peer, g.name AS group_name, c.last_id AS last_message_id,
                c.last_at,
                (SELECT count(*) FROM received r
                  WHERE r.peer_id = c.peer_id AND r.group_id = c.group_id
                    AND r.seq > coalesce(mark.seq, 0)) AS unread,
                mark.message_id AS read_up_to
           FROM conversations c
           LEFT JOIN users u ON c.peer_id <> 0 AND u.id = c.peer_id
           LEFT JOIN groups g ON c.group_id <> 0 AND g.id = c.group_id
           LEFT JOIN read_marks mark ON mark.user_id = $1 AND mark.peer_id = c.peer_id
                                    AND mark.group_id = c.group_id
          WHERE u.id IS NOT NULL OR g.id IS NOT NULL
          ORDER BY coalesce(c.last_at, g.created_at) DESC, c.last_id DESC NULLS LAST",
    )
    .bind::<BigInt, _>(user)
    .load(conn)
}

/// The group called `name` that `user` is a member of.
pub fn member_group(conn: &mut PgConn, name: &str, user: UserId) -> QueryResult<Option<GroupId>> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = BigInt)]
        id: GroupId,
    }
    let found: Option<Found> = diesel::sql_query(
        "SELECT g.id FROM groups g JOIN group_members gm ON gm.group_id = g.id
          WHERE g.name = $1 AND gm.user_id = $2",
    )
    .bind::<Text, _>(name)
    .bind::<BigInt, _>(user)
    .get_result(conn)
    .optional()?;
    Ok(found.map(|f| f.id))
}

/// Marks `conversation` read by `user` up to `message`, which must be one they received
/// in it; a mark only moves forward. The mark after (its message), or `None` when
/// `message` is not such a message.
pub fn mark(
    conn: &mut PgConn,
    user: UserId,
    conversation: Conversation,
    message: MessageId,
) -> QueryResult<Option<MessageId>> {
    #[derive(QueryableByName)]
    struct Mark {
        #[diesel(sql_type = BigInt)]
        message_id: MessageId,
    }
    let (peer_id, group_id) = conversation.columns();
    conn.transaction(|conn| {
        let marked: Option<Mark> = diesel::sql_query(
            "WITH target AS (
                 SELECT e.seq, m.id FROM inbox_events e JOIN messages m ON m.id = e.message_id
                  WHERE e.user_id = $1 AND e.message_id = $4 AND m.sender_id <> $1
                    AND CASE WHEN $2 <> 0 THEN m.group_id IS NULL AND m.sender_id = $2
                             ELSE m.group_id = $3 END
             ), upsert AS (
                 INSERT INTO read_marks (user_id, peer_id, group_id, seq, message_id)
                 SELECT $1, $2, $3, t.seq, t.id FROM target t
                 ON CONFLICT (user_id, peer_id, group_id) DO UPDATE
                    SET seq = excluded.seq, message_id = excluded.message_id, read_at = now()
                  WHERE read_marks.seq < excluded.seq
                 RETURNING message_id
             )
             SELECT coalesce((SELECT message_id FROM upsert),
                             (SELECT message_id FROM read_marks
                               WHERE user_id = $1 AND peer_id = $2 AND group_id = $3))
                    AS message_id
               FROM target",
        )
        .bind::<BigInt, _>(user)
        .bind::<BigInt, _>(peer_id)
        .bind::<BigInt, _>(group_id)
        .bind::<BigInt, _>(message)
        .get_result(conn)
        .optional()?;
        Ok(marked.map(|m| m.message_id))
    })
}
