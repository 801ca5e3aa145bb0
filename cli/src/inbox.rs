//! `recv`, `history` and `chat`: what arrived, shown through the [`Reader`], which
//! verifies everything before it shows anything.

use std::time::Duration;

use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{EventBody, Message};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::chains::no_such_group;
use crate::client::{Client, MessagePage};
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::me::Me;
use crate::output;
use crate::reader::{Reader, Showing};
use crate::send::{parse_target, send_plaintext, Outgoing, Target};
use crate::stream::{self, Item};

const INBOX_PAGE: u32 = 200;

/// `recv`: everything since the last `recv`, then (with `--follow`) what arrives live.
pub async fn recv(ctx: &Context, follow: bool) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let mut reader = Reader::new(ctx, &me, &client)?;
    let name = me.name().as_str();
    let mut cursor = ctx.home.cursor(name)?;
    loop {
        let page = client.inbox(cursor, INBOX_PAGE).await?;
        if page.events.items.is_empty() && page.events.dropped.is_empty() {
            break;
        }
        for dropped in &page.events.dropped {
            reader.drop_undecodable(dropped);
        }
        for event in &page.events.items {
            reader.show_event(event).await?;
        }
        // Past everything this page held, dropped events included.
        let last = page
            .events
            .items
            .iter()
            .map(|e| e.seq)
            .chain(page.events.dropped.iter().filter_map(|d| d.seq))
            .max();
        match last {
            Some(seq) if seq > cursor => cursor = seq,
            _ => break,
        }
        ctx.home.save_cursor(name, cursor)?;
    }
    if follow {
        let token = client.token().unwrap_or_default();
        let mut events = stream::events(client.server(), token, Some(cursor))?;
        while let Some(item) = events.next().await {
            match item? {
                Item::Connected => continue,
                Item::Dropped(dropped) => {
                    reader.drop_undecodable(&dropped);
                    match dropped.seq {
                        Some(seq) if seq > cursor => cursor = seq,
                        _ => continue,
                    }
                }
                Item::Event(event) => {
                    if event.seq <= cursor {
                        continue;
                    }
                    reader.show_event(&event).await?;
                    cursor = event.seq;
                }
            }
            ctx.home.save_cursor(name, cursor)?;
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
) -> Result<MessagePage> {
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
        Target::Group(group) => client
            .group_history(group.as_str(), before, limit)
            .await
            .map_err(|e| match e {
                CliError::Server {
                    code: ErrorCode::GroupNotFound,
                    ..
                } => no_such_group(group),
                other => other,
            }),
    }
}

/// Shows a page of history oldest first; a message served twice is shown once.
async fn show_page(reader: &mut Reader<'_>, page: &MessagePage) -> Result<()> {
    for dropped in &page.messages.dropped {
        reader.drop_undecodable(dropped);
    }
    for message in page.messages.items.iter().rev() {
        reader.show(None, message, Showing::Live).await?;
    }
    Ok(())
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
    let mut reader = Reader::new(ctx, &me, &client)?;
    reader.know_group(&target).await?;
    show_page(&mut reader, &page).await?;
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
        Target::User(peer) => message.from == *peer && message.group.is_none(),
        Target::Group(group) => message.group.as_ref() == Some(group) && message.from != *me.name(),
    }
}

/// `chat <user>` or `chat --group <name>`: the recent conversation, then live: lines
/// typed are sent, the others' arrive as they are sent. Leaves the `recv` cursor alone.
pub async fn chat(ctx: &Context, with: Option<&str>, group: Option<&str>) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let target = parse_target(&me, group, with)?;
    let mut reader = Reader::new(ctx, &me, &client)?;
    if let Target::User(peer) = &target {
        reader.contacts.public_key(peer).await?;
    }

    // Connect first, then read the history, so nothing falls between the two.
    let token = client.token().unwrap_or_default();
    let mut events = stream::events(client.server(), token, None)?;
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
    let recent = fetch_history(&client, &target, None, 20).await?;
    reader.know_group(&target).await?;
    show_page(&mut reader, &recent).await?;
    let newest_shown = recent.messages.items.first().map_or(0, |m| m.id);
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
                let (sent, client_id) = send_plaintext(
                    ctx, &me, &client, &mut reader.contacts, &mut reader.chains, &target,
                    Outgoing::text(text),
                )
                .await?;
                if ctx.json {
                    output::json(&json!({"type": "sent", "id": sent.id, "client_id": client_id}));
                }
            }
            item = events.next() => {
                let Some(item) = item else { break };
                match item? {
                    Item::Connected => {}
                    Item::Dropped(dropped) => reader.drop_undecodable(&dropped),
                    Item::Event(event) => match &event.body {
                        EventBody::Message { message } => {
                            if in_chat(&target, &me, message) && message.id > newest_shown {
                                reader.show(Some(event.seq), message, Showing::Live).await?;
                            }
                        }
                        EventBody::GroupCreated(e)
                        | EventBody::MemberAdded(e)
                        | EventBody::MemberRemoved(e)
                        | EventBody::AdminAdded(e) => {
                            if matches!(&target, Target::Group(g) if *g == e.group) {
                                reader.show_event(&event).await?;
                            }
                        }
                    },
                }
            }
        }
    }
    reader.finish()
}
