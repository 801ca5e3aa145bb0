//! FastChat's api server: a stateless actix-web service over PostgreSQL. Any number run
//! side by side; all shared state lives in the database.
//!
//! The modules form layers; each imports only from the layers below it (a test,
//! `tests/layers.rs`, keeps it so), and a request goes route → handler → store → SQL:
//!
//! 1. **Foundation**: [`config`], [`error`], [`ids`], [`schema`], [`batch`], [`db`],
//!    [`metrics`], [`notification`] (the wake-up's contract), [`wakeups`] (the bus that
//!    carries them), [`telemetry`].
//! 2. **Store** ([`store`]): every query, one module per resource; no HTTP, no app state.
//! 3. **Live** ([`live`]): what runs for as long as the server does: the hub of open
//!    streams, each stream's feed, the wake-up listener, the heartbeat and presence.
//! 4. **State** ([`state`]): what every handler can reach.
//! 5. **Handlers** ([`handlers`]): one module per resource, the session extractor, and
//!    errors as HTTP answers.
//! 6. **Wiring**: [`routes`] (every route in one table) and [`startup`].

pub mod batch;
pub mod config;
pub mod db;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod notification;
/// Diesel's view of the tables, as `diesel print-schema` writes it from the migrations
/// (a test checks that it still does).
pub mod schema;
pub mod telemetry;
pub mod wakeups;

pub mod store;

pub mod live;

pub mod state;

pub mod handlers;

pub mod routes;
pub mod startup;
