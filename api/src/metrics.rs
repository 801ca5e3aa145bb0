//! The server's Prometheus metrics.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::db::PgPool;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    /// Event streams this server is feeding.
    pub streams_open: IntGauge,
    /// Requests served together, per batch, by kind (see `batch`).
    pub batch_sizes: HistogramVec,
    pub batch_waits: HistogramVec,
    pub batch_serving: HistogramVec,
    /// Events sent on streams as their notification carried them, with no read.
    pub events_pushed: IntCounter,
    /// Events sent on streams after reading them from the inbox.
    pub events_read: IntCounter,
    /// From a stream's wake-up to its event handed to the response, pushed and read.
    pub pushed_delays: Histogram,
    pub read_delays: Histogram,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new_custom(Some("fastchat".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request",
            ),
            &["method", "route"],
        )?;
        let pool_connections = IntGauge::new("db_pool_connections", "Open database connections")?;
        let pool_idle = IntGauge::new("db_pool_idle_connections", "Idle database connections")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        let streams_open = IntGauge::new("sse_streams_open", "Open event streams")?;
        registry.register(Box::new(pool_idle.clone()))?;
        registry.register(Box::new(streams_open.clone()))?;
        let batch_sizes = HistogramVec::new(
            HistogramOpts::new("batch_size", "Requests served together by one batch").buckets(
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ],
            ),
            &["kind"],
        )?;
        registry.register(Box::new(batch_sizes.clone()))?;
        let batch_waits = HistogramVec::new(
            HistogramOpts::new(
                "batch_wait_seconds",
                "Time a request waited in its batcher's queue until its batch was taken",
            )
            .buckets(prometheus::exponential_buckets(0.000_1, 2.0, 15)?),
            &["kind"],
        )?;
        registry.register(Box::new(batch_waits.clone()))?;
        let batch_serving = HistogramVec::new(
            HistogramOpts::new("batch_seconds", "Time one batch took to serve")
                .buckets(prometheus::exponential_buckets(0.000_1, 2.0, 15)?),
            &["kind"],
        )?;
        registry.register(Box::new(batch_serving.clone()))?;
        let stream_events = IntCounterVec::new(
            Opts::new(
                "sse_events_total",
                "Events sent on event streams, by where they came from",
            ),
            &["source"],
        )?;
        registry.register(Box::new(stream_events.clone()))?;
        let event_delays = HistogramVec::new(
            HistogramOpts::new(
                "sse_event_delay_seconds",
                "Time from an event stream's wake-up to its event handed to the response, \
                 by where the event came from",
            )
            .buckets(prometheus::exponential_buckets(0.000_01, 2.0, 20)?),
            &["source"],
        )?;
        registry.register(Box::new(event_delays.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool_connections,
            pool_idle,
            streams_open,
            batch_sizes,
            batch_waits,
            batch_serving,
            events_pushed: stream_events.with_label_values(&["pushed"]),
            events_read: stream_events.with_label_values(&["inbox"]),
            pushed_delays: event_delays.with_label_values(&["pushed"]),
            read_delays: event_delays.with_label_values(&["inbox"]),
        })
    }

    /// Counts an answered request. `route` is the route's pattern, never the raw path:
    /// that would let clients create unbounded label sets.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    pub fn observe_pool(&self, pool: &PgPool) {
        let state = pool.state();
        self.pool_connections.set(i64::from(state.connections));
        self.pool_idle.set(i64::from(state.idle_connections));
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on a malformed metric, which we never build.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
