//! send, recv, history and chat: every message is encrypted and signed here, and every
//! received one is verified before anything of it is shown.

use std::time::Duration;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use fastchat_protocol::envelope::{
    self, Destination, Header, ImageRef, Kind, OpenError, Plaintext,
};
use fastchat_protocol::image;
use fastchat_protocol::keys::{RsaPrivateKey, RsaPublicKey};
use fastchat_protocol::names::Username;
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{Event, EventBody, Message, MessageSent, SendMessage};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::client::Client;
use crate::contacts::Contacts;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::home::Session;
use crate::output;
use crate::stream::{self, Item};

/// The server refuses ciphertexts over 64 KiB; AES-GCM adds a 16-byte tag.
const MAX_PLAINTEXT: usize = 64 * 1024 - 16;
/// The server keeps blobs up to 10 MiB; encryption adds a 16-byte tag.
const MAX_IMAGE: usize = 10 * 1024 * 1024 - 16;
const INBOX_PAGE: u32 = 200;
const SEND_ATTEMPTS: u32 = 4;

/// The logged-in user, with the private key to sign and decrypt with.
pub struct Me {
    pub session: Session,
    pub key: RsaPrivateKey,
    pub public: RsaPublicKey,
}

impl Me {
    pub fn load(ctx: &Context) -> Result<(Me, Client)> {
        let session = ctx.session()?;
        let key = ctx
            .home
            .load_private_key(&session.username)?
            .ok_or_else(|| {
                CliError::Local(format!(
                    "no private key for {} in {}: log in again to restore it",
                    session.username,
                    ctx.home.dir().display()
                ))
            })?;
        let client = ctx.client(Some(&session))?;
        let public = key.to_public_key();
        Ok((
            Me {
                session,
                key,
                public,
            },
            client,
        ))
    }

    pub fn name(&self) -> &str {
        &self.session.username
    }
}

fn parse_peer(me: &Me, name: &str) -> Result<Username> {
    let peer = Username::parse(name).map_err(|e| CliError::Usage(format!("{name:?}: {e}")))?;
    if peer.as_str() == me.name() {
        return Err(CliError::Usage(
            "you cannot send messages to yourself".into(),
        ));
    }
    Ok(peer)
}

/// Reads the message text: the argument, or all of stdin for `-`.
fn message_text(arg: &str) -> Result<String> {
    let text = if arg == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::local("reading the message from stdin", e))?
    } else {
        arg.to_owned()
    };
    let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
    if text.trim().is_empty() {
        return Err(CliError::Usage("the message is empty".into()));
    }
    Ok(text)
}

/// Where a message goes, as the user named it.
pub enum Target {
    User(Username),
    Group(String),
}

impl Target {
    fn destination(&self) -> Destination {
        match self {
            Target::User(user) => Destination::User(user.to_string()),
            Target::Group(group) => Destination::Group(group.clone()),
        }
    }

    fn label(&self) -> String {
        match self {
            Target::User(user) => user.to_string(),
            Target::Group(group) => format!("group {group}"),
        }
    }
}

fn no_such_group(group: &str) -> CliError {
    CliError::Local(format!(
        "there is no group called {group}, or you are not in it"
    ))
}

/// The group's members: as last seen, else as the server says now.
async fn group_members(ctx: &Context, client: &Client, group: &str) -> Result<Vec<String>> {
    if let Some(members) = ctx.home.group_members(group)? {
        return Ok(members);
    }
    let info = client.group(group).await.map_err(|e| match e {
        CliError::Server {
            code: ErrorCode::GroupNotFound,
            ..
        } => no_such_group(group),
        other => other,
    })?;
    ctx.home.save_group_members(group, &info.members)?;
    Ok(info.members)
}

/// A message about to be sealed: what it says, and the blobs it lists.
pub struct Outgoing {
    pub kind: Kind,
    pub plaintext: Plaintext,
    pub attachments: Vec<String>,
}

impl Outgoing {
    pub fn text(text: String) -> Self {
        Outgoing {
            kind: Kind::Text,
            plaintext: Plaintext::Text { text },
            attachments: Vec::new(),
        }
    }
}

