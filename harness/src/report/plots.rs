//! The report's charts as SVG strings, drawn with plotters (SVG backend, no font
//! files: text is left to the browser): latency over time by op and outcome,
//! throughput over time, and which node acknowledged writes when. Every chart shades
//! and labels the fault intervals. Point counts are bounded (see [`MAX_POINTS`]).

use super::analysis::{self, Analysis, FaultSpan, Outcome, Paired};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Upper bound on scatter points drawn: failed and indeterminate ops are always
/// drawn; acknowledged ones are thinned by a fixed stride to stay under it.
pub const MAX_POINTS: usize = 8_000;

const W: u32 = 960;
const H: u32 = 340;
const FAULT_FILL: RGBColor = RGBColor(255, 205, 160);

fn color(o: Outcome) -> RGBColor {
    match o {
        Outcome::Ok => RGBColor(46, 125, 50),
        Outcome::Fail => RGBColor(198, 40, 40),
        Outcome::Info => RGBColor(239, 140, 0),
        Outcome::Open => RGBColor(120, 120, 120),
    }
}

type Err = String;

fn e<T: std::fmt::Display>(x: T) -> Err {
    x.to_string()
}

fn shade<DB: DrawingBackend, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    faults: &[FaultSpan],
    end: f64,
    (y0, y1, ylabel): (Y::ValueType, Y::ValueType, Y::ValueType),
) -> Result<(), Err>
where
    Y: Ranged,
    Y::ValueType: Copy + 'static,
{
    chart
        .draw_series(faults.iter().map(|f| {
            Rectangle::new(
                [(f.start, y0), (f.end.unwrap_or(end), y1)],
                FAULT_FILL.mix(0.45).filled(),
            )
        }))
        .map_err(e)?;
    chart
        .draw_series(faults.iter().enumerate().map(|(i, f)| {
            Text::new(
                format!("F{} {}", i + 1, f.label),
                (f.start, ylabel),
                ("sans-serif", 12).into_font().color(&RGBColor(150, 70, 0)),
            )
        }))
        .map_err(e)?;
    Ok(())
}

/// The series legend, in the upper right of every plot.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), Err> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)
}

fn finish(root: DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), Err> {
    root.present().map_err(e)
}

/// One chart's SVG canvas, `h` pixels high, filled white; drawn into `buf`.
fn canvas(buf: &mut String, h: u32) -> Result<DrawingArea<SVGBackend<'_>, Shift>, Err> {
    let root = SVGBackend::with_string(buf, (W, h)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    Ok(root)
}

/// A chart over the run's timeline: x from 0 to `xmax` seconds since the test began,
/// y over `y`, with the margins every chart of the report has.
fn timeline<'c, 'b, Y: AsRangedCoord>(
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    xmax: f64,
    y: Y,
) -> Result<ChartContext<'c, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y::CoordDescType>>, Err> {
    ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..xmax, y)
        .map_err(e)
}

/// The x axis's name on every timeline chart.
const X_DESC: &str = "seconds since the test began";

/// The axes of a timeline chart whose y axis is described by `y_desc`, without grid lines.
fn mesh<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
) -> Result<(), Err>
where
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    chart
        .configure_mesh()
        .x_desc(X_DESC)
        .y_desc(y_desc)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(e)
}

/// Which ops the scatter draws, and how many acknowledged ops were left out.
pub fn sample(ops: &[Paired]) -> (Vec<&Paired>, usize) {
    let done: Vec<&Paired> = ops
        .iter()
        .filter(|o| !o.is_final && o.end.is_some())
        .collect();
    let rare = done.iter().filter(|o| o.outcome != Outcome::Ok).count();
    let ok = done.len() - rare;
    let room = MAX_POINTS.saturating_sub(rare).max(1);
    let stride = ok.div_ceil(room).max(1);
    let mut n = 0usize;
    let mut out = Vec::new();
    for o in done {
        if o.outcome == Outcome::Ok {
            n += 1;
            if !(n - 1).is_multiple_of(stride) {
                continue;
            }
        }
        out.push(o);
    }
    let dropped = ok - out.iter().filter(|o| o.outcome == Outcome::Ok).count();
    (out, dropped)
}

/// Latency (log scale, ms) against completion time, one series per op and outcome.
pub fn latency(a: &Analysis) -> Result<String, Err> {
    let (points, _) = sample(&a.ops);
    let ymax = points
        .iter()
        .filter_map(|o| o.latency_ms())
        .fold(1.0f64, f64::max)
        * 2.0;
    let ymin = 0.01f64;
    let xmax = a.duration.max(1.0);
    let mut buf = String::new();
    {
        let root = canvas(&mut buf, H)?;
        let mut chart = timeline(&root, xmax, (ymin..ymax).log_scale())?;
        mesh(&mut chart, "latency (ms, log)")?;
        shade(&mut chart, &a.faults, xmax, (ymin, ymax, ymax / 1.6))?;
        let mut series: BTreeMap<(String, Outcome), Vec<(f64, f64)>> = BTreeMap::new();
        for o in points {
            if let (Some(end), Some(l)) = (o.end, o.latency_ms()) {
                series
                    .entry((o.f.clone(), o.outcome))
                    .or_default()
                    .push((end, l.max(ymin)));
            }
        }
        let fns: Vec<String> = {
            let mut v: Vec<String> = series.keys().map(|(f, _)| f.clone()).collect();
            v.dedup();
            v
        };
        for ((f, outcome), pts) in series {
            let c = color(outcome);
            let shape = fns.iter().position(|x| *x == f).unwrap_or(0) % 2;
            let name = format!("{f} {}", outcome.name());
            if shape == 0 {
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 2, c.filled())))
                    .map_err(e)?
                    .label(name)
                    .legend(move |(x, y)| Circle::new((x, y), 3, c.filled()));
            } else {
                chart
                    .draw_series(pts.iter().map(|p| TriangleMarker::new(*p, 3, c.filled())))
                    .map_err(e)?
                    .label(name)
                    .legend(move |(x, y)| TriangleMarker::new((x, y), 4, c.filled()));
            }
        }
        legend(&mut chart)?;
        finish(root)?;
    }
    Ok(buf)
}

