//! What runs for as long as the server does: the streams it holds ([`hub`], one
//! [`feed`] per stream), the wake-up listener ([`wakeup`]) and the reader that hands
//! group messages to streams whole ([`group_pushes`], encoded once: [`pushed`]), the heartbeat with presence
//! ([`presence`]), the watch that ends the streams of ended sessions ([`sessions`]), and
//! the one that cuts streams whose clients stopped reading ([`stalls`]).

pub mod feed;
pub mod group_pushes;
pub mod hub;
pub mod presence;
pub mod pushed;
pub mod sessions;
pub mod stalls;
pub mod wakeup;
