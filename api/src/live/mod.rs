//! What runs for as long as the server does: the streams it holds ([`hub`], one
//! [`feed`] per stream), the wake-up listener ([`wakeup`]) and the heartbeat with
//! presence ([`presence`]).

pub mod feed;
pub mod hub;
pub mod presence;
pub mod wakeup;
