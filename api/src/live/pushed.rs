//! Messages handed to streams whole (see [`crate::live::hub::Wake::Pushed`]), encoded
//! once for all their readers. A message's event differs from one reader to the next
//! only in its seq and the reader's wrapped key, so the event is serialised once, with
//! a seq and a key map that stand for any, and each stream's event is put together
//! from the pieces around them: for a 1,000-member group, one encoding instead of
//! 1,000, and one copy of the message held instead of one per member.

use std::fmt::Write;
use std::sync::Arc;

use fastchat_protocol::wire::{Event, EventBody};

use crate::error::ApiError;
use crate::ids::{MessageId, Seq};
use crate::notification::PushedEvent;
use crate::store::message_view::{MessageView, SharedFields};

/// How an event's JSON begins when its seq is this stand-in (`seq` comes first).
const SEQ_STAND_IN: &str = r#"{"seq":0,"#;
/// The envelope's key map for the stand-in reader. Outside a string, since a quote
/// inside one is escaped: it can occur in the JSON only as the map itself.
const KEYS_STAND_IN: &str = r#""keys":{"":""}"#;

/// One message's event, encoded but for its seq and its reader's key.
#[derive(Debug)]
pub struct EncodedMessage {
    /// The JSON after the seq, up to and with the envelope's `"keys":{`.
    before_keys: String,
    /// The JSON after the key map's one entry: its `}` and the rest.
    after_keys: String,
}

impl EncodedMessage {
    pub fn new(id: MessageId, shared: SharedFields) -> Result<Self, ApiError> {
        let message = MessageView {
            id,
            shared,
            wrapped_key: String::new(),
        }
        .into_wire("")?;
        let event = Event {
            seq: 0,
            body: EventBody::Message {
                message: Box::new(message),
            },
        };
        let json = serde_json::to_string(&event)
            .map_err(|e| ApiError::internal(format!("encoding a pushed message: {e}")))?;
        let unexpected =
            || ApiError::internal("a pushed message's event is not laid out as expected");
        let rest = json.strip_prefix(SEQ_STAND_IN).ok_or_else(unexpected)?;
        let (before, after) = rest.split_once(KEYS_STAND_IN).ok_or_else(unexpected)?;
        if after.contains(KEYS_STAND_IN) {
            return Err(unexpected());
        }
        Ok(Self {
            before_keys: format!("{before}\"keys\":{{"),
            after_keys: format!("}}{after}"),
        })
    }
}

/// One reader's event of a message pushed whole.
#[derive(Debug)]
pub struct Pushed {
    pub seq: Seq,
    pub wrapped_key: String,
    pub message: Arc<EncodedMessage>,
}

impl Pushed {
    /// A one-to-one message told in its notification.
    pub fn from_notification(event: PushedEvent) -> Result<Self, ApiError> {
        let view = MessageView::from(event.message);
        Ok(Self {
            seq: event.seq,
            wrapped_key: view.wrapped_key,
            message: Arc::new(EncodedMessage::new(view.id, view.shared)?),
        })
    }

    /// The event's JSON as `reader` is sent it: what serialising its [`Event`] gives.
    pub fn event_json(&self, reader: &str) -> String {
        let EncodedMessage {
            before_keys,
            after_keys,
        } = &*self.message;
        let mut json = String::with_capacity(
            before_keys.len() + after_keys.len() + reader.len() + self.wrapped_key.len() + 32,
        );
        // Writing to a String cannot fail.
        let _ = write!(json, r#"{{"seq":{},"#, self.seq.0);
        json.push_str(before_keys);
        json.push_str(&json_string(reader));
        json.push(':');
        json.push_str(&json_string(&self.wrapped_key));
        json.push_str(after_keys);
        json
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shared(group: bool) -> SharedFields {
        SharedFields {
            sender: "alice".into(),
            recipient: (!group).then(|| "bob".to_owned()),
            group_name: group.then(|| "crew".to_owned()),
            kind: "text".into(),
            client_id: uuid::Uuid::nil(),
            sent_at: chrono::DateTime::from_timestamp(1_800_000_000, 123_456_000).expect("a time"),
            nonce: "bm9uY2U=".into(),
            // Quotes, a backslash and the stand-in itself inside strings.
            ciphertext: r#"c"keys":{"":""}\"#.into(),
            sig: "c2ln".into(),
            attachments: vec![r#""keys":{"":""}"#.into(), "b2".into()],
            signed_at: Some("2026-12-02T15:00:00.000Z".into()),
            group_uid: group.then(uuid::Uuid::nil),
            group_epoch: group.then_some(3),
            group_head: group.then(|| "aGVhZA==".to_owned()),
        }
    }

    #[test]
    fn each_readers_event_is_exactly_what_serialising_it_gives() {
        for group in [true, false] {
            let encoded =
                Arc::new(EncodedMessage::new(MessageId(7), shared(group)).expect("encoded"));
            for (seq, reader, key) in [(1, "bob", "a2V5"), (123_456_789, "dee_9", "k\"\\e\u{1}y")] {
                let pushed = Pushed {
                    seq: Seq(seq),
                    wrapped_key: key.into(),
                    message: Arc::clone(&encoded),
                };
                let view = MessageView {
                    id: MessageId(7),
                    shared: shared(group),
                    wrapped_key: key.into(),
                };
                let event = Event {
                    seq,
                    body: EventBody::Message {
                        message: Box::new(view.into_wire(reader).expect("a message")),
                    },
                };
                let expected = serde_json::to_string(&event).expect("encoded");
                assert_eq!(pushed.event_json(reader), expected);
                let parsed: serde_json::Value =
                    serde_json::from_str(&pushed.event_json(reader)).expect("JSON");
                assert_eq!(
                    parsed["message"]["envelope"]["keys"],
                    json!({ reader: key })
                );
            }
        }
    }

    #[test]
    fn a_message_the_database_should_not_hold_is_refused() {
        let mut bad = shared(true);
        bad.sender = "not a name".into();
        assert!(EncodedMessage::new(MessageId(7), bad).is_err());
    }
}
