//! `report.md`: the audit report, written for a reader who does not have the tool:
//! what was tested, how, what was found (with the ops as evidence), the verdict, and
//! the exact command that reproduces the run.

use super::findings::{self, Findings, MissingWrite};
use super::{fmt_s, reproduce_command, Run};
use checkers::Validity;
use std::fmt::Write;

/// Makes text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn missing(out: &mut String, f: &Findings, writes: &[MissingWrite], total: usize) {
    let shown = findings::MAX_ROWS.min(writes.len());
    if total > shown {
        let _ = writeln!(
            out,
            "The first {shown} of {total} are listed; results.json has all.\n"
        );
    }
    out.push_str("| element | acknowledged at | sent to | acknowledged by | process | invoke op | ok op | missing on |\n|---:|---:|---|---|---:|---:|---:|---|\n");
    for ev in f.evidence(writes) {
        let w = ev.write;
        let (p, i, o) = match ev.op {
            Some(op) => (
                op.process.to_string(),
                op.invoke_index.to_string(),
                op.complete_index.map_or("-".into(), |x| x.to_string()),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {p} | {i} | {o} | {} |",
            w.element,
            fmt_s(w.acked_at as f64 / 1e9),
            cell(w.node.as_deref().unwrap_or("?")),
            cell(w.acked_by.as_deref().unwrap_or("not reported")),
            cell(&w.missing_on.join(", "))
        );
    }
    out.push('\n');
}

fn verdict_sentence(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "No checker found a violation in this run. This shows the faults injected here did not produce an anomaly the checkers look for; it does not prove the system correct.",
        Validity::Invalid => "At least one checker found a violation: the system lost or corrupted data it had acknowledged, under the faults listed above.",
        Validity::Unknown => "The checkers could not decide (for example, final reads did not succeed, or the run was interrupted); the reasons are listed under Findings.",
    }
}