/// Encrypts `plaintext` for every member of the conversation (the sender included),
/// signs it, and posts it. Retries that may or may not have arrived reuse the
/// client_id, so the message is stored once; if a group's members changed, it is
/// encrypted again for the members the server names.
pub async fn send_plaintext(
    ctx: &Context,
    me: &Me,
    client: &Client,
    contacts: &mut Contacts<'_>,
    target: &Target,
    outgoing: Outgoing,
) -> Result<(MessageSent, uuid::Uuid)> {
    let Outgoing {
        kind,
        plaintext,
        attachments,
    } = outgoing;
    let size = serde_json::to_vec(&plaintext).map_or(0, |v| v.len());
    if size > MAX_PLAINTEXT {
        return Err(CliError::Usage(format!(
            "the message is too long ({size} bytes; at most {MAX_PLAINTEXT})"
        )));
    }
    let mut members = match target {
        Target::User(peer) => vec![me.name().to_owned(), peer.to_string()],
        Target::Group(group) => group_members(ctx, client, group).await?,
    };
    let client_id = uuid::Uuid::new_v4();
    let header = Header {
        from: me.name().to_owned(),
        to: target.destination(),
        kind,
        client_id,
    };
    let mut membership_changes = 0;
    loop {
        let mut recipients = Vec::with_capacity(members.len());
        for member in &members {
            let key = if member == me.name() {
                me.public.clone()
            } else {
                contacts.public_key(member).await?
            };
            recipients.push((member.clone(), key));
        }
        let envelope = envelope::seal(&header, &plaintext, &me.key, &recipients)
            .map_err(|e| CliError::local("encrypting the message", e))?;
        let (to, group) = match target {
            Target::User(peer) => (Some(peer.to_string()), None),
            Target::Group(group) => (None, Some(group.clone())),
        };
        let body = SendMessage {
            to,
            group,
            client_id: client_id.to_string(),
            kind: kind.as_str().to_owned(),
            envelope,
            attachments: attachments.clone(),
        };
        match post(client, &body).await {
            Err(CliError::RecipientsMismatch { members: current })
                if membership_changes < 3 && matches!(target, Target::Group(_)) =>
            {
                membership_changes += 1;
                if let Target::Group(group) = target {
                    ctx.home.save_group_members(group, &current)?;
                }
                members = current;
            }
            Err(CliError::Server {
                code: ErrorCode::GroupNotFound,
                ..
            }) => {
                if let Target::Group(group) = target {
                    ctx.home.forget_group_members(group)?;
                    return Err(no_such_group(group));
                }
                return Err(CliError::Local("no such group".into()));
            }
            result => return result.map(|sent| (sent, client_id)),
        }
    }
}

