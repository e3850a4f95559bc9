//! Figures of a parameter sweep: one heatmap per metric (cells over two swept market keys, a
//! panel per mechanism and per value of any further key) and the trade-off between balance and
//! price that the grid traces.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::plot::err;
use crate::record::RunRecord;
use crate::EconError;

/// `key=value` pairs of a sweep label ("load_gamma=1 load_kappa=2 ..."), in label order.
fn point(label: &str) -> Vec<(String, String)> {
    label
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A metric drawn as a heatmap: its title, and its value for a run given the variant's
/// lowest-price baseline (for ratios).
type Metric = (
    &'static str,
    &'static str,
    fn(&RunRecord, Option<&RunRecord>) -> Option<f64>,
);

const METRICS: [Metric; 3] = [
    (
        "heatmap_jain.svg",
        "Jain's index over honest utilisation",
        |r, _| Some(r.metrics.jain_honest),
    ),
    (
        "heatmap_cost.svg",
        "Cost per correct result / lowest-price baseline's",
        |r, low| {
            let low = low?.metrics.client_cost_per_correct;
            (low > 0.0).then(|| r.metrics.client_cost_per_correct / low)
        },
    ),
    ("heatmap_completion.svg", "Completion rate", |r, _| {
        Some(r.metrics.completion_rate)
    }),
];

/// Blue (low) to red (high) over `[lo, hi]`.
fn shade(x: f64, lo: f64, hi: f64) -> RGBColor {
    let t = if hi > lo {
        ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.5
    };
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(49.0, 215.0), mix(130.0, 48.0), mix(189.0, 39.0))
}

fn sort_numeric(v: &mut [String]) {
    v.sort_by(|a, b| {
        let (x, y) = (a.parse::<f64>(), b.parse::<f64>());
        match (x, y) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => a.cmp(b),
        }
    });
}

