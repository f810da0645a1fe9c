//! Process-level tests of the `zoo` binary: bad requests over a live connection,
//! `--daemon` start / SIGTERM stop / pid file, and bad flags.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_ports, Cluster, BIN, TIMING};
use zoo::proto::{ErrorCode, Outcome, Request, Response, RoleKind};

fn exchange(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &[u8]) -> Response {
    stream.write_all(line).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn expect_error(r: Response, code: ErrorCode, contains: &str) {
    match r {
        Response::Error(e) => {
            assert_eq!((e.code, e.outcome), (code, Outcome::NotApplied), "{e}");
            assert!(e.message.contains(contains), "{e}");
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_an_error_and_the_connection_keeps_working() {
    let c = Cluster::start(1, &[]).await;
    let mut s = TcpStream::connect(c.nodes[0].addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let huge = vec![b'x'; 2 << 20];
    for (line, want) in [
        (&b"garbage"[..], "cannot parse request"),
        (br#"{"op":"add","key":"k"}"#, "missing field `value`"),
        (br#"{"op":"add","key":"k","value":1,"x":2}"#, "unknown field `x`"),
        (br#"{"op":"add","key":"k","value":1e400}"#, "cannot parse"),
        (b"\xff\xfe", "not UTF-8"),
        (&huge[..], "longer than"),
        (br#"{"op":"ping","from":"n7","view":{"node":"n7","role":"master","epoch":1,"master":null,"lineage":{"epoch":1,"node":"n7"},"offset":0}}"#, "not a peer"),
    ] {
        expect_error(exchange(&mut s, &mut r, line), ErrorCode::BadRequest, want);
    }
    let debug = br#"{"op":"debug_block_peers","peers":[]}"#;
    expect_error(
        exchange(&mut s, &mut r, debug),
        ErrorCode::Unsupported,
        "--debug-fault-injection",
    );
    match exchange(&mut s, &mut r, br#"{"op":"add","key":"k","value":5}"#) {
        Response::Added(ack) => assert_eq!((ack.master.as_str(), ack.epoch), ("n1", 1)),
        other => panic!("{other:?}"),
    }
    match exchange(&mut s, &mut r, br#"{"op":"role"}"#) {
        Response::Role(info) => assert_eq!((info.role, info.offset), (RoleKind::Master, 1)),
        other => panic!("{other:?}"),
    }
    // The typed client sees the same.
    let err = c
        .client(0)
        .await
        .call(
            &Request::DebugBlockPeers {
                peers: vec!["n1".into()],
            },
            common::CALL,
        )
        .await
        .unwrap();
    assert!(matches!(err, Response::Error(e) if e.code == ErrorCode::Unsupported));
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Kills a daemon (not our child) if a test fails before stopping it.
struct PidGuard(i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: sends SIGKILL to the daemon this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

#[test]
fn daemon_reports_ready_writes_pid_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let addr = format!("127.0.0.1:{port}");
    let pid_file = dir.path().join("n1.pid");
    let log = dir.path().join("n1.log");
    let start = |data: &str, listen: &str| {
        Command::new(BIN)
            .args(["--mode", "async-failover", "--node", "n1", "--daemon"])
            .args(["--listen", listen, "--peers", &format!("n1={addr}")])
            .arg("--data-dir")
            .arg(dir.path().join(data))
            .arg("--log")
            .arg(&log)
            .arg("--pid-file")
            .arg(&pid_file)
            .args(TIMING)
            .output()
            .unwrap()
    };
    let out = start("data", &addr);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = PidGuard(pid);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("pid {pid}")));
    assert!(alive(pid));
    // It listens right away: the parent returned only after the child was ready.
    TcpStream::connect(&addr).unwrap();

    // A second daemon on the same port fails with the child's error line.
    let out = start("data2", &addr);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // And one on the same data directory is refused by the lock.
    let other = format!("127.0.0.1:{}", free_ports(1)[0]);
    let out = start("data", &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another zoo process"));

    // SAFETY: SIGTERM to the daemon started above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "daemon ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_file.exists(), "pid file removed on clean shutdown");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("shutdown signal=SIGTERM") && text.contains("exit clean"),
        "{text}"
    );
}

#[test]
fn bad_flags_give_one_line_and_exit_2() {
    for (args, want) in [
        (
            vec!["--node", "n9", "--peers", "n1=127.0.0.1:1"],
            "--node `n9` is not one of --peers",
        ),
        (
            vec!["--node", "n1", "--peers", "n1=nowhere:1"],
            "is not an IP:PORT address",
        ),
    ] {
        let out = Command::new(BIN)
            .args([
                "--mode",
                "async-failover",
                "--listen",
                "127.0.0.1:1",
                "--data-dir",
                "/nonexistent",
            ])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want) && err.lines().count() == 1, "{err}");
    }
}

#[test]
fn a_daemon_starts_from_a_toml_config_with_flags_overriding_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let addr = format!("127.0.0.1:{port}");
    let pid_file = dir.path().join("n1.pid");
    let log = dir.path().join("n1.log");
    let config = dir.path().join("n1.toml");
    // The file names a mode the command line then overrides, and relative paths
    // nowhere: the daemon child must get the expanded flags, not re-read the file.
    std::fs::write(
        &config,
        format!(
            "mode = \"fixed-master\"\nnode = \"n1\"\nlisten = \"{addr}\"\npeers = [\"n1={addr}\"]\n\
             data_dir = \"{}\"\nlog = \"{}\"\npid_file = \"{}\"\ndaemon = true\n",
            dir.path().join("data").display(),
            log.display(),
            pid_file.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--mode", "raft"])
        .args(TIMING)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = PidGuard(pid);
    TcpStream::connect(&addr).unwrap();
    // SAFETY: SIGTERM to the daemon started above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "daemon ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(" start mode=raft "),
        "the flag overrode the file:\n{text}"
    );

    // A bad file: one line naming the file, exit 2, nothing started.
    std::fs::write(&config, "mode = \"raft\"\nheartbeat = 5\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() == 1
            && err.contains("n1.toml")
            && err.contains("unknown key `heartbeat`"),
        "{err}"
    );
}
