//! The test kit: a private PostgreSQL cluster (one per test run), a fresh database per
//! test, real `fastchat-api` processes on free ports, and the real `fastchat` CLI.
//! Everything waits for conditions with deadlines; nothing sleeps to synchronise.
//!
//! ```no_run
//! # async fn example() {
//! use fastchat_tests::Cluster;
//! let cluster = Cluster::start(2).await;
//! let alice = cluster.api(0).user("alice").await;
//! let bob = cluster.api(1).user("bob").await;
//! let mut stream = bob.events(None).await;
//! alice.send_opaque_to(&bob).await.assert_status(201);
//! let event = stream.next_event(std::time::Duration::from_secs(20)).await;
//! assert_eq!(event.expect("pushed").data["message"]["from"], "alice");
//! # }
//! ```
//!
//! - [`db`]: the cluster and [`TestDb`], a database of its own for each test.
//! - [`binaries`]: the workspace and the binaries the tests run.
//! - [`process`]: [`ApiServer`], [`BalancerProcess`] and [`Cluster`], servers on a database.
//! - [`api`]: [`Api`], one server as an HTTP client sees it, and its [`Answer`]s.
//! - [`user`]: [`TestUser`], a signed-in user with a helper for each thing they do.
//! - [`paths`]: every api path, spelled once.
//! - [`sse`]: a plain reader of the event stream.
//! - [`cli`]: [`CliHome`], the `fastchat` binary in a home folder of its own.
//! - [`proxy`]: [`Proxy`], a server that lies, between the CLI and the real one.
//! - [`pty`]: [`pty::Terminal`], the CLI on a pseudo-terminal, read as a screen.
//! - [`tls`]: the test CA and certificates, served by a balancer and renewed in place.
//! - [`metrics`]: reading Prometheus text.
//! - [`flow`]: [`Flow`], a steady flow of messages with resuming receivers, for faults.
//! - [`postgres`]: [`OwnCluster`], a PostgreSQL of a test's own, to restart, crash, stall.
//! - [`nats`]: [`nats::NatsBroker`], a NATS broker of a test's own, to carry wake-ups.
//! - [`wait`]: [`eventually`], waiting for a condition with a deadline.

pub mod api;
pub mod binaries;
pub mod cli;
pub mod db;
pub mod flow;
pub mod metrics;
pub mod nats;
pub mod paths;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod pty;
pub mod sse;
pub mod tls;
pub mod user;
pub mod wait;

pub use api::{Answer, Api};
pub use binaries::{bin, root};
pub use cli::{json_lines, password_of, CliHome, CliOutput, RunningCli};
pub use db::{admin_url, connect, TestDb};
pub use flow::{Flow, FlowReport, FlowSettings};
pub use metrics::{metric_sum, metric_values, metric_where};
pub use postgres::OwnCluster;
pub use process::{ApiServer, BalancerProcess, Cluster, PendingServer};
pub use proxy::Proxy;
pub use sse::{SseClient, SseEvent};
pub use user::TestUser;
pub use wait::eventually;
