//! `send`, and the sealing every sent message goes through: encrypted for exactly the
//! members of the conversation as this client verified them (for a group, as its signed
//! chain says, with the keys the chain names), signed, and bound to the group's state.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use fastchat_protocol::envelope::{
    self, Destination, GroupBinding, Header, ImageRef, Kind, Plaintext,
};
use fastchat_protocol::group::{canonical_time, GroupState};
use fastchat_protocol::image;
use fastchat_protocol::keys;
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{MessageSent, SendMessage};

use crate::chains::{no_such_group, Chains};
use crate::contacts::Contacts;
use crate::context::Context;
use crate::downloads::Downloads;
use crate::error::{CliError, Result};
use crate::me::Me;
use crate::net::client::Client;
use crate::output;
use crate::output::json::{Line, Sent};

/// The server refuses ciphertexts over 64 KiB; AES-GCM adds a 16-byte tag.
const MAX_PLAINTEXT: usize = 64 * 1024 - 16;
/// The server keeps blobs up to 10 MiB; encryption adds a 16-byte tag.
const MAX_IMAGE: usize = 10 * 1024 * 1024 - 16;
const SEND_ATTEMPTS: u32 = 4;
/// How often a group send follows the group's chain forward before giving up.
const MEMBERSHIP_CHANGES: usize = 3;

/// Where a message goes, as the user named it.
pub enum Target {
    User(Username),
    Group(GroupName),
}

impl Target {
    fn destination(&self) -> Destination {
        match self {
            Target::User(user) => Destination::User(user.to_string()),
            Target::Group(group) => Destination::Group(group.to_string()),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Target::User(user) => user.to_string(),
            Target::Group(group) => format!("group {group}"),
        }
    }
}

pub fn parse_group(name: &str) -> Result<GroupName> {
    GroupName::parse(name).map_err(|_| {
        CliError::Usage(format!(
            "{name:?} is not a group name (3 to 32 characters of a-z, 0-9 and _)"
        ))
    })
}

pub fn parse_user(name: &str) -> Result<Username> {
    Username::parse(name).map_err(|e| CliError::Usage(format!("{name:?}: {e}")))
}

fn parse_peer(me: &Me, name: &str) -> Result<Username> {
    let peer = parse_user(name)?;
    if peer == *me.name() {
        return Err(CliError::Usage(
            "you cannot send messages to yourself".into(),
        ));
    }
    Ok(peer)
}

/// `send <user> <text>` or `send --group <name> <text>`.
pub fn parse_target(me: &Me, group: Option<&str>, to: Option<&str>) -> Result<Target> {
    match (group, to) {
        (Some(group), None) => Ok(Target::Group(parse_group(group)?)),
        (None, Some(to)) => Ok(Target::User(parse_peer(me, to)?)),
        (Some(_), Some(_)) => Err(CliError::Usage("name a user or --group, not both".into())),
        (None, None) => Err(CliError::Usage("name a user, or --group <name>".into())),
    }
}

/// The message text: the words given, joined by spaces, or all of stdin for `-` alone.
fn message_text(ctx: &Context, words: &[String]) -> Result<String> {
    let text = if words == ["-"] {
        if std::io::stdin().is_terminal() && !ctx.json {
            crate::notice!(
                "Type your message, then press Enter and Ctrl-D to send it (Ctrl-C cancels)."
            );
        }
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::local("reading the message from stdin", e))?
    } else {
        words.join(" ")
    };
    let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
    if text.trim().is_empty() {
        return Err(CliError::Usage("the message is empty".into()));
    }
    Ok(text)
}

/// A message about to be sealed: what it says, the blobs it lists, and the client_id
/// every try of it carries.
#[derive(Clone)]
pub struct Outgoing {
    pub kind: Kind,
    pub plaintext: Plaintext,
    pub attachments: Vec<String>,
    pub client_id: uuid::Uuid,
    /// Retry a failed post a few times before giving up (a chat retries on its own).
    pub patient: bool,
}

impl Outgoing {
    pub fn text(text: String) -> Self {
        Outgoing {
            kind: Kind::Text,
            plaintext: Plaintext::Text { text },
            attachments: Vec::new(),
            client_id: uuid::Uuid::new_v4(),
            patient: true,
        }
    }

    /// The same message as a try of the one with `client_id`, posted once.
    pub fn try_of(self, client_id: uuid::Uuid) -> Self {
        Outgoing {
            client_id,
            patient: false,
            ..self
        }
    }
}

/// Says what changed in a group, on standard error (the result goes to standard output).
pub fn tell(ctx: &Context, notices: &[String]) {
    if !ctx.json {
        for notice in notices {
            crate::notice!("fastchat: {notice}");
        }
    }
}

