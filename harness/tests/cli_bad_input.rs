//! Bad input to `splitbrain test`: each case must end with exit status 3 and exactly
//! one line on stderr naming what is wrong and where — never a panic, never clap's
//! exit 2 (which means `unknown`). The cases that need a real sshd (wrong key,
//! unknown host key) use the lab and live in `e2e_lab.rs`.

use std::process::Command;

fn splitbrain(args: &[&str]) -> (i32, String) {
    let results = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_splitbrain"))
        .args(args)
        .arg("--results-dir")
        .arg(results.path())
        .env("HOME", results.path()) // no default keys, no agent: nothing outside the test
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run splitbrain");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line(args: &[&str], expect: &[&str]) {
    let (code, stderr) = splitbrain(args);
    assert_eq!(code, 3, "{args:?}: exit {code}\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("error") || l.contains("invalid") || l.contains("unknown"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "{args:?}: want one error line, got:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: panic\n{stderr}");
    for e in expect {
        assert!(
            errors[0].contains(e),
            "{args:?}: {e:?} not in {:?}",
            errors[0]
        );
    }
}

#[test]
fn malformed_nodes_files_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("nodes");
    std::fs::write(&bad, "n1 10.0.0.1\nn2 10.0.0.2:notaport\n").unwrap();
    assert_one_line(
        &["test", "--nodes-file", bad.to_str().unwrap()],
        &["nodes:2", "bad port"],
    );
    std::fs::write(&bad, "n1 10.0.0.1\nn1 10.0.0.2\n").unwrap();
    assert_one_line(
        &["test", "--nodes-file", bad.to_str().unwrap()],
        &["\"n1\" appears twice"],
    );
    std::fs::write(&bad, "# only a comment\n").unwrap();
    assert_one_line(
        &["test", "--nodes-file", bad.to_str().unwrap()],
        &["no nodes given"],
    );
    assert_one_line(
        &["test", "--nodes-file", "/nonexistent/nodes"],
        &["/nonexistent/nodes"],
    );
}

#[test]
fn unreachable_node_is_named() {
    // Port 1 on loopback: nothing listens, the connect is refused at once.
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, "").unwrap();
    let key = dir.path().join("key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(made.success());
    assert_one_line(
        &[
            "test",
            "--nodes",
            "127.0.0.1:1",
            "--known-hosts",
            kh.to_str().unwrap(),
            "--ssh-connect-timeout",
            "3s",
            "--ssh-private-key",
            key.to_str().unwrap(),
            "--zoo-binary",
            "/bin/true", // never reached: the connect fails first
        ],
        &["127.0.0.1", "cannot connect"],
    );
}

#[test]
fn bad_flags_and_values() {
    assert_one_line(&["test", "--time-limit", "5x"], &["invalid duration"]);
    assert_one_line(&["test", "--concurrency", "0"], &["invalid concurrency"]);
    assert_one_line(
        &["test", "--nemesis", "meteor"],
        &["unknown nemesis \"meteor\"", "partition"],
    );
    assert_one_line(
        &["test", "--workload", "bank"],
        &["unknown workload \"bank\"", "set"],
    );
    assert_one_line(
        &["test", "--strict-host-key-checking", "maybe"],
        &["accept-new"],
    );
    assert_one_line(&["test", "--no-such-flag"], &["--no-such-flag"]);
    assert_one_line(&["test", "--nodes", "a,,b"], &["empty entry"]);
    assert_one_line(
        &["test", "--nodes", "n1", "--zoo-mode", "paxos-ish"],
        &["unknown zoo mode"],
    );
    assert_one_line(
        &[
            "test",
            "--nodes",
            "n1",
            "--ssh-private-key",
            "/nonexistent/key",
        ],
        &["/nonexistent/key"],
    );
    assert_one_line(&["test", "--nodes", "n1", "--rate=-5"], &["--rate"]);
    for bad in ["0", "two", "-1"] {
        assert_one_line(
            &["test", "--workload", "register", "--processes-per-key", bad],
            &["--processes-per-key"],
        );
    }
    for bad in ["0", "-2", "1.5", "all"] {
        assert_one_line(
            &["test", "--max-faults", bad],
            &["--max-faults", "invalid max faults"],
        );
    }
    assert_one_line(
        &["test", "--nodes", "n1", "--name", "../escape"],
        &["--name"],
    );
}
