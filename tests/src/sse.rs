//! A plain server-sent events reader, so tests can watch a stream byte by byte.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Value,
}

pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    /// Every `retry:` value and comment seen, for tests of the stream's framing.
    pub retry_hints: Vec<String>,
    pub comments: usize,
}

impl SseClient {
    /// Opens `GET /v1/events`; panics unless the server answers 200 with an event stream.
    pub async fn connect(
        base: &str,
        token: &str,
        last_event_id: Option<i64>,
        after: Option<i64>,
    ) -> Self {
        let stream = Self::try_connect(base, token, last_event_id, after)
            .await
            .expect("the event stream to open with 200");
        let content_type = stream
            .response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        stream
    }

    /// Like [`connect`](Self::connect), but `None` instead of a panic when the stream
    /// cannot be opened (a server or balancer that is going away).
    pub async fn try_connect(
        base: &str,
        token: &str,
        last_event_id: Option<i64>,
        after: Option<i64>,
    ) -> Option<Self> {
        let mut url = format!("{base}{}", crate::paths::EVENTS);
        if let Some(after) = after {
            url.push_str(&format!("?after={after}"));
        }
        let mut request = reqwest::Client::new().get(url).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.ok()?;
        (response.status() == 200).then(|| SseClient {
            response,
            buffer: String::new(),
            retry_hints: Vec::new(),
            comments: 0,
        })
    }

    /// The next event with data, or `None` if none comes within `wait` or the stream ends.
    pub async fn next_event(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Whether the server ends the stream within `wait` (events that come meanwhile are
    /// read and dropped).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None) | Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Parses complete blocks off the buffer until one carries data.
    fn take_event(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, Vec::new());
            for line in block.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                } else if let Some((field, value)) = line.split_once(':') {
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "id" => id = Some(value),
                        "event" => event = Some(value),
                        "data" => data.push(value),
                        "retry" => self.retry_hints.push(value),
                        _ => {}
                    }
                }
            }
            if !data.is_empty() {
                let data = serde_json::from_str(&data.join("\n")).expect("event data is JSON");
                return Some(SseEvent { id, event, data });
            }
        }
        None
    }
}