/// Posts a message, retrying (with the same client_id) when it may not have arrived.
async fn post(client: &Client, body: &SendMessage) -> Result<MessageSent> {
    let mut attempt = 1;
    loop {
        match client.send_message(body).await {
            Err(e) if e.is_transient() && attempt < SEND_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

pub fn parse_group(name: &str) -> Result<String> {
    if fastchat_protocol::names::is_valid_name(name) {
        Ok(name.to_owned())
    } else {
        Err(CliError::Usage(format!(
            "{name:?} is not a group name (3 to 32 characters of a-z, 0-9 and _)"
        )))
    }
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

pub async fn send(
    ctx: &Context,
    group: Option<&str>,
    image_path: Option<&Path>,
    args: &[String],
) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let usage = |how: &str| CliError::Usage(format!("usage: fastchat send {how}"));
    let (to, text) = match (group, image_path, args) {
        (Some(_), None, [text]) => (None, Some(text)),
        (None, None, [to, text]) => (Some(to.as_str()), Some(text)),
        (Some(_), Some(_), []) => (None, None),
        (None, Some(_), [to]) => (Some(to.as_str()), None),
        (Some(_), None, _) => return Err(usage("--group <name> <text|->")),
        (Some(_), Some(_), _) => return Err(usage("--group <name> --image <path>")),
        (None, None, _) => return Err(usage("<user> <text|->")),
        (None, Some(_), _) => return Err(usage("<user> --image <path>")),
    };
    let target = parse_target(&me, group, to)?;
    let mut contacts = Contacts::new(&ctx.home, &client);
    let outgoing = match (text, image_path) {
        (Some(text), _) => Outgoing::text(message_text(text)?),
        (None, Some(path)) => {
            let (bytes, mime, name) = read_image(path)?;
            let size = bytes.len() as u64;
            let sealed = image::seal(&bytes);
            let progress = std::io::stderr().is_terminal() && !ctx.json;
            let blob = client.upload_blob(sealed.ciphertext, progress).await?;
            let image = ImageRef {
                blob: blob.id.clone(),
                key: sealed.key,
                nonce: sealed.nonce,
                name,
                mime: mime.to_owned(),
                size,
                sha256: sealed.sha256,
            };
            Outgoing {
                kind: Kind::Image,
                plaintext: Plaintext::Image { image },
                attachments: vec![blob.id],
            }
        }
        (None, None) => return Err(usage("<user> <text|->")),
    };
    let kind = outgoing.kind;
    let (sent, client_id) =
        send_plaintext(ctx, &me, &client, &mut contacts, &target, outgoing).await?;
    let label = target.label();
    ctx.print(
        json!({"type": "sent", "id": sent.id, "to": to, "group": group, "kind": kind.as_str(),
               "client_id": client_id, "sent_at": sent.sent_at}),
        || format!("Sent to {label}."),
    );
    Ok(())
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

/// Shows messages, verified, as text or JSON Lines; counts those refused.
struct Reader<'a> {
    me: &'a Me,
    client: &'a Client,
    contacts: Contacts<'a>,
    json: bool,
    downloads: &'a Path,
    rejected: usize,
}

impl<'a> Reader<'a> {
    fn new(ctx: &'a Context, me: &'a Me, client: &'a Client) -> Self {
        Self {
            me,
            client,
            contacts: Contacts::new(&ctx.home, client),
            json: ctx.json,
            downloads: &ctx.downloads,
            rejected: 0,
        }
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

    /// Verifies and decrypts; `Err` only for failures that are not the message's fault.
    async fn open(
        &mut self,
        message: &Message,
    ) -> Result<std::result::Result<Plaintext, OpenError>> {
        let to = match (&message.to, &message.group) {
            (Some(user), _) => Destination::User(user.clone()),
            (None, Some(group)) => Destination::Group(group.clone()),
            (None, None) => return Ok(Err(OpenError::Malformed)),
        };
        let Some(kind) = Kind::parse(&message.kind) else {
            return Ok(Err(OpenError::Malformed));
        };
        let header = Header {
            from: message.from.clone(),
            to,
            kind,
            client_id: message.client_id,
        };
        let sender = if message.from == self.me.name() {
            self.me.public.clone()
        } else {
            self.contacts.public_key(&message.from).await?
        };
        Ok(envelope::open(
            &message.envelope,
            &header,
            &sender,
            self.me.name(),
            &self.me.key,
        ))
    }

    async fn show(&mut self, seq: Option<i64>, message: &Message) -> Result<()> {
        let mut opened = self.open(message).await?.map_err(|e| e.to_string());
        let mut saved = None;
        if let Ok(Plaintext::Image { image }) = &opened {
            match self.save_image(image).await? {
                Ok(path) => saved = Some(path),
                Err(reason) => opened = Err(reason),
            }
        }
        let place = match (&message.to, &message.group) {
            (_, Some(group)) => format!(" @{group}"),
            (Some(to), None) if to != self.me.name() => format!(" → {to}"),
            _ => String::new(),
        };
        match opened {
            Ok(plaintext) => {
                if self.json {
                    let mut line = json!({
                        "type": "message", "seq": seq, "id": message.id, "from": message.from,
                        "to": message.to, "group": message.group, "kind": message.kind,
                        "client_id": message.client_id, "sent_at": message.sent_at,
                    });
                    match &plaintext {
                        Plaintext::Text { text } => line["text"] = json!(text),
                        Plaintext::Image { image } => {
                            line["image"] = json!({"name": image.name, "mime": image.mime,
                                                   "size": image.size, "sha256": image.sha256});
                            line["saved"] = json!(saved);
                        }
                    }
                    output::json(&line);
                } else {
                    let body = match &plaintext {
                        Plaintext::Text { text } => output::sanitize(text),
                        Plaintext::Image { image } => format!(
                            "[image {} ({} bytes) saved to {}]",
                            output::sanitize(&image.name),
                            image.size,
                            saved
                                .as_ref()
                                .map_or(String::new(), |p| p.display().to_string())
                        ),
                    };
                    let when = message.sent_at.format("%Y-%m-%d %H:%M:%S");
                    output::line(&format!("{when} {}{place}: {body}", message.from));
                }
            }
            Err(reason) => {
                self.rejected += 1;
                eprintln!(
                    "fastchat: WARNING: message {} claiming to be from {} failed verification \
                     and is not shown: {reason}",
                    message.id, message.from
                );
                if self.json {
                    output::json(&json!({
                        "type": "rejected", "seq": seq, "id": message.id,
                        "from": message.from, "error": reason.to_string(),
                    }));
                }
            }
        }
        Ok(())
    }

    async fn show_event(&mut self, ctx: &Context, event: &Event) -> Result<()> {
        let (group_event, text) = match &event.body {
            EventBody::Message { message } => return self.show(Some(event.seq), message).await,
            EventBody::GroupCreated(e) => (e, format!("{} created group {}", e.by, e.group)),
            EventBody::MemberAdded(e) => {
                (e, format!("{} added {} to {}", e.by, e.username, e.group))
            }
            EventBody::MemberRemoved(e) if e.by == e.username => {
                (e, format!("{} left {}", e.username, e.group))
            }
            EventBody::MemberRemoved(e) => (
                e,
                format!("{} removed {} from {}", e.by, e.username, e.group),
            ),
            EventBody::AdminAdded(e) => (
                e,
                format!("{} is now an admin of {} ({})", e.username, e.group, e.by),
            ),
        };
        // The member list changed: encrypt the next message for the new one.
        ctx.home.forget_group_members(&group_event.group)?;
        if self.json {
            output::json(&json!({
                "type": event.body.type_name(), "seq": event.seq, "group": group_event.group,
                "username": group_event.username, "by": group_event.by,
            }));
        } else {
            output::line(&format!("* {text}"));
        }
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        if self.rejected > 0 {
            Err(CliError::Unverified(self.rejected))
        } else {
            Ok(())
        }
    }
}

/// `recv`: everything since the last `recv`, then (with `--follow`) what arrives live.
pub async fn recv(ctx: &Context, follow: bool) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let mut reader = Reader::new(ctx, &me, &client);
    let mut cursor = ctx.home.cursor(me.name())?;
    loop {
        let page = client.inbox(cursor, INBOX_PAGE).await?;
        if page.events.is_empty() {
            break;
        }
        for event in &page.events {
            reader.show_event(ctx, event).await?;
            cursor = event.seq;
        }
        ctx.home.save_cursor(me.name(), cursor)?;
    }
    if follow {
        let token = client.token().unwrap_or_default();
        let mut events = stream::events(client.server(), token, Some(cursor))?;
        while let Some(item) = events.next().await {
            let Item::Event(event) = item? else { continue };
            if event.seq <= cursor {
                continue;
            }
            reader.show_event(ctx, &event).await?;
            cursor = event.seq;
            ctx.home.save_cursor(me.name(), cursor)?;
        }
    }
    reader.finish()
}

/// A page of history with `target`, newest first.
async fn fetch_history(
    client: &Client,
    target: &Target,
    before: Option<i64>,
    limit: u32,
) -> Result<fastchat_protocol::wire::MessagePage> {
    match target {
        Target::User(peer) => client
            .conversation(peer.as_str(), before, limit)
            .await
            .map_err(|e| match e {
                CliError::Server {
                    code: ErrorCode::UserNotFound,
                    ..
                } => CliError::Local(format!("there is no user called {peer}")),
                other => other,
            }),
        Target::Group(group) => {
            client
                .group_history(group, before, limit)
                .await
                .map_err(|e| match e {
                    CliError::Server {
                        code: ErrorCode::GroupNotFound,
                        ..
                    } => no_such_group(group),
                    other => other,
                })
        }
    }
}

/// `history <user>` or `history --group <name>`: a page, oldest first.
pub async fn history(
    ctx: &Context,
    with: Option<&str>,
    group: Option<&str>,
    limit: u32,
    before: Option<i64>,
) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let target = parse_target(&me, group, with)?;
    let page = fetch_history(&client, &target, before, limit).await?;
    let mut reader = Reader::new(ctx, &me, &client);
    for message in page.messages.iter().rev() {
        reader.show(None, message).await?;
    }
    if let Some(next) = page.next {
        if !ctx.json {
            eprintln!("(older messages: add --before {next})");
        }
    }
    reader.finish()
}

/// True when `message` belongs in a chat with `target` and was not sent by me.
fn in_chat(target: &Target, me: &Me, message: &Message) -> bool {
    match target {
        Target::User(peer) => message.from == peer.as_str() && message.group.is_none(),
        Target::Group(group) => {
            message.group.as_deref() == Some(group.as_str()) && message.from != me.name()
        }
    }
}

/// `chat <user>` or `chat --group <name>`: the recent conversation, then live: lines
/// typed are sent, the others' arrive as they are sent. Leaves the `recv` cursor alone.
pub async fn chat(ctx: &Context, with: Option<&str>, group: Option<&str>) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let target = parse_target(&me, group, with)?;
    let mut contacts = Contacts::new(&ctx.home, &client);
    if let Target::User(peer) = &target {
        contacts.public_key(peer.as_str()).await?;
    }

    // Connect first, then read the history, so nothing falls between the two.
    let token = client.token().unwrap_or_default();
    let mut events = stream::events(client.server(), token, None)?;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), events.next()).await {
            Ok(Some(Ok(Item::Connected))) => break,
            Ok(Some(Ok(Item::Event(_)))) => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) | Err(_) => {
                return Err(CliError::Unreachable {
                    server: client.server().to_owned(),
                    cause: "the event stream did not open".into(),
                })
            }
        }
    }
    let recent = fetch_history(&client, &target, None, 20).await?;
    let mut reader = Reader::new(ctx, &me, &client);
    for message in recent.messages.iter().rev() {
        reader.show(None, message).await?;
    }
    let newest_shown = recent.messages.first().map_or(0, |m| m.id);
    if !ctx.json {
        eprintln!(
            "-- chatting with {}: type a line and press Enter to send; Ctrl-D leaves --",
            target.label()
        );
    }

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(text) = line.map_err(|e| CliError::local("reading your input", e))? else {
                    break;
                };
                if text.trim().is_empty() {
                    continue;
                }
                let (sent, client_id) =
                    send_plaintext(ctx, &me, &client, &mut contacts, &target, Outgoing::text(text))
                        .await?;
                if ctx.json {
                    output::json(&json!({"type": "sent", "id": sent.id, "client_id": client_id}));
                }
            }
            item = events.next() => {
                let Some(item) = item else { break };
                let Item::Event(event) = item? else { continue };
                match &event.body {
                    EventBody::Message { message } => {
                        if in_chat(&target, &me, message) && message.id > newest_shown {
                            reader.show(Some(event.seq), message).await?;
                        }
                    }
                    EventBody::GroupCreated(e)
                    | EventBody::MemberAdded(e)
                    | EventBody::MemberRemoved(e)
                    | EventBody::AdminAdded(e) => {
                        if matches!(&target, Target::Group(g) if *g == e.group) {
                            reader.show_event(ctx, &event).await?;
                        }
                    }
                }
            }
        }
    }
    reader.finish()
}
