//! docs/examples/nightly.yml: it parses as YAML (Ruby's Psych, since no YAML crate is a
//! dependency), has the shape docs/NIGHTLY-CI.md describes (doctor before test-all,
//! heal, reports published and a verdict step that fails on exit 1, 2 and 3, all of
//! those after a failure too), and every `splitbrain` command in it parses with the
//! real command line. The copy embedded in docs/NIGHTLY-CI.md is the same file.
//!
//! Ruby missing: skipped with a message, unless `CI=true` (then a failure).

use clap::Parser;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workflow as JSON, through `ruby -ryaml`; `None` when ruby is missing outside CI.
fn workflow() -> Option<Value> {
    let file = repo().join("docs/examples/nightly.yml");
    let out = match Command::new("ruby")
        .args([
            "-ryaml",
            "-rjson",
            "-e",
            "puts JSON.generate(YAML.safe_load_file(ARGV[0]))",
        ])
        .arg(&file)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!ci, "CI=true but ruby cannot run ({e}): install ruby");
            eprintln!("nightly_example: skipped: ruby is not installed ({e})");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "{} does not parse as YAML: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("JSON from ruby"))
}

/// Splits one shell command line into words: quotes and backslash escapes, no
/// expansions (the workflow's splitbrain lines use none).
fn words(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, any) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, '\\') | (Some('"'), '\\') => cur.extend(chars.next()),
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (_, c) => cur.push(c),
        }
    }
    assert!(quote.is_none(), "unclosed quote in {line:?}");
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `splitbrain` invocations of a `run:` script, continuation lines joined.
fn splitbrain_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("./target/release/splitbrain "))
        .map(words)
        .collect()
}

#[test]
fn nightly_workflow_parses_and_runs_doctor_test_all_heal_and_publishes() {
    let Some(w) = workflow() else { return };
    // YAML 1.1 (Psych) reads the bare key `on` as the boolean true; GitHub reads "on".
    let on = w.get("on").or_else(|| w.get("true")).expect("an `on:` key");
    assert!(on["schedule"][0]["cron"].is_string(), "no schedule: {on}");
    assert!(
        on.get("workflow_dispatch").is_some(),
        "no manual trigger: {on}"
    );
    let steps = w["jobs"]["nightly"]["steps"]
        .as_array()
        .expect("jobs.nightly.steps");
    let name = |s: &Value| s["name"].as_str().unwrap_or("").to_string();
    let index = |n: &str| {
        steps
            .iter()
            .position(|s| name(s) == n)
            .unwrap_or_else(|| panic!("no step {n:?}"))
    };
    let (up, doctor, matrix, heal, publish, verdict, down) = (
        index("Bring the cluster up"),
        index("Doctor"),
        index("Test matrix"),
        index("Heal the cluster"),
        index("Publish reports"),
        index("Verdict"),
        index("Tear down"),
    );
    assert!(
        up < doctor
            && doctor < matrix
            && matrix < heal
            && heal < publish
            && publish < verdict
            && verdict < down
    );
    for i in [heal, publish, index("JUnit summary"), verdict, down] {
        assert_eq!(
            steps[i]["if"],
            "always()",
            "{} must run after a failure too",
            name(&steps[i])
        );
    }
    assert_eq!(steps[matrix]["id"], "matrix");
    let paths = steps[publish]["with"]["path"].as_str().unwrap();
    for want in [
        "results/test-all-*.junit.xml",
        "results/*/*/report.html",
        "results/*/*/history.jsonl",
    ] {
        assert!(
            paths.lines().any(|l| l.trim() == want),
            "artifact paths miss {want}"
        );
    }
    assert!(steps[publish]["uses"]
        .as_str()
        .unwrap()
        .starts_with("actions/upload-artifact@"));

    // The verdict step: run its script with each exit code the matrix may report.
    let script = steps[verdict]["run"].as_str().unwrap();
    for (code, fails) in [
        ("0", false),
        ("1", true),
        ("2", true),
        ("3", true),
        ("", true),
    ] {
        let st = Command::new("bash")
            .args(["-e", "-c", script])
            .env("CODE", code)
            .output()
            .unwrap();
        assert_eq!(!st.status.success(), fails, "verdict with code {code:?}");
    }
    assert_eq!(
        steps[verdict]["env"]["CODE"],
        "${{ steps.matrix.outputs.code }}"
    );

    // Every splitbrain command line parses with the real CLI.
    let mut seen = Vec::new();
    for s in steps {
        for argv in splitbrain_commands(s["run"].as_str().unwrap_or("")) {
            if let Err(e) = harness::cli::Cli::try_parse_from(&argv) {
                panic!("{argv:?} does not parse: {e}");
            }
            seen.push(argv[1].clone());
        }
    }
    assert_eq!(seen, ["doctor", "test-all", "fault"]);
}

#[test]
fn nightly_doc_embeds_the_workflow_file() {
    let doc = std::fs::read_to_string(repo().join("docs/NIGHTLY-CI.md")).unwrap();
    let file = std::fs::read_to_string(repo().join("docs/examples/nightly.yml")).unwrap();
    let start = doc
        .find("```yaml\n")
        .expect("a yaml block in NIGHTLY-CI.md")
        + 8;
    let end = start + doc[start..].find("```").unwrap();
    assert_eq!(
        &doc[start..end],
        file,
        "docs/NIGHTLY-CI.md and docs/examples/nightly.yml differ"
    );
}

#[test]
fn shell_words_split_like_sh() {
    assert_eq!(
        words(r#"a 'b;c' "d e" f\ g ''"#),
        ["a", "b;c", "d e", "f g", ""]
    );
}
