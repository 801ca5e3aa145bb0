//! A message as one reader sees it: what every read (history, inbox, a push) turns into
//! the wire's [`Message`], with only that reader's wrapped key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use fastchat_protocol::envelope::{self, Envelope, GroupBinding};
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::wire::Message;

use crate::error::ApiError;
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
    /// The sender's time from a v2 header (none: a v1 envelope).
    #[diesel(sql_type = Nullable<Text>)]
    pub signed_at: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub group_uid: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub group_epoch: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub group_head: Option<String>,
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

/// A name the database holds, which its constraints keep valid.
fn stored<T>(
    parse: fn(&str) -> Result<T, fastchat_protocol::names::InvalidName>,
    name: &str,
) -> Result<T, ApiError> {
    parse(name).map_err(|_| ApiError::internal(format!("the database holds the name {name:?}")))
}

impl MessageView {
    pub fn into_wire(self, reader: &str) -> Result<Message, ApiError> {
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
            signed_at,
            group_uid,
            group_epoch,
            group_head,
        } = self.shared;
        let group = match (group_uid, group_epoch, group_head) {
            (Some(id), Some(epoch), Some(head)) => Some(GroupBinding {
                id,
                epoch: u64::try_from(epoch).map_err(|_| ApiError::internal("a negative epoch"))?,
                head,
            }),
            _ => None,
        };
        let v = if signed_at.is_some() {
            envelope::VERSION
        } else {
            envelope::LEGACY_VERSION
        };
        Ok(Message {
            id: self.id.0,
            from: stored(Username::parse, &sender)?,
            to: recipient
                .as_deref()
                .map(|r| stored(Username::parse, r))
                .transpose()?,
            group: group_name
                .as_deref()
                .map(|g| stored(GroupName::parse, g))
                .transpose()?,
            kind,
            client_id,
            sent_at,
            envelope: Envelope {
                v,
                alg: envelope::ALGORITHM.to_owned(),
                sent_at: signed_at,
                group,
                nonce,
                ciphertext,
                keys: [(reader.to_owned(), self.wrapped_key)].into(),
                sig,
            },
            attachments,
        })
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
                signed_at: pushed.signed_at,
                group_uid: None,
                group_epoch: None,
                group_head: None,
            },
            wrapped_key: pushed.wrapped_key,
        }
    }
}
