//! The live event stream (`GET /v1/events`), reconnecting on its own with
//! `Last-Event-ID` so that nothing is skipped or repeated across reconnects.

use std::time::Duration;

use eventsource_client::{self as es, Client as _, ReconnectOptions, SSE};
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::Event;
use futures_util::{Stream, StreamExt};
use launchdarkly_sdk_transport::HyperTransport;

use crate::error::{CliError, Result};
use crate::net::client::Dropped;
use crate::net::tls::Tls;

/// Longer than the server's keep-alive interval, so a silent server is noticed.
const READ_TIMEOUT: Duration = Duration::from_secs(45);

/// What the stream yields: a (re)connection, a lost connection (it reconnects on its
/// own), an event, or an event that could not be decoded (dropped; the stream goes on).
pub enum Item {
    Connected,
    Lost(String),
    Event(Box<Event>),
    Dropped(Dropped),
}

/// Events after `after` (or, with `None`, those that arrive from now on).
pub fn events(
    server: &str,
    tls: Option<&Tls>,
    token: &str,
    after: Option<i64>,
) -> Result<impl Stream<Item = Result<Item>> + Unpin> {
    let config = match tls {
        Some(tls) => tls.client_config(),
        None => Tls::without_roots()?.client_config(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    let transport = HyperTransport::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(READ_TIMEOUT)
        .build_with_connector(connector)
        .map_err(|e| CliError::local("setting up the event stream", e))?;
    let usage = |e: es::Error| CliError::Usage(format!("the server URL {server:?}: {e}"));
    let mut builder = es::ClientBuilder::for_url(&format!("{server}/v1/events"))
        .map_err(usage)?
        .header("Authorization", &format!("Bearer {token}"))
        .map_err(|_| CliError::Auth("the saved token is damaged: log in again".into()))?
        .reconnect(
            ReconnectOptions::reconnect(true)
                .retry_initial(true)
                .delay(Duration::from_millis(200))
                .backoff_factor(2)
                .delay_max(Duration::from_secs(5))
                .build(),
        );
    if let Some(after) = after {
        builder = builder.last_event_id(after.to_string());
    }
    let client = builder.build_with_transport(transport);
    let stream = client.stream().filter_map(|item| async move {
        match item {
            Ok(SSE::Event(event)) => Some(Ok(match serde_json::from_str::<Event>(&event.data) {
                Ok(decoded) => Item::Event(Box::new(decoded)),
                Err(e) => Item::Dropped(Dropped {
                    seq: event.id.as_deref().and_then(|id| id.parse().ok()),
                    reason: e.to_string(),
                }),
            })),
            Ok(SSE::Connected(_)) => Some(Ok(Item::Connected)),
            Ok(SSE::Comment(_)) => None,
            Err(es::Error::UnexpectedResponse(response, _)) => match response.status() {
                401 => Some(Err(CliError::Auth(
                    "your session has expired or was ended: run `fastchat login` again".into(),
                ))),
                status @ 400..=499 => Some(Err(CliError::Server {
                    status,
                    code: ErrorCode::Unknown,
                    detail: format!("the server refused the event stream ({status})"),
                })),
                // 5xx: the client retries on its own.
                status => Some(Ok(Item::Lost(format!("the server answered {status}")))),
            },
            // Connection lost or timed out: the client reconnects with Last-Event-ID.
            Err(e) => Some(Ok(Item::Lost(lost_because(&e)))),
        }
    });
    Ok(Box::pin(stream))
}

/// A lost connection's cause in a few words.
fn lost_because(error: &es::Error) -> String {
    const CUT: &str = "the connection was cut";
    if matches!(error, es::Error::TimedOut) {
        return "timed out".into();
    }
    match error
        .source()
        .map(|inner| crate::net::client::unreachable_error("", inner))
    {
        Some(CliError::Tls { cause, .. }) => cause,
        Some(CliError::Unreachable { cause, .. })
            if [
                "connection refused",
                "the connection was reset",
                "timed out",
            ]
            .contains(&cause.as_str()) =>
        {
            cause
        }
        _ => CUT.into(),
    }
}
