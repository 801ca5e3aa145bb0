//! Everything `--json` prints: one [`Line`] per line (JSON Lines), each with a `type`.
//! `docs/cli-json.md` lists every type and its fields, and a test checks the two agree:
//! every field is always present (`null` where it does not apply), so each type has
//! one shape.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use fastchat_protocol::names::{GroupName, Username};
use serde::Serialize;

/// One line of `--json` output.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum Line {
    #[serde(rename = "signed_up")]
    SignedUp {
        username: Username,
        server: String,
        fingerprint: String,
    },
    #[serde(rename = "logged_in")]
    LoggedIn {
        username: Username,
        server: String,
        fingerprint: String,
        contacts_restored: usize,
        /// The user whose session in this home this login ended first, if any.
        ended_session_of: Option<Username>,
    },
    #[serde(rename = "logged_out")]
    LoggedOut { username: Username },
    #[serde(rename = "whoami")]
    Whoami {
        username: Username,
        server: String,
        fingerprint: String,
        expires_at: DateTime<Utc>,
        /// The server confirmed the session and key (false: it could not be reached).
        confirmed_by_server: bool,
    },
    #[serde(rename = "user")]
    User { username: Username, online: bool },
    #[serde(rename = "sent")]
    Sent(Sent),
    #[serde(rename = "message")]
    Message(Box<MessageOut>),
    #[serde(rename = "rejected")]
    Rejected {
        seq: Option<i64>,
        id: Option<i64>,
        from: Option<Username>,
        error: String,
    },
    #[serde(rename = "group.created")]
    GroupCreated(GroupEventOut),
    #[serde(rename = "group.member_added")]
    MemberAdded(GroupEventOut),
    #[serde(rename = "group.member_removed")]
    MemberRemoved(GroupEventOut),
    #[serde(rename = "group.admin_added")]
    AdminAdded(GroupEventOut),
    #[serde(rename = "group")]
    Group(GroupOut),
    #[serde(rename = "left")]
    Left { group: GroupName },
    #[serde(rename = "safety_number")]
    SafetyNumber {
        user: Username,
        safety_number: String,
        fingerprint: String,
        verified: bool,
    },
    #[serde(rename = "trusted")]
    Trusted {
        user: Username,
        fingerprint: String,
        previous_fingerprint: Option<String>,
        safety_number: String,
    },
    /// The end of a page of history: `before` pages further back (null: no older ones).
    #[serde(rename = "page")]
    Page { before: Option<i64> },
    #[serde(rename = "conversation")]
    Conversation(ConversationOut),
    /// On standard error, the one line a failed command prints.
    #[serde(rename = "error")]
    Error {
        /// The server's `code` when the server refused; else what went wrong here.
        code: String,
        exit_code: u8,
        message: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
    },
}

/// A message this user sent, as the server took it.
#[derive(Debug, Serialize)]
pub struct Sent {
    pub id: i64,
    pub client_id: uuid::Uuid,
    pub to: Option<Username>,
    pub group: Option<GroupName>,
    pub kind: &'static str,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct MessageOut {
    pub seq: Option<i64>,
    pub id: i64,
    pub from: Username,
    pub to: Option<Username>,
    pub group: Option<GroupName>,
    pub kind: String,
    pub client_id: uuid::Uuid,
    /// The sender's own time when signed, else the server's.
    pub sent_at: DateTime<Utc>,
    pub server_time: DateTime<Utc>,
    pub signed_time: bool,
    pub group_id: Option<uuid::Uuid>,
    pub earlier_group: bool,
    pub membership_verified: bool,
    pub text: Option<String>,
    pub image: Option<ImageOut>,
    /// Where the image is on this machine (null: not saved, or sent by this user and
    /// its file no longer where it was sent from).
    pub saved: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ImageOut {
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct GroupEventOut {
    pub seq: i64,
    pub group: GroupName,
    pub group_id: uuid::Uuid,
    pub username: Username,
    pub by: Username,
    pub epoch: u64,
    pub verified: bool,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct GroupOut {
    pub name: GroupName,
    pub id: uuid::Uuid,
    pub admins: Vec<String>,
    pub members: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub epoch: u64,
    pub head: String,
    pub keys: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct ConversationOut {
    pub with: Option<Username>,
    pub group: Option<GroupName>,
    pub last_message_id: Option<i64>,
    pub last_at: Option<DateTime<Utc>>,
    pub unread: i64,
    pub read_up_to: Option<i64>,
}

impl Line {
    pub fn print(&self) {
        match serde_json::to_string(self) {
            Ok(line) => super::line(&line),
            Err(e) => eprintln!("fastchat: encoding output: {e}"),
        }
    }

    /// Prints to standard error (for [`Line::Error`]).
    pub fn eprint(&self) {
        if let Ok(line) = serde_json::to_string(self) {
            eprintln!("{line}");
        }
    }
}
