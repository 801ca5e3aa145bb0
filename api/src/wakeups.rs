//! Where inbox wake-ups go. By default PostgreSQL carries them: the SQL functions that
//! grow inboxes NOTIFY in their own transactions, and nothing here does anything. With
//! another bus (NATS) those functions stay silent (each pooled connection says so, see
//! [`SILENCE_THE_DATABASE`]), the store [`note`]s whom its work woke and the messages
//! it can hand over whole ([`note_push`]), and [`crate::db::with_conn`] hands them to
//! the bus once that work is done, so a wake-up never overtakes the commit it
//! announces. (One that follows work rolled back only makes a stream read its inbox for
//! nothing: a wake-up is a hint.)
//!
//! The bus is one per process, installed at start, because the store that notes and the
//! pool that flushes sit below the app state that could otherwise carry it.

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::ids::UserId;

/// Run on every pooled connection when another bus carries wake-ups: the SQL functions
/// then store and deliver as before but notify no one (`fastchat_wakeups_in_database`).
pub const SILENCE_THE_DATABASE: &str = "SET fastchat.wakeup TO 'elsewhere'";

/// What some committed work woke.
#[derive(Debug, Default)]
pub struct Woken {
    /// Users whose streams should read their inboxes (one may repeat).
    pub users: Vec<UserId>,
    /// Notifications that each hand one stream its next event whole (`push:` payloads,
    /// see [`crate::notification`]), in the order their events were stored.
    pub pushes: Vec<String>,
}

impl Woken {
    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.pushes.is_empty()
    }
}

/// A bus that carries wake-ups between api servers.
pub trait Bus: Send + Sync {
    /// Wakes these streams wherever they are. Must not block: it is called on the
    /// threads that run queries.
    fn publish(&self, woken: Woken);
}

static BUS: OnceLock<Box<dyn Bus>> = OnceLock::new();

thread_local! {
    /// Whom the work in hand on this thread has woken.
    static WOKEN: RefCell<Woken> = const {
        RefCell::new(Woken { users: Vec::new(), pushes: Vec::new() })
    };
}

/// Makes `bus` carry this process's wake-ups; from then on the database is silent.
pub fn install(bus: Box<dyn Bus>) -> anyhow::Result<()> {
    BUS.set(bus)
        .map_err(|_| anyhow::anyhow!("a wake-up bus is already installed in this process"))
}

/// Whether a bus other than the database carries wake-ups.
pub fn elsewhere() -> bool {
    BUS.get().is_some()
}

/// These users' inboxes grew in the work in hand: wake them when it is done.
pub fn note(users: impl IntoIterator<Item = UserId>) {
    if elsewhere() {
        WOKEN.with(|woken| woken.borrow_mut().users.extend(users));
    }
}

/// A push (a stored message, whole, for its recipient's stream) to send when the work
/// in hand is done.
pub fn note_push(push: String) {
    if elsewhere() {
        WOKEN.with(|woken| woken.borrow_mut().pushes.push(push));
    }
}

/// Publishes whom the work just finished on this thread woke.
pub(crate) fn flush() {
    if let Some(bus) = BUS.get() {
        // The bus merges and deduplicates what it is handed.
        let woken = WOKEN.with(|woken| std::mem::take(&mut *woken.borrow_mut()));
        if !woken.is_empty() {
            bus.publish(woken);
        }
    }
}
