//! The JSON bodies of FastChat's public API (v1), as `openapi.yaml` documents them.
//! Requests are deserialized leniently (plain strings) so that the server, not serde,
//! decides which field is wrong and answers with that field's problem code.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;

/// `POST /v1/users`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    /// What the client sends as its password: for the `fastchat` CLI, the hex `auth_key`.
    pub password: String,
    /// The user's RSA public key, SubjectPublicKeyInfo PEM.
    pub public_key: String,
    /// The private key encrypted by the client; opaque to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_backup: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    pub username: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/sessions`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionCreated {
    pub token: String,
    pub username: String,
    pub expires_at: DateTime<Utc>,
}

/// `GET /v1/users/{username}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserProfile {
    pub username: String,
    pub public_key: String,
    pub online: bool,
}

/// One row of `GET /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSummary {
    pub username: String,
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserSummary>,
}

/// `GET /v1/me/key-backup`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyBackup {
    pub key_backup: String,
}

/// `POST /v1/messages`. Exactly one of `to` and `group`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A UUID the client makes once per message; retries reuse it.
    pub client_id: String,
    /// `text` or `image`.
    pub kind: String,
    pub envelope: Envelope,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageSent {
    pub id: i64,
    pub sent_at: DateTime<Utc>,
}

/// A message as a reader receives it: `envelope.keys` holds only the reader's own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
    pub client_id: uuid::Uuid,
    pub sent_at: DateTime<Utc>,
    pub envelope: Envelope,
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// One entry of a user's inbox; `seq` counts up by one per event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "message")]
    Message { message: Box<Message> },
    #[serde(rename = "group.created")]
    GroupCreated(GroupEvent),
    #[serde(rename = "group.member_added")]
    MemberAdded(GroupEvent),
    #[serde(rename = "group.member_removed")]
    MemberRemoved(GroupEvent),
    #[serde(rename = "group.admin_added")]
    AdminAdded(GroupEvent),
}

impl EventBody {
    /// The SSE `event:` name, the same as `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::Message { .. } => "message",
            EventBody::GroupCreated(_) => "group.created",
            EventBody::MemberAdded(_) => "group.member_added",
            EventBody::MemberRemoved(_) => "group.member_removed",
            EventBody::AdminAdded(_) => "group.admin_added",
        }
    }
}

/// A change to a group: `username` is who was added, removed or made admin (for
/// `group.created`, the creator); `by` is who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    pub group: String,
    pub username: String,
    pub by: String,
}

/// `POST /v1/groups`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
}

/// `POST /v1/groups/{name}/members` and `/admins`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUser {
    pub username: String,
}

/// A group as its members see it; names sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub admins: Vec<String>,
    pub members: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<Group>,
}

/// `GET /v1/inbox`: `next` is the `after` of the following page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxPage {
    pub events: Vec<Event>,
    pub next: i64,
}

/// History, newest first; `next` is the `before` of the following (older) page, null
/// when there is none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub next: Option<i64>,
}
