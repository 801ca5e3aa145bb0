//! The HTTP handlers, one module per resource; [`auth`] is the session extractor every
//! authenticated route takes, [`problem`] turns errors into RFC 9457 answers.

pub mod auth;
pub mod blobs;
pub mod client;
pub mod conversations;
pub mod events;
pub mod groups;
pub mod health;
pub mod messages;
pub mod problem;
pub mod sessions;
pub mod users;
