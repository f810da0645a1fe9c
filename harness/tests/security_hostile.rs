//! Hostile strings through the command builders, for real: paths (node workdirs,
//! pid and offset files) and hosts made of quotes, `;`, `$()`, backticks, newlines,
//! globs and other shell metacharacters (no NUL, no `/` inside a name) are run by
//! `sh` and must arrive verbatim:
//!
//! - nemesis clock and process scripts: the offset file is written under exactly the
//!   hostile directory with exactly the offset, `date` under libfaketime reads it
//!   (so the environment assignment survived), the strobe pid file and a system's pid
//!   file reach `kill` (a live child process dies), and the status line reads it;
//! - the zoo's setup and start command line: a stand-in binary records its argv, which
//!   must equal the intended words (workdir- and host-derived ones included);
//! - upload and download over a real SSH session (the control fixture's sshd on
//!   127.0.0.1): a file lands at exactly the hostile remote path, byte for byte, and
//!   comes back to a hostile local path.
//!
//! Nothing may escape: a `$(touch ...)` piece names a marker file that must never exist.
//! The iptables and netem builders take typed addresses (`Ipv4Addr`) and parsed fault
//! specs, so no free-form string reaches them; the quoting function itself is
//! property-tested in `control_quote.rs`.

mod control_fixture;

use harness::control::{LocalExec, Remote, Session, Target};
use harness::nodes::NodeSpec;
use harness::systems::zoo::{Zoo, PORT};
use harness::systems::{NodeHandle, System};
use nemesis::clock::{self, ClockTarget, Offset};
use nemesis::process::{self, Signal};
use proptest::prelude::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const MARKER: &str = "/tmp/splitbrain-security-pwned";

/// A file name made of shell metacharacters: never empty, `.` or `..`, no `/` or NUL.
fn hostile_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just(format!("$(touch {MARKER})")),
        Just(format!("`touch {MARKER}`")),
        Just(";".to_string()),
        Just("&&".to_string()),
        Just("|".to_string()),
        Just("\n".to_string()),
        Just(" ".to_string()),
        Just("$HOME".to_string()),
        Just("*".to_string()),
        Just("~".to_string()),
        Just("-n".to_string()),
        Just("%s".to_string()),
        Just("'\\''".to_string()),
        Just("é☃".to_string()),
        "[^\u{0}/]{1,3}",
    ];
    proptest::collection::vec(piece, 1..6)
        .prop_map(|v| v.concat())
        .prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn sh(script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh")
}

