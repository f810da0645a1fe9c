//! A self-contained HTML timeline of a checked history (inline CSS and SVG, no
//! scripts or fonts from elsewhere): one panel per key, failing keys first, one row
//! per process, each op a bar from call to return (open ops run to the right edge),
//! numbered by its place in the linearization found — complete for a valid key,
//! the longest linearizable prefix for an invalid one, with the op that could not
//! be placed in red and the other candidates at that point in orange.

use crate::linear::{CheckResult, PartitionReport, Validity};
use crate::pipeline::Prepared;
use std::collections::BTreeMap;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const ROW: usize = 26;
const STEP: usize = 18;
const LEFT: usize = 90;

/// Renders the page.
pub fn render(title: &str, prepared: &Prepared, result: &CheckResult) -> String {
    let mut parts: Vec<&PartitionReport> = result.partitions.iter().collect();
    parts.sort_by_key(|p| {
        (
            p.verdict != Validity::Invalid,
            p.verdict != Validity::Unknown,
        )
    });
    let mut body = String::new();
    for p in parts {
        panel(&mut body, prepared, p);
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\n\
body{{font:13px system-ui,sans-serif;margin:16px;color:#222}}\n\
h1{{font-size:18px}} h2{{font-size:15px;margin:18px 0 4px}}\n\
.valid{{color:#1a7f37}} .invalid{{color:#c62828}} .unknown{{color:#9a6700}}\n\
.wrap{{overflow-x:auto;border:1px solid #ddd;padding:4px}}\n\
svg text{{font:11px monospace}}\n\
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}\n\
</style></head><body>\n<h1>{t}: <span class=\"{v}\">{V}</span></h1>\n\
<p>format {f}, model {m}, {n} ops, {k} partition(s), checked in {s:.3} s. Hover an op for its text, source line and the state after it.</p>\n\
<p class=\"legend\"><span style=\"background:#7cc58f\"></span>linearized (number = position)\
<span style=\"background:#e53935\"></span>could not be placed\
<span style=\"background:#ffb74d\"></span>other candidates at that point\
<span style=\"background:#cfd8dc\"></span>not reached</p>\n{body}</body></html>\n",
        t = esc(title),
        v = result.verdict,
        V = result.verdict.to_string().to_uppercase(),
        f = prepared.format.name(),
        m = prepared.model.name(),
        n = prepared.operations.len(),
        k = result.partitions.len(),
        s = result.elapsed.as_secs_f64(),
    )
}

fn panel(out: &mut String, prepared: &Prepared, p: &PartitionReport) {
    let key = p
        .key
        .as_deref()
        .map_or("whole history".to_string(), |k| format!("key {k}"));
    let _ = write!(
        out,
        "<h2>{} — <span class=\"{}\">{}</span> ({} ops, {} linearized{})</h2>\n<div class=\"wrap\">",
        esc(&key),
        p.verdict,
        p.verdict,
        p.ops.len(),
        p.linearization.len(),
        p.reason.as_deref().map_or(String::new(), |r| format!("; {}", esc(r)))
    );
    // Compress coordinates to ranks so concurrent ops stay readable.
    let mut coords: Vec<u64> = p
        .ops
        .iter()
        .flat_map(|o| [o.call, o.ret.unwrap_or(u64::MAX)])
        .collect();
    coords.sort_unstable();
    coords.dedup();
    let x = |c: u64| LEFT + coords.partition_point(|&v| v < c) * STEP;
    let mut rows: BTreeMap<u64, usize> = BTreeMap::new();
    for o in &p.ops {
        rows.entry(prepared.operations[o.source].process)
            .or_insert(0);
    }
    for (i, r) in rows.values_mut().enumerate() {
        *r = i;
    }
    let mut order = vec![None; p.ops.len()];
    for (k, &i) in p.linearization.iter().enumerate() {
        order[i] = Some(k);
    }
    let (blocking, candidates): (Option<usize>, Vec<usize>) = match &p.counterexample {
        Some(c) => (
            Some(c.blocking),
            c.candidates.iter().map(|(i, _)| *i).collect(),
        ),
        None => (None, Vec::new()),
    };
    let width = LEFT + coords.len() * STEP + 20;
    let height = rows.len() * ROW + 10;
    let _ = write!(
        out,
        "<svg width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (proc_, r) in &rows {
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{}\">process {proc_}</text><line x1=\"{LEFT}\" x2=\"{width}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#eee\"/>",
            r * ROW + 18,
            y = r * ROW + 13
        );
    }
    for (i, o) in p.ops.iter().enumerate() {
        let op = &prepared.operations[o.source];
        let row = rows[&op.process];
        let x0 = x(o.call);
        let x1 = match o.ret {
            Some(r) => x(r).max(x0 + 6),
            None => width - 10,
        };
        let fill = if Some(i) == blocking {
            "#e53935"
        } else if candidates.contains(&i) {
            "#ffb74d"
        } else if order[i].is_some() {
            "#7cc58f"
        } else {
            "#cfd8dc"
        };
        let state = order[i]
            .and_then(|k| p.states.get(k))
            .map_or(String::new(), |s| format!("\nstate after: {s}"));
        let tip = format!(
            "{}\nline {} (process {}){}{}",
            o.description,
            prepared.line_of(o.source),
            op.process,
            if o.ret.is_none() {
                "\nopen: may take effect any time after its call"
            } else {
                ""
            },
            state
        );
        let dash = if o.ret.is_none() {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<g><title>{}</title><rect x=\"{x0}\" y=\"{}\" width=\"{}\" height=\"18\" rx=\"3\" fill=\"{fill}\" stroke=\"#555\"{dash}/>",
            esc(&tip),
            row * ROW + 4,
            x1 - x0
        );
        let label = match order[i] {
            Some(k) => format!("{} {}", k + 1, o.description),
            None => o.description.clone(),
        };
        let room = (x1 - x0) / 7;
        let shown: String = label.chars().take(room).collect();
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text></g>",
            x0 + 3,
            row * ROW + 17,
            esc(&shown)
        );
    }
    out.push_str("</svg></div>\n");
}
