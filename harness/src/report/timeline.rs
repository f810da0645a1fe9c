//! The per-process timeline of report.html (like Jepsen's timeline.html): one row
//! per client process, each op a bar from invoke to completion coloured by outcome,
//! lost writes outlined, faults shaded. Bounded: at most [`MAX_OPS`] ops in one time
//! window around the most interesting moment (the first lost write, else the first
//! fault), with a visible note saying which part of the history is shown.

use super::analysis::{Analysis, Outcome, Paired};
use super::esc;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

/// Ops drawn at most.
pub const MAX_OPS: usize = 1_500;
const WIDTH: f64 = 1400.0;
const LEFT: f64 = 110.0;
const ROW: f64 = 16.0;

fn fill(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "#81c784",
        Outcome::Fail => "#e57373",
        Outcome::Info => "#ffb74d",
        Outcome::Open => "#b0bec5",
    }
}

/// Which ops to draw: the indices of `a.ops` and a note when not all are drawn.
pub fn window(a: &Analysis, focus: f64) -> (std::ops::Range<usize>, Option<String>) {
    let n = a.ops.len();
    if n <= MAX_OPS {
        return (0..n, None);
    }
    // ops are in invocation order, so start times are sorted
    let at = a.ops.partition_point(|o| o.start < focus);
    let from = at.saturating_sub(MAX_OPS / 2).min(n - MAX_OPS);
    let range = from..from + MAX_OPS;
    let (t0, t1) = (a.ops[range.start].start, a.ops[range.end - 1].start);
    let note = format!(
        "The history has {n} client ops; the timeline shows {} of them (ops invoked {t0:.3} s to {t1:.3} s, around {focus:.3} s: {}). Every op is in history.jsonl.",
        MAX_OPS,
        if focus > 0.0 { "the first lost write or fault" } else { "the start" }
    );
    (range, Some(note))
}

fn label(o: &Paired) -> String {
    let mut arg = o.argument.to_string();
    if arg.chars().count() > 60 {
        arg = arg.chars().take(57).collect::<String>() + "...";
    }
    let mut s = format!(
        "op {} process {} {} {} -> {}",
        o.invoke_index,
        o.process,
        o.f,
        arg,
        o.outcome.name()
    );
    if let Some(l) = o.latency_ms() {
        let _ = write!(s, " in {l:.1} ms");
    }
    if let Some(n) = &o.node {
        let _ = write!(s, "\nsent to {n}");
    }
    if let Some(b) = &o.acked_by {
        let _ = write!(s, ", acknowledged by {b}");
    }
    if let Some(e) = &o.error {
        let _ = write!(s, "\nerror: {e}");
    }
    s
}

