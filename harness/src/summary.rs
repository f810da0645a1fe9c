//! The summary table `splitbrain test` prints at the end of a run.

use crate::runner::Results;
use tabled::builder::Builder;
use tabled::settings::Style;

/// One table: the verdict, the counts, then one row per checker.
pub fn render(r: &Results) -> String {
    let mut b = Builder::default();
    b.push_record(["", ""]);
    b.push_record(["verdict".to_string(), r.valid.to_string().to_uppercase()]);
    b.push_record(["system".to_string(), r.system.clone()]);
    b.push_record([
        "nodes".to_string(),
        r.test
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    ]);
    b.push_record([
        "client ops".to_string(),
        format!(
            "{} ({} ok, {} fail, {} info) in {:.1}s",
            r.stats.ops, r.stats.ok, r.stats.fail, r.stats.info, r.stats.duration_s
        ),
    ]);
    b.push_record([
        "faults".to_string(),
        r.faults
            .iter()
            .map(|f| f.topology.clone())
            .collect::<Vec<_>>()
            .join("; "),
    ]);
    for c in &r.checkers {
        if let Some(d) = c.details.as_object() {
            for (label, field) in [
                ("acknowledged writes", "acknowledged"),
                ("lost writes", "lost_count"),
                ("recovered (indeterminate, present)", "recovered_count"),
                ("divergent (missing on some nodes)", "divergent_count"),
            ] {
                if let Some(v) = d.get(field) {
                    b.push_record([label.to_string(), v.to_string()]);
                }
            }
        }
        b.push_record([
            format!("checker {}", c.checker),
            format!("{}: {}", c.valid, c.summary),
        ]);
    }
    if !r.heal_errors.is_empty() {
        b.push_record(["HEAL FAILED".to_string(), r.heal_errors.join("; ")]);
    }
    if r.interrupted {
        b.push_record(["interrupted".to_string(), "yes: no final reads".to_string()]);
    }
    b.push_record(["seed".to_string(), r.test.seed.to_string()]);
    let mut t = b.build();
    t.with(Style::sharp());
    t.to_string()
}