/// Heatmaps over (`x_key`, `y_key`) and the trade-off scatter, when the runs form such a grid.
/// Returns the files written (none when the labels are not a sweep over both keys).
pub fn write_sweep_figures(
    dir: &Path,
    runs: &[RunRecord],
    x_key: &str,
    y_key: &str,
) -> Result<Vec<String>, EconError> {
    let grid: Vec<(&RunRecord, Vec<(String, String)>)> = runs
        .iter()
        .map(|r| (r, point(&r.variant)))
        .filter(|(_, p)| p.iter().any(|(k, _)| k == x_key) && p.iter().any(|(k, _)| k == y_key))
        .collect();
    if grid.is_empty() {
        return Ok(Vec::new());
    }
    let value_of = |p: &[(String, String)], key: &str| {
        p.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // Panels: mechanism × the other keys' values.
    let panel_of = |r: &RunRecord, p: &[(String, String)]| {
        let rest: Vec<String> = p
            .iter()
            .filter(|(k, _)| k != x_key && k != y_key)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} {}", r.mechanism.name(), rest.join(" "))
    };
    let mut xs: Vec<String> = grid.iter().map(|(_, p)| value_of(p, x_key)).collect();
    let mut ys: Vec<String> = grid.iter().map(|(_, p)| value_of(p, y_key)).collect();
    sort_numeric(&mut xs);
    xs.dedup();
    sort_numeric(&mut ys);
    ys.dedup();
    let lowest: BTreeMap<&str, &RunRecord> = runs
        .iter()
        .filter(|r| r.mechanism.name() == "lowest_price")
        .map(|r| (r.variant.as_str(), r))
        .collect();
    let mut panels: BTreeMap<String, Vec<(usize, usize, &RunRecord)>> = BTreeMap::new();
    for (r, p) in &grid {
        if !r.mechanism.is_market() {
            continue;
        }
        let xi = xs
            .iter()
            .position(|x| *x == value_of(p, x_key))
            .unwrap_or(0);
        let yi = ys
            .iter()
            .position(|y| *y == value_of(p, y_key))
            .unwrap_or(0);
        panels.entry(panel_of(r, p)).or_default().push((xi, yi, r));
    }
    if panels.is_empty() {
        return Ok(Vec::new());
    }
    let mut written = Vec::new();
    let cols = 2usize.min(panels.len());
    let rows = panels.len().div_ceil(cols);
    for (name, title, f) in METRICS {
        let path = dir.join(name);
        let root =
            SVGBackend::new(&path, (480 * cols as u32, 360 * rows as u32 + 40)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (head, body) = root.split_vertically(40);
        head.draw_text(title, &("sans-serif", 20).into_text_style(&head), (10, 10))
            .map_err(err)?;
        let values: Vec<f64> = panels
            .values()
            .flatten()
            .filter_map(|(_, _, r)| f(r, lowest.get(r.variant.as_str()).copied()))
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let areas = body.split_evenly((rows, cols));
        for ((panel, cells), area) in panels.iter().zip(areas.iter()) {
            let mut chart = ChartBuilder::on(area)
                .caption(panel, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(0f64..xs.len() as f64, 0f64..ys.len() as f64)
                .map_err(err)?;
            let xf = |v: &f64| xs.get(v.floor() as usize).cloned().unwrap_or_default();
            let yf = |v: &f64| ys.get(v.floor() as usize).cloned().unwrap_or_default();
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(x_key)
                .y_desc(y_key)
                .x_labels(xs.len() * 2 + 1)
                .y_labels(ys.len() * 2 + 1)
                .x_label_formatter(&|v| {
                    if (v.fract() - 0.5).abs() < 0.01 {
                        xf(v)
                    } else {
                        String::new()
                    }
                })
                .y_label_formatter(&|v| {
                    if (v.fract() - 0.5).abs() < 0.01 {
                        yf(v)
                    } else {
                        String::new()
                    }
                })
                .draw()
                .map_err(err)?;
            for (xi, yi, r) in cells {
                let Some(v) = f(r, lowest.get(r.variant.as_str()).copied()) else {
                    continue;
                };
                let (x, y) = (*xi as f64, *yi as f64);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        shade(v, lo, hi).filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{v:.2}"),
                        (x + 0.3, y + 0.6),
                        ("sans-serif", 14).into_font().color(&WHITE),
                    )))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
        written.push(name.to_owned());
    }
    written.push(tradeoff(dir, runs, &lowest)?);
    Ok(written)
}

/// Balance against price for every run of the grid: the frontier the settings trace.
fn tradeoff(
    dir: &Path,
    runs: &[RunRecord],
    lowest: &BTreeMap<&str, &RunRecord>,
) -> Result<String, EconError> {
    let name = "tradeoff.svg";
    let path = dir.join(name);
    let root = SVGBackend::new(&path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let pts: Vec<(&str, f64, f64)> = runs
        .iter()
        .filter_map(|r| {
            let low = lowest
                .get(r.variant.as_str())?
                .metrics
                .client_cost_per_correct;
            (low > 0.0).then(|| {
                (
                    r.mechanism.name(),
                    r.metrics.client_cost_per_correct / low,
                    r.metrics.jain_honest,
                )
            })
        })
        .collect();
    let xmax = pts.iter().map(|p| p.1).fold(1.5, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Balance against price: every setting of the grid",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.8f64..xmax, 0f64..1f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("cost per correct result / lowest-price baseline's (same curve)")
        .y_desc("Jain's index, honest utilisation")
        .draw()
        .map_err(err)?;
    let kinds = [
        ("dutch", RGBColor(31, 119, 180)),
        ("sealed", RGBColor(255, 127, 14)),
        ("random", RGBColor(127, 127, 127)),
        ("lowest_price", RGBColor(44, 160, 44)),
    ];
    for (kind, c) in kinds {
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.0 == kind)
                    .map(|p| Circle::new((p.1, p.2), 4, c.filled())),
            )
            .map_err(err)?
            .label(kind)
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(name.to_owned())
}