/// The group's members as its verified chain says, to encrypt for: this client's last
/// verified state, or the server's chain verified now when there is none.
async fn verified_group(
    ctx: &Context,
    me: &Me,
    client: &Client,
    contacts: &mut Contacts<'_>,
    chains: &mut Chains<'_>,
    group: &GroupName,
) -> Result<GroupState> {
    if let Some(state) = chains.local(group)? {
        if state.member(me.name().as_str()).is_some() {
            return Ok(state);
        }
    }
    let (state, notices) = chains.sync(client, contacts, group).await?;
    tell(ctx, &notices);
    Ok(state)
}

/// Encrypts `plaintext` for every member of the conversation (the sender included),
/// signs it, and posts it. Retries that may or may not have arrived reuse the
/// client_id, so the message is stored once. If the server says a group's members
/// changed, the group's chain is fetched and verified, the changes shown, and the
/// message sealed again for the members the chain now has; what the server says the
/// members are is never used.
pub async fn send_plaintext(
    ctx: &Context,
    me: &Me,
    client: &Client,
    contacts: &mut Contacts<'_>,
    chains: &mut Chains<'_>,
    target: &Target,
    outgoing: Outgoing,
) -> Result<MessageSent> {
    let Outgoing {
        kind,
        plaintext,
        attachments,
        client_id,
        patient,
    } = outgoing;
    let size = serde_json::to_vec(&plaintext).map_or(0, |v| v.len());
    if size > MAX_PLAINTEXT {
        return Err(CliError::Usage(format!(
            "the message is too long ({size} bytes; at most {MAX_PLAINTEXT})"
        )));
    }
    let mut group_state = match target {
        Target::User(_) => None,
        Target::Group(group) => {
            Some(verified_group(ctx, me, client, contacts, chains, group).await?)
        }
    };
    for _ in 0..=MEMBERSHIP_CHANGES {
        let mut recipients = vec![(me.name().to_string(), me.public.clone())];
        let binding = match (target, &group_state) {
            (Target::User(peer), _) => {
                recipients.push((peer.to_string(), contacts.public_key(peer).await?));
                None
            }
            (Target::Group(group), Some(state)) => {
                let mine = state
                    .member(me.name().as_str())
                    .ok_or_else(|| CliError::Local(format!("you are not in group {group}")))?;
                if mine.fingerprint != keys::fingerprint(&me.public) {
                    return Err(CliError::Untrusted(format!(
                        "the signed history of {group} names another key for you"
                    )));
                }
                for member in state.members.iter().filter(|m| m.name != *me.name()) {
                    let key = contacts
                        .key_with_fingerprint(&member.name, &member.fingerprint)
                        .await?;
                    recipients.push((member.name.to_string(), key));
                }
                Some(GroupBinding {
                    id: state.id,
                    epoch: state.seq,
                    head: state.head.to_hex(),
                })
            }
            (Target::Group(_), None) => return Err(CliError::Local("no group state".into())),
        };
        let header = Header {
            from: me.name().to_string(),
            to: target.destination(),
            kind,
            client_id,
            sent_at: Some(canonical_time(Utc::now())),
            group: binding,
        };
        let envelope = envelope::seal(&header, &plaintext, &me.key, &recipients)
            .map_err(|e| CliError::local("encrypting the message", e))?;
        let (to, group) = match target {
            Target::User(peer) => (Some(peer.to_string()), None),
            Target::Group(group) => (None, Some(group.to_string())),
        };
        let body = SendMessage {
            to,
            group,
            client_id: client_id.to_string(),
            kind: kind.as_str().to_owned(),
            envelope,
            attachments: attachments.clone(),
        };
        let attempts = if patient { SEND_ATTEMPTS } else { 1 };
        match (post(client, &body, attempts).await, target) {
            (Err(CliError::RecipientsMismatch { members }), Target::Group(group)) => {
                let before = group_state.as_ref().map(|s| s.seq);
                let (state, notices) = chains.sync(client, contacts, group).await?;
                tell(ctx, &notices);
                if Some(state.seq) == before {
                    return Err(CliError::Untrusted(format!(
                        "the server wants this message for other members of {group} ({}) \
                         than its signed history has; it was not sent",
                        output::sanitize_line(&members.join(", "))
                    )));
                }
                group_state = Some(state);
            }
            (
                Err(CliError::Server {
                    code: ErrorCode::GroupNotFound,
                    ..
                }),
                Target::Group(group),
            ) => return Err(no_such_group(group)),
            (result, _) => return result,
        }
    }
    Err(CliError::Local(
        "the group's members keep changing; try again".into(),
    ))
}

