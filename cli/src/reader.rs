//! Showing what arrives: every message verified before anything of it is shown (its
//! signature, its sender's pinned key, for a group the signed state it names and the
//! sender's place in it, and, on the inbox path, that it was not shown before); every
//! group event verified against the group's chain; everything printed sanitized.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fastchat_protocol::envelope::{self, Destination, Header, ImageRef, Kind, Plaintext};
use fastchat_protocol::group::parse_canonical_time;
use fastchat_protocol::image;
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{Event, EventBody, GroupEvent, Message};
use serde_json::json;

use crate::chains::{Absorbed, Chains};
use crate::client::{Client, Dropped};
use crate::contacts::Contacts;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::me::Me;
use crate::output;
use crate::seen::Seen;

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

/// A file name for a received image: the sender's name stripped of any path, made
/// unique in `dir` so nothing is overwritten.
fn download_path(dir: &Path, name: &str) -> PathBuf {
    let base: String = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .collect();
    let base = if base.is_empty() || base.starts_with('.') {
        format!("image{base}")
    } else {
        base
    };
    let (stem, ext) = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (base.clone(), String::new()),
    };
    let mut candidate = dir.join(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = dir.join(format!("{stem}-{n}{ext}"));
        n += 1;
    }
    candidate
}

/// Shows messages and events, verified, as text or JSON Lines; counts those refused.
pub struct Reader<'a> {
    me: &'a Me,
    client: &'a Client,
    pub contacts: Contacts<'a>,
    pub chains: Chains<'a>,
    seen: Seen<'a>,
    shown_this_run: std::collections::HashSet<(fastchat_protocol::names::Username, uuid::Uuid)>,
    json: bool,
    downloads: &'a Path,
    rejected: usize,
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
            downloads: &ctx.downloads,
            rejected: 0,
        })
    }

    /// Downloads, decrypts and checks an image, and saves it; the error says why not.
    async fn save_image(&self, image: &ImageRef) -> Result<std::result::Result<PathBuf, String>> {
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
        std::fs::create_dir_all(self.downloads)
            .map_err(|e| CliError::local(&format!("creating {}", self.downloads.display()), e))?;
        let path = download_path(self.downloads, &image.name);
        std::fs::write(&path, bytes)
            .map_err(|e| CliError::local(&format!("saving {}", path.display()), e))?;
        Ok(Ok(path))
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
                Err(CliError::Local(_)) => return Ok(GroupCheck::Unverifiable),
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
            match self.save_image(image).await? {
                Ok(path) => saved = Some(path),
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
        let when = opened.signed_at.unwrap_or(message.sent_at);
        let skewed = opened
            .signed_at
            .is_some_and(|at| (message.sent_at - at).abs() > CLOCK_SKEW_WARNING);
        if self.json {
            let mut line = json!({
                "type": "message", "seq": seq, "id": message.id, "from": message.from,
                "to": message.to, "group": message.group, "kind": message.kind,
                "client_id": message.client_id, "sent_at": when,
                "server_time": message.sent_at, "signed_time": opened.signed_at.is_some(),
                "group_id": message.envelope.group.as_ref().map(|g| g.id),
                "earlier_group": opened.earlier_group,
                "membership_verified": message.group.is_some() && !opened.unverified_state,
            });
            match &opened.plaintext {
                Plaintext::Text { text } => line["text"] = json!(text),
                Plaintext::Image { image } => {
                    line["image"] = json!({"name": image.name, "mime": image.mime,
                                           "size": image.size, "sha256": image.sha256});
                    line["saved"] = json!(saved);
                }
            }
            output::json(&line);
            return Ok(());
        }
        let place = match (&message.to, &message.group) {
            (_, Some(group)) if opened.earlier_group => {
                format!(" @{group} (an earlier group of that name)")
            }
            (_, Some(group)) => format!(" @{group}"),
            (Some(to), None) if to != self.me.name() => format!(" → {to}"),
            _ => String::new(),
        };
        let body = match &opened.plaintext {
            Plaintext::Text { text } => output::message_body(text),
            Plaintext::Image { image } => format!(
                "[image {} ({} bytes) saved to {}]",
                output::sanitize_line(&image.name),
                image.size,
                saved
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string())
            ),
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
                message.sent_at.format("%Y-%m-%d %H:%M:%S")
            ));
        }
        let when = when.format("%Y-%m-%d %H:%M:%S");
        output::line(&format!("{when} {}{place}{mark}: {body}", message.from));
        Ok(())
    }

    fn refuse(&mut self, seq: Option<i64>, message: Option<&Message>, reason: &str) {
        self.rejected += 1;
        let reason = output::sanitize_line(reason);
        match message {
            Some(message) => eprintln!(
                "fastchat: WARNING: message {} claiming to be from {} failed verification and \
                 is not shown: {reason}",
                message.id, message.from
            ),
            None => eprintln!("fastchat: WARNING: {reason}"),
        }
        if self.json {
            output::json(&json!({
                "type": "rejected", "seq": seq, "id": message.map(|m| m.id),
                "from": message.map(|m| m.from.clone()), "error": reason,
            }));
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

    async fn show_group_event(&mut self, seq: i64, kind: &str, event: &GroupEvent) -> Result<()> {
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
            output::json(&json!({
                "type": kind, "seq": seq, "group": event.group, "group_id": event.group_id,
                "username": event.username, "by": event.by, "epoch": event.epoch,
                "verified": event.statement.is_some(), "text": lines.join("\n"),
            }));
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
                    eprintln!("fastchat: {}", output::sanitize_line(&notice));
                }
            }
        }
        Ok(())
    }

    /// Shows one inbox event, new.
    pub async fn show_event(&mut self, event: &Event) -> Result<()> {
        let kind = event.body.type_name();
        match &event.body {
            EventBody::Message { message } => {
                self.show(Some(event.seq), message, Showing::New).await
            }
            EventBody::GroupCreated(e)
            | EventBody::MemberAdded(e)
            | EventBody::MemberRemoved(e)
            | EventBody::AdminAdded(e) => self.show_group_event(event.seq, kind, e).await,
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
