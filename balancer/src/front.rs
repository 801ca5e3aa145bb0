//! The public listener's application: it looks at the first bytes of each request on a
//! connection (plain or TLS), hands an event stream's to the [`Relay`] (on a task of
//! its own, so that the connection's first task, and all it holds, ends) and every
//! other request to pingora's HTTP proxy, connection by connection as pingora itself
//! would.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use crate::lookahead::Lookahead;
use crate::proxy::Balancer;
use crate::relay::{is_stream_request, Relay, STREAM_REQUEST};

/// How long a kept-alive connection may wait for its next request (pingora's own).
const KEEPALIVE_SECS: u64 = 60;

pub struct Front {
    pub proxy: Arc<HttpProxy<Balancer>>,
    pub relay: Arc<Relay>,
}

/// What a connection's next request is.
enum Next {
    EventStream,
    Other,
    /// None came: the client left, or waited too long, or the balancer is stopping.
    Nothing,
}

/// Waits for the next request's first bytes, without taking them.
async fn next_request(connection: &mut Lookahead, shutdown: &mut ShutdownWatch) -> Next {
    let look = tokio::time::timeout(
        Duration::from_secs(KEEPALIVE_SECS),
        connection.look(STREAM_REQUEST.len() + 1),
    );
    tokio::select! {
        looked = look => match looked {
            Ok(Ok(first)) if is_stream_request(first) => Next::EventStream,
            Ok(Ok(_)) => Next::Other,
            Ok(Err(_)) | Err(_) => Next::Nothing,
        },
        _ = shutdown.changed() => Next::Nothing,
    }
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if stream.selected_alpn_proto() == Some(ALPN::H2) {
            // Not offered; should a client get it, pingora serves HTTP/2 itself.
            return self.proxy.process_new(stream, shutdown).await;
        }
        let mut connection = Lookahead::new(stream);
        let mut watch = shutdown.clone();
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            match next_request(&mut connection, &mut watch).await {
                Next::EventStream => {
                    let relay = Arc::clone(&self.relay);
                    tokio::spawn(async move { relay.serve(Box::new(connection), watch).await });
                    return None;
                }
                Next::Other => {}
                Next::Nothing => return None,
            }
            let mut session = ServerSession::new_http1(Box::new(connection));
            if let Some(settings) = settings.take() {
                settings.apply_to_session(&mut session);
            } else if first {
                // As pingora sets up a connection's first request.
                let stopping = *shutdown.borrow();
                session.set_keepalive((!stopping).then_some(KEEPALIVE_SECS));
                session.set_keepalive_reuses_remaining(
                    self.proxy
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                );
            }
            first = false;
            // Pipelining stays off (pingora's default), so no part of the next request
            // is held anywhere but in the connection, where the next look finds it.
            let reused = self.proxy.process_new_http(session, shutdown).await?;
            let (stream, next_settings) = reused.consume();
            settings = next_settings;
            connection = Lookahead::recover(stream).unwrap_or_else(Lookahead::new);
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}
