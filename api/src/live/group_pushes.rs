//! Hands group messages to this server's streams whole: each notification's members held
//! here (see [`Hub::group_message`]) have their events read together, then pushed. A
//! member whose event could not be read this way is woken to read its inbox, which
//! holds the truth either way.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::batch::Batcher;
use crate::ids::UserId;
use crate::live::hub::Hub;
use crate::notification::GroupMessageEvents;
use crate::store::group_pushes::PushedEvents;

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
                Ok(Ok(pushed)) => {
                    for (user, event) in pushed {
                        unsent.remove(&user);
                        hub.push(user, Arc::new(event));
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reading a group message to push"),
                Err(refused) => tracing::warn!(?refused, "reading a group message to push"),
            }
            hub.wake(unsent);
        });
    }
}