/// Posts a message, retrying (with the same client_id) when it may not have arrived.
async fn post(client: &Client, body: &SendMessage, attempts: u32) -> Result<MessageSent> {
    let mut attempt = 1;
    loop {
        match client.send_message(body).await {
            Err(e) if e.is_transient() && attempt < attempts => {
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Reads and checks an image before anything is uploaded.
fn read_image(path: &Path) -> Result<(Vec<u8>, &'static str, String)> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let mime = image::sniff(&bytes).ok_or_else(|| {
        CliError::Usage(format!(
            "{} is not a PNG, JPEG, GIF or WebP image",
            path.display()
        ))
    })?;
    if bytes.len() > MAX_IMAGE {
        return Err(CliError::Usage(format!(
            "{} is too large ({} bytes; at most {MAX_IMAGE})",
            path.display(),
            bytes.len()
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_owned());
    Ok((bytes, mime, name))
}

/// What `send` and `chat` print for a message the server took.
pub fn report_sent(
    ctx: &Context,
    target: &Target,
    kind: Kind,
    sent: &MessageSent,
    client_id: uuid::Uuid,
) {
    if ctx.json {
        let (to, group) = match target {
            Target::User(user) => (Some(user.clone()), None),
            Target::Group(group) => (None, Some(group.clone())),
        };
        Line::Sent(Sent {
            id: sent.id,
            client_id,
            to,
            group,
            kind: kind.as_str(),
            sent_at: sent.sent_at,
        })
        .print();
    }
}

/// Encrypts an image under a key of its own and uploads it: the message that carries
/// it, ready to seal. The file it came from is remembered, so this user's own history
/// shows it there rather than downloading a copy.
pub async fn upload_image(
    ctx: &Context,
    client: &Client,
    path: &Path,
    progress: bool,
) -> Result<Outgoing> {
    let (bytes, mime, name) = read_image(path)?;
    let size = bytes.len() as u64;
    let sealed = image::seal(&bytes);
    let blob = client.upload_blob(sealed.ciphertext, progress).await?;
    Downloads::new(&ctx.home, &ctx.downloads).record_sent(&sealed.sha256, path)?;
    let image = ImageRef {
        blob: blob.id.clone(),
        key: sealed.key,
        nonce: sealed.nonce,
        name,
        mime: mime.to_owned(),
        size,
        sha256: sealed.sha256,
    };
    Ok(Outgoing {
        kind: Kind::Image,
        plaintext: Plaintext::Image { image },
        attachments: vec![blob.id],
        client_id: uuid::Uuid::new_v4(),
        patient: true,
    })
}

/// `send`: a text, or with `--image` an image, to a user or a group. The words after
/// the user (or, with `--group`, all of them) are the message.
pub async fn send(
    ctx: &Context,
    group: Option<&str>,
    image_path: Option<&Path>,
    to: Option<&str>,
    text: &[String],
) -> Result<()> {
    let usage = |how: &str| CliError::Usage(format!("usage: fastchat send {how}"));
    let (to, words): (Option<&str>, Vec<String>) = match (group, to) {
        (Some(_), first) => (
            None,
            first
                .map(str::to_owned)
                .into_iter()
                .chain(text.iter().cloned())
                .collect(),
        ),
        (None, Some(to)) => (Some(to), text.to_vec()),
        (None, None) => return Err(usage("<user> <text|->")),
    };
    match (group, image_path, words.is_empty()) {
        (Some(_), None, true) => return Err(usage("--group <name> <text|->")),
        (Some(_), Some(_), false) => return Err(usage("--group <name> --image <path>")),
        (None, None, true) => return Err(usage("<user> <text|->")),
        (None, Some(_), false) => return Err(usage("<user> --image <path>")),
        _ => {}
    }
    // Bad names are bad usage, before anything else happens.
    if let Some(group) = group {
        parse_group(group)?;
    }
    if let Some(to) = to {
        parse_user(to)?;
    }
    let (me, client) = Me::load(ctx)?;
    let target = parse_target(&me, group, to)?;
    let mut contacts = Contacts::load(&ctx.home, &client, &me.owner, ctx.json)?;
    let mut chains = Chains::new(&ctx.home);
    let outgoing = match image_path {
        None => Outgoing::text(message_text(ctx, &words)?),
        Some(path) => {
            let progress = std::io::stderr().is_terminal() && !ctx.json;
            upload_image(ctx, &client, path, progress).await?
        }
    };
    let (kind, client_id) = (outgoing.kind, outgoing.client_id);
    let sent = send_plaintext(
        ctx,
        &me,
        &client,
        &mut contacts,
        &mut chains,
        &target,
        outgoing,
    )
    .await?;
    report_sent(ctx, &target, kind, &sent, client_id);
    if !ctx.json {
        output::line(&format!("Sent to {}.", target.label()));
    }
    Ok(())
}
