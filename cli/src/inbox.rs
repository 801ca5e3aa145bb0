//! `recv` and `history`: what arrived, shown through the [`Reader`], which verifies
//! everything before it shows anything; what was shown is marked read.

use futures_util::StreamExt;

use fastchat_protocol::problem::ErrorCode;

use crate::chains::no_such_group;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::marks::mark_read;
use crate::me::Me;
use crate::net::client::{Client, MessagePage};
use crate::net::stream::{self, Item};
use crate::output::json::Line;
use crate::output::{self};
use crate::reader::{Reader, Showing};
use crate::send::{parse_group, parse_target, parse_user, Target};

const INBOX_PAGE: u32 = 200;

/// `recv`: everything since the last `recv`, then (with `--follow`) what arrives live.
pub async fn recv(ctx: &Context, follow: bool) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let mut reader = Reader::new(ctx, &me, &client)?;
    let name = me.name().as_str();
    let mut cursor = ctx.home.cursor(name)?;
    let mut shown_any = false;
    loop {
        let page = client.inbox(cursor, INBOX_PAGE).await?;
        if page.events.items.is_empty() && page.events.dropped.is_empty() {
            break;
        }
        shown_any = true;
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
    mark_read(&client, reader.take_shown(), ctx.json).await;
    if !shown_any && ctx.for_a_person() {
        output::line(if follow {
            "No new messages. Waiting for more (Ctrl-C to stop)…"
        } else {
            "No new messages."
        });
    }
    if follow {
        let token = client.token().unwrap_or_default();
        let mut events = stream::events(client.server(), client.tls(), token, Some(cursor))?;
        let mut lost = false;
        while let Some(item) = events.next().await {
            match item? {
                Item::Connected => {
                    if lost && ctx.notices() {
                        crate::notice!("fastchat: connected again; nothing was missed.");
                    }
                    lost = false;
                    continue;
                }
                Item::Lost(why) => {
                    if !lost && ctx.notices() {
                        crate::notice!("fastchat: connection lost ({why}); reconnecting…");
                    }
                    lost = true;
                    continue;
                }
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
            mark_read(&client, reader.take_shown(), ctx.json).await;
        }
    }
    reader.finish()
}

/// A page of history with `target`, newest first.
pub async fn fetch_history(
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
                } => CliError::refused(
                    ErrorCode::UserNotFound,
                    format!("there is no user called {peer}"),
                ),
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
pub async fn show_page(reader: &mut Reader<'_>, page: &MessagePage) -> Result<()> {
    for dropped in &page.messages.dropped {
        reader.drop_undecodable(dropped);
    }
    for message in page.messages.items.iter().rev() {
        reader.show(None, message, Showing::Live).await?;
    }
    Ok(())
}

/// `history <user>` or `history --group <name>`: a page, oldest first, then (with
/// `--json`) a `page` line with the `--before` of the page before it.
pub async fn history(
    ctx: &Context,
    with: Option<&str>,
    group: Option<&str>,
    limit: u32,
    before: Option<i64>,
) -> Result<()> {
    match (with, group) {
        (_, Some(group)) => drop(parse_group(group)?),
        (Some(with), None) => drop(parse_user(with)?),
        (None, None) => {}
    }
    let (me, client) = Me::load(ctx)?;
    let target = parse_target(&me, group, with)?;
    let page = fetch_history(&client, &target, before, limit).await?;
    let mut reader = Reader::new(ctx, &me, &client)?;
    reader.know_group(&target).await?;
    show_page(&mut reader, &page).await?;
    // The newest page is what "read" means; an older one leaves the mark where it is.
    let shown = reader.take_shown();
    if before.is_none() {
        mark_read(&client, shown, ctx.json).await;
    }
    if ctx.json {
        Line::Page { before: page.next }.print();
    } else {
        if page.messages.items.is_empty() && before.is_none() && ctx.for_a_person() {
            output::line(&format!("No messages with {} yet.", target.label()));
        }
        if let Some(next) = page.next {
            crate::notice!("(older messages: add --before {next})");
        }
    }
    reader.finish()
}
