//! Showing what arrives: every message verified before anything of it is shown (its
//! signature, its sender's pinned key, for a group the signed state it names and the
//! sender's place in it, and, on the inbox path, that it was not shown before); every
//! group event verified against the group's chain; everything printed sanitized.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use fastchat_protocol::envelope::{self, Destination, Header, ImageRef, Kind, Plaintext};
use fastchat_protocol::group::parse_canonical_time;
use fastchat_protocol::image;
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{Event, EventBody, GroupEvent, Message};

use crate::chains::{Absorbed, Chains};
use crate::contacts::Contacts;
use crate::context::Context;
use crate::downloads::{Downloads, Found};
use crate::error::{CliError, Result};
use crate::me::Me;
use crate::net::client::{Client, Dropped};
use crate::output::json::{GroupEventOut, ImageOut, Line, MessageOut};
use crate::output::{self, size, time};
use crate::seen::Seen;

/// Which group event, for its `--json` type.
#[derive(Clone, Copy)]
enum EventKind {
    Created,
    Added,
    Removed,
    Admin,
}

/// How far the server's time may stray from the sender's before the reader hears of it.
const CLOCK_SKEW_WARNING: chrono::Duration = chrono::Duration::minutes(5);

/// How a message is shown, and so which "shown before" refuses it: `New` is the inbox
/// path (`recv`), which remembers in the home what it showed; `Live` is history and chat,
/// which leave the inbox to `recv` and refuse only a copy shown earlier in the same run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Showing {
    New,
    Live,
}

/// What checking a group message's state came to.
enum GroupCheck {
    Verified,
    /// Its group ended, or this user left, before this client kept its history.
    Unverifiable,
    Refused(String),
}

/// A message that passed every check.
struct Opened {
    plaintext: Plaintext,
    /// The sender's own time, from the signed header (none: a v1 envelope).
    signed_at: Option<DateTime<Utc>>,
    /// Sent to a group that has since ended, whose name another group has now.
    earlier_group: bool,
    /// Its group's membership could not be checked (see [`GroupCheck::Unverifiable`]).
    unverified_state: bool,
}

/// A conversation, as read marks name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Conversation {
    With(Username),
    Group(GroupName),
}

impl Conversation {
    /// The conversation `message` belongs to, for its reader `me`.
    pub fn of(message: &Message, me: &Username) -> Option<Self> {
        match (&message.to, &message.group) {
            (_, Some(group)) => Some(Conversation::Group(group.clone())),
            (Some(to), None) if to == me => Some(Conversation::With(message.from.clone())),
            (Some(to), None) => Some(Conversation::With(to.clone())),
            (None, None) => None,
        }
    }
}

/// How lines look: `recv` and `history` say when and where in full; a chat's lines are
/// of one conversation, so they give the time of day and who.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Full,
    Chat,
}

/// Shows messages and events, verified, as text or JSON Lines; counts those refused.
pub struct Reader<'a> {
    me: &'a Me,
    client: &'a Client,
    pub contacts: Contacts<'a>,
    pub chains: Chains<'a>,
    seen: Seen<'a>,
    shown_this_run: std::collections::HashSet<(Username, uuid::Uuid)>,
    json: bool,
    downloads: Downloads<'a>,
    rejected: usize,
    pub style: Style,
    /// The newest message from someone else shown, per conversation: how far each is
    /// read.
    shown_newest: BTreeMap<Conversation, i64>,
}

impl<'a> Reader<'a> {
    pub fn new(ctx: &'a Context, me: &'a Me, client: &'a Client) -> Result<Self> {
        Ok(Self {
            me,
            client,
            contacts: Contacts::load(&ctx.home, client, &me.owner, ctx.json)?,
            chains: Chains::new(&ctx.home),
            seen: Seen::new(&ctx.home),
            shown_this_run: std::collections::HashSet::new(),
            json: ctx.json,
            downloads: Downloads::new(&ctx.home, &ctx.downloads),
            rejected: 0,
            style: Style::Full,
            shown_newest: BTreeMap::new(),
        })
    }

