//! Latency distributions as the report shows them.

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// (latency in ms, fraction at or below it), about a hundred points.
pub fn cdf(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, f64)> = (0..=100)
        .map(|i| {
            let q = 1.0 - 0.5f64.powf(f64::from(i) / 8.0);
            (ms(h.value_at_quantile(q)), q)
        })
        .collect();
    points.push((ms(h.max()), 1.0));
    points.dedup_by(|a, b| a.0 == b.0);
    points
}
