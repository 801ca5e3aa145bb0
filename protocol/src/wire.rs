//! The JSON bodies of FastChat's public API (v1), as `openapi.yaml` documents them.
//! Requests are deserialized leniently (plain strings) so that the server, not serde,
//! decides which field is wrong and answers with that field's problem code. Answers name
//! users and groups with checked names, so that a client decoding one from a server that
//! lies fails on a bad name before it prints, compares or stores it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::group::SignedStatement;
use crate::names::{GroupName, Username};

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

/// The new account, with a session for it (signup logs in, for one bcrypt).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    pub username: Username,
    pub created_at: DateTime<Utc>,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// `GET /v1/usernames/{username}`: whether a signup could take the name now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsernameAvailability {
    pub username: Username,
    pub available: bool,
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
    pub username: Username,
    pub expires_at: DateTime<Utc>,
}

/// `GET /v1/users/{username}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserProfile {
    pub username: Username,
    pub public_key: String,
    pub online: bool,
}

/// One row of `GET /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSummary {
    pub username: Username,
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
    pub from: Username,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Username>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupName>,
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
/// `group.created`, the creator); `by` is who did it. `statement` is the signed
/// statement that made the change (see [`crate::group`]); an admin made by the automatic
/// rule (the last admin left) comes with none: clients derive it from the statement
/// before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    pub group: GroupName,
    pub group_id: uuid::Uuid,
    pub username: Username,
    pub by: Username,
    /// The seq of the statement in the group's chain.
    pub epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<SignedStatement>,
}

/// `POST /v1/groups`: `statement` creates the group, and must name the same group and
/// members as `name` and `members` (the caller as the first member, then `members`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
    pub statement: SignedStatement,
}

/// `POST /v1/groups/{name}/members` and `/admins`: `statement` adds or promotes
/// `username`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUser {
    pub username: String,
    pub statement: SignedStatement,
}

/// `DELETE /v1/groups/{name}/members/{username}`: `statement` removes that member, or
/// (when it is the caller) says they leave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveMember {
    pub statement: SignedStatement,
}

/// A group as its members see it; names sorted. `epoch` and `head` are the seq and hash
/// of the last statement of its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: GroupName,
    pub id: uuid::Uuid,
    pub admins: Vec<Username>,
    pub members: Vec<Username>,
    pub created_at: DateTime<Utc>,
    pub epoch: u64,
    pub head: String,
}

/// One statement of a group's chain, with its place in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub seq: u64,
    pub statement: SignedStatement,
}

/// `GET /v1/groups/{name}/statements?after=`: the chain after `after` (all of it
/// without), oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chain {
    pub group_id: uuid::Uuid,
    pub statements: Vec<ChainEntry>,
}

/// `GET` and `PUT /v1/me/contacts`: the caller's contacts, encrypted by the client
/// (see `keys::seal_contacts`); opaque to the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsBackup {
    pub contacts: String,
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

/// One conversation of `GET /v1/conversations`: exactly one of `with` (a user) and
/// `group`. `last_message_id` and `last_at` are of its newest message (none yet: null);
/// `unread` counts the messages from others after `read_up_to`, the caller's read mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    #[serde(default)]
    pub with: Option<Username>,
    #[serde(default)]
    pub group: Option<GroupName>,
    pub last_message_id: Option<i64>,
    pub last_at: Option<DateTime<Utc>>,
    pub unread: i64,
    pub read_up_to: Option<i64>,
}

/// `GET /v1/conversations`: newest activity first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
}

/// `PUT /v1/conversations/{username}/read` and `PUT /v1/groups/{name}/read`: the caller
/// has read the conversation up to this message (one they received in it). A mark only
/// moves forward.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    #[serde(deserialize_with = "crate::whole::i64")]
    pub up_to: i64,
}

/// The caller's read mark of a conversation after the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadMark {
    pub read_up_to: i64,
}
