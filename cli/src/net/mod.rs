//! Talking to a FastChat server: the HTTP API ([`client`]), the live event stream
//! ([`stream`]), and what both trust ([`tls`]: the system's roots plus `--ca-cert`,
//! and plain HTTP to loopback only unless `--insecure-http`).

pub mod client;
pub mod stream;
pub mod tls;
