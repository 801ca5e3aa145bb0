//! Hands group messages to this server's streams whole: each notification's members held
//! here (see [`Hub::group_message`]) have their events read together, encoded once (see
//! [`crate::live::pushed`]), then pushed. A member whose event could not be read this
//! way is woken to read its inbox, which holds the truth either way.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::batch::Batcher;
use crate::ids::{MessageId, UserId};
use crate::live::hub::Hub;
use crate::live::pushed::{EncodedMessage, Pushed};
use crate::notification::GroupMessageEvents;
use crate::store::group_pushes::{GroupPush, PushedEvents};
use crate::store::messages::GroupMessagesStored;

/// Runs until the hub is dropped. Each message is read on a task of its own, so that one
/// waiting for the database does not hold back the next.
pub async fn run(
    mut arrived: mpsc::UnboundedReceiver<GroupMessageEvents>,
    reads: Batcher<GroupMessageEvents, PushedEvents>,
    hub: Arc<Hub>,
) {
    while let Some(events) = arrived.recv().await {
        let (reads, hub) = (reads.clone(), Arc::clone(&hub));
        tokio::spawn(async move {
            let mut unsent: HashSet<UserId> = events.seqs.iter().map(|(user, _)| *user).collect();
            match reads.call(events).await {
                Ok(Ok(Some(push))) => push_to_members(&hub, push, &mut unsent),
                // Deleted meanwhile: the inboxes say so.
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "reading a group message to push"),
                Err(refused) => tracing::warn!(?refused, "reading a group message to push"),
            }
            hub.wake(unsent);
        });
    }
}

/// Tells this server's hub of the group messages it stores.
pub struct LocalPushes(pub Arc<Hub>);

impl GroupMessagesStored for LocalPushes {
    fn committing(&self, messages: &[MessageId]) {
        self.0.storing_here_soon(messages);
    }

    fn stored(&self, push: GroupPush) {
        push_stored(&self.0, push);
    }
}

/// A group message this server has just stored, with its members' seqs and keys as
/// stored: the members held here have it at once, with no read (or are woken, should
/// that fail). Its notification, coming back to this server before or after, asks for
/// no read (see [`Hub::storing_here_soon`]).
fn push_stored(hub: &Hub, mut push: GroupPush) {
    let message = push.message;
    push.members.retain(|(user, _, _)| hub.holds(*user));
    let mut unsent: HashSet<UserId> = push.members.iter().map(|(user, _, _)| *user).collect();
    if !push.members.is_empty() {
        push_to_members(hub, push, &mut unsent);
    }
    hub.stored_here(message);
    hub.wake(unsent);
}

/// Pushes `push` to its members' streams, taking each one pushed out of `unsent`.
fn push_to_members(hub: &Hub, push: GroupPush, unsent: &mut HashSet<UserId>) {
    let encoded = match EncodedMessage::new(push.message, push.shared) {
        Ok(encoded) => Arc::new(encoded),
        Err(e) => return tracing::warn!(error = %e, "encoding a group message to push"),
    };
    for (user, seq, wrapped_key) in push.members {
        unsent.remove(&user);
        let pushed = Pushed {
            seq,
            wrapped_key,
            message: Arc::clone(&encoded),
        };
        hub.push(user, Arc::new(pushed));
    }
}