/// Completions per second by outcome, as lines.
pub fn throughput(a: &Analysis) -> Result<String, Err> {
    let xmax = a.duration.max(1.0);
    let (width, buckets) = analysis::throughput(&a.ops, xmax, 120);
    let rate = |n: usize| n as f64 / width;
    let ymax = buckets
        .iter()
        .map(|b| rate(b[0] + b[1] + b[2]))
        .fold(1.0f64, f64::max)
        * 1.25;
    let mut buf = String::new();
    {
        let root = canvas(&mut buf, H)?;
        let mut chart = timeline(&root, xmax, 0f64..ymax)?;
        mesh(&mut chart, &format!("completions/s ({width:.2} s buckets)"))?;
        shade(&mut chart, &a.faults, xmax, (0.0, ymax, ymax * 0.95))?;
        for (i, outcome) in [Outcome::Ok, Outcome::Fail, Outcome::Info]
            .into_iter()
            .enumerate()
        {
            let c = color(outcome);
            let pts: Vec<(f64, f64)> = buckets
                .iter()
                .enumerate()
                .map(|(k, b)| ((k as f64 + 0.5) * width, rate(b[i])))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(e)?
                .label(outcome.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        legend(&mut chart)?;
        finish(root)?;
    }
    Ok(buf)
}

/// Writes each node acknowledged as master, per time bucket: green when every write
/// of the bucket survived, red when one was lost. `lost` holds the lost elements.
/// `dual` (seconds) are the dual-master checker's intervals, shaded purple.
pub fn acknowledgers(
    a: &Analysis,
    nodes: &[String],
    lost: &std::collections::HashSet<i64>,
    dual: &[(f64, f64)],
) -> Result<String, Err> {
    let xmax = a.duration.max(1.0);
    let width = (xmax / 300.0).max(0.05);
    // (node row, bucket) -> (acked, lost)
    let mut cells: BTreeMap<(usize, usize), (usize, usize)> = BTreeMap::new();
    let mut rows: Vec<String> = nodes.to_vec();
    for o in a.ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let (Some(by), Some(end)) = (&o.acked_by, o.end) else {
            continue;
        };
        let row = match rows.iter().position(|n| n == by) {
            Some(r) => r,
            None => {
                rows.push(by.clone());
                rows.len() - 1
            }
        };
        let cell = cells.entry((row, (end / width) as usize)).or_default();
        cell.0 += 1;
        if o.argument.as_i64().is_some_and(|v| lost.contains(&v)) {
            cell.1 += 1;
        }
    }
    let n = rows.len().max(1) as f64;
    let mut buf = String::new();
    {
        let h = 90 + 34 * rows.len() as u32;
        let root = canvas(&mut buf, h)?;
        let mut chart = timeline(&root, xmax, 0f64..n + 0.6)?;
        let labels = rows.clone();
        chart
            .configure_mesh()
            .x_desc(X_DESC)
            .y_labels(rows.len() * 2 + 2)
            .y_label_formatter(&move |y: &f64| {
                let r = y - 0.5;
                if (r - r.round()).abs() < 1e-6 && r >= 0.0 {
                    labels.get(r.round() as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(e)?;
        shade(&mut chart, &a.faults, xmax, (0.0, n + 0.6, n + 0.45))?;
        chart
            .draw_series(dual.iter().map(|(x0, x1)| {
                Rectangle::new(
                    [(*x0, 0.0), (x1.max(x0 + width), n + 0.2)],
                    RGBColor(123, 31, 162).mix(0.25).filled(),
                )
            }))
            .map_err(e)?;
        chart
            .draw_series(cells.iter().map(|((row, b), (_, lost))| {
                let x0 = *b as f64 * width;
                let y = *row as f64 + 0.5;
                let c = if *lost > 0 {
                    color(Outcome::Fail)
                } else {
                    color(Outcome::Ok)
                };
                Rectangle::new([(x0, y - 0.3), (x0 + width, y + 0.3)], c.filled())
            }))
            .map_err(e)?;
        finish(root)?;
    }
    Ok(buf)
}

/// Each node's clock offset (s) over time, one line per node.
pub fn clock(a: &Analysis) -> Result<String, Err> {
    let xmax = a.duration.max(1.0);
    let (lo, hi) = a.clock.iter().fold((0.0f64, 0.0f64), |(l, h), r| {
        (l.min(r.offset_s), h.max(r.offset_s))
    });
    let pad = ((hi - lo) * 0.15).max(0.5);
    let (ymin, ymax) = (lo - pad, hi + pad);
    let mut by_node: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &a.clock {
        by_node
            .entry(r.node.as_str())
            .or_default()
            .push((r.time, r.offset_s));
    }
    let mut buf = String::new();
    {
        let root = canvas(&mut buf, H)?;
        let mut chart = timeline(&root, xmax, ymin..ymax)?;
        mesh(&mut chart, "clock offset (s)")?;
        shade(&mut chart, &a.faults, xmax, (ymin, ymax, ymax - pad * 0.2))?;
        for (i, (node, pts)) in by_node.into_iter().enumerate() {
            let c = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(e)?
                .label(node)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(e)?;
        }
        legend(&mut chart)?;
        finish(root)?;
    }
    Ok(buf)
}
