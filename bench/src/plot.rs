//! The two plots: latency percentiles over offered rate, and latency CDFs.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::direct::DirectReport;
use crate::group::GroupReport;

const SIZE: (u32, u32) = (900, 540);
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

/// Log-scale bounds that hold every value (at least 0.1 ms to 1 s).
fn latency_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((0.1f64, 1000.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    lo * 0.8..hi * 1.25
}

pub fn percentiles(direct: &DirectReport, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let max_rate = direct
        .steps
        .iter()
        .map(|s| s.offered_rate)
        .max()
        .unwrap_or(1);
    let y = latency_range(
        direct
            .steps
            .iter()
            .flat_map(|s| [s.latency.p50_ms, s.latency.max_ms]),
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "One-to-one delivery latency over offered rate",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..f64::from(max_rate) * 1.05, y.log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("offered rate (messages/s)")
        .y_desc("latency (ms, log scale)")
        .draw()
        .map_err(plot_err)?;
    type Pick = fn(&crate::latency::Latency) -> f64;
    let series: [(&str, Pick); 4] = [
        ("p50", |l| l.p50_ms),
        ("p90", |l| l.p90_ms),
        ("p99", |l| l.p99_ms),
        ("max", |l| l.max_ms),
    ];
    for (i, (name, pick)) in series.into_iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = direct
            .steps
            .iter()
            .filter(|s| s.latency.count > 0)
            .map(|s| (f64::from(s.offered_rate), pick(&s.latency).max(0.001)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )
            .map_err(plot_err)?;
    }
    let limit = direct.p99_limit_ms;
    chart
        .draw_series(LineSeries::new(
            [(0.0, limit), (f64::from(max_rate) * 1.05, limit)],
            BLACK.mix(0.4),
        ))
        .map_err(plot_err)?
        .label(format!("{limit} ms"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

pub fn cdf(
    direct: Option<&DirectReport>,
    group: Option<&GroupReport>,
    path: &Path,
) -> anyhow::Result<()> {
    let mut curves: Vec<(String, &[(f64, f64)])> = Vec::new();
    if let Some(direct) = direct {
        // Every step would crowd the plot: a few, spread over the sweep, and the last.
        let n = direct.steps.len();
        let stride = n.div_ceil(5).max(1);
        for (i, step) in direct.steps.iter().enumerate() {
            if i % stride == 0 || i + 1 == n {
                curves.push((format!("1:1 at {} msg/s", step.offered_rate), &step.cdf));
            }
        }
    }
    if let Some(group) = group {
        curves.push((
            format!("group of {}: time to last member", group.members),
            &group.time_to_last_cdf,
        ));
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x = latency_range(curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)));
    let mut chart = ChartBuilder::on(&root)
        .caption("Delivery latency, cumulative", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x.log_scale(), 0f64..1.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction delivered")
        .draw()
        .map_err(plot_err)?;
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}
