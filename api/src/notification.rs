//! The notification one api server sends the others when inboxes grow: the wake-up that
//! reaches whichever server holds a recipient's event stream. It is only a hint; the
//! inbox table is the truth, and a stream that misses one catches up from the table.
//!
//! One channel, three payload forms:
//! - a **wake-up**: the ids of users whose inboxes grew, comma-separated: `12,34`;
//! - a **push**: a one-to-one message whole, as its recipient's inbox event, so that the
//!   server holding that stream sends it on without reading it back:
//!   `push:<recipient id>:{"seq": 9, "message": {"id": .., "sender": .., ...}}`
//!   (the fields of [`PushedMessage`]);
//! - a **revocation**: a live session ended (logged out, its user deleted, its expiry
//!   moved into the past): `revoke:<hex SHA-256 of its token>`; every server ends that
//!   session's streams.
//!
//! A payload stays under PostgreSQL's limit ([`MAX_PAYLOAD_BYTES`]): wake-ups are split,
//! and a message too big to push goes out as a wake-up instead. In PostgreSQL the
//! producers are SQL (`fastchat_wake`, `fastchat_send_direct_messages`, the
//! `sessions_ended` trigger), which
//! read the channel and the limit from `fastchat_notification_channel()` and
//! `fastchat_notification_max_bytes()`; a test checks that those equal the constants here
//! and decodes what the real functions send.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, Seq, UserId};

pub const CHANNEL: &str = "fastchat_inbox";
/// PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
pub const MAX_PAYLOAD_BYTES: usize = 7999;
const PUSH_PREFIX: &str = "push:";
const REVOKE_PREFIX: &str = "revoke:";

/// A payload, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification<'a> {
    /// These users' inboxes grew: their streams read them.
    Wake(Vec<UserId>),
    /// `recipient`'s next inbox event, whole; `event` is its JSON ([`PushedEvent`]),
    /// decoded only by the server that holds the recipient's stream.
    Push { recipient: UserId, event: &'a str },
    /// The session whose token hashes to this ended.
    Revoke(Vec<u8>),
}

/// A one-to-one message as its recipient's inbox holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedEvent {
    pub seq: Seq,
    pub message: PushedMessage,
}

/// A one-to-one message as its recipient sees it (only the recipient's wrapped key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedMessage {
    pub id: MessageId,
    pub sender: String,
    pub recipient: String,
    pub kind: String,
    pub client_id: uuid::Uuid,
    pub sent_at: DateTime<Utc>,
    pub nonce: String,
    pub ciphertext: String,
    pub sig: String,
    #[serde(default)]
    pub attachments: Vec<String>,
    /// The sender's time from the signed header (v2).
    #[serde(default)]
    pub signed_at: Option<String>,
    pub wrapped_key: String,
}

#[derive(Debug, thiserror::Error)]
#[error("a malformed notification: {0}")]
pub struct Malformed(String);

impl Notification<'_> {
    pub fn decode(payload: &str) -> Result<Notification<'_>, Malformed> {
        if let Some(hash) = payload.strip_prefix(REVOKE_PREFIX) {
            return hex::decode(hash)
                .ok()
                .filter(|h| h.len() == 32)
                .map(Notification::Revoke)
                .ok_or_else(|| Malformed("a revocation without a token hash".into()));
        }
        let Some(push) = payload.strip_prefix(PUSH_PREFIX) else {
            return payload
                .split(',')
                .map(|id| id.parse().map(UserId))
                .collect::<Result<_, _>>()
                .map(Notification::Wake)
                .map_err(|_| Malformed(format!("not user ids: {payload:.40}")));
        };
        let (recipient, event) = push
            .split_once(':')
            .ok_or_else(|| Malformed("a push without a recipient".into()))?;
        let recipient = recipient
            .parse()
            .map(UserId)
            .map_err(|_| Malformed(format!("a push for {recipient:.20}")))?;
        Ok(Notification::Push { recipient, event })
    }
}

impl PushedEvent {
    pub fn decode(json: &str) -> Result<Self, Malformed> {
        serde_json::from_str(json).map_err(|e| Malformed(e.to_string()))
    }
}

/// The payload that ends a session's streams everywhere (the `sessions_ended` trigger
/// sends it).
#[cfg(test)]
fn revoke_payload(token_hash: &[u8]) -> String {
    format!("{REVOKE_PREFIX}{}", hex::encode(token_hash))
}

/// Wake-up payloads naming every one of `users`, each under the limit.
pub fn wake_payloads(users: &[UserId]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for user in users {
        let id = user.to_string();
        if !current.is_empty() && current.len() + 1 + id.len() > MAX_PAYLOAD_BYTES {
            payloads.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&id);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// The push payload for `recipient`'s `event`, or `None` when it is too big to push.
pub fn push_payload(recipient: UserId, event: &PushedEvent) -> Option<String> {
    let json = serde_json::to_string(event).ok()?;
    let payload = format!("{PUSH_PREFIX}{recipient}:{json}");
    (payload.len() <= MAX_PAYLOAD_BYTES).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ciphertext_len: usize) -> PushedEvent {
        PushedEvent {
            seq: Seq(9),
            message: PushedMessage {
                id: MessageId(7),
                sender: "alice".into(),
                recipient: "bob".into(),
                kind: "text".into(),
                client_id: uuid::Uuid::new_v4(),
                sent_at: Utc::now(),
                nonce: "n".into(),
                ciphertext: "c".repeat(ciphertext_len),
                sig: "s".into(),
                attachments: vec![],
                signed_at: Some("2026-12-01T12:00:00.000Z".into()),
                wrapped_key: "k".into(),
            },
        }
    }

    #[test]
    fn wake_ups_fit_the_limit_and_keep_every_id() {
        let users: Vec<UserId> = (1_000_000..1_002_000).map(UserId).collect();
        let payloads = wake_payloads(&users);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD_BYTES));
        let back: Vec<UserId> = payloads
            .iter()
            .flat_map(|p| match Notification::decode(p) {
                Ok(Notification::Wake(users)) => users,
                other => panic!("not a wake-up: {other:?}"),
            })
            .collect();
        assert_eq!(back, users);
        assert!(wake_payloads(&[]).is_empty());
    }

    #[test]
    fn a_push_round_trips_and_a_big_one_is_not_pushed() {
        let pushed = event(100);
        let payload = push_payload(UserId(2), &pushed).expect("small enough");
        match Notification::decode(&payload).expect("decodes") {
            Notification::Push { recipient, event } => {
                assert_eq!(recipient, UserId(2));
                assert_eq!(PushedEvent::decode(event).expect("the event"), pushed);
            }
            other => panic!("not a push: {other:?}"),
        }
        assert!(push_payload(UserId(2), &event(MAX_PAYLOAD_BYTES)).is_none());
    }

    #[test]
    fn a_revocation_round_trips() {
        let hash = [7u8; 32];
        assert_eq!(
            Notification::decode(&revoke_payload(&hash)).expect("decodes"),
            Notification::Revoke(hash.to_vec())
        );
    }

    #[test]
    fn garbage_is_refused_not_guessed() {
        for payload in [
            "",
            "1,x",
            "push:",
            "push:x:{}",
            "event:2:{}",
            "revoke:",
            "revoke:zz",
        ] {
            assert!(Notification::decode(payload).is_err(), "{payload:?}");
        }
        assert!(PushedEvent::decode("{\"seq\": 1}").is_err());
    }
}
