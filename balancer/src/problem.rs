//! The balancer's own answers, as the api's: RFC 9457 problem documents with the codes
//! every FastChat client knows.

use std::time::Duration;

use bytes::Bytes;
use fastchat_protocol::problem::{ErrorCode, Problem, PROBLEM_CONTENT_TYPE};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// The problem document for `code`: its status and its body.
fn document(code: ErrorCode, detail: &str) -> (u16, Bytes) {
    let status = code.status();
    let problem = Problem {
        kind: "about:blank".to_owned(),
        title: http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
            .to_owned(),
        status,
        code,
        detail: Some(detail.to_owned()),
        members: None,
    };
    (
        status,
        Bytes::from(serde_json::to_vec(&problem).unwrap_or_default()),
    )
}

/// Whole seconds, rounded up: never 0.
fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Writes a problem answer with `code` (and its status), and `Retry-After` if given.
pub async fn respond(
    session: &mut Session,
    code: ErrorCode,
    detail: &str,
    retry_after: Option<Duration>,
) -> Result<()> {
    let (status, body) = document(code, detail);
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header("content-type", PROBLEM_CONTENT_TYPE)?;
    header.insert_header("content-length", body.len().to_string())?;
    if let Some(wait) = retry_after {
        header.insert_header("retry-after", retry_after_secs(wait).to_string())?;
    }
    session.set_keepalive(None);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// The same answer as [`respond`] writes, whole, as HTTP/1.1 bytes that close the
/// connection: for the event-stream relay, which has no HTTP session to write with.
pub fn response_bytes(code: ErrorCode, detail: &str, retry_after: Option<Duration>) -> Vec<u8> {
    let (status, body) = document(code, detail);
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(wait) = retry_after {
        head.push_str(&format!("retry-after: {}\r\n", retry_after_secs(wait)));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_answer_is_a_whole_problem_document_that_closes_the_connection() {
        let bytes = response_bytes(
            ErrorCode::Unavailable,
            "no FastChat api server is available",
            Some(Duration::from_millis(1500)),
        );
        let text = String::from_utf8(bytes).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nretry-after: 2"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let problem: Problem = serde_json::from_str(body).expect("a problem document");
        assert_eq!(problem.code, ErrorCode::Unavailable);
        assert_eq!(problem.status, 503);
    }
}