/// Renders the report.
pub fn render(run: &Run) -> String {
    let r = &run.results;
    let t = &r.test;
    let a = &run.analysis;
    let f = Findings::of(run);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Audit report: {}\n\n**Verdict: {}**\n",
        t.name,
        r.valid.to_string().to_uppercase()
    );
    for n in &run.notes {
        let _ = writeln!(out, "> Note: {n}\n");
    }
    out.push_str("## What was tested\n\n");
    let nodes: Vec<String> = t
        .nodes
        .iter()
        .map(|n| format!("{} ({}:{})", n.name, n.host, n.port))
        .collect();
    let _ = writeln!(
        out,
        "- System: {} (harness {})",
        r.system, t.harness_version
    );
    if let Some(env) = &r.environment {
        if let Some(v) = &env.system_version {
            let _ = writeln!(out, "- System version: {v}");
        }
    }
    let _ = writeln!(
        out,
        "- Topology: {} nodes: {}{}",
        t.nodes.len(),
        nodes.join(", "),
        if t.lab {
            " (the local lab: one network namespace per node on one machine)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- Workload: {} ({} client processes, target {} ops/s, op timeout {} s)",
        t.workload, t.concurrency, t.rate, t.op_timeout
    );
    let _ = writeln!(
        out,
        "- Faults: nemesis {}, each fault {} s, {} s between faults",
        t.nemesis,
        t.nemesis_interval,
        t.nemesis_interval / 2.0
    );
    let _ = writeln!(
        out,
        "- Duration: {} s of client load, then heal, {} s recovery, final reads; {:.1} s in all",
        t.time_limit, t.recovery_time, r.stats.duration_s
    );
    let _ = writeln!(out, "- Seed: {}", t.seed);
    if let Some(env) = &r.environment {
        if let Some(c) = &env.controller {
            let _ = writeln!(out, "- Controller kernel: {c}");
        }
        for n in &env.nodes {
            let _ = writeln!(
                out,
                "- Node {}: {} / {}",
                n.node,
                n.os.as_deref().or(n.error.as_deref()).unwrap_or("?"),
                n.kernel.as_deref().unwrap_or("?")
            );
        }
    }
    out.push_str("\n## Method\n\n");
    out.push_str("The harness connected to every node over SSH, installed and started the system, and ran client processes that each perform one operation at a time against their node, recording every invocation and completion in `history.jsonl` with a timestamp (nanoseconds since the test began, on the controller's monotonic clock). An operation that timed out or whose outcome is unknown is recorded as indeterminate (`info`) and its process is replaced. Meanwhile the nemesis injected the faults below with iptables rules on the nodes, and healed each one. After the load, every fault was healed, the system was given time to recover, and each node was asked for a final read.\n\n");
    if t.workload == "set" {
        out.push_str("Workload `set`: clients add unique integers to a set and sometimes read it. The lost-writes checker then requires every acknowledged add to be present in the final reads: an acknowledged add missing from every final read is **lost**; one missing from some is **divergent**.\n\n");
    }
    out.push_str("### Faults as injected\n\n");
    if a.faults.is_empty() {
        out.push_str("None.\n\n");
    } else {
        out.push_str("| fault | what | from | healed | ok | fail | indeterminate | first acked write after start | after heal |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (i, (fl, av)) in a.faults.iter().zip(&a.availability).enumerate() {
            let _ = writeln!(
                out,
                "| F{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                cell(&fl.label),
                fmt_s(fl.start),
                fl.end.map_or("not healed in history".into(), fmt_s),
                av.ok,
                av.fail,
                av.info,
                av.first_ok_write_after_start.map_or("none".into(), fmt_s),
                av.first_ok_write_after_heal.map_or("none".into(), fmt_s)
            );
        }
        out.push('\n');
    }
    for e in &r.heal_errors {
        let _ = writeln!(out, "> Heal failed: {e}\n");
    }
    out.push_str("## Findings\n\n");
    let _ = writeln!(
        out,
        "Client operations: {} ({} ok, {} failed, {} indeterminate).\n",
        r.stats.ops, r.stats.ok, r.stats.fail, r.stats.info
    );
    for (c, set) in r.checkers.iter().zip(&f.sets) {
        let _ = writeln!(
            out,
            "### Checker `{}`: {}\n\n{}\n",
            c.checker,
            c.valid.to_string().to_uppercase(),
            c.summary
        );
        if c.checker == "dual-master" {
            if let Some(d) = super::checks::DualDetails::of(&c.details) {
                super::checks::dual_md(&mut out, &d);
            }
        }
        if c.checker == "linearizable" && c.valid == Validity::Invalid {
            if let Some(failing) = c.details.get("failing").filter(|f| !f.is_null()) {
                let _ = writeln!(
                    out,
                    "Failing key: `{}`. Longest linearizable prefix: {}. Blocked at: {}. Drawing: `linearizability.html`.\n",
                    failing.get("key").map_or("-".to_string(), |k| k.to_string()),
                    failing.get("linearizable_prefix").map_or("-".to_string(), |p| p.to_string()),
                    failing.get("blocked_at").map_or("-".to_string(), |b| b.to_string())
                );
            }
        }
        let Some(s) = set else { continue };
        if !s.lost.is_empty() {
            let _ = writeln!(out, "**{} lost writes.** Each row is an add the system acknowledged to its client (op numbers are lines of `history.jsonl`, counted from 0), that no final read contains:\n", s.lost_count);
            missing(&mut out, &f, &s.lost, s.lost_count);
        }
        if !s.divergent.is_empty() {
            let _ = writeln!(
                out,
                "**{} divergent writes** (present in some final reads, missing from others):\n",
                s.divergent_count
            );
            missing(&mut out, &f, &s.divergent, s.divergent_count);
        }
        for (label, list, n) in [
            (
                "Recovered (indeterminate adds that are present)",
                &s.recovered,
                s.recovered_count,
            ),
            ("Read but never added", &s.unexpected, s.unexpected_count),
            (
                "Failed adds that are present",
                &s.failed_but_present,
                s.failed_but_present_count,
            ),
            (
                "Stale reads, not a violation for this checker (examples)",
                &s.stale,
                s.stale_count,
            ),
        ] {
            if n > 0 {
                let _ = writeln!(out, "- {label}: {}", findings::examples(list, n));
            }
        }
        for reason in &s.unknown_reasons {
            let _ = writeln!(out, "- Unknown because: {reason}");
        }
        out.push('\n');
    }
    if !f.overlaps.is_empty() {
        let _ = writeln!(out, "### Two masters at once\n\nFrom the node that acknowledged each write (`acked_by`), two nodes acknowledged writes at overlapping times in {} window(s):\n\n| from | to | nodes |\n|---:|---:|---|", f.overlaps.len());
        for (x, y, n) in &f.overlaps {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                fmt_s(*x),
                fmt_s(*y),
                n.join(" and ")
            );
        }
        out.push('\n');
    }
    if !a.clock.is_empty() {
        out.push_str("### Clock offsets (as the system's processes saw them)\n\n| at | node | offset |\n|---:|---|---:|\n");
        for r in a.clock.iter().take(200) {
            let _ = writeln!(
                out,
                "| {} | {} | {:+.3} s |",
                fmt_s(r.time),
                r.node,
                r.offset_s
            );
        }
        if a.clock.len() > 200 {
            let _ = writeln!(
                out,
                "\n({} readings in all; history.jsonl has every one.)",
                a.clock.len()
            );
        }
        out.push('\n');
    }
    out.push_str("### Latency (ms, final reads excluded)\n\n| op | count | ok | fail | info | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for q in &a.quantiles {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            q.f, q.count, q.ok, q.fail, q.info, q.p50, q.p90, q.p99, q.max
        );
    }
    let _ = writeln!(out, "\nPlots: `latency.svg`, `rate.svg`, and `report.html` (with the per-process timeline).\n\n## Verdict\n\n**{}.** {}\n", r.valid.to_string().to_uppercase(), verdict_sentence(r.valid));
    let _ = writeln!(
        out,
        "## How to reproduce\n\nThe fault schedule and op mix are seeded; timing on real machines differs between runs, so the same seed reproduces the same test, not necessarily the same interleaving.\n\n```sh\n{}\n```\n\nRe-check this history offline: `splitbrain check {}/history.jsonl`; rebuild these reports: `splitbrain report {}`.",
        reproduce_command(t),
        run.dir.display(),
        run.dir.display()
    );
    out
}
