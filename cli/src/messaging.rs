//! send, recv, history and chat: every message is encrypted and signed here, and every
//! received one is verified before anything of it is shown.

use std::time::Duration;

use fastchat_protocol::envelope::{self, Destination, Header, Kind, OpenError, Plaintext};
use fastchat_protocol::keys::{RsaPrivateKey, RsaPublicKey};
use fastchat_protocol::names::Username;
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

/// Encrypts `text` for `peer` and the sender, signs it, and posts it; retries that may
/// or may not have arrived reuse the client_id, so the message is stored once.
async fn send_text(
    me: &Me,
    client: &Client,
    contacts: &mut Contacts<'_>,
    peer: &Username,
    text: String,
) -> Result<(MessageSent, uuid::Uuid)> {
    let plaintext = Plaintext::Text { text };
    let size = serde_json::to_vec(&plaintext).map_or(0, |v| v.len());
    if size > MAX_PLAINTEXT {
        return Err(CliError::Usage(format!(
            "the message is too long ({size} bytes; at most {MAX_PLAINTEXT})"
        )));
    }
    let recipients = vec![
        (me.name().to_owned(), me.public.clone()),
        (peer.to_string(), contacts.public_key(peer.as_str()).await?),
    ];
    let client_id = uuid::Uuid::new_v4();
    let header = Header {
        from: me.name().to_owned(),
        to: Destination::User(peer.to_string()),
        kind: Kind::Text,
        client_id,
    };
    let envelope = envelope::seal(&header, &plaintext, &me.key, &recipients)
        .map_err(|e| CliError::local("encrypting the message", e))?;
    let body = SendMessage {
        to: Some(peer.to_string()),
        group: None,
        client_id: client_id.to_string(),
        kind: Kind::Text.as_str().to_owned(),
        envelope,
        attachments: Vec::new(),
    };
    let mut attempt = 1;
    loop {
        match client.send_message(&body).await {
            Err(e) if e.is_transient() && attempt < SEND_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                attempt += 1;
            }
            result => return result.map(|sent| (sent, client_id)),
        }
    }
}

pub async fn send(ctx: &Context, to: &str, text: &str) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let peer = parse_peer(&me, to)?;
    let text = message_text(text)?;
    let mut contacts = Contacts::new(&ctx.home, &client);
    let (sent, client_id) = send_text(&me, &client, &mut contacts, &peer, text).await?;
    ctx.print(
        json!({"type": "sent", "id": sent.id, "to": peer, "client_id": client_id, "sent_at": sent.sent_at}),
        || format!("Sent to {peer}."),
    );
    Ok(())
}

/// Shows messages, verified, as text or JSON Lines; counts those refused.
struct Reader<'a> {
    me: &'a Me,
    contacts: Contacts<'a>,
    json: bool,
    rejected: usize,
}

impl<'a> Reader<'a> {
    fn new(ctx: &'a Context, me: &'a Me, client: &'a Client) -> Self {
        Self {
            me,
            contacts: Contacts::new(&ctx.home, client),
            json: ctx.json,
            rejected: 0,
        }
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
        let opened = self.open(message).await?;
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
                        Plaintext::Image { image } => line["image"] = json!(image),
                    }
                    output::json(&line);
                } else {
                    let body = match &plaintext {
                        Plaintext::Text { text } => output::sanitize(text),
                        Plaintext::Image { image } => format!(
                            "[image {} ({} bytes)]",
                            output::sanitize(&image.name),
                            image.size
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

    async fn show_event(&mut self, event: &Event) -> Result<()> {
        match &event.body {
            EventBody::Message { message } => self.show(Some(event.seq), message).await,
        }
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
            reader.show_event(event).await?;
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
            reader.show_event(&event).await?;
            cursor = event.seq;
            ctx.home.save_cursor(me.name(), cursor)?;
        }
    }
    reader.finish()
}

/// `history <user>`: a page of the conversation, oldest first.
pub async fn history(ctx: &Context, with: &str, limit: u32, before: Option<i64>) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let peer = parse_peer(&me, with)?;
    let page = client
        .conversation(peer.as_str(), before, limit)
        .await
        .map_err(|e| match e {
            CliError::Server { code, .. } if code == "user_not_found" => {
                CliError::Local(format!("there is no user called {peer}"))
            }
            other => other,
        })?;
    let mut reader = Reader::new(ctx, &me, &client);
    for message in page.messages.iter().rev() {
        reader.show(None, message).await?;
    }
    if let Some(next) = page.next {
        if !ctx.json {
            eprintln!("(older messages: fastchat history {peer} --before {next})");
        }
    }
    reader.finish()
}

/// `chat <user>`: the recent conversation, then live: lines typed are sent, the other
/// side's arrive as they are sent. Leaves the `recv` cursor alone.
pub async fn chat(ctx: &Context, with: &str) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let peer = parse_peer(&me, with)?;
    let mut contacts = Contacts::new(&ctx.home, &client);
    contacts.public_key(peer.as_str()).await?;

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
    let recent = client.conversation(peer.as_str(), None, 20).await?;
    let mut reader = Reader::new(ctx, &me, &client);
    for message in recent.messages.iter().rev() {
        reader.show(None, message).await?;
    }
    let newest_shown = recent.messages.first().map_or(0, |m| m.id);
    if !ctx.json {
        eprintln!("-- chatting with {peer}: type a line and press Enter to send; Ctrl-D leaves --");
    }

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => {
                match line.map_err(|e| CliError::local("reading your input", e))? {
                    Some(text) if text.trim().is_empty() => {}
                    Some(text) => {
                        let (sent, client_id) = send_text(&me, &client, &mut contacts, &peer, text).await?;
                        if ctx.json {
                            output::json(&json!({"type": "sent", "id": sent.id, "to": peer, "client_id": client_id}));
                        }
                    }
                    None => stdin_open = false,
                }
                if !stdin_open {
                    break;
                }
            }
            item = events.next() => {
                let Some(item) = item else { break };
                let Item::Event(event) = item? else { continue };
                let EventBody::Message { message } = &event.body;
                let in_conversation = message.from == peer.as_str() && message.group.is_none();
                if in_conversation && message.id > newest_shown {
                    reader.show(Some(event.seq), message).await?;
                }
            }
        }
    }
    reader.finish()
}
