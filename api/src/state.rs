//! What every handler can reach.

use std::sync::Arc;

use crate::batch::Batcher;
use crate::config::Config;
use crate::db::PgPool;
use crate::live::hub::Hub;
use crate::live::stalls::StallWatch;
use crate::metrics::Metrics;
use crate::store::inbox::{InboxPage, InboxRead};
use crate::store::messages::{DirectSend, GroupSend, SendAnswer};
use crate::store::sessions::SessionLookup;

pub struct AppState {
    pub config: Config,
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
    pub hub: Arc<Hub>,
    pub stalls: Arc<StallWatch>,
    /// A real bcrypt hash to verify against when a login names an unknown user.
    pub dummy_password_hash: String,
    /// The database work every request does, coalesced (see [`crate::batch`]).
    pub session_lookups: Batcher<Vec<u8>, SessionLookup>,
    pub direct_sends: Batcher<DirectSend, SendAnswer>,
    pub group_sends: Batcher<GroupSend, SendAnswer>,
    pub inbox_reads: Batcher<InboxRead, InboxPage>,
}