fn sh_ok(script: &str) -> String {
    let out = sh(script);
    assert!(
        out.status.success(),
        "{script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A `sleep` child whose pid is written to `pid_file`, reaped by a thread of its own
/// as soon as it ends (a zombie would still answer `kill -0`); `(pid, exit)`.
fn sleeper(pid_file: &str) -> (u32, std::thread::JoinHandle<std::process::ExitStatus>) {
    let mut child = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::fs::write(pid_file, format!("{pid}\n")).unwrap();
    (pid, std::thread::spawn(move || child.wait().unwrap()))
}

/// Whether the sleeper died of a signal within 5 s (otherwise it is killed here).
fn killed(pid: u32, exit: std::thread::JoinHandle<std::process::ExitStatus>) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !exit.is_finished() {
        if std::time::Instant::now() > deadline {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = exit.join();
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    exit.join().unwrap().signal().is_some()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn clock_and_process_scripts_take_hostile_paths(name in hostile_name()) {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join(&name);
        std::fs::create_dir_all(&base).unwrap();
        let wd = base.to_str().unwrap();
        let offset_file = clock::lab_offset_file(wd);
        prop_assert_eq!(&offset_file, &format!("{wd}/faketime.rc"));

        let libfaketime = Path::new(clock::LIBFAKETIME).exists();
        if libfaketime {
            sh_ok(&clock::lab_bump_script(&offset_file, Offset(1.5)));
            prop_assert_eq!(std::fs::read_to_string(&offset_file).unwrap(), "+1.500000\n");
            let target = ClockTarget::Lab { offset_file: offset_file.clone() };
            let before = now();
            let seen: f64 = sh_ok(&clock::read_clock_script(&target)).trim().parse().unwrap();
            let offset = seen - (before + now()) / 2.0;
            prop_assert!((offset - 1.5).abs() < 0.5, "offset {offset} through {offset_file:?}");
        } else {
            std::fs::write(&offset_file, "+1.500000\n").unwrap();
        }

        let strobe_pid = clock::strobe_pid_file(wd);
        let (spid, strobe) = sleeper(&strobe_pid);
        sh_ok(&clock::lab_reset_script(&offset_file, &strobe_pid));
        prop_assert!(killed(spid, strobe), "strobe pid file {strobe_pid:?} did not reach kill");
        prop_assert!(!Path::new(&offset_file).exists() && !Path::new(&strobe_pid).exists());

        let pid_file = format!("{wd}/zoo.pid");
        let (dpid, daemon) = sleeper(&pid_file);
        let status = sh_ok(&process::status_script(&pid_file));
        prop_assert_eq!(status.trim(), format!("{dpid} S -"));
        sh_ok(&process::signal_script(&pid_file, Signal::Kill));
        prop_assert!(killed(dpid, daemon), "pid file {pid_file:?} did not reach kill");
        prop_assert!(!Path::new(MARKER).exists(), "a hostile piece ran");
    }

    #[test]
    fn zoo_command_line_arrives_verbatim(name in hostile_name(), host in hostile_name()) {
        let tmp = tempfile::tempdir().unwrap();
        let workdir = tmp.path().join(&name).to_str().unwrap().to_string();
        // The stand-in records its argv next to itself, NUL-separated.
        let shim = tmp.path().join("zoo-shim");
        std::fs::write(&shim, "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$(dirname \"$0\")/argv\"\n").unwrap();
        std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let spec = NodeSpec { name: "n1".into(), host: host.clone(), port: 22, user: None, workdir: workdir.clone() };
        let node = NodeHandle {
            spec: spec.clone(),
            remote: Arc::new(Target::Local(LocalExec::new(spec.clone(), Duration::from_secs(20)))),
        };
        let zoo = Zoo::with_binary("async-failover", shim).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(zoo.setup_node(&node, std::slice::from_ref(&spec))).unwrap();
        let dir = format!("{workdir}/zoo");
        let argv = std::fs::read(format!("{dir}/bin/argv")).unwrap();
        let got: Vec<String> = argv
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8(w.to_vec()).unwrap())
            .collect();
        let want = vec![
            "--mode".to_string(), "async-failover".into(),
            "--node".into(), "n1".into(),
            "--listen".into(), format!("{host}:{PORT}"),
            "--peers".into(), format!("n1={host}:{PORT}"),
            "--data-dir".into(), format!("{dir}/data"),
            "--log".into(), format!("{dir}/zoo.log"),
            "--pid-file".into(), format!("{dir}/zoo.pid"),
            "--daemon".into(),
        ];
        prop_assert_eq!(got, want);
        let data = format!("{dir}/data");
        prop_assert!(Path::new(&data).is_dir());
        prop_assert!(!Path::new(MARKER).exists(), "a hostile piece ran");
    }
}

#[test]
fn upload_and_download_over_ssh_keep_hostile_paths() {
    let sshd = control_fixture::Sshd::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = rt
        .block_on(Session::connect(&sshd.node("n1"), &sshd.options()))
        .expect("connect to the fixture sshd");
    let tmp = tempfile::tempdir().unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    runner
        .run(
            &(
                hostile_name(),
                hostile_name(),
                proptest::collection::vec(any::<u8>(), 0..2048),
            ),
            |(dir, file, bytes)| {
                let case = tempfile::tempdir_in(tmp.path()).unwrap();
                let local = case.path().join("source");
                std::fs::write(&local, &bytes).unwrap();
                let remote = format!("{}/{dir}/{file}", case.path().display());
                rt.block_on(session.upload(&local, &remote, 0o640)).unwrap();
                prop_assert_eq!(std::fs::read(&remote).unwrap(), bytes.clone());
                let mode = std::os::unix::fs::PermissionsExt::mode(
                    &std::fs::metadata(&remote).unwrap().permissions(),
                );
                prop_assert_eq!(mode & 0o777, 0o640);
                let back = case.path().join(format!("{file}.back"));
                rt.block_on(session.download(&remote, &back)).unwrap();
                prop_assert_eq!(std::fs::read(&back).unwrap(), bytes);
                prop_assert!(!Path::new(MARKER).exists(), "a hostile piece ran");
                Ok(())
            },
        )
        .unwrap();
    rt.block_on(session.close());
}
