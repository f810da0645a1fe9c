//! `splitbrain fault` bad input: every mistake is one line on stderr naming what and
//! where, exit 3, and nothing is sent to any node (the nodes here are closed ports
//! on loopback; input errors are found before connecting). Needs no root.

use std::path::PathBuf;
use std::process::Command;

fn splitbrain() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_splitbrain"))
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(splitbrain())
        .arg("fault")
        .args(args)
        .output()
        .expect("run splitbrain");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_is_one_line_exit_3_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes");
    // Port 1 on loopback: nothing listens, so a connection attempt would fail loudly.
    std::fs::write(
        &nodes,
        "n1 127.0.0.1:1\nn2 127.0.0.2:1\nn3 127.0.0.3:1\nn4 127.0.0.4:1\nn5 127.0.0.5:1\n",
    )
    .unwrap();
    let three = dir.path().join("three");
    std::fs::write(&three, "a 127.0.0.1:1\nb 127.0.0.2:1\nc 127.0.0.3:1\n").unwrap();
    let bad_json = dir.path().join("g.json");
    std::fs::write(&bad_json, r#"{"n1": "n2"}"#).unwrap();
    let unknown_toml = dir.path().join("g.toml");
    std::fs::write(&unknown_toml, "n1 = [\"n6\"]\n").unwrap();
    let nf = nodes.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["partition", "ring"],
            "unknown partition topology \"ring\"".into(),
        ),
        (
            vec!["partition", "isolate", "n9"],
            "unknown node \"n9\" in isolate (nodes: n1,n2,n3,n4,n5)".into(),
        ),
        (
            vec!["partition", "halves", "n1"],
            "partition halves takes no argument".into(),
        ),
        (
            vec!["partition", "--grudge", bad_json.to_str().unwrap()],
            format!("{}: not a grudge", bad_json.display()),
        ),
        (
            vec!["partition", "--grudge", unknown_toml.to_str().unwrap()],
            format!("unknown node \"n6\" in {}", unknown_toml.display()),
        ),
        (
            vec!["partition", "--grudge", "/nonexistent/g.json"],
            "reading grudge file /nonexistent/g.json".into(),
        ),
        (
            vec!["clock", "bump", "n1", "5x"],
            "invalid clock offset \"5x\"".into(),
        ),
        (
            vec!["clock", "bump", "n8", "+1s"],
            "unknown node \"n8\" in targets".into(),
        ),
        (
            vec!["clock", "strobe", "n1", "+0s", "+1s", "--period", "0ms"],
            "invalid --period".into(),
        ),
        (
            vec!["packet", "n1", "delay=abc"],
            "invalid packet fault \"delay=abc\"".into(),
        ),
        (
            vec!["packet", "n1", "jitter=5ms"],
            "jitter needs a delay".into(),
        ),
        (vec!["kill", "n7"], "unknown node \"n7\" in targets".into()),
        (vec!["pause", ","], "no target nodes in \",\"".into()),
    ];
    for (args, want) in cases {
        let mut full = vec!["--nodes-file", nf];
        full.extend(&args);
        let (code, err) = run(&full);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("splitbrain: fault: "), "{err}");
        assert!(err.contains(&want), "{args:?}: want {want:?} in {err}");
    }
    let (code, err) = run(&[
        "--nodes-file",
        three.to_str().unwrap(),
        "partition",
        "majorities-ring",
    ]);
    assert_eq!(code, 3);
    assert!(
        err.contains("majorities-ring needs at least 4 nodes (have 3)"),
        "{err}"
    );
    let (code, err) = run(&[
        "--state-dir",
        dir.path().join("nolab").to_str().unwrap(),
        "heal",
    ]);
    assert_eq!(code, 3);
    assert!(
        err.contains("no lab at") && err.contains("splitbrain lab up"),
        "{err}"
    );
    // Valid input reaches the connection, which fails naming the node.
    let key = dir.path().join("key");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let (code, err) = run(&[
        "--nodes-file",
        nf,
        "--ssh-private-key",
        key.to_str().unwrap(),
        "status",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("n1") && err.contains("127.0.0.1"), "{err}");
    let (code, err) = run(&["explode"]);
    assert_eq!(code, 3);
    assert!(err.contains("explode"), "{err}");
}
