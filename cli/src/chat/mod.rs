//! `chat`: one conversation, live. On a terminal it is a screen built on a line editor
//! ([`terminal`]): what arrives is printed above the prompt, the line being typed stays
//! intact, and your own lines come back as `HH:MM you: …` once the server has them.
//! Piped, it reads lines from standard input and prints as `recv` does.
//!
//! A line that cannot be sent (the network, the server) stays queued and is retried
//! with the same client_id, so it is stored once whatever happened to the first try;
//! lines go out in the order typed. A lost connection is said once and its return once;
//! what arrived meanwhile is fetched. Removed from a group, the chat turns read-only.

mod terminal;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use fastchat_protocol::envelope::Kind;
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{Event, EventBody, Message};
use futures_util::StreamExt;
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

use crate::context::Context;
use crate::error::{CliError, Result};
use crate::inbox::{fetch_history, show_page};
use crate::marks::mark_read;
use crate::me::Me;
use crate::net::client::Client;
use crate::net::stream::{self, Item};
use crate::output::{self, time};
use crate::reader::{Reader, Showing, Style};
use crate::send::{
    parse_group, parse_target, parse_user, report_sent, send_plaintext, upload_image, Outgoing,
    Target,
};

use self::terminal::{Input, Terminal};

const HELP: &str = "\
Type a line and press Enter to send it. Commands:
  /image <path>   send an image (PNG, JPEG, GIF or WebP)
  /who            who is in this conversation, and who is online
  /help           this
  /quit           leave (so do Ctrl-D and Ctrl-C)
A line that starts with / is a command; start it with // to send a /.";

const RECENT: u32 = 20;
/// Longest wait between two tries of a line that could not be sent.
const RETRY_MAX: Duration = Duration::from_secs(8);

/// A line typed but not yet taken by the server.
struct Pending {
    client_id: uuid::Uuid,
    what: Payload,
    /// The message once made (an image uploaded once, whatever the tries after).
    ready: Option<Outgoing>,
    tries: u32,
    next_try: Instant,
    /// Said once that it failed.
    warned: bool,
}

enum Payload {
    Text(String),
    Image(PathBuf),
}

impl Payload {
    fn describe(&self) -> String {
        match self {
            Payload::Text(text) => output::message_body(text),
            Payload::Image(path) => format!(
                "[image {}]",
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
        }
    }
}

struct Chat<'a> {
    ctx: &'a Context,
    me: &'a Me,
    client: &'a Client,
    target: Target,
    reader: Reader<'a>,
    pending: VecDeque<Pending>,
    /// No longer a member of the group: nothing can be sent.
    read_only: bool,
    /// The connection is down (said once).
    lost: bool,
    /// On a terminal, the screen; else plain lines.
    screen: bool,
}

/// `chat <user>` or `chat --group <name>`.
pub async fn chat(ctx: &Context, with: Option<&str>, group: Option<&str>) -> Result<()> {
    match (with, group) {
        (_, Some(group)) => drop(parse_group(group)?),
        (Some(with), None) => drop(parse_user(with)?),
        (None, None) => {}
    }
    let (me, client) = Me::load(ctx)?;
    let target = parse_target(&me, group, with)?;
    let mut reader = Reader::new(ctx, &me, &client)?;
    reader.style = Style::Chat;
    if let Target::User(peer) = &target {
        reader.contacts.public_key(peer).await?;
    }

    // Connect first, then read the history, so nothing falls between the two.
    let token = client.token().unwrap_or_default();
    let mut events = stream::events(client.server(), client.tls(), token, None)?;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), events.next()).await {
            Ok(Some(Ok(Item::Connected))) => break,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) | Err(_) => {
                return Err(CliError::Unreachable {
                    server: client.server().to_owned(),
                    cause: "the event stream did not open".into(),
                })
            }
        }
    }
    let screen = !ctx.json
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut chat = Chat {
        ctx,
        me: &me,
        client: &client,
        target,
        reader,
        pending: VecDeque::new(),
        read_only: false,
        lost: false,
        screen,
    };
    let recent = fetch_history(&client, &chat.target, None, RECENT).await?;
    chat.reader.know_group(&chat.target).await?;
    if chat.screen {
        let terminal = Terminal::start()?;
        chat.opening(&recent).await?;
        let result = chat.run_screen(terminal, &mut events).await;
        result?;
    } else {
        chat.opening(&recent).await?;
        chat.run_piped(&mut events).await?;
    }
    chat.reader.finish()
}

