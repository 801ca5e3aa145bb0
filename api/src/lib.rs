//! FastChat's api server: a stateless actix-web service over PostgreSQL. Any number run
//! side by side; all shared state lives in the database.

pub mod auth;
pub mod batch;
pub mod blobs;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod groups;
pub mod health;
pub mod hub;
pub mod messages;
pub mod metrics;
pub mod presence;
pub mod routes;
pub mod schema;
pub mod sessions;
pub mod startup;
pub mod telemetry;
pub mod users;
pub mod wakeup;
