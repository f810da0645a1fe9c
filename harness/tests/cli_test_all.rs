//! Bad input to `splitbrain test-all` and the new `test` flags (`--workload`,
//! `--test-count`, `--latency-budget`, `--op-mix`, `--warmup`): exit status 3 and one
//! line on stderr naming
//! what is wrong, before any node is touched.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_splitbrain"))
        .args(args)
        .arg("--results-dir")
        .arg(dir.path())
        .env("HOME", dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run splitbrain");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_error(args: &[&str], expect: &[&str]) {
    let (code, stderr) = run(args);
    assert_eq!(code, 3, "{args:?}: exit {code}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{args:?}:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expect {
        assert!(lines[0].contains(e), "{e:?} not in {:?}", lines[0]);
    }
}

#[test]
fn bad_matrix_and_flags_are_one_line_each() {
    one_error(
        &["test-all", "--zoo-modes", "raft,paxos"],
        &["unknown zoo mode \"paxos\""],
    );
    one_error(
        &["test-all", "--workloads", "set,queue"],
        &["unknown workload \"queue\""],
    );
    one_error(
        &["test-all", "--nemeses", "partition;flood"],
        &["unknown nemesis \"flood\""],
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("matrix.toml");
    std::fs::write(&bad, "zoo_modes = \"raft\"\n").unwrap();
    one_error(
        &["test-all", "--matrix", bad.to_str().unwrap()],
        &["matrix.toml"],
    );
    one_error(
        &[
            "test-all",
            "--matrix",
            dir.path().join("missing.toml").to_str().unwrap(),
        ],
        &["missing.toml"],
    );
    one_error(
        &["test", "--workload", "queue"],
        &["unknown workload \"queue\""],
    );
    one_error(&["test", "--test-count", "0"], &["--test-count"]);
    one_error(
        &["test", "--latency-budget", "soon"],
        &["--latency-budget", "soon"],
    );
    one_error(
        &["test", "--workload", "register", "--op-mix", "read=1,add=2"],
        &["--op-mix", "no operation \"add\"", "read, write, cas"],
    );
    one_error(
        &["test", "--op-mix", "add=9,read=lots"],
        &["--op-mix", "weight \"lots\" of read"],
    );
    one_error(
        &["test", "--warmup", "30s", "--time-limit", "30s"],
        &["--warmup", "shorter than --time-limit"],
    );
    one_error(&["test", "--warmup", "soon"], &["--warmup", "soon"]);
    // Checked for every cell before the first one runs (register would come first).
    one_error(
        &[
            "test-all",
            "--workloads",
            "register,set",
            "--op-mix",
            "read=1,write=1",
        ],
        &["--op-mix", "for set", "no operation \"write\""],
    );
}
