//! The summary table `splitbrain test` prints at the end of a run, and the error line
//! for a run whose final heal left a node unhealed.

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

/// The error line for the runs (folder, verdict, heal errors) whose final heal failed on
/// some node; `None` when every node was healed.
pub fn unhealed_line<'a>(
    runs: impl Iterator<Item = (&'a std::path::Path, checkers::Validity, &'a [String])>,
) -> Option<String> {
    let failed: Vec<String> = runs
        .flat_map(|(dir, valid, errors)| {
            errors
                .iter()
                .map(move |e| format!("{} (verdict {valid}): {e}", dir.display()))
        })
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "the final heal failed, the cluster may still carry faults (run `splitbrain fault heal`; the verdict is in the reports): {}",
            failed.join("; ").replace('\n', " ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::unhealed_line;
    use checkers::Validity;
    use std::path::Path;

    #[test]
    fn unhealed_line_names_each_failed_run_and_is_none_when_all_healed() {
        let healed: Vec<String> = Vec::new();
        let failed = vec!["n2: ssh: connection refused\nafter 4 attempts".to_string()];
        let a = Path::new("results/a/1");
        let b = Path::new("results/b/2");
        assert_eq!(
            unhealed_line([(a, Validity::Valid, healed.as_slice())].into_iter()),
            None
        );
        let line = unhealed_line(
            [
                (a, Validity::Valid, healed.as_slice()),
                (b, Validity::Invalid, failed.as_slice()),
            ]
            .into_iter(),
        )
        .expect("a failed heal gives a line");
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("results/b/2 (verdict"), "{line}");
        assert!(
            line.contains("n2: ssh: connection refused after 4 attempts"),
            "{line}"
        );
        assert!(!line.contains("results/a/1"), "{line}");
        assert!(line.contains("splitbrain fault heal"), "{line}");
    }
}
