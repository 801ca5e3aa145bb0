//! The Rust side of FastChat's SQL functions: each one's arguments, bound in order.
//! Their current definitions are pinned in `api/sql/functions.sql` (a test compares it
//! with a migrated database); their results are read by the store modules that call
//! them. Each is prepared once per connection (see [`function_call!`]).

use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid,
};

use crate::db::function_call;
use crate::ids::{MessageId, Seq, UserId};

function_call! {
    /// The live sessions among these token hashes, with their users
    /// (`token_hash, user_id, username, expires_at`).
    struct FindLiveSessions = "fastchat_find_live_sessions"(hashes: Vec<Vec<u8>> as Array<Bytea>);

    /// Counts a login attempt before its password is checked (`allowed,
    /// retry_after_secs, user_id, password_hash`).
    struct LoginAttempt = "fastchat_login_attempt"(
        name: String as Text,
        client: String as Text,
        window_secs: i64 as BigInt,
        lockout_secs: i64 as BigInt,
        max_per_name: i32 as Integer,
        max_per_address: i32 as Integer,
    );

    /// A login that succeeded: its (name, address) starts afresh.
    struct LoginSucceeded = "fastchat_login_succeeded"(name: String as Text, client: String as Text);

    /// One-to-one messages stored together; one row per message (`ord, outcome,
    /// recipient_id, id, sent_at, push`: the notification that hands a stored message
    /// to its recipient's stream whole, for a silent connection to send after commit). Position i of the first eleven arrays is message i;
    /// `attachment_ords[j]` names the message (from 1) that lists `attachment_ids[j]`.
    struct SendDirectMessages = "fastchat_send_direct_messages"(
        sender_ids: Vec<UserId> as Array<BigInt>,
        recipients: Vec<String> as Array<Text>,
        stores: Vec<bool> as Array<Bool>,
        client_ids: Vec<uuid::Uuid> as Array<SqlUuid>,
        kinds: Vec<String> as Array<Text>,
        nonces: Vec<String> as Array<Text>,
        ciphertexts: Vec<String> as Array<Text>,
        sigs: Vec<String> as Array<Text>,
        signed_ats: Vec<String> as Array<Text>,
        sender_keys: Vec<String> as Array<Text>,
        recipient_keys: Vec<String> as Array<Text>,
        attachment_ords: Vec<i64> as Array<BigInt>,
        attachment_ids: Vec<uuid::Uuid> as Array<SqlUuid>,
    );

    /// Appends `user_ids[i]`'s event (`message_ids[i]` or `group_events[i]`) to each
    /// inbox, seqs in commit order; returns the events appended (`user_id, seq,
    /// message_id`).
    struct Deliver = "fastchat_deliver"(
        user_ids: Vec<UserId> as Array<BigInt>,
        message_ids: Vec<Option<MessageId>> as Array<Nullable<BigInt>>,
        group_events: Vec<Option<serde_json::Value>> as Array<Nullable<Jsonb>>,
    );

    /// Wakes these users' streams (a notification naming them); returns nothing.
    struct Wake = "fastchat_wake"(user_ids: Vec<UserId> as Array<BigInt>);

    /// For request i, up to `limits[i]` events of `user_ids[i]`'s inbox after
    /// `afters[i]`, each message as that reader sees it (rows: see `store::inbox`).
    struct ReadInboxEvents = "fastchat_read_inbox_events"(
        user_ids: Vec<UserId> as Array<BigInt>,
        afters: Vec<Seq> as Array<BigInt>,
        limits: Vec<i64> as Array<BigInt>,
    );
}
