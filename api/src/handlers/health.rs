//! Probes for orchestrators and the balancer, and Prometheus metrics.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::db;
use crate::state::AppState;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the process can do useful work (its database answers).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if db::is_ready(&state.pool).await {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "database unreachable"}))
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.observe_pool(&state.pool);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
