//! The live event stream (`GET /v1/events`), reconnecting on its own with
//! `Last-Event-ID` so that nothing is skipped or repeated across reconnects.

use std::time::Duration;

use eventsource_client::{self as es, Client as _, ReconnectOptions, SSE};
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::Event;
use futures_util::{Stream, StreamExt};
use launchdarkly_sdk_transport::HyperTransport;

use crate::client::Dropped;
use crate::error::{CliError, Result};

/// Longer than the server's keep-alive interval, so a silent server is noticed.
const READ_TIMEOUT: Duration = Duration::from_secs(45);

/// What the stream yields: a (re)connection, an event, or an event that could not be
/// decoded (dropped; the stream goes on).
pub enum Item {
    Connected,
    Event(Box<Event>),
    Dropped(Dropped),
}

/// Events after `after` (or, with `None`, those that arrive from now on).
pub fn events(
    server: &str,
    token: &str,
    after: Option<i64>,
) -> Result<impl Stream<Item = Result<Item>> + Unpin> {
    let transport = HyperTransport::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(READ_TIMEOUT)
        .build_https()
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
                _ => None,
            },
            // Connection lost or timed out: the client reconnects with Last-Event-ID.
            Err(_) => None,
        }
    });
    Ok(Box::pin(stream))
}
