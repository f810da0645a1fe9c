//! `junit.xml`: one `<testsuite>` per run (a `test-all` matrix passes one run per
//! cell), one `<testcase>` per checker. An invalid checker is a `<failure>`, an unknown
//! one an `<error>` (it could not decide), each with the checker's summary as the
//! message and its details in the body, so CI dashboards show findings natively.
//! Follows the common JUnit XML schema (Ant/Jenkins `testsuites` layout).

use super::{esc, Run};
use checkers::Validity;
use std::fmt::Write;

/// Renders the document for `runs`.
pub fn render(runs: &[&Run]) -> String {
    let mut tests = 0;
    let mut failures = 0;
    let mut errors = 0;
    let mut time = 0.0;
    let mut suites = String::new();
    for run in runs {
        let r = &run.results;
        let f = r
            .checkers
            .iter()
            .filter(|c| c.valid == Validity::Invalid)
            .count();
        let e = r
            .checkers
            .iter()
            .filter(|c| c.valid == Validity::Unknown)
            .count();
        tests += r.checkers.len();
        failures += f;
        errors += e;
        time += r.stats.duration_s;
        let stamp = run
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(iso_timestamp)
            .map(|t| format!(" timestamp=\"{t}\""))
            .unwrap_or_default();
        let _ = writeln!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"{e}\" skipped=\"0\" time=\"{:.3}\"{stamp}>",
            esc(&r.test.name),
            r.checkers.len(),
            r.stats.duration_s
        );
        suites.push_str("    <properties>\n");
        for (k, v) in [
            ("system", r.system.clone()),
            ("workload", r.test.workload.clone()),
            ("nemesis", r.test.nemesis.clone()),
            ("seed", r.test.seed.to_string()),
            ("verdict", r.valid.to_string()),
            ("run", run.dir.display().to_string()),
        ] {
            let _ = writeln!(
                suites,
                "      <property name=\"{k}\" value=\"{}\"/>",
                esc(&v)
            );
        }
        suites.push_str("    </properties>\n");
        for c in &r.checkers {
            let _ = write!(
                suites,
                "    <testcase name=\"{}\" classname=\"splitbrain.{}\" time=\"{:.3}\"",
                esc(&c.checker),
                esc(&r.test.name),
                r.stats.duration_s
            );
            let tag = match c.valid {
                Validity::Valid => {
                    suites.push_str("/>\n");
                    continue;
                }
                Validity::Invalid => "failure",
                Validity::Unknown => "error",
            };
            let body = serde_json::to_string_pretty(&c.details).unwrap_or_default();
            let _ = writeln!(
                suites,
                ">\n      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>\n    </testcase>",
                esc(&c.summary),
                c.valid,
                esc(&truncate(&body, 64 * 1024))
            );
        }
        if !run.notes.is_empty() {
            let _ = writeln!(
                suites,
                "    <system-out>{}</system-out>",
                esc(&run.notes.join("\n"))
            );
        }
        suites.push_str("  </testsuite>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"splitbrain\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">\n{suites}</testsuites>\n"
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n... ({} more bytes in results.json)",
        &s[..cut],
        s.len() - cut
    )
}

/// `20261122T124646` (optionally `-2`) to `2026-11-22T12:46:46`.
pub fn iso_timestamp(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.get(8) != Some(&b'T') || !digits(0..8) || !digits(9..15) {
        return None;
    }
    // Only ASCII digits and 'T' up to byte 15: every slice below is on char boundaries.
    Some(format!(
        "{}-{}-{}T{}:{}:{}",
        &name[0..4],
        &name[4..6],
        &name[6..8],
        &name[9..11],
        &name[11..13],
        &name[13..15]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_folder_names_to_timestamps() {
        assert_eq!(
            iso_timestamp("20261122T124646").as_deref(),
            Some("2026-11-22T12:46:46")
        );
        assert_eq!(
            iso_timestamp("20261122T124646-2").as_deref(),
            Some("2026-11-22T12:46:46")
        );
        for bad in [
            "",
            "latest",
            "20261122X124646",
            "20261122T1246",
            "20261122T12464\u{e9}",
            "\u{e9}0261122T124646",
        ] {
            assert_eq!(iso_timestamp(bad), None, "{bad:?}");
        }
        assert_eq!(
            truncate("ab\u{e9}cd", 3),
            "ab\n... (4 more bytes in results.json)"
        );
    }
}
