//! junit.xml against the JUnit XML schema (report_support/junit.xsd, the Ant/Jenkins
//! junit-10 layout) with xmllint: valid, invalid and unknown checkers, several runs in
//! one document (a test-all matrix), and text that needs escaping. The schema itself
//! is shown to reject a malformed document, so the validation can fail.

mod report_support;

use checkers::Validity;
use harness::report::{self, junit};
use std::path::Path;
use std::process::Command;

fn xmllint(xml: &str, dir: &Path) -> (bool, String) {
    let file = dir.join(format!("j{}.xml", xml.len()));
    std::fs::write(&file, xml).unwrap();
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/report_support/junit.xsd");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(&file)
        .output()
        .expect("xmllint is needed for this test: apt-get install libxml2-utils (scripts/setup.sh --deps)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn junit_validates_and_carries_the_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a").join("20261122T101010");
    report_support::write_run(&a_dir, "cell-a", 400);
    let (mut a, _) = report::rebuild(&a_dir).unwrap();
    assert_eq!(a.results.valid, Validity::Invalid);
    // A second cell: one checker valid, one unknown, with text needing escapes.
    let mut b = a.clone();
    b.results.test.name = "cell <b> & \"q\"".into();
    let mut unknown = b.results.checkers[0].clone();
    unknown.checker = "linearizability".into();
    unknown.valid = Validity::Unknown;
    unknown.summary = "search budget <60s> exhausted & gave up".into();
    b.results.checkers[0].valid = Validity::Valid;
    b.results.checkers.push(unknown);
    a.notes.push("a note with ]]> and <tags>".into());

    let xml = junit::render(&[&a, &b]);
    let (ok, err) = xmllint(&xml, tmp.path());
    assert!(
        ok,
        "junit.xml does not validate: {err}\n{}",
        &xml[..xml.len().min(2000)]
    );
    let all: Vec<_> = a
        .results
        .checkers
        .iter()
        .chain(&b.results.checkers)
        .collect();
    let n = |v: Validity| all.iter().filter(|c| c.valid == v).count();
    assert!(n(Validity::Invalid) >= 1 && n(Validity::Unknown) >= 1);
    assert!(xml.contains(&format!(
        "<testsuites name=\"splitbrain\" tests=\"{}\" failures=\"{}\" errors=\"{}\"",
        all.len(),
        n(Validity::Invalid),
        n(Validity::Unknown)
    )));
    assert_eq!(xml.matches("<testcase ").count(), all.len());
    assert!(xml.contains("timestamp=\"2026-11-22T10:10:10\""));
    assert!(xml.contains(&format!(
        "<failure message=\"{}\" type=\"invalid\">",
        a.results.checkers[0].summary
    )));
    assert!(xml.contains(
        "<error message=\"search budget &lt;60s&gt; exhausted &amp; gave up\" type=\"unknown\">"
    ));
    assert!(xml.contains("name=\"cell &lt;b&gt; &amp; &quot;q&quot;\""));
    assert!(xml.contains("<testcase name=\"lost-writes\" classname=\"splitbrain.cell &lt;b&gt; &amp; &quot;q&quot;\" time="));
    assert!(xml.contains(&format!(
        "<property name=\"seed\" value=\"{}\"/>",
        report_support::SEED
    )));

    // The file written by rebuild validates too.
    let written = std::fs::read_to_string(a_dir.join("junit.xml")).unwrap();
    assert!(xmllint(&written, tmp.path()).0);

    // The schema is strict: a test case without a name, or a failure without a type, fails.
    let broken = xml.replacen("<testcase name=\"lost-writes\"", "<testcase", 1);
    assert!(!xmllint(&broken, tmp.path()).0);
    let broken = xml.replacen(" type=\"invalid\"", "", 1);
    assert!(!xmllint(&broken, tmp.path()).0);
}

#[test]
fn a_matrix_gets_one_suite_per_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<std::path::PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let d = tmp.path().join(n).join("20261122T101010");
            report_support::write_run(&d, n, 200);
            d
        })
        .collect();
    let out = tmp.path().join("junit.xml");
    report::write_matrix_junit(&out, &dirs).unwrap();
    let xml = std::fs::read_to_string(&out).unwrap();
    let (ok, err) = xmllint(&xml, tmp.path());
    assert!(ok, "{err}");
    assert_eq!(xml.matches("<testsuite ").count(), 3);
    for n in ["a", "b", "c"] {
        assert!(xml.contains(&format!("<testsuite name=\"{n}\"")));
    }
    let e = report::write_matrix_junit(&out, &[tmp.path().join("missing")]).unwrap_err();
    assert!(e.to_string().contains("missing: not a directory"), "{e}");
}
