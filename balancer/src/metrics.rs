//! The balancer's own Prometheus metrics, answered at `/metrics` on the admin listener.

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::pool::Pool;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    /// Requests answered by the balancer itself, by reason.
    pub refused: IntCounterVec,
    streams: IntGaugeVec,
    inflight: IntGaugeVec,
    healthy: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("fastchat_balancer".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests proxied, by server and status"),
            &["backend", "status"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "errors_total",
                "Requests that failed, by server (none: no server)",
            ),
            &["backend"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "refused_total",
                "Requests refused without reaching a server, by reason \
                 (signup, login, request: over a rate limit; no_server, busy, upstream: 503)",
            ),
            &["reason"],
        )?;
        let streams = IntGaugeVec::new(
            Opts::new("open_streams", "Open event streams"),
            &["backend"],
        )?;
        let inflight = IntGaugeVec::new(
            Opts::new("inflight_requests", "Requests in flight"),
            &["backend"],
        )?;
        let healthy = IntGaugeVec::new(
            Opts::new(
                "backend_healthy",
                "1 if the server passes its health checks",
            ),
            &["backend"],
        )?;
        for metric in [&requests, &errors, &refused] {
            registry.register(Box::new(metric.clone()))?;
        }
        for metric in [&streams, &inflight, &healthy] {
            registry.register(Box::new(metric.clone()))?;
        }
        Ok(Self {
            registry,
            requests,
            errors,
            refused,
            streams,
            inflight,
            healthy,
        })
    }

    /// Copies the pool's live numbers into the gauges.
    pub fn observe(&self, pool: &Pool) {
        self.streams.reset();
        self.inflight.reset();
        self.healthy.reset();
        for backend in pool.all() {
            let label = backend.addr.to_string();
            self.streams
                .with_label_values(&[label.as_str()])
                .set(backend.streams());
            self.inflight
                .with_label_values(&[label.as_str()])
                .set(backend.inflight());
            self.healthy
                .with_label_values(&[label.as_str()])
                .set(i64::from(backend.is_healthy()));
        }
    }

    pub fn render(&self, pool: &Pool) -> String {
        self.observe(pool);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
