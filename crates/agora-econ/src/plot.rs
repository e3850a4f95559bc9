//! SVG figures (plotters' SVG backend: text is left to the viewer, so no fonts are needed).

use std::path::Path;

use plotters::prelude::*;

use crate::record::{pearson, RunRecord};
use crate::EconError;

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const HONEST: RGBColor = RGBColor(31, 119, 180);
const DISHONEST: RGBColor = RGBColor(214, 39, 40);

/// A labelled, coloured line.
type Line = (String, RGBColor, Vec<(f64, f64)>);
/// A labelled bar metric.
type Bar = (&'static str, fn(&RunRecord) -> f64);

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

pub(crate) fn err<E: std::fmt::Display>(e: E) -> EconError {
    EconError::Plot(e.to_string())
}

fn max_or(v: impl Iterator<Item = f64>, floor: f64) -> f64 {
    v.fold(floor, f64::max) * 1.05
}

/// One line chart on `area`: `(label, points)` per series.
fn lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    series: &[Line],
) -> Result<(), EconError>
where
    DB::ErrorType: 'static,
{
    let xmax = max_or(series.iter().flat_map(|s| s.2.iter().map(|p| p.0)), 1.0);
    let ymax = max_or(series.iter().flat_map(|s| s.2.iter().map(|p| p.1)), 1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("block")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (label, c, pts) in series {
        let c = *c;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The runs of one mechanism, one per variant, in variant order.
fn per_variant<'a>(runs: &'a [RunRecord], mech: &str) -> Vec<&'a RunRecord> {
    runs.iter().filter(|r| r.mechanism.name() == mech).collect()
}

/// Write every figure of a scenario into `dir`. Returns the file names written.
pub fn write_plots(dir: &Path, runs: &[RunRecord]) -> Result<Vec<String>, EconError> {
    let mut written = Vec::new();
    let Some(first_market) = runs.iter().find(|r| r.mechanism.is_market()) else {
        return Ok(written);
    };
    let mech = first_market.mechanism.name();
    let mine = per_variant(runs, mech);

    // Active participants and cumulative reward per variant (the paper's Figure 2).
    let name = "active_and_reward.svg";
    let path = dir.join(name);
    let root = SVGBackend::new(&path, (900, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(400);
    let active: Vec<_> = mine
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let pts = r
                .series
                .iter()
                .map(|s| (s.block as f64, s.active as f64))
                .collect();
            (r.variant.clone(), color(i), pts)
        })
        .collect();
    lines(
        &top,
        &format!("Active coprocessors over time ({mech})"),
        "active",
        &active,
    )?;
    let reward: Vec<_> = mine
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let pts = r
                .series
                .iter()
                .map(|s| (s.block as f64, s.cumulative_reward))
                .collect();
            (r.variant.clone(), color(i), pts)
        })
        .collect();
    lines(&bottom, "Cumulative reward over time", "reward", &reward)?;
    root.present().map_err(err)?;
    written.push(name.to_owned());

    let name = "active_dishonest.svg";
    let path = dir.join(name);
    let root = SVGBackend::new(&path, (900, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let series: Vec<_> = mine
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let pts = r
                .series
                .iter()
                .map(|s| (s.block as f64, s.active_dishonest as f64))
                .collect();
            (r.variant.clone(), color(i), pts)
        })
        .collect();
    lines(
        &root,
        &format!("Active dishonest coprocessors ({mech})"),
        "active dishonest",
        &series,
    )?;
    root.present().map_err(err)?;
    written.push(name.to_owned());

    // Rewards of a sample of participants (Figure 3).
    let name = "participant_rewards.svg";
    let path = dir.join(name);
    let root = SVGBackend::new(&path, (900, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let series: Vec<_> = first_market
        .samples
        .iter()
        .enumerate()
        .map(|(k, (idx, honest, v))| {
            let label = format!("c{idx} ({})", if *honest { "honest" } else { "dishonest" });
            // Dishonest in red; honest in the other palette colours.
            let c = if *honest {
                color(if k % 9 >= 3 { k % 9 + 1 } else { k % 9 })
            } else {
                DISHONEST
            };
            let pts = v
                .iter()
                .enumerate()
                .map(|(b, e)| ((b + 1) as f64, *e))
                .collect();
            (label, c, pts)
        })
        .collect();
    lines(
        &root,
        &format!(
            "Rewards of sampled coprocessors ({}, {mech})",
            first_market.variant
        ),
        "earned",
        &series,
    )?;
    root.present().map_err(err)?;
    written.push(name.to_owned());

    // Reputation versus total reward (Figure 4).
    let name = "reputation_vs_reward.svg";
    let pts: Vec<(f64, f64, bool)> = first_market
        .finals
        .iter()
        .filter_map(|c| c.reputation.map(|r| (r, c.earned, c.honest)))
        .collect();
    let r = pearson(
        &pts.iter().map(|p| p.0).collect::<Vec<_>>(),
        &pts.iter().map(|p| p.1).collect::<Vec<_>>(),
    );
    let path = dir.join(name);
    let root = SVGBackend::new(&path, (800, 550)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ymax = max_or(pts.iter().map(|p| p.1), 1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Reputation vs total reward ({}, {mech}), Pearson r = {}",
                first_market.variant,
                r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "n/a".into())
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("reputation σ(f)")
        .y_desc("total reward")
        .draw()
        .map_err(err)?;
    for (honest, c, label) in [(true, HONEST, "honest"), (false, DISHONEST, "dishonest")] {
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.2 == honest)
                    .map(|p| Circle::new((p.0, p.1), 4, c.filled())),
            )
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    written.push(name.to_owned());

    written.push(task_graph(dir, first_market)?);
    written.push(baselines(dir, runs)?);
    Ok(written)
}

/// Clients and coprocessors on a circle; an edge per (client, coprocessor) pair that did work,
/// wider for more jobs (Figure 5). At most 5 clients and their 10 busiest coprocessors.
fn task_graph(dir: &Path, run: &RunRecord) -> Result<String, EconError> {
    let name = "task_graph.svg";
    let clients: Vec<u32> = {
        let mut c: Vec<u32> = run.edges.iter().map(|e| e.0).collect();
        c.dedup();
        c.truncate(5);
        c
    };
    let mut per_cop: std::collections::BTreeMap<u32, u32> = Default::default();
    for (cl, cp, k) in &run.edges {
        if clients.contains(cl) {
            *per_cop.entry(*cp).or_default() += k;
        }
    }
    let mut cops: Vec<(u32, u32)> = per_cop.into_iter().collect();
    cops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    cops.truncate(10);
    let mut cops: Vec<u32> = cops.into_iter().map(|c| c.0).collect();
    cops.sort();
    let path = dir.join(name);
    let root = SVGBackend::new(&path, (700, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    root.draw(&Text::new(
        format!(
            "Task graph ({}, {}): clients (squares) to coprocessors (circles)",
            run.variant,
            run.mechanism.name()
        ),
        (20, 15),
        ("sans-serif", 16),
    ))
    .map_err(err)?;
    let n = clients.len() + cops.len();
    let (cx, cy, rad) = (350.0, 370.0, 270.0);
    let pos = |i: usize| -> (i32, i32) {
        let a = std::f64::consts::TAU * i as f64 / n.max(1) as f64;
        ((cx + rad * a.cos()) as i32, (cy + rad * a.sin()) as i32)
    };
    let maxw = run
        .edges
        .iter()
        .filter(|(cl, cp, _)| clients.contains(cl) && cops.contains(cp))
        .map(|e| e.2)
        .max()
        .unwrap_or(1)
        .max(1);
    for (cl, cp, k) in &run.edges {
        let (Some(a), Some(b)) = (
            clients.iter().position(|c| c == cl),
            cops.iter().position(|c| c == cp),
        ) else {
            continue;
        };
        let w = 1 + 6 * k / maxw;
        root.draw(&PathElement::new(
            vec![pos(a), pos(clients.len() + b)],
            color(a).mix(0.6).stroke_width(w),
        ))
        .map_err(err)?;
    }
    for (i, cl) in clients.iter().enumerate() {
        let (x, y) = pos(i);
        root.draw(&Rectangle::new(
            [(x - 12, y - 12), (x + 12, y + 12)],
            color(i).filled(),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            format!("client {cl}"),
            (x + 14, y - 20),
            ("sans-serif", 13),
        ))
        .map_err(err)?;
    }
    for (j, cp) in cops.iter().enumerate() {
        let (x, y) = pos(clients.len() + j);
        let honest = run.finals.get(*cp as usize).is_none_or(|c| c.honest);
        let c = if honest { HONEST } else { DISHONEST };
        root.draw(&Circle::new((x, y), 10, c.filled()))
            .map_err(err)?;
        root.draw(&Text::new(
            format!("c{cp}"),
            (x + 12, y + 4),
            ("sans-serif", 13),
        ))
        .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(name.to_owned())
}

/// Completion, wrong-accepted share, load balance and client cost per mechanism, first variant.
fn baselines(dir: &Path, runs: &[RunRecord]) -> Result<String, EconError> {
    let name = "mechanisms.svg";
    let variant = runs.first().map(|r| r.variant.clone()).unwrap_or_default();
    let rows: Vec<&RunRecord> = runs.iter().filter(|r| r.variant == variant).collect();
    let m = rows.len().max(1);
    let path = dir.join(name);
    let root = SVGBackend::new(&path, (900, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(430);
    let labels: Vec<String> = rows.iter().map(|r| r.mechanism.name().to_owned()).collect();
    let fmt = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 0.01 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("Mechanisms on the same job stream ({variant})"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..(m as f64 - 0.5), 0f64..1.3f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(m * 4 + 1)
        .x_label_formatter(&fmt)
        .draw()
        .map_err(err)?;
    let bars: [Bar; 3] = [
        ("completion rate", |r| r.metrics.completion_rate),
        ("wrong results accepted (share)", |r| {
            r.metrics.wrong_accepted_share
        }),
        ("Jain's index (utilisation)", |r| r.metrics.jain_utilisation),
    ];
    for (k, (label, f)) in bars.iter().enumerate() {
        let c = color(k);
        let off = -0.3 + 0.2 * k as f64;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let x = i as f64 + off;
                Rectangle::new([(x - 0.09, 0.0), (x + 0.09, f(r))], c.filled())
            }))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    let cmax = max_or(rows.iter().map(|r| r.metrics.client_cost_per_job), 1.0);
    let mut chart = ChartBuilder::on(&bottom)
        .caption("Client cost per completed job", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(m as f64 - 0.5), 0f64..cmax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(m * 4 + 1)
        .x_label_formatter(&fmt)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let x = i as f64;
            Rectangle::new(
                [(x - 0.2, 0.0), (x + 0.2, r.metrics.client_cost_per_job)],
                color(4).filled(),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(name.to_owned())
}
