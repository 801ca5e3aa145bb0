//! Who is asking: the client's address, as the balancer saw it.

use std::net::IpAddr;

use actix_web::HttpRequest;

/// The header the balancer names the client's address in.
pub const CLIENT_HEADER: &str = "x-fastchat-client";

/// The address of the client that made `req`: from [`CLIENT_HEADER`] when the request
/// came from a trusted proxy (the balancer, which overwrites whatever a client sent),
/// else the peer's own.
pub fn client_address(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> String {
    let peer = req.peer_addr().map(|a| a.ip());
    let forwarded = peer
        .filter(|ip| trusted_proxies.contains(ip))
        .and_then(|_| req.headers().get(CLIENT_HEADER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    forwarded
        .or(peer)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}
