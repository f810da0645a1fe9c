//! Report sections for the dual-master and linearizability checkers: the dual-master
//! intervals with the writes each master accepted and lost, and the linearizability
//! counterexample, re-checked on the failing key alone and drawn with the checkers'
//! own timeline (`checkers::visualize`), written beside the report as
//! `linearizability.html` and embedded in report.html.

use super::{esc, fmt_s, Run};
use checkers::formats::Format;
use checkers::linear::{CheckOptions, Validity};
use checkers::models::ModelKind;
use checkers::{pipeline, Process};
use serde::Deserialize;
use std::fmt::Write;
use std::time::Duration;

/// A write a master accepted (the history's op index).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WriteRef {
    pub index: u64,
    pub f: String,
    pub key: Option<String>,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Side {
    pub node: String,
    pub epochs: Vec<u64>,
    pub writes_accepted: usize,
    /// All lost writes; `lost` keeps the first few (older results: `lost` only).
    pub writes_lost: Option<usize>,
    pub lost: Vec<WriteRef>,
}

impl Side {
    pub fn lost_count(&self) -> usize {
        self.writes_lost.unwrap_or(self.lost.len())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Interval {
    /// Nanoseconds since the test began.
    pub start: u64,
    pub end: u64,
    pub kind: String,
    pub masters: Vec<Side>,
}

/// The dual-master checker's details (the fields the reports use).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DualDetails {
    pub observations: usize,
    pub intervals: Vec<Interval>,
    pub dual_ns: u64,
}

impl DualDetails {
    pub fn of(details: &serde_json::Value) -> Option<DualDetails> {
        serde_json::from_value(details.clone()).ok()
    }