impl Chat<'_> {
    fn say(&self, text: &str) {
        if !self.ctx.json {
            crate::notice!("{text}");
        }
    }

    /// The recent conversation, and how to use the chat.
    async fn opening(&mut self, recent: &crate::net::client::MessagePage) -> Result<()> {
        show_page(&mut self.reader, recent).await?;
        self.mark_shown().await;
        if self.screen {
            self.say(&format!(
                "-- chatting with {}: type and press Enter to send; /help for commands, \
                 /quit or Ctrl-D to leave --",
                self.target.label()
            ));
        } else {
            self.say(&format!(
                "-- chatting with {}: type a line and press Enter to send; Ctrl-D leaves --",
                self.target.label()
            ));
        }
        Ok(())
    }

    async fn mark_shown(&mut self) {
        mark_read(self.client, self.reader.take_shown(), self.ctx.json).await;
    }

    async fn run_screen(
        &mut self,
        mut terminal: Terminal,
        events: &mut (impl futures_util::Stream<Item = Result<Item>> + Unpin),
    ) -> Result<()> {
        let result = loop {
            let next_try = self.next_try();
            tokio::select! {
                input = terminal.inputs.recv() => {
                    match input {
                        Some(Input::Line(line)) => {
                            if self.line(&line).await? {
                                break Ok(());
                            }
                            terminal.more();
                        }
                        Some(Input::Leave) | None => break Ok(()),
                        Some(Input::Failed(e)) => break Err(CliError::local("reading your input", e)),
                    }
                }
                item = events.next() => {
                    let Some(item) = item else { break Ok(()) };
                    if let Err(e) = self.item(item).await {
                        break Err(e);
                    }
                }
                () = sleep_until(next_try) => {
                    if let Err(e) = self.try_pending().await {
                        break Err(e);
                    }
                }
            }
        };
        terminal.stop();
        self.leave();
        result
    }

    async fn run_piped(
        &mut self,
        events: &mut (impl futures_util::Stream<Item = Result<Item>> + Unpin),
    ) -> Result<()> {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut input_open = true;
        loop {
            // Piped input that ended still lets queued lines go out.
            if !input_open && self.pending.is_empty() {
                break;
            }
            let next_try = self.next_try();
            tokio::select! {
                line = lines.next_line(), if input_open => {
                    match line.map_err(|e| CliError::local("reading your input", e))? {
                        Some(line) => {
                            if self.line(&line).await? {
                                break;
                            }
                        }
                        None => input_open = false,
                    }
                }
                item = events.next() => {
                    let Some(item) = item else { break };
                    self.item(item).await?;
                }
                () = sleep_until(next_try) => self.try_pending().await?,
            }
        }
        self.leave();
        Ok(())
    }

    /// Says what is left unsent when the chat ends.
    fn leave(&self) {
        if !self.pending.is_empty() {
            self.say(&format!(
                "fastchat: {} line(s) could not be sent before you left: {}",
                self.pending.len(),
                self.pending
                    .iter()
                    .map(|p| p.what.describe())
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
    }

    fn next_try(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.next_try)
    }

    /// A line typed; true when it asks to leave.
    async fn line(&mut self, line: &str) -> Result<bool> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Ok(false);
        }
        let text = if let Some(escaped) = trimmed.strip_prefix("//") {
            format!("/{escaped}")
        } else if let Some(command) = trimmed.strip_prefix('/') {
            let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
            match name {
                "quit" | "exit" | "q" => return Ok(true),
                "help" | "?" => self.say(HELP),
                "who" => self.who().await?,
                "image" if rest.trim().is_empty() => self.say("usage: /image <path>"),
                "image" => {
                    self.queue(Payload::Image(PathBuf::from(rest.trim())))
                        .await?
                }
                other => self.say(&format!("unknown command /{other}: /help lists them")),
            }
            return Ok(false);
        } else {
            line.to_owned()
        };
        self.queue(Payload::Text(text)).await?;
        Ok(false)
    }

    async fn queue(&mut self, what: Payload) -> Result<()> {
        if self.read_only {
            self.say(&format!(
                "(not sent: you are no longer in {}; this chat is read-only)",
                self.target.label()
            ));
            return Ok(());
        }
        self.pending.push_back(Pending {
            client_id: uuid::Uuid::new_v4(),
            what,
            ready: None,
            tries: 0,
            next_try: Instant::now(),
            warned: false,
        });
        // Lines go out in order: only the oldest is tried.
        if self.pending.len() == 1 {
            self.try_pending().await?;
        }
        Ok(())
    }

    /// Tries the oldest queued line (and, while they go through, the next ones).
    async fn try_pending(&mut self) -> Result<()> {
        while let Some(front) = self.pending.front() {
            if front.next_try > Instant::now() {
                return Ok(());
            }
            let client_id = front.client_id;
            let attempt = self.send_one(client_id).await;
            match attempt {
                Ok((sent, kind)) => {
                    let Some(done) = self.pending.pop_front() else {
                        return Ok(());
                    };
                    self.reader.sent_in_this_run(client_id);
                    report_sent(self.ctx, &self.target, kind, &sent, client_id);
                    if !self.ctx.json {
                        let after = if done.warned {
                            " (sent after retrying)"
                        } else {
                            ""
                        };
                        output::line(&format!(
                            "{} you: {}{after}",
                            time::clock(sent.sent_at),
                            done.what.describe()
                        ));
                    }
                }
                Err(e) if e.is_transient() => {
                    let Some(front) = self.pending.front_mut() else {
                        return Ok(());
                    };
                    front.tries += 1;
                    let wait = Duration::from_millis(500 << front.tries.min(4)).min(RETRY_MAX);
                    front.next_try = Instant::now() + wait;
                    if !front.warned {
                        front.warned = true;
                        let what = front.what.describe();
                        self.say(&format!(
                            "(not sent yet, retrying: {}) you: {what}",
                            short(&e)
                        ));
                    }
                    return Ok(());
                }
                Err(e) => {
                    let Some(failed) = self.pending.pop_front() else {
                        return Ok(());
                    };
                    if gone_from_group(&e) {
                        self.become_read_only(None);
                    }
                    match e {
                        // Fatal for the whole chat: the session, a changed key.
                        CliError::Auth(_) | CliError::NotLoggedIn | CliError::KeyChanged { .. } => {
                            return Err(e)
                        }
                        e => self.say(&format!(
                            "(not sent: {}) you: {}",
                            output::sanitize_line(&e.to_string()),
                            failed.what.describe()
                        )),
                    }
                }
            }
        }
        Ok(())
    }

    async fn send_one(
        &mut self,
        client_id: uuid::Uuid,
    ) -> Result<(fastchat_protocol::wire::MessageSent, Kind)> {
        let Some(front) = self.pending.front() else {
            return Err(CliError::Local("nothing to send".into()));
        };
        let outgoing = match (&front.ready, &front.what) {
            (Some(ready), _) => ready.clone(),
            (None, Payload::Text(text)) => Outgoing::text(text.clone()).try_of(client_id),
            (None, Payload::Image(path)) => {
                let path = path.clone();
                let made = upload_image(self.ctx, self.client, &path, false)
                    .await?
                    .try_of(client_id);
                if let Some(front) = self.pending.front_mut() {
                    front.ready = Some(made.clone());
                }
                made
            }
        };
        let kind = outgoing.kind;
        let sent = send_plaintext(
            self.ctx,
            self.me,
            self.client,
            &mut self.reader.contacts,
            &mut self.reader.chains,
            &self.target,
            outgoing,
        )
        .await?;
        Ok((sent, kind))
    }

    fn become_read_only(&mut self, by: Option<&str>) {
        if self.read_only {
            return;
        }
        self.read_only = true;
        let by = by.map_or_else(String::new, |by| format!(" ({by} removed you)"));
        self.say(&format!(
            "* You are no longer in {}{by}: this chat is read-only now. /quit leaves.",
            self.target.label()
        ));
        self.pending.clear();
    }

    /// `/who`: the members (for a group, as its verified chain says) and who is online.
    async fn who(&mut self) -> Result<()> {
        let names: Vec<String> = match &self.target {
            Target::User(peer) => vec![self.me.name().to_string(), peer.to_string()],
            Target::Group(group) => match self.reader.chains.local(group)? {
                Some(state) => {
                    let mut names: Vec<String> =
                        state.members.iter().map(|m| m.name.to_string()).collect();
                    names.sort();
                    names
                }
                None => Vec::new(),
            },
        };
        const ASK_AT_MOST: usize = 50;
        let mut shown = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if *name == self.me.name().as_str() {
                shown.push(format!("{name} (you)"));
                continue;
            }
            let online = if i < ASK_AT_MOST {
                self.client.user(name).await.ok().map(|p| p.online)
            } else {
                None
            };
            shown.push(match online {
                Some(true) => format!("{name} (online)"),
                Some(false) => format!("{name} (offline)"),
                None => name.clone(),
            });
        }
        let state = if self.read_only {
            " (you are no longer in it)"
        } else {
            ""
        };
        self.say(&format!(
            "In {}{state}: {}",
            self.target.label(),
            shown.join(", ")
        ));
        Ok(())
    }

    /// Something from the event stream.
    async fn item(&mut self, item: Result<Item>) -> Result<()> {
        match item? {
            Item::Connected => {
                if self.lost {
                    self.lost = false;
                    self.say("-- connected again --");
                    self.catch_up().await?;
                    // The way is clear again: what waits goes now.
                    if let Some(front) = self.pending.front_mut() {
                        front.next_try = Instant::now();
                    }
                    self.try_pending().await?;
                }
            }
            Item::Lost(why) => {
                if !self.lost {
                    self.lost = true;
                    self.say(&format!("-- connection lost ({why}); reconnecting… --"));
                }
            }
            Item::Dropped(dropped) => self.reader.drop_undecodable(&dropped),
            Item::Event(event) => self.event(&event).await?,
        }
        Ok(())
    }

    /// After a reconnect, whatever of this conversation arrived meanwhile (the stream
    /// resumes by itself once it has seen an event; this covers the rest).
    async fn catch_up(&mut self) -> Result<()> {
        let recent = fetch_history(self.client, &self.target, None, RECENT).await?;
        for message in recent.messages.items.iter().rev() {
            if !self.reader.shown_in_this_run(message) {
                self.reader.show(None, message, Showing::Live).await?;
            }
        }
        self.mark_shown().await;
        Ok(())
    }

    async fn event(&mut self, event: &Event) -> Result<()> {
        match &event.body {
            EventBody::Message { message } => {
                if self.in_chat(message) {
                    if self.reader.shown_in_this_run(message) {
                        return Ok(());
                    }
                    self.reader
                        .show(Some(event.seq), message, Showing::Live)
                        .await?;
                    self.mark_shown().await;
                } else if message.from != *self.me.name() && !self.ctx.json {
                    self.say(&elsewhere(message));
                }
            }
            EventBody::GroupCreated(e)
            | EventBody::MemberAdded(e)
            | EventBody::MemberRemoved(e)
            | EventBody::AdminAdded(e) => {
                if matches!(&self.target, Target::Group(g) if *g == e.group) {
                    self.reader.show_event(event).await?;
                    if matches!(event.body, EventBody::MemberRemoved(_))
                        && e.username == *self.me.name()
                    {
                        let by = (e.by != *self.me.name()).then(|| e.by.to_string());
                        self.become_read_only(by.as_deref());
                    }
                }
            }
        }
        Ok(())
    }

    /// True when `message` belongs in this chat and was not sent by me.
    fn in_chat(&self, message: &Message) -> bool {
        match &self.target {
            Target::User(peer) => message.from == *peer && message.group.is_none(),
            Target::Group(group) => {
                message.group.as_ref() == Some(group) && message.from != *self.me.name()
            }
        }
    }
}

/// The one line that says a message arrived in another conversation.
fn elsewhere(message: &Message) -> String {
    match &message.group {
        Some(group) => format!(
            "(new message in @{group} from {}: `fastchat chat --group {group}` to read it)",
            message.from
        ),
        None => format!(
            "(new message from {}: `fastchat chat {}` to read it)",
            message.from, message.from
        ),
    }
}

/// An error in a few words, for the retry notice.
fn short(e: &CliError) -> String {
    match e {
        CliError::Unreachable { cause, .. } => cause.clone(),
        CliError::Server { status, .. } => format!("the server answered {status}"),
        other => output::sanitize_line(&other.to_string()),
    }
}

/// The send failed because this user is not in the group (any more).
fn gone_from_group(e: &CliError) -> bool {
    match e {
        CliError::Refused { code, .. } => *code == ErrorCode::GroupNotFound,
        CliError::Local(text) => text.starts_with("you are not in group"),
        _ => false,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