/// The timeline section's SVG plus its note.
pub fn render(a: &Analysis, focus: f64, lost: &HashSet<i64>) -> (String, Option<String>) {
    let (range, note) = window(a, focus);
    let ops = &a.ops[range];
    if ops.is_empty() {
        return ("<p>No client ops in the history.</p>".to_string(), note);
    }
    let t0 = ops.iter().map(|o| o.start).fold(f64::MAX, f64::min);
    let t1 = ops
        .iter()
        .map(|o| o.end.unwrap_or(o.start))
        .fold(t0 + 1e-3, f64::max);
    let x = |t: f64| LEFT + (t.clamp(t0, t1) - t0) / (t1 - t0) * (WIDTH - LEFT - 10.0);
    let mut rows: BTreeMap<u64, usize> = ops.iter().map(|o| (o.process, 0)).collect();
    for (i, r) in rows.values_mut().enumerate() {
        *r = i;
    }
    let height = rows.len() as f64 * ROW + 40.0;
    let mut s = format!(
        "<svg class=\"timeline\" width=\"{WIDTH}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, f) in a.faults.iter().enumerate() {
        let end = f.end.unwrap_or(t1);
        if end < t0 || f.start > t1 {
            continue;
        }
        let (fx0, fx1) = (x(f.start), x(end));
        let _ = write!(
            s,
            "<rect x=\"{fx0:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\" fill=\"#ffcda0\" opacity=\"0.45\"/><text x=\"{:.1}\" y=\"11\" class=\"fault\">F{} {}</text>",
            (fx1 - fx0).max(1.0),
            fx0 + 2.0,
            i + 1,
            esc(&f.label)
        );
    }
    for (p, r) in &rows {
        let y = *r as f64 * ROW + 18.0;
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{:.1}\">{}</text><line x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>",
            y + 11.0,
            if *p >= crate::runner::FINAL_PROCESS_BASE {
                format!("final {}", p - crate::runner::FINAL_PROCESS_BASE)
            } else {
                format!("process {p}")
            }
        );
    }
    for o in ops {
        let y = rows[&o.process] as f64 * ROW + 19.0;
        let x0 = x(o.start);
        let x1 = x(o.end.unwrap_or(t1)).max(x0 + 2.0);
        let is_lost = o.outcome == Outcome::Ok
            && super::analysis::is_write(&o.f)
            && o.argument.as_i64().is_some_and(|v| lost.contains(&v));
        let stroke = if is_lost {
            " stroke=\"#b71c1c\" stroke-width=\"2\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"{stroke}><title>{}{}</title></rect>",
            x1 - x0,
            ROW - 3.0,
            fill(o.outcome),
            esc(&label(o)),
            if is_lost { "\nLOST: acknowledged, missing from every final read" } else { "" }
        );
    }
    let _ = write!(
        s,
        "<text x=\"{LEFT}\" y=\"{:.1}\">{t0:.3} s</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{t1:.3} s</text></svg>",
        height - 4.0,
        WIDTH - 10.0,
        height - 4.0
    );
    (s, note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::analysis::analyse;
    use checkers::{Op, OpType, Process};
    use serde_json::json;

    #[test]
    fn long_and_non_ascii_arguments_are_cut_on_characters() {
        let mut h = Vec::new();
        let long = "é".repeat(100);
        for (i, kind) in [OpType::Invoke, OpType::Ok].into_iter().enumerate() {
            let mut o = Op::new(
                i as u64 * 1000,
                Process::Client(3),
                kind,
                "write",
                json!(long),
            );
            o.index = i as u64;
            h.push(o);
        }
        let a = analyse(&h);
        let l = label(&a.ops[0]);
        assert!(l.starts_with("op 0 process 3 write \"éé"), "{l}");
        assert!(l.contains("... -> ok"), "{l}");
        let (svg, note) = render(&a, 0.0, &HashSet::new());
        assert!(note.is_none());
        assert_eq!(svg.matches("<rect").count(), 1);
    }

    #[test]
    fn large_histories_are_windowed_around_the_focus() {
        let mut h = Vec::new();
        for i in 0..(MAX_OPS as u64 * 3) {
            let mut inv = Op::new(
                i * 1_000_000,
                Process::Client(i % 4),
                OpType::Invoke,
                "add",
                json!(i),
            );
            inv.index = 2 * i;
            let mut ok = Op::new(
                i * 1_000_000 + 500,
                Process::Client(i % 4),
                OpType::Ok,
                "add",
                json!(i),
            );
            ok.index = 2 * i + 1;
            h.push(inv);
            h.push(ok);
        }
        let a = analyse(&h);
        let focus = 2.0; // op 2000
        let (range, note) = window(&a, focus);
        assert_eq!(range.len(), MAX_OPS);
        assert!(range.contains(&2000) && range.start == 2000 - MAX_OPS / 2);
        assert!(note.unwrap().contains(&format!(
            "{} client ops; the timeline shows {MAX_OPS}",
            MAX_OPS * 3
        )));
        let (range, _) = window(&a, 1e9);
        assert_eq!(range.end, MAX_OPS * 3);
    }
}
