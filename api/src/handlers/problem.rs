//! Errors as HTTP answers: RFC 9457 problem documents with the error's stable `code`,
//! for handlers' errors and for what actix refuses before a handler runs (bodies, queries
//! and paths that cannot be read, unknown routes and methods).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{error, HttpRequest, HttpResponse, ResponseError};
use fastchat_protocol::problem::{ErrorCode, Problem, PROBLEM_CONTENT_TYPE};

use crate::error::ApiError;

fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn problem(code: ErrorCode, detail: Option<String>) -> Problem {
    let status = status_of(code);
    Problem {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        code,
        detail,
        members: None,
    }
}

fn respond(body: &Problem) -> HttpResponse {
    HttpResponse::build(status_of(body.code))
        .content_type(PROBLEM_CONTENT_TYPE)
        .json(body)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        let mut body = problem(code, None);
        match self {
            ApiError::Problem { detail, .. } => body.detail = Some(detail.clone()),
            ApiError::RecipientsMismatch { members } => {
                body.detail = Some(
                    "the envelope must carry a key for exactly the conversation's members".into(),
                );
                body.members = Some(members.clone());
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "answering 503");
                body.detail = Some("the service is temporarily unavailable; try again".into());
            }
            ApiError::Internal(cause) => {
                tracing::error!(cause = format!("{cause:#}"), "internal error");
            }
        }
        let mut response = respond(&body);
        let headers = response.headers_mut();
        if code.status() == 401 {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fastchat\""),
            );
        }
        match self {
            ApiError::Problem {
                retry_after_secs: Some(secs),
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            ApiError::Unavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(ApiError::RETRY_UNAVAILABLE_SECS),
                );
            }
            _ => {}
        }
        response
    }
}

/// JSON extractor failures: 413 for a body over the limit, 415 for a wrong content
/// type, 400 for anything unreadable.
pub fn json_error(err: error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use error::JsonPayloadError as E;
    let api = match &err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => ApiError::body_too_large(),
        E::ContentType => ApiError::unsupported_media_type("application/json"),
        E::Deserialize(cause) => ApiError::malformed_json(cause.to_string()),
        _ => ApiError::malformed_json("the request body could not be read"),
    };
    api.into()
}

pub fn query_error(err: error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::invalid_query(err.to_string()).into()
}

pub fn path_error(err: error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::invalid_path(err.to_string()).into()
}

pub async fn not_found() -> HttpResponse {
    ApiError::not_found().error_response()
}

/// 405 for a method the resource does not take; `Allow` names those it does (RFC 9110).
pub async fn method_not_allowed(allowed: &'static [&'static str]) -> HttpResponse {
    let mut response = ApiError::method_not_allowed().error_response();
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
