//! `splitbrain check` end to end through `harness::check::run_with`: verdicts and
//! exit codes on our JSONL and on corpus files of every format, one clear error line
//! (file, line, column) with exit 3 for each kind of bad input, and the timeline.

use clap::Parser;
use harness::check::{run_with, CheckArgs};
use std::path::PathBuf;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CheckArgs,
}

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

fn run(argv: &[&str]) -> (u8, String, String) {
    let cli = Cli::try_parse_from(std::iter::once("check").chain(argv.iter().copied()))
        .expect("arguments parse");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(&cli.args, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into(),
        String::from_utf8_lossy(&err).into(),
    )
}

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p: PathBuf = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn line(i: u64, p: u64, ty: &str, f: &str, v: &str) -> String {
    format!(
        "{{\"index\":{i},\"time\":{},\"process\":{p},\"type\":\"{ty}\",\"f\":\"{f}\",\"key\":\"k\",\"value\":{v}}}\n",
        i * 10
    )
}

fn history(read_value: &str) -> String {
    [
        line(0, 1, "invoke", "write", "1"),
        line(1, 1, "ok", "write", "1"),
        line(2, 2, "invoke", "read", "null"),
        line(3, 2, "ok", "read", read_value),
        line(4, 3, "invoke", "write", "2"),
        line(5, 3, "info", "write", "2"),
    ]
    .concat()
}

#[test]
fn jsonl_valid_and_invalid_histories_give_exit_codes_and_a_counterexample() {
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.jsonl", &history("1"));
    let (code, out, err) = run(&[&good]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("VALID") && out.contains("register"), "{out}");
    let bad = file(&dir, "bad.jsonl", &history("3"));
    let (code, out, _) = run(&[&bad]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID"), "{out}");
    assert!(out.contains("not linearizable on key \"k\""), "{out}");
    assert!(
        out.contains("stuck at: line      3") && out.contains("read -> 3"),
        "{out}"
    );
    assert!(out.contains("state after the prefix: 1"), "{out}");
    // Several files: the worst verdict decides.
    let (code, _, _) = run(&[&good, &bad]);
    assert_eq!(code, 1);
}

fn bad_input(name: &str, text: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, name, text);
    let mut argv = vec![path.as_str()];
    argv.extend_from_slice(extra);
    let (code, out, err) = run(&argv);
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&path), "names the file: {err}");
    err
}

#[test]
fn truncated_line_is_reported_with_line_and_column() {
    let mut text = history("1");
    text.push_str("{\"index\":6,\"time\":60,\"proc");
    let err = bad_input("h.jsonl", &text, &[]);
    assert!(err.contains("h.jsonl:7:"), "{err}");
}

#[test]
fn unknown_type_is_reported() {
    let text = history("1").replace("\"info\"", "\"maybe\"");
    let err = bad_input("h.jsonl", &text, &[]);
    assert!(err.contains("h.jsonl:6:") && err.contains("maybe"), "{err}");
}

#[test]
fn completion_without_invoke_is_reported() {
    let text = [
        line(0, 1, "invoke", "write", "1"),
        line(1, 2, "ok", "write", "1"),
    ]
    .concat();
    let err = bad_input("h.jsonl", &text, &[]);
    assert!(
        err.contains("h.jsonl:2:1:") && err.contains("without a preceding invocation"),
        "{err}"
    );
}

#[test]
fn edn_syntax_error_is_reported_with_line_and_column() {
    let text = "[{:process 0, :type :invoke, :f :read, :value nil}\n {:process 0, :type :ok, :f :read, :value 3]\n";
    let err = bad_input("h.edn", text, &[]);
    assert!(
        err.contains("h.edn:2:44:") && err.contains("unexpected ']'"),
        "{err}"
    );
    let err = bad_input("u.edn", "[{:process 0, :type :invoked, :f :read}]", &[]);
    assert!(
        err.contains("u.edn:1:2:") && err.contains("unknown type :invoked"),
        "{err}"
    );
}

#[test]
fn model_that_does_not_fit_is_bad_input() {
    let err = bad_input("h.jsonl", &history("1"), &["--model", "mutex"]);
    assert!(
        err.contains("h.jsonl:1:1:") && err.contains("mutex model has no function"),
        "{err}"
    );
}

#[test]
fn corpus_files_of_every_format_are_detected_and_judged() {
    let c = |p: &str| format!("{CORPUS}/{p}");
    assert_eq!(run(&[&c("porcupine/jepsen/etcd_002.log")]).0, 0);
    let (code, out, _) = run(&[&c("porcupine/jepsen/etcd_000.log")]);
    assert_eq!(code, 1);
    assert!(
        out.contains("porcupine-etcd") && out.contains("etcd"),
        "{out}"
    );
    assert_eq!(run(&[&c("porcupine/kv/c10-ok.txt")]).0, 0);
    assert_eq!(
        run(&[&c("porcupine/kv/c10-bad.txt"), "--model", "kv-no-partition"]).0,
        1
    );
    assert_eq!(run(&[&c("knossos/cas-register/bad/cas-failure.edn")]).0, 1);
    assert_eq!(
        run(&[&c("knossos/cas-register/good/memstress3-0.edn")]).0,
        0
    );
}

#[test]
fn time_limit_gives_unknown() {
    let c50 = format!("{CORPUS}/porcupine/kv/c50-bad.txt");
    let args = [
        c50.as_str(),
        "--model",
        "kv-no-partition",
        "--no-locality",
        "--time-limit",
        "0.3",
    ];
    let (code, out, _) = run(&args);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("UNKNOWN") && out.contains("time limit"),
        "{out}"
    );
}

#[test]
fn visualize_writes_a_self_contained_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let bad = file(&dir, "bad.jsonl", &history("3"));
    let html = dir.path().join("out.html");
    let (code, _, _) = run(&[&bad, "--visualize", &html.display().to_string()]);
    assert_eq!(code, 1);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("#e53935"),
        "the blocking op is drawn red"
    );
    assert!(page.contains("read -&gt; 3"));
    assert!(
        !page.contains("<script src") && !page.contains("<link"),
        "no external resources"
    );
}