    /// Intervals in seconds, for shading charts.
    pub fn spans(&self) -> Vec<(f64, f64)> {
        self.intervals
            .iter()
            .map(|i| (i.start as f64 / 1e9, i.end as f64 / 1e9))
            .collect()
    }
}

/// Intervals shown per report; results.json has all.
pub const MAX_INTERVALS: usize = 100;

fn lost_refs(s: &Side) -> String {
    let shown: Vec<String> = s
        .lost
        .iter()
        .take(10)
        .map(|w| format!("op {} {} {}", w.index, w.f, w.value))
        .collect();
    let more = s.lost_count().saturating_sub(shown.len());
    match (shown.is_empty(), more) {
        (true, _) => String::new(),
        (false, 0) => format!(": {}", shown.join(", ")),
        (false, _) => format!(": {} and {more} more", shown.join(", ")),
    }
}

/// HTML table of the intervals.
pub fn dual_html(out: &mut String, d: &DualDetails) {
    if d.intervals.is_empty() {
        let _ = write!(
            out,
            "<p>No interval with two masters in {} role observations.</p>",
            d.observations
        );
        return;
    }
    let _ = write!(
        out,
        "<p>{} interval(s) with two or more masters, {} in all; they are shaded purple on the chart of who acknowledged writes.</p>",
        d.intervals.len(),
        fmt_s(d.dual_ns as f64 / 1e9)
    );
    out.push_str("<div class=\"scroll\"><table class=\"dual\"><tr><th>#</th><th>from</th><th>to</th><th>kind</th><th>master</th><th>epochs</th><th>writes accepted</th><th>of them lost</th></tr>");
    for (i, iv) in d.intervals.iter().take(MAX_INTERVALS).enumerate() {
        for (k, s) in iv.masters.iter().enumerate() {
            let head = if k == 0 {
                format!(
                    "<td rowspan=\"{n}\">D{}</td><td rowspan=\"{n}\" class=\"n\">{}</td><td rowspan=\"{n}\" class=\"n\">{}</td><td rowspan=\"{n}\">{}</td>",
                    i + 1,
                    fmt_s(iv.start as f64 / 1e9),
                    fmt_s(iv.end as f64 / 1e9),
                    esc(&iv.kind),
                    n = iv.masters.len().max(1)
                )
            } else {
                String::new()
            };
            let epochs: Vec<String> = s.epochs.iter().map(|e| e.to_string()).collect();
            let _ = write!(
                out,
                "<tr>{head}<td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}{}</td></tr>",
                esc(&s.node),
                esc(&epochs.join(", ")),
                s.writes_accepted,
                s.lost_count(),
                esc(&lost_refs(s))
            );
        }
    }
    out.push_str("</table></div>");
    if d.intervals.len() > MAX_INTERVALS {
        let _ = write!(
            out,
            "<p class=\"note\">Showing {MAX_INTERVALS} of {} intervals; all are in results.json.</p>",
            d.intervals.len()
        );
    }
}

/// Markdown table of the intervals.
pub fn dual_md(out: &mut String, d: &DualDetails) {
    if d.intervals.is_empty() {
        return;
    }
    out.push_str("| # | from | to | kind | master | epochs | writes accepted | lost |\n|---|---:|---:|---|---|---|---:|---|\n");
    for (i, iv) in d.intervals.iter().take(MAX_INTERVALS).enumerate() {
        for s in &iv.masters {
            let epochs: Vec<String> = s.epochs.iter().map(|e| e.to_string()).collect();
            let _ = writeln!(
                out,
                "| D{} | {} | {} | {} | {} | {} | {} | {}{} |",
                i + 1,
                fmt_s(iv.start as f64 / 1e9),
                fmt_s(iv.end as f64 / 1e9),
                iv.kind,
                s.node,
                epochs.join(", "),
                s.writes_accepted,
                s.lost_count(),
                lost_refs(s).replace('|', "\\|")
            );
        }
    }
    out.push('\n');
}

/// Ops of one key re-checked at most: more and no drawing is made.
pub const MAX_COUNTEREXAMPLE_OPS: usize = 5_000;

/// Re-checks the failing key of an invalid `linearizable` checker and draws it.
/// Returns (the whole page, the page's body for embedding) or why not.
pub fn counterexample(run: &Run, details: &serde_json::Value) -> Result<(String, String), String> {
    let key = details
        .get("failing")
        .and_then(|f| f.get("key"))
        .and_then(|k| k.as_str())
        .map(String::from);
    let mut text = String::new();
    let mut n = 0;
    for op in &run.history {
        let is_final = op.extra.get("final").and_then(|v| v.as_bool()) == Some(true);
        if !matches!(op.process, Process::Client(_))
            || is_final
            || !matches!(op.f.as_str(), "read" | "write" | "cas")
            || (key.is_some() && op.key != key)
        {
            continue;
        }
        n += 1;
        text.push_str(&serde_json::to_string(op).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    if n > 2 * MAX_COUNTEREXAMPLE_OPS {
        return Err(format!(
            "the failing key has {} ops, more than the {MAX_COUNTEREXAMPLE_OPS} drawn",
            n / 2
        ));
    }
    let prepared = pipeline::prepare(Format::Jsonl, Some(ModelKind::CasRegister), &text)
        .map_err(|e| format!("line {}: {}", e.line, e.message))?;
    let opts = CheckOptions {
        time_limit: Some(Duration::from_secs(10)),
        threads: 1,
        cache_limit: 256 << 20,
        ..CheckOptions::default()
    };
    let result = pipeline::check(&prepared, &opts).map_err(|e| e.message)?;
    if result.verdict != Validity::Invalid {
        return Err(format!(
            "re-checking the key alone gave {} within 10 s",
            result.verdict
        ));
    }
    let title = format!(
        "{}: key {}",
        run.results.test.name,
        key.as_deref().unwrap_or("(none)")
    );
    let page = checkers::visualize::render(&title, &prepared, &result);
    let body = page
        .split_once("<body>")
        .and_then(|(_, b)| b.rsplit_once("</body>"))
        .map(|(b, _)| b.to_string())
        .unwrap_or_default();
    // Drop the page's own heading; keep its legend and panels.
    let body = match body.split_once("</h1>") {
        Some((_, rest)) => rest.to_string(),
        None => body,
    };
    Ok((page, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_counts_use_the_full_count_not_the_kept_examples() {
        let d = DualDetails::of(&serde_json::json!({"observations": 9, "dual_ns": 2_000_000_000u64,
            "intervals": [{"start": 1_000_000_000u64, "end": 3_000_000_000u64, "kind": "both-accepted-writes",
            "masters": [{"node": "n1", "epochs": [1], "writes_accepted": 400, "writes_lost": 358,
            "lost": [{"index": 26, "f": "add", "value": 5}, {"index": 63, "f": "add", "value": 13}]},
            {"node": "n2", "epochs": [2], "writes_accepted": 10, "lost": []}]}]}))
        .unwrap();
        assert_eq!(d.spans(), vec![(1.0, 3.0)]);
        let s = &d.intervals[0].masters;
        assert_eq!((s[0].lost_count(), s[1].lost_count()), (358, 0));
        assert_eq!(lost_refs(&s[0]), ": op 26 add 5, op 63 add 13 and 356 more");
        assert_eq!(lost_refs(&s[1]), "");
        let mut html = String::new();
        dual_html(&mut html, &d);
        assert!(
            html.contains("<td class=\"n\">400</td><td>358: op 26 add 5"),
            "{html}"
        );
        let mut md = String::new();
        dual_md(&mut md, &d);
        assert!(
            md.contains(
                "| D1 | 1.000 s | 3.000 s | both-accepted-writes | n1 | 1 | 400 | 358: op 26"
            ),
            "{md}"
        );
    }
}