    /// Finds, or downloads, checks and saves, a message's image; the error says why it
    /// cannot be shown. An image is saved once; this user's own are never downloaded.
    async fn image_of(
        &mut self,
        message: &Message,
        image: &ImageRef,
    ) -> Result<std::result::Result<Found, String>> {
        if message.from == *self.me.name() {
            return Ok(Ok(self.downloads.sent(image)?));
        }
        if let Some(path) = self.downloads.already_saved(image)? {
            return Ok(Ok(Found::AlreadySaved(path)));
        }
        let blob = match self.client.blob(&image.blob).await {
            Ok(blob) => blob,
            Err(CliError::Server {
                code: ErrorCode::BlobNotFound,
                ..
            }) => return Ok(Err("its image is not on the server".into())),
            Err(e) => return Err(e),
        };
        let bytes = match image::open(&blob, image) {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(Ok(Found::Saved(self.downloads.save(image, &bytes)?)))
    }

    /// A group message must name a state of its group's chain that this client has
    /// verified, in which its sender was a member. A group that has ended (or that this
    /// user has left) and whose history this client never kept cannot be checked: that is
    /// said, not refused (the sender sealed the message for this reader, or it would not
    /// open).
    async fn check_group_state(&mut self, message: &Message) -> Result<GroupCheck> {
        let (Some(group), Some(binding)) = (&message.group, &message.envelope.group) else {
            return Ok(GroupCheck::Refused(
                "a group message that names no group state".into(),
            ));
        };
        let mut state = self.chains.state_at(binding.id, binding.epoch)?;
        if state.is_none() {
            // Perhaps a change this client has not seen yet: catch up, then look again.
            match self
                .chains
                .sync(self.client, &mut self.contacts, group)
                .await
            {
                Ok((current, _)) if current.id != binding.id => {
                    if self.chains.state_at(binding.id, 0)?.is_none() {
                        return Ok(GroupCheck::Unverifiable);
                    }
                }
                Ok(_) => {}
                // No longer a member, or the group is gone.
                Err(CliError::Local(_) | CliError::Refused { .. }) => {
                    return Ok(GroupCheck::Unverifiable)
                }
                Err(CliError::Untrusted(reason)) => return Ok(GroupCheck::Refused(reason)),
                Err(e) => return Err(e),
            }
            state = self.chains.state_at(binding.id, binding.epoch)?;
        }
        let not_in_history = || {
            GroupCheck::Refused(format!(
                "it names a state of group {group} that its signed history does not have"
            ))
        };
        let Some(state) = state else {
            return Ok(not_in_history());
        };
        if state.name != *group || state.head.to_hex() != binding.head {
            return Ok(not_in_history());
        }
        if state.member(message.from.as_str()).is_none() {
            return Ok(GroupCheck::Refused(format!(
                "its sender was not a member of {group} in the state it names"
            )));
        }
        Ok(GroupCheck::Verified)
    }

    /// Verifies and decrypts; `Err` only for failures that are not the message's fault.
    async fn open(
        &mut self,
        message: &Message,
        showing: Showing,
    ) -> Result<std::result::Result<Opened, String>> {
        let to = match (&message.to, &message.group) {
            (Some(user), None) => Destination::User(user.to_string()),
            (None, Some(group)) => Destination::Group(group.to_string()),
            _ => return Ok(Err("it names no single conversation".into())),
        };
        let Some(kind) = Kind::parse(&message.kind) else {
            return Ok(Err("it is of no kind this client knows".into()));
        };
        let envelope = &message.envelope;
        if envelope.v == envelope::LEGACY_VERSION && message.group.is_some() {
            return Ok(Err(
                "it is in the old format (v1), which does not bind a group message to the \
                 group's signed membership"
                    .into(),
            ));
        }
        if envelope.v > envelope::VERSION {
            return Ok(Err(format!(
                "it is in a newer format (v{}) than this client reads: upgrade fastchat",
                envelope.v
            )));
        }
        let header = Header::received(message.from.as_str(), to, kind, message.client_id, envelope);
        let sender = if message.from == *self.me.name() {
            self.me.public.clone()
        } else {
            self.contacts.public_key(&message.from).await?
        };
        let plaintext = match envelope::open(
            envelope,
            &header,
            &sender,
            self.me.name().as_str(),
            &self.me.key,
        ) {
            Ok(plaintext) => plaintext,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let (mut earlier_group, mut unverified_state) = (false, false);
        if let (Some(group), Some(binding)) = (&message.group, &envelope.group) {
            match self.check_group_state(message).await? {
                GroupCheck::Verified => {}
                GroupCheck::Unverifiable if showing == Showing::New => unverified_state = true,
                GroupCheck::Unverifiable => {
                    return Ok(Err(format!(
                        "it was sent to an earlier group called {group}, not this one"
                    )))
                }
                GroupCheck::Refused(reason) => return Ok(Err(reason)),
            }
            earlier_group = self.chains.id_of(group)? != Some(binding.id);
            // History and chat are of the group that has the name now.
            if earlier_group && showing == Showing::Live {
                return Ok(Err(format!(
                    "it was sent to an earlier group called {group}, not this one"
                )));
            }
        }
        let shown_before = match showing {
            Showing::New => self.seen.contains(&message.from, message.client_id)?,
            Showing::Live => self
                .shown_this_run
                .contains(&(message.from.clone(), message.client_id)),
        };
        if shown_before {
            return Ok(Err("it was shown before: the server served it again".into()));
        }
        let signed_at = envelope.sent_at.as_deref().and_then(parse_canonical_time);
        Ok(Ok(Opened {
            plaintext,
            signed_at,
            earlier_group,
            unverified_state,
        }))
    }

    /// Verifies, then shows, a message; a refused one is counted and warned about.
    pub async fn show(
        &mut self,
        seq: Option<i64>,
        message: &Message,
        showing: Showing,
    ) -> Result<()> {
        let mut opened = self.open(message, showing).await?;
        let mut saved = None;
        if let Ok(Opened {
            plaintext: Plaintext::Image { image },
            ..
        }) = &opened
        {
            match self.image_of(message, image).await? {
                Ok(found) => saved = Some(found),
                Err(reason) => opened = Err(reason),
            }
        }
        let opened = match opened {
            Ok(opened) => opened,
            Err(reason) => {
                self.refuse(seq, Some(message), &reason);
                return Ok(());
            }
        };
        match showing {
            Showing::New => self.seen.record(&message.from, message.client_id)?,
            Showing::Live => {
                self.shown_this_run
                    .insert((message.from.clone(), message.client_id));
            }
        }
        if message.from != *self.me.name() {
            if let Some(conversation) = Conversation::of(message, self.me.name()) {
                let newest = self.shown_newest.entry(conversation).or_insert(message.id);
                *newest = (*newest).max(message.id);
            }
        }
        let when = opened.signed_at.unwrap_or(message.sent_at);
        let skewed = opened
            .signed_at
            .is_some_and(|at| (message.sent_at - at).abs() > CLOCK_SKEW_WARNING);
        let saved_path = saved
            .as_ref()
            .and_then(Found::path)
            .map(|p| p.display().to_string());
        if self.json {
            let (text, image) = match &opened.plaintext {
                Plaintext::Text { text } => (Some(text.clone()), None),
                Plaintext::Image { image } => (
                    None,
                    Some(ImageOut {
                        name: image.name.clone(),
                        mime: image.mime.clone(),
                        size: image.size,
                        sha256: image.sha256.clone(),
                    }),
                ),
            };
            Line::Message(Box::new(MessageOut {
                seq,
                id: message.id,
                from: message.from.clone(),
                to: message.to.clone(),
                group: message.group.clone(),
                kind: message.kind.clone(),
                client_id: message.client_id,
                sent_at: when,
                server_time: message.sent_at,
                signed_time: opened.signed_at.is_some(),
                group_id: message.envelope.group.as_ref().map(|g| g.id),
                earlier_group: opened.earlier_group,
                membership_verified: message.group.is_some() && !opened.unverified_state,
                text,
                image,
                saved: saved_path,
            }))
            .print();
            return Ok(());
        }
        let mine = message.from == *self.me.name();
        let place = match (&message.to, &message.group) {
            _ if self.style == Style::Chat => String::new(),
            (_, Some(group)) if opened.earlier_group => {
                format!(" @{group} (an earlier group of that name)")
            }
            (_, Some(group)) => format!(" @{group}"),
            (Some(to), None) if to != self.me.name() => format!(" → {to}"),
            _ => String::new(),
        };
        let body = match &opened.plaintext {
            Plaintext::Text { text } => output::message_body(text),
            Plaintext::Image { image } => {
                let what = format!(
                    "image {} ({})",
                    output::sanitize_line(&image.name),
                    size::bytes(image.size)
                );
                match &saved {
                    Some(Found::Saved(path)) => format!("[{what} saved to {}]", path.display()),
                    Some(Found::AlreadySaved(path)) => {
                        format!("[{what}, already saved at {}]", path.display())
                    }
                    Some(Found::SentFrom(path)) => {
                        format!("[{what}, sent from {}]", path.display())
                    }
                    Some(Found::SentElsewhere) | None => format!("[{what}]"),
                }
            }
        };
        let mut mark = String::new();
        if opened.unverified_state {
            mark.push_str(" (its group has ended: who was in it cannot be checked)");
        }
        if opened.signed_at.is_none() {
            mark.push_str(" (old format: no signed time)");
        }
        if skewed {
            mark.push_str(&format!(
                " (the server says {})",
                time::when(message.sent_at)
            ));
        }
        let (when, who) = match self.style {
            Style::Chat => (
                time::clock(when),
                if mine {
                    "you".to_owned()
                } else {
                    message.from.to_string()
                },
            ),
            Style::Full => (time::when(when), message.from.to_string()),
        };
        output::line(&format!("{when} {who}{place}{mark}: {body}"));
        Ok(())
    }

    /// Whether this run showed `message` already (a chat sees a message both in the
    /// history it fetched and live, or again after a reconnect).
    pub fn shown_in_this_run(&self, message: &Message) -> bool {
        self.shown_this_run
            .contains(&(message.from.clone(), message.client_id))
    }

    /// Counts a message this user just sent as shown, so that fetching the conversation
    /// again (after a reconnect) does not show it a second time.
    pub fn sent_in_this_run(&mut self, client_id: uuid::Uuid) {
        self.shown_this_run
            .insert((self.me.name().clone(), client_id));
    }

    /// The newest message from someone else shown in each conversation (to mark read),
    /// taken: the next call gives only what was shown since.
    pub fn take_shown(&mut self) -> BTreeMap<Conversation, i64> {
        std::mem::take(&mut self.shown_newest)
    }

    fn refuse(&mut self, seq: Option<i64>, message: Option<&Message>, reason: &str) {
        self.rejected += 1;
        let reason = output::sanitize_line(reason);
        // With --json the `rejected` line says it all; stderr is for a failure's one line.
        match message {
            _ if self.json => {}
            Some(message) => crate::notice!(
                "fastchat: WARNING: message {} claiming to be from {} failed verification and \
                 is not shown: {reason}",
                message.id,
                message.from
            ),
            None => crate::notice!("fastchat: WARNING: {reason}"),
        }
        if self.json {
            Line::Rejected {
                seq,
                id: message.map(|m| m.id),
                from: message.map(|m| m.from.clone()),
                error: reason,
            }
            .print();
        }
    }

    /// An event the server sent that could not even be decoded (a bad name, say).
    pub fn drop_undecodable(&mut self, dropped: &Dropped) {
        self.refuse(
            dropped.seq,
            None,
            &format!(
                "dropped an event the server sent that this client cannot trust: {}",
                dropped.reason
            ),
        );
    }

    async fn show_group_event(
        &mut self,
        seq: i64,
        kind: EventKind,
        event: &GroupEvent,
    ) -> Result<()> {
        let lines = match self
            .chains
            .absorb(self.client, &mut self.contacts, event)
            .await
        {
            Ok(Absorbed::Applied(lines)) => lines,
            Ok(Absorbed::Known) => return Ok(()),
            Ok(Absorbed::Automatic(line)) => vec![line],
            Ok(Absorbed::Unverifiable(line)) => vec![format!("{line} (not verified)")],
            Err(CliError::Untrusted(reason)) => {
                self.refuse(
                    Some(seq),
                    None,
                    &format!(
                        "a change to group {} failed verification and is not shown: {reason}",
                        event.group
                    ),
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.json {
            let out = GroupEventOut {
                seq,
                group: event.group.clone(),
                group_id: event.group_id,
                username: event.username.clone(),
                by: event.by.clone(),
                epoch: event.epoch,
                verified: event.statement.is_some(),
                text: lines.join("\n"),
            };
            match kind {
                EventKind::Created => Line::GroupCreated(out),
                EventKind::Added => Line::MemberAdded(out),
                EventKind::Removed => Line::MemberRemoved(out),
                EventKind::Admin => Line::AdminAdded(out),
            }
            .print();
        } else {
            for line in lines {
                output::line(&format!("* {}", output::sanitize_line(&line)));
            }
        }
        Ok(())
    }

    /// For history and chat of a group: learn (and verify) which group has its name now,
    /// whose messages are the ones to show.
    pub async fn know_group(&mut self, target: &crate::send::Target) -> Result<()> {
        if let crate::send::Target::Group(group) = target {
            let (_, notices) = self
                .chains
                .sync(self.client, &mut self.contacts, group)
                .await?;
            if !self.json {
                for notice in notices {
                    crate::notice!("fastchat: {}", output::sanitize_line(&notice));
                }
            }
        }
        Ok(())
    }

    /// Shows one inbox event, new.
    pub async fn show_event(&mut self, event: &Event) -> Result<()> {
        let seq = event.seq;
        match &event.body {
            EventBody::Message { message } => self.show(Some(seq), message, Showing::New).await,
            EventBody::GroupCreated(e) => self.show_group_event(seq, EventKind::Created, e).await,
            EventBody::MemberAdded(e) => self.show_group_event(seq, EventKind::Added, e).await,
            EventBody::MemberRemoved(e) => self.show_group_event(seq, EventKind::Removed, e).await,
            EventBody::AdminAdded(e) => self.show_group_event(seq, EventKind::Admin, e).await,
        }
    }

    pub fn finish(&self) -> Result<()> {
        if self.rejected > 0 {
            Err(CliError::Unverified(self.rejected))
        } else {
            Ok(())
        }
    }
}
