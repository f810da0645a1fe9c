//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, fonts or
//! anything fetched from elsewhere; links only to files of the same run folder):
//! verdict banner, configuration and environment, each checker's findings with the
//! exact ops, dual-master evidence, faults and availability, latency and throughput
//! plots with faults shaded, and the bounded per-process timeline.

use super::checks;
use super::findings::{self, Findings, MissingWrite};

/// The linearizability drawing: (page, body) or why there is none.
pub type Drawn = Result<(String, String), String>;
use super::{esc, fmt_s, plots, timeline, Run};
use std::fmt::Write;

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}\
main{max-width:1440px;margin:0 auto;padding:0 20px 40px}\
.banner{padding:18px 24px;color:#fff;font-size:22px;font-weight:600}\
.banner small{display:block;font-size:13px;font-weight:400;opacity:.9}\
.b-valid{background:#2e7d32}.b-invalid{background:#c62828}.b-unknown{background:#9a6700}\
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}\
h3{font-size:15px;margin:18px 0 6px}\
table{border-collapse:collapse;margin:6px 0;background:#fff}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}\
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.valid{color:#2e7d32;font-weight:600}.invalid{color:#c62828;font-weight:600}.unknown{color:#9a6700;font-weight:600}\
.note{background:#fff8e1;border-left:4px solid #f9a825;padding:6px 10px;margin:8px 0}\
.plot{background:#fff;border:1px solid #ddd;margin:6px 0;overflow-x:auto}\
.scroll{max-height:420px;overflow:auto;display:inline-block}\
svg.timeline text{font:10px monospace}svg.timeline text.fault{fill:#964600}\
code,pre{font:12px ui-monospace,monospace}pre{background:#fff;border:1px solid #ddd;padding:8px;overflow-x:auto}\
nav a{margin-right:14px}\
.linear svg text{font:11px monospace}.linear .wrap{overflow-x:auto;border:1px solid #ddd;padding:4px;background:#fff}\
.linear .legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\
.linear h2{font-size:14px;border:0}";

fn row(out: &mut String, k: &str, v: &str) {
    let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
}

fn missing_table(out: &mut String, f: &Findings, writes: &[MissingWrite], total: usize) {
    if writes.is_empty() {
        return;
    }
    if total > findings::MAX_ROWS.min(writes.len()) {
        let _ = write!(
            out,
            "<p class=\"note\">Showing {} of {total}; all are in results.json.</p>",
            findings::MAX_ROWS.min(writes.len())
        );
    }
    out.push_str("<div class=\"scroll\"><table class=\"lost\"><tr><th>element</th><th>key</th><th>acknowledged at</th><th>sent to</th><th>acknowledged by</th><th>process</th><th>invoke op</th><th>ok op</th><th>missing on</th></tr>");
    for ev in f.evidence(writes) {
        let w = ev.write;
        let (proc_, inv, ok) = match ev.op {
            Some(o) => (
                o.process.to_string(),
                o.invoke_index.to_string(),
                o.complete_index.map_or("-".into(), |i| i.to_string()),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = write!(
            out,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{proc_}</td><td class=\"n\">{inv}</td><td class=\"n\">{ok}</td><td>{}</td></tr>",
            w.element,
            esc(w.key.as_deref().unwrap_or("")),
            fmt_s(w.acked_at as f64 / 1e9),
            esc(w.node.as_deref().unwrap_or("?")),
            esc(w.acked_by.as_deref().unwrap_or("not reported")),
            esc(&w.missing_on.join(", "))
        );
    }
    out.push_str("</table></div>");
}

fn checkers_section(out: &mut String, run: &Run, f: &Findings, linear: Option<&Drawn>) {
    out.push_str("<h2 id=\"findings\">Findings</h2>");
    for (c, set) in run.results.checkers.iter().zip(&f.sets) {
        let _ = write!(
            out,
            "<h3>checker {}: <span class=\"{}\">{}</span></h3><p>{}</p>",
            esc(&c.checker),
            c.valid,
            c.valid.to_string().to_uppercase(),
            esc(&c.summary)
        );
        if c.checker == "dual-master" {
            if let Some(d) = checks::DualDetails::of(&c.details) {
                checks::dual_html(out, &d);
            }
        }
        if c.checker == "linearizable" && c.valid == checkers::Validity::Invalid {
            match linear {
                Some(Ok((_, body))) => {
                    let _ = write!(out, "<p>The counterexample, re-checked on the failing key alone (also in <a href=\"linearizability.html\">linearizability.html</a>):</p><div class=\"linear\">{body}</div>");
                }
                Some(Err(why)) => {
                    let _ = write!(
                        out,
                        "<p class=\"note\">No drawing of the counterexample: {}.</p>",
                        esc(why)
                    );
                }
                None => {}
            }
        }
        let Some(s) = set else {
            let _ = write!(
                out,
                "<details><summary>details</summary><pre>{}</pre></details>",
                esc(&serde_json::to_string_pretty(&c.details).unwrap_or_default())
            );
            continue;
        };
        out.push_str("<table>");
        for (k, v) in [
            ("adds attempted", s.attempted),
            ("acknowledged", s.acknowledged),
            ("failed (definitely not applied)", s.failed),
            ("indeterminate (timed out / unknown)", s.indeterminate),
            ("LOST: acknowledged, in no final read", s.lost_count),
            ("divergent: in some final reads only", s.divergent_count),
            ("recovered: indeterminate, present", s.recovered_count),
            ("read but never added", s.unexpected_count),
            ("failed but present", s.failed_but_present_count),
            ("stale reads (not a violation here)", s.stale_count),
        ] {
            let _ = write!(out, "<tr><th>{}</th><td class=\"n\">{v}</td></tr>", esc(k));
        }
        out.push_str("</table>");
        for (key, nodes) in &s.final_reads {
            let _ = write!(
                out,
                "<p>Final reads{} answered by: {}.</p>",
                if key.is_empty() {
                    String::new()
                } else {
                    format!(" of key {}", esc(key))
                },
                esc(&nodes.join(", "))
            );
        }
        if !s.lost.is_empty() {
            out.push_str("<h3>Lost writes</h3><p>Each was acknowledged to its client (the <em>ok op</em>), yet no node's final read, taken after every fault was healed and the system had time to recover, contains it.</p>");
            missing_table(out, f, &s.lost, s.lost_count);
        }
        if !s.divergent.is_empty() {
            out.push_str("<h3>Divergent writes</h3>");
            missing_table(out, f, &s.divergent, s.divergent_count);
        }
        for (label, list, n) in [
            (
                "Recovered (indeterminate, later present)",
                &s.recovered,
                s.recovered_count,
            ),
            ("Read but never added", &s.unexpected, s.unexpected_count),
            (
                "Failed but present",
                &s.failed_but_present,
                s.failed_but_present_count,
            ),
            ("Stale reads (examples)", &s.stale, s.stale_count),
        ] {
            if n > 0 {
                let _ = write!(
                    out,
                    "<p><b>{}</b>: {}</p>",
                    esc(label),
                    esc(&findings::examples(list, n))
                );
            }
        }
        for r in &s.unknown_reasons {
            let _ = write!(out, "<p class=\"note\">unknown: {}</p>", esc(r));
        }
    }
}

fn masters_section(out: &mut String, run: &Run, f: &Findings) -> anyhow::Result<()> {
    if f.spans.is_empty() {
        return Ok(());
    }
    out.push_str("<h2 id=\"masters\">Who acknowledged writes</h2><p>From the <code>acked_by</code> field of every acknowledged write: the node that accepted it as master. Green: every write of that moment survived; red: at least one was lost.</p>");
    let nodes: Vec<String> = run
        .results
        .test
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let dual: Vec<(f64, f64)> = run
        .results
        .checkers
        .iter()
        .filter(|c| c.checker == "dual-master")
        .filter_map(|c| checks::DualDetails::of(&c.details))
        .flat_map(|d| d.spans())
        .collect();
    let svg = plots::acknowledgers(&run.analysis, &nodes, &f.lost, &dual)
        .map_err(|e| anyhow::anyhow!("drawing the acknowledgers chart: {e}"))?;
    let _ = write!(out, "<div class=\"plot\">{svg}</div>");
    if f.overlaps.is_empty() {
        out.push_str("<p>No two nodes acknowledged writes at overlapping times.</p>");
    } else {
        let _ = write!(
            out,
            "<p class=\"note\">Two masters at once: in {} window(s) two nodes both acknowledged writes (acks less than {} s apart count as one span).</p><table><tr><th>from</th><th>to</th><th>nodes</th></tr>",
            f.overlaps.len(),
            super::analysis::ACK_GAP
        );
        for (a, b, n) in &f.overlaps {
            let _ = write!(
                out,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                fmt_s(*a),
                fmt_s(*b),
                esc(&n.join(" and "))
            );
        }
        out.push_str("</table>");
    }
    out.push_str(
        "<table><tr><th>node</th><th>acknowledging from</th><th>to</th><th>writes</th></tr>",
    );
    for s in &f.spans {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&s.node),
            fmt_s(s.start),
            fmt_s(s.end),
            s.writes
        );
    }
    out.push_str("</table>");
    Ok(())
}

fn faults_section(out: &mut String, run: &Run) {
    let a = &run.analysis;
    out.push_str("<h2 id=\"faults\">Faults and availability</h2>");
    if a.faults.is_empty() {
        out.push_str("<p>No faults were injected (or none is in the history).</p>");
        return;
    }
    out.push_str("<table><tr><th>fault</th><th>what</th><th>from</th><th>healed</th><th>ops ok</th><th>fail</th><th>indeterminate</th><th>share not ok</th><th>first acked write after start</th><th>after heal</th></tr>");
    for (i, (f, av)) in a.faults.iter().zip(&a.availability).enumerate() {
        let total = av.ok + av.fail + av.info;
        let share = if total > 0 {
            format!("{:.1}%", 100.0 * (av.fail + av.info) as f64 / total as f64)
        } else {
            "-".into()
        };
        let _ = write!(
            out,
            "<tr><td>F{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{share}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            i + 1,
            esc(&f.label),
            fmt_s(f.start),
            f.end.map_or("not healed in history".into(), fmt_s),
            av.ok,
            av.fail,
            av.info,
            av.first_ok_write_after_start.map_or("none".into(), fmt_s),
            av.first_ok_write_after_heal.map_or("none".into(), fmt_s),
        );
    }
    out.push_str("</table>");
    for e in &run.results.heal_errors {
        let _ = write!(out, "<p class=\"note\">heal failed: {}</p>", esc(e));
    }
}

fn perf_section(out: &mut String, run: &Run, latency: &str, rate: &str) {
    let a = &run.analysis;
    let (_, dropped) = plots::sample(&a.ops);
    out.push_str("<h2 id=\"latency\">Latency</h2>");
    if dropped > 0 {
        let _ = write!(
            out,
            "<p class=\"note\">{dropped} acknowledged ops are thinned out of the scatter (at most {} points; every failed and indeterminate op is drawn). The quantiles use every op.</p>",
            plots::MAX_POINTS
        );
    }
    let _ = write!(out, "<div class=\"plot\">{latency}</div>");
    out.push_str("<table><tr><th>op</th><th>count</th><th>ok</th><th>fail</th><th>info</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>");
    for q in &a.quantiles {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.2}</td></tr>",
            esc(&q.f), q.count, q.ok, q.fail, q.info, q.p50, q.p90, q.p99, q.max
        );
    }
    let _ = write!(
        out,
        "</table><p>Final reads{} are left out of the quantiles and plots.</p>",
        if a.observations > 0 {
            format!(
                " and the {} role observations (leader checks)",
                a.observations
            )
        } else {
            String::new()
        }
    );
    let _ = write!(
        out,
        "<h2 id=\"throughput\">Throughput</h2><div class=\"plot\">{rate}</div>"
    );
    if !a.clock.is_empty() {
        out.push_str("<h2 id=\"clocks\">Clock offsets</h2><p>Each node's clock offset as the system's processes saw it, read by the nemesis around every clock fault (lines join the readings; between them the offset was not measured).</p>");
        match plots::clock(a) {
            Ok(svg) => {
                let _ = write!(out, "<div class=\"plot\">{svg}</div>");
            }
            Err(e) => {
                let _ = write!(out, "<p class=\"note\">clock plot: {}</p>", esc(&e));
            }
        }
    }
}

fn config_section(out: &mut String, run: &Run) {
    let r = &run.results;
    let t = &r.test;
    out.push_str("<h2 id=\"config\">Test</h2><table>");
    let nodes: Vec<String> = t
        .nodes
        .iter()
        .map(|n| format!("{} ({}:{})", n.name, n.host, n.port))
        .collect();
    for (k, v) in [
        ("test", t.name.clone()),
        ("system", r.system.clone()),
        ("workload", t.workload.clone()),
        (
            "nemesis",
            format!(
                "{} (each fault {} s, {} s apart)",
                t.nemesis,
                t.nemesis_interval,
                t.nemesis_interval / 2.0
            ),
        ),
        (
            "nodes",
            format!(
                "{}{}",
                nodes.join(", "),
                if t.lab {
                    " — the local namespace lab"
                } else {
                    ""
                }
            ),
        ),
        (
            "time limit",
            format!(
                "{} s, then heal, {} s recovery, final reads",
                t.time_limit, t.recovery_time
            ),
        ),
        (
            "clients",
            format!(
                "{} processes, target {} ops/s, op timeout {} s",
                t.concurrency, t.rate, t.op_timeout
            ),
        ),
        (
            "client ops",
            format!(
                "{} ({} ok, {} fail, {} indeterminate) in {:.1} s",
                r.stats.ops, r.stats.ok, r.stats.fail, r.stats.info, r.stats.duration_s
            ),
        ),
        ("seed", t.seed.to_string()),
        ("harness", t.harness_version.clone()),
    ] {
        row(out, k, &v);
    }
    out.push_str("</table>");
    if let Some(env) = &r.environment {
        out.push_str("<h3>Environment</h3><table><tr><th>node</th><th>OS</th><th>kernel</th></tr>");
        if let Some(c) = &env.controller {
            let _ = write!(
                out,
                "<tr><td>controller</td><td></td><td>{}</td></tr>",
                esc(c)
            );
        }
        for n in &env.nodes {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&n.node),
                esc(n.os.as_deref().or(n.error.as_deref()).unwrap_or("?")),
                esc(n.kernel.as_deref().unwrap_or("?"))
            );
        }
        out.push_str("</table>");
        if let Some(v) = &env.system_version {
            let _ = write!(out, "<p>System version: {}.</p>", esc(v));
        }
    }
    let _ = write!(
        out,
        "<h3>Reproduce</h3><pre>{}</pre>",
        esc(&super::reproduce_command(t))
    );
}

/// Renders the page. `latency` and `rate` are the plots' SVG.
pub fn render(
    run: &Run,
    latency: &str,
    rate: &str,
    linear: Option<&Drawn>,
) -> anyhow::Result<String> {
    let r = &run.results;
    let f = Findings::of(run);
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}: {v}</title><style>{STYLE}</style></head><body>\
<div class=\"banner b-{valid}\" id=\"verdict\">{V}: {t}<small>{sum}</small></div><main>\
<nav><a href=\"#findings\">findings</a><a href=\"#masters\">masters</a><a href=\"#faults\">faults</a><a href=\"#latency\">latency</a><a href=\"#throughput\">throughput</a><a href=\"#timeline\">timeline</a><a href=\"#config\">test</a><a href=\"#files\">files</a></nav>",
        t = esc(&r.test.name),
        v = r.valid,
        valid = r.valid,
        V = r.valid.to_string().to_uppercase(),
        sum = esc(&r.checkers.iter().map(|c| format!("{}: {}", c.checker, c.summary)).collect::<Vec<_>>().join(" · ")),
    );
    for n in &run.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(n));
    }
    if r.interrupted {
        out.push_str("<p class=\"note\">The run was interrupted: no final reads, so a valid outcome is reported as unknown.</p>");
    }
    checkers_section(&mut out, run, &f, linear);
    masters_section(&mut out, run, &f)?;
    faults_section(&mut out, run);
    perf_section(&mut out, run, latency, rate);
    let (svg, note) = timeline::render(&run.analysis, f.focus, &f.lost);
    out.push_str("<h2 id=\"timeline\">Timeline</h2><p>One row per client process; each bar runs from invoke to completion: green ok, red fail, orange indeterminate, grey never completed; a dark red outline marks a lost write. Hover a bar for the op.</p>");
    if let Some(n) = note {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(&n));
    }
    let _ = write!(out, "<div class=\"plot\">{svg}</div>");
    config_section(&mut out, run);
    out.push_str("<h2 id=\"files\">Files of this run</h2><ul>");
    for name in [
        "results.json",
        "test.json",
        "history.jsonl",
        "report.md",
        "junit.xml",
        "latency.svg",
        "rate.svg",
        "harness.log",
    ] {
        if name.starts_with("report")
            || name.ends_with(".svg")
            || name == "junit.xml"
            || run.dir.join(name).is_file()
        {
            let _ = write!(out, "<li><a href=\"{name}\">{name}</a></li>");
        }
    }
    out.push_str("</ul></main></body></html>\n");
    Ok(out)
}
