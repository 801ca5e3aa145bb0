//! A message as one reader sees it: what every read (history, inbox, a push) turns into
//! the wire's [`Message`], with only that reader's wrapped key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use fastchat_protocol::envelope::{self, Envelope};
use fastchat_protocol::wire::Message;

use crate::ids::MessageId;
use crate::notification::PushedMessage;

/// The fields of a message that are the same for every reader.
#[derive(Debug, Clone, QueryableByName)]
pub struct SharedFields {
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
}

/// One message with one reader's wrapped key.
#[derive(Debug, Clone, QueryableByName)]
pub struct MessageView {
    #[diesel(sql_type = BigInt)]
    pub id: MessageId,
    #[diesel(embed)]
    pub shared: SharedFields,
    #[diesel(sql_type = Text)]
    pub wrapped_key: String,
}

impl MessageView {
    pub fn into_wire(self, reader: &str) -> Message {
        let SharedFields {
            sender,
            recipient,
            group_name,
            kind,
            client_id,
            sent_at,
            nonce,
            ciphertext,
            sig,
            attachments,
        } = self.shared;
        Message {
            id: self.id.0,
            from: sender,
            to: recipient,
            group: group_name,
            kind,
            client_id,
            sent_at,
            envelope: Envelope {
                v: envelope::VERSION,
                alg: envelope::ALGORITHM.to_owned(),
                nonce,
                ciphertext,
                keys: [(reader.to_owned(), self.wrapped_key)].into(),
                sig,
            },
            attachments,
        }
    }
}

impl From<PushedMessage> for MessageView {
    fn from(pushed: PushedMessage) -> Self {
        MessageView {
            id: pushed.id,
            shared: SharedFields {
                sender: pushed.sender,
                recipient: Some(pushed.recipient),
                group_name: None,
                kind: pushed.kind,
                client_id: pushed.client_id,
                sent_at: pushed.sent_at,
                nonce: pushed.nonce,
                ciphertext: pushed.ciphertext,
                sig: pushed.sig,
                attachments: pushed.attachments,
            },
            wrapped_key: pushed.wrapped_key,
        }
    }
}
