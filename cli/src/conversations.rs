//! `conversations`: the people and groups this user has talked with, newest first,
//! with their last activity and how many messages are unread (as the read marks every
//! device of the user shares say).

use crate::context::Context;
use crate::error::Result;
use crate::me::Me;
use crate::output::json::{ConversationOut, Line};
use crate::output::{self, time};

pub async fn list(ctx: &Context) -> Result<()> {
    let (_me, client) = Me::load(ctx)?;
    let listed = client.conversations().await?;
    for dropped in listed.dropped.iter().filter(|_| !ctx.json) {
        crate::notice!(
            "fastchat: WARNING: dropped a conversation the server listed that this client \
             cannot trust: {}",
            output::sanitize_line(&dropped.reason)
        );
    }
    let rows: Vec<_> = listed
        .items
        .into_iter()
        .filter(|c| c.with.is_some() != c.group.is_some())
        .collect();
    if ctx.json {
        for c in rows {
            Line::Conversation(ConversationOut {
                with: c.with,
                group: c.group,
                last_message_id: c.last_message_id,
                last_at: c.last_at,
                unread: c.unread.max(0),
                read_up_to: c.read_up_to,
            })
            .print();
        }
        return Ok(());
    }
    if rows.is_empty() {
        if ctx.for_a_person() {
            output::line("No conversations yet. Start one with `fastchat send <user> <message>`.");
        }
        return Ok(());
    }
    let names: Vec<String> = rows
        .iter()
        .map(|c| match (&c.with, &c.group) {
            (Some(user), _) => user.to_string(),
            (_, Some(group)) => format!("@{group}"),
            _ => String::new(),
        })
        .collect();
    let width = names.iter().map(String::len).max().unwrap_or(0);
    for (c, name) in rows.iter().zip(&names) {
        let when = c
            .last_at
            .map_or_else(|| "no messages yet".to_owned(), time::when);
        let unread = match c.unread {
            n if n <= 0 => String::new(),
            1 => "  1 unread".to_owned(),
            n => format!("  {n} unread"),
        };
        output::line(&format!("{name:<width$}  {when}{unread}"));
    }
    Ok(())
}
