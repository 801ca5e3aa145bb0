//! The notification one api server sends the others when inboxes grow: the wake-up that
//! reaches whichever server holds a recipient's event stream. It is only a hint; the
//! inbox table is the truth, and a stream that misses one catches up from the table.
//!
//! One channel, four payload forms:
//! - a **wake-up**: the ids of users whose inboxes grew, comma-separated: `12,34`;
//! - a **push**: a one-to-one message whole, as its recipient's inbox event, so that the
//!   server holding that stream sends it on without reading it back:
//!   `push:<recipient id>:{"seq": 9, "message": {"id": .., "sender": .., ...}}`
//!   (the fields of [`PushedMessage`]);
//! - a **group message**: which group message each member's new event holds, at which
//!   seq: `group:<message id>:<user id>=<seq>,<user id>=<seq>`; a server holding some
//!   of those members' streams reads the message and their keys once, and hands each
//!   stream its event whole (the server that stored it pushes from what it stored);
//! - a **revocation**: a live session ended (logged out, its user deleted, its expiry
//!   moved into the past): `revoke:<hex SHA-256 of its token>`; every server ends that
//!   session's streams.
//!
//! A payload stays under PostgreSQL's limit ([`MAX_PAYLOAD_BYTES`]): wake-ups and group
//! messages' member lists are split, and a message too big to push goes out as a
//! wake-up instead. In PostgreSQL the producers are SQL (`fastchat_wake`,
//! `fastchat_send_direct_messages`, the `sessions_ended` trigger), which read the
//! channel and the limit from `fastchat_notification_channel()` and
//! `fastchat_notification_max_bytes()`; a test checks that those equal the constants here
//! and decodes what the real functions send. The group message form is written by the
//! store ([`group_message_payloads`]) and sent on the same channel.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, Seq, UserId};

pub const CHANNEL: &str = "fastchat_inbox";
/// PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
pub const MAX_PAYLOAD_BYTES: usize = 7999;
const PUSH_PREFIX: &str = "push:";
const REVOKE_PREFIX: &str = "revoke:";
const GROUP_PREFIX: &str = "group:";

/// A payload, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification<'a> {
    /// These users' inboxes grew: their streams read them.
    Wake(Vec<UserId>),
    /// `recipient`'s next inbox event, whole; `event` is its JSON ([`PushedEvent`]),
    /// decoded only by the server that holds the recipient's stream.
    Push { recipient: UserId, event: &'a str },
    /// A group message was stored, and these events of its members' inboxes hold it.
    GroupMessage(GroupMessageEvents),
    /// The session whose token hashes to this ended.
    Revoke(Vec<u8>),
}

/// Group message `message` is the event at `seq` of each (member, seq)'s inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMessageEvents {
    pub message: MessageId,
    pub seqs: Vec<(UserId, Seq)>,
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
        if let Some(group) = payload.strip_prefix(GROUP_PREFIX) {
            return decode_group_message(group);
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

/// `<message id>:<user id>=<seq>,...`, at least one member.
fn decode_group_message(payload: &str) -> Result<Notification<'_>, Malformed> {
    let malformed = || Malformed(format!("a group message's seqs: {payload:.40}"));
    let (message, seqs) = payload.split_once(':').ok_or_else(malformed)?;
    let message = message.parse().map(MessageId).map_err(|_| malformed())?;
    let seqs = seqs
        .split(',')
        .map(|pair| {
            let (user, seq) = pair.split_once('=')?;
            Some((UserId(user.parse().ok()?), Seq(seq.parse().ok()?)))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(malformed)?;
    Ok(Notification::GroupMessage(GroupMessageEvents {
        message,
        seqs,
    }))
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
    joined_under_limit("", users.iter().map(ToString::to_string))
}

/// The payloads that tell each member in `seqs` which of their events holds group
/// message `message`, each under the limit.
pub fn group_message_payloads(message: MessageId, seqs: &[(UserId, Seq)]) -> Vec<String> {
    joined_under_limit(
        &format!("{GROUP_PREFIX}{message}:"),
        seqs.iter().map(|(user, seq)| format!("{user}={seq}")),
    )
}

/// `head` and then `items`, comma-separated, in as many payloads under the limit as
/// they take, each with the head; none when there are no items.
fn joined_under_limit(head: &str, items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = head.to_owned();
    for item in items {
        if current.len() > head.len() {
            if current.len() + 1 + item.len() > MAX_PAYLOAD_BYTES {
                payloads.push(std::mem::replace(&mut current, head.to_owned()));
            } else {
                current.push(',');
            }
        }
        current.push_str(&item);
    }
    if current.len() > head.len() {
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
    fn a_group_message_round_trips_in_payloads_under_the_limit() {
        let seqs: Vec<(UserId, Seq)> = (1_000_000..1_001_000)
            .map(|u| (UserId(u), Seq(u * 1_000)))
            .collect();
        let payloads = group_message_payloads(MessageId(77), &seqs);
        assert!(payloads.len() > 1, "a thousand members take more than one");
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD_BYTES));
        let back: Vec<(UserId, Seq)> = payloads
            .iter()
            .flat_map(|p| match Notification::decode(p) {
                Ok(Notification::GroupMessage(events)) => {
                    assert_eq!(events.message, MessageId(77));
                    events.seqs
                }
                other => panic!("not a group message: {other:?}"),
            })
            .collect();
        assert_eq!(back, seqs);
        assert!(group_message_payloads(MessageId(77), &[]).is_empty());
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
            "group:",
            "group:7",
            "group:7:",
            "group:x:1=2",
            "group:7:1",
            "group:7:1=2,",
            "group:7:1=x",
        ] {
            assert!(Notification::decode(payload).is_err(), "{payload:?}");
        }
        assert!(PushedEvent::decode("{\"seq\": 1}").is_err());
    }
}
