//! The balancer's own answers, as the api's: RFC 9457 problem documents with the codes
//! every FastChat client knows.

use std::time::Duration;

use bytes::Bytes;
use fastchat_protocol::problem::{ErrorCode, Problem, PROBLEM_CONTENT_TYPE};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Writes a problem answer with `code` (and its status), and `Retry-After` if given.
pub async fn respond(
    session: &mut Session,
    code: ErrorCode,
    detail: &str,
    retry_after: Option<Duration>,
) -> Result<()> {
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
    let body = Bytes::from(serde_json::to_vec(&problem).unwrap_or_default());
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header("content-type", PROBLEM_CONTENT_TYPE)?;
    header.insert_header("content-length", body.len().to_string())?;
    if let Some(wait) = retry_after {
        // Whole seconds, rounded up: never 0.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        header.insert_header("retry-after", secs.max(1).to_string())?;
    }
    session.set_keepalive(None);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}
