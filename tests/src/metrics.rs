//! Reading Prometheus text as the servers and the balancer print it.

/// The `/metrics` text at `base`, or `None` while nothing answers there.
pub async fn fetch_metrics(base: &str) -> Option<String> {
    reqwest::get(format!("{base}{}", crate::paths::METRICS))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// `(backend label, value)` for every sample of a metric with a `backend` label.
pub fn metric_values(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| {
            let backend = l.split("backend=\"").nth(1)?.split('"').next()?.to_owned();
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((backend, value))
        })
        .collect()
}

/// The sum of a metric's samples that carry `label="value"`.
pub fn metric_where(text: &str, name: &str, label: &str, value: &str) -> f64 {
    let wanted = format!("{label}=\"{value}\"");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            l.split('}')
                .next()
                .is_some_and(|labels| labels.contains(&wanted))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of an unlabelled metric (or the sum over its labels).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
