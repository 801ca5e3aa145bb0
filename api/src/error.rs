//! The one error type of every handler. A client's mistake is an [`ApiError::Problem`]
//! with a stable `code`, answered as RFC 9457 problem details; anything else is
//! [`ApiError::Internal`], logged in full and answered with a plain 500.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{error, HttpRequest, HttpResponse, ResponseError};
use fastchat_protocol::wire::{Problem, PROBLEM_CONTENT_TYPE};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{code}: {detail}")]
    Problem {
        status: StatusCode,
        code: &'static str,
        detail: String,
        retry_after_secs: Option<u64>,
    },
    /// 409 `recipients_mismatch`: the envelope's keys must cover exactly `members`.
    #[error("recipients_mismatch: {members:?}")]
    RecipientsMismatch { members: Vec<String> },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The answer to each of `count` batched requests when the batch as a whole failed
    /// (no connection, say): every request hears why, as 503.
    pub fn for_each_of<T>(&self, count: usize) -> Vec<Result<T, ApiError>> {
        let cause = self.to_string();
        (0..count)
            .map(|_| Err(ApiError::Unavailable(cause.clone())))
            .collect()
    }

    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Problem {
            status,
            code,
            detail: detail.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError::Problem {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_attempts",
            detail: detail.into(),
            retry_after_secs: Some(retry_after_secs.max(1)),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Problem { code, .. } => code,
            ApiError::RecipientsMismatch { .. } => "recipients_mismatch",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

/// Builds a problem answer; also used for errors raised outside handlers (bad JSON,
/// unknown routes).
pub fn problem_response(status: StatusCode, code: &str, detail: Option<String>) -> HttpResponse {
    respond(problem(status, code, detail))
}

fn problem(status: StatusCode, code: &str, detail: Option<String>) -> Problem {
    Problem {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        code: code.to_owned(),
        detail,
        members: None,
    }
}

fn respond(body: Problem) -> HttpResponse {
    let status = StatusCode::from_u16(body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(PROBLEM_CONTENT_TYPE)
        .json(body)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Problem { status, .. } => *status,
            ApiError::RecipientsMismatch { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let detail = match self {
            ApiError::Problem { detail, .. } => Some(detail.clone()),
            ApiError::RecipientsMismatch { members } => {
                let mut body = problem(
                    self.status_code(),
                    self.code(),
                    Some(
                        "the envelope must carry a key for exactly the conversation's members"
                            .into(),
                    ),
                );
                body.members = Some(members.clone());
                return respond(body);
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "answering 503");
                Some("the service is temporarily unavailable; try again".to_owned())
            }
            ApiError::Internal(cause) => {
                tracing::error!(cause = format!("{cause:#}"), "internal error");
                None
            }
        };
        let mut response = problem_response(self.status_code(), self.code(), detail);
        match self {
            ApiError::Problem {
                status: StatusCode::UNAUTHORIZED,
                ..
            } => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"fastchat\""),
                );
            }
            ApiError::Problem {
                retry_after_secs: Some(secs),
                ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            _ => {}
        }
        response
    }
}

/// Maps actix's JSON extractor failures to problems: 413 for a body over the limit,
/// 415 for a wrong content type, 400 for anything unreadable.
pub fn json_error(err: error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use error::JsonPayloadError as E;
    let api = match &err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is larger than this server accepts",
        ),
        E::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        E::Deserialize(cause) => ApiError::bad_request("malformed_json", cause.to_string()),
        _ => ApiError::bad_request("malformed_json", "the request body could not be read"),
    };
    api.into()
}

pub fn query_error(err: error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", err.to_string()).into()
}

pub fn path_error(err: error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_path", err.to_string()).into()
}

pub async fn not_found() -> HttpResponse {
    problem_response(
        StatusCode::NOT_FOUND,
        "not_found",
        Some("no such endpoint".to_owned()),
    )
}

pub async fn method_not_allowed() -> HttpResponse {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        Some("this endpoint does not take that method".to_owned()),
    )
}
