//! Read marks: how far each conversation is read, kept on the server so that every
//! device of the user agrees (`PUT /v1/conversations/{user}/read`,
//! `PUT /v1/groups/{name}/read`). Reading (`recv`, `chat`, `history`) marks what it
//! showed; a mark only moves forward. What the server learns from it is which
//! conversation was read up to which message, and when: metadata it has already.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::net::client::Client;
use crate::output;
use crate::reader::Conversation;

/// Marks each conversation read up to the message given. A failure is a warning (the
/// messages were shown; only the count of unread ones stays behind).
pub async fn mark_read(client: &Client, shown: BTreeMap<Conversation, i64>, quiet: bool) {
    for (conversation, up_to) in shown {
        if let Err(e) = mark(client, &conversation, up_to).await {
            if !quiet {
                crate::notice!(
                    "fastchat: warning: could not mark the conversation read on the server: {}",
                    output::sanitize_line(&e.to_string())
                );
            }
        }
    }
}

async fn mark(client: &Client, conversation: &Conversation, up_to: i64) -> Result<()> {
    match conversation {
        Conversation::With(user) => client.mark_read_with(user.as_str(), up_to).await?,
        Conversation::Group(group) => client.mark_read_group(group.as_str(), up_to).await?,
    };
    Ok(())
}
