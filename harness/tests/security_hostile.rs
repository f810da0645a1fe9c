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
//! - the real systems, started for real on this machine through their own setup and
//!   stopped through their teardown, each in a hostile workdir: Redis + Sentinel
//!   (both pid files at exactly the hostile paths, each daemon's working directory
//!   exactly its hostile `dir` from the config file, both logs there; a workdir with
//!   `*`, `?` or `[`, which Redis 7 would read as a glob, refused) and etcd (its
//!   pid file, working directory and log, and its data directory from the YAML config,
//!   where it creates `member/`); PostgreSQL refuses a workdir, host or name it cannot
//!   hand to `pg_ctl -o` (a shell) with one line naming it, before running anything;
//! - fault markers (what `fault heal` reads): written under, read back from and
//!   removed from exactly the hostile workdir.
//!
//! Nothing may escape: a `$(touch ...)` piece names a marker file that must never exist.
//! The iptables and netem builders take typed addresses (`Ipv4Addr`) and parsed fault
//! specs, so no free-form string reaches them; the quoting function itself is
//! property-tested in `control_quote.rs`.

mod control_fixture;

use harness::control::{LocalExec, Remote, Session, Target};
use harness::nodes::NodeSpec;
use harness::systems::etcd::Etcd;
use harness::systems::postgres::{conf::plain_word, Postgres};
use harness::systems::redis::config::{Paths, Tuning};
use harness::systems::redis::RedisSentinel;
use harness::systems::zoo::{Zoo, PORT};
use harness::systems::{NodeHandle, System, SystemKind, SystemOptions, SystemSpec};
use nemesis::clock::{self, ClockTarget, Offset};
use nemesis::marker::{self, MarkedFault, Marker};
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
        // Running (S, R, or D for a moment on a loaded machine), not stopped, no faketime.
        let status = sh_ok(&process::status_script(&pid_file));
        let words: Vec<&str> = status.split_whitespace().collect();
        let dpid_text = dpid.to_string();
        prop_assert_eq!(words.len(), 3, "{:?}", status);
        prop_assert_eq!(words[0], dpid_text.as_str());
        prop_assert!(["S", "R", "D"].contains(&words[1]), "{:?}", status);
        prop_assert_eq!(words[2], "-");
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

fn local_node(host: &str, workdir: &str) -> (NodeSpec, NodeHandle) {
    let spec = NodeSpec {
        name: "n1".into(),
        host: host.into(),
        port: 22,
        user: None,
        workdir: workdir.into(),
    };
    let node = NodeHandle {
        spec: spec.clone(),
        remote: Arc::new(Target::Local(LocalExec::new(
            spec.clone(),
            Duration::from_secs(60),
        ))),
    };
    (spec, node)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The live process in `pid_file`, waiting up to 10 s for it to be written.
/// Kills (SIGKILL) every daemon whose pid file lies under a test's directory when the
/// test ends, failed or not: a failed assertion or a setup that returned early must not
/// leave a Redis, Sentinel or etcd running. Walks the tree in Rust, so hostile names
/// never pass through a shell here.
struct KillPidFiles(std::path::PathBuf);

impl Drop for KillPidFiles {
    fn drop(&mut self) {
        let mut dirs = vec![self.0.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(path),
                    Ok(t) if t.is_file() && path.extension().is_some_and(|x| x == "pid") => {
                        let pid = std::fs::read_to_string(&path)
                            .ok()
                            .and_then(|t| t.trim().parse::<i32>().ok());
                        if let Some(pid) = pid.filter(|p| *p > 1) {
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn live_pid(pid_file: &str) -> Option<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        if let Some(p) = pid.filter(|p| Path::new(&format!("/proc/{p}")).exists()) {
            return Some(p);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` is gone (or a zombie) within 10 s.
fn gone(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty()
            || stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'))
        {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cwd(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn have(program: &str) -> bool {
    sh(&format!("command -v {program}")).status.success()
}

/// Skips (said on stderr) when `program` is missing here, which `CI=true` forbids.
fn need(program: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "CI=true but {program} is not installed (.ci/run installs it)"
    );
    eprintln!("security_hostile: {program} not installed: skipped");
    false
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1))]

    /// Several workdirs per case, run side by side: each daemon takes one to two
    /// seconds to stop on SIGTERM, so the teardowns run at once.
    #[test]
    fn redis_and_sentinel_take_hostile_workdirs(
        names in proptest::collection::vec(hostile_name(), 6)
    ) {
        if !need("redis-server") || !need("redis-sentinel") {
            return Ok(());
        }
        let tmp = tempfile::tempdir().unwrap();
        let _kill = KillPidFiles(tmp.path().to_path_buf());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut cases = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let workdir = tmp.path().join(i.to_string()).join(name).to_str().unwrap().to_string();
            let mut tuning = Tuning::for_mode("sentinel").unwrap();
            tuning.redis_port = free_port();
            tuning.sentinel_port = free_port();
            let redis = Arc::new(RedisSentinel::with_tuning("sentinel", tuning, true));
            let (spec, node) = local_node("127.0.0.1", &workdir);
            let setup = rt.block_on(redis.setup_node(&node, std::slice::from_ref(&spec)));
            let paths = Paths::for_node(&workdir, true);
            if workdir.contains(['*', '?', '[']) {
                // Redis would read the config path as a glob: refused, nothing run.
                let err = format!("{:#}", setup.unwrap_err());
                prop_assert_eq!(err, paths.check("n1").unwrap_err());
                prop_assert!(!Path::new(&workdir).exists(), "nothing ran for {:?}", workdir);
                continue;
            }
            let pids = (live_pid(&paths.redis_pid()), live_pid(&paths.sentinel_pid()));
            let cwds = (pids.0.map(cwd), pids.1.map(cwd));
            cases.push((redis, node, paths, setup, pids, cwds));
        }
        let _in = rt.enter();
        let mut set = tokio::task::JoinSet::new();
        for (redis, node, ..) in &cases {
            let (redis, node) = (redis.clone(), node.clone());
            set.spawn(async move { redis.teardown_node(&node).await.map_err(|e| format!("{e:#}")) });
        }
        let teardowns: Vec<Result<(), String>> = rt.block_on(async {
            let mut out = Vec::new();
            while let Some(r) = set.join_next().await {
                out.push(r.unwrap());
            }
            out
        });
        for (_, _, paths, setup, pids, cwds) in cases {
            prop_assert!(setup.is_ok(), "{:?}", setup);
            let (Some(server), Some(sentinel)) = pids else {
                return Err(TestCaseError::fail(format!("no pid file at {:?} or {:?}", paths.redis_pid(), paths.sentinel_pid())));
            };
            prop_assert!(gone(server) && gone(sentinel), "teardown stopped both");
            // Each daemon's working directory is its `dir` from the config file.
            prop_assert_eq!(cwds.0.as_deref(), Some(Path::new(&paths.data)));
            prop_assert_eq!(cwds.1.as_deref(), Some(Path::new(&paths.base)));
            prop_assert!(Path::new(&paths.redis_log()).is_file(), "{:?}", paths.redis_log());
            prop_assert!(Path::new(&paths.sentinel_log()).is_file(), "{:?}", paths.sentinel_log());
            prop_assert!(!Path::new(&paths.redis_pid()).exists() && !Path::new(&paths.sentinel_pid()).exists());
        }
        prop_assert!(teardowns.iter().all(Result::is_ok), "{:?}", teardowns);
        prop_assert!(!Path::new(MARKER).exists(), "a hostile piece ran");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn etcd_takes_a_hostile_workdir(name in hostile_name()) {
        if !need("etcd") {
            return Ok(());
        }
        let tmp = tempfile::tempdir().unwrap();
        let _kill = KillPidFiles(tmp.path().to_path_buf());
        let workdir = tmp.path().join(&name).to_str().unwrap().to_string();
        let etcd = Etcd::new(&SystemOptions {
            spec: SystemSpec { kind: SystemKind::Etcd, mode: "raft".into() },
            lab: true,
            clock_faults: false,
            zoo_binary: Default::default(),
        })
        .unwrap();
        let (spec, node) = local_node("127.0.0.1", &workdir);
        let rt = runtime();
        let dir = format!("{workdir}/etcd");
        let setup = rt.block_on(etcd.setup_node(&node, std::slice::from_ref(&spec)));
        let pid = live_pid(&etcd.pid_file(&spec));
        // The data directory comes from the YAML config: etcd makes `member/` in it.
        let member = Path::new(&dir).join("data/member");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while pid.is_some() && !member.is_dir() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid_cwd = pid.map(cwd);
        rt.block_on(etcd.teardown_node(&node)).unwrap();
        setup.unwrap();
        let Some(pid) = pid else {
            return Err(TestCaseError::fail(format!("no pid file at {:?}", etcd.pid_file(&spec))));
        };
        prop_assert!(gone(pid), "teardown stopped etcd");
        prop_assert!(member.is_dir(), "no {:?}", member);
        prop_assert_eq!(pid_cwd.as_deref().and_then(Path::to_str), Some(dir.as_str()));
        let log = format!("{dir}/etcd.log");
        prop_assert!(std::fs::metadata(&log).is_ok_and(|m| m.len() > 0), "{:?}", log);
        prop_assert!(!Path::new(MARKER).exists(), "a hostile piece ran");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn postgres_refuses_what_it_cannot_quote_before_running_anything(
        name in hostile_name(),
        host in prop_oneof![Just("127.0.0.1".to_string()), hostile_name()],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let workdir = tmp.path().join(&name).to_str().unwrap().to_string();
        let base = format!("{workdir}/postgres");
        let what = if !plain_word(&host) {
            ("address", host.clone())
        } else if !plain_word(&base) {
            ("data directory", base.clone())
        } else {
            // Plain words: nothing to refuse (and a real setup is the lab tests' job).
            return Ok(());
        };
        let pg = Postgres::new(
            &SystemOptions {
                spec: SystemSpec { kind: SystemKind::Postgres, mode: "async".into() },
                lab: true,
                clock_faults: false,
                zoo_binary: Default::default(),
            },
            workloads::WorkloadKind::Set,
        )
        .unwrap();
        let (spec, node) = local_node(&host, &workdir);
        let err = runtime()
            .block_on(pg.setup_node(&node, std::slice::from_ref(&spec)))
            .unwrap_err();
        prop_assert_eq!(
            format!("{err:#}"),
            format!("n1: postgres needs a {} of letters, digits and ._-/: only, got {:?}", what.0, what.1)
        );
        prop_assert!(!Path::new(&workdir).exists(), "nothing ran on the node");
        prop_assert!(!Path::new(MARKER).exists(), "a hostile piece ran");
    }

    #[test]
    fn fault_markers_take_hostile_workdirs(name in hostile_name(), host in hostile_name()) {
        let tmp = tempfile::tempdir().unwrap();
        let workdir = tmp.path().join(&name).to_str().unwrap().to_string();
        let m = Marker {
            fault: MarkedFault::Pause { system: host.clone(), pid_file: Some(format!("{workdir}/zoo.pid")) },
            since_unix_s: 1.5,
            controller_pid: 7,
            controller_host: host,
        };
        sh_ok(&marker::write_script(&workdir, &m));
        let file = format!("{workdir}/faults/pause.json");
        prop_assert!(Path::new(&file).is_file(), "{:?}", file);
        let (got, bad) = marker::parse(&sh_ok(&marker::read_script(&workdir)));
        prop_assert!(bad.is_empty(), "{:?}", bad);
        prop_assert_eq!(got, vec![m]);
        sh_ok(&marker::remove_script(&workdir, &marker::KINDS));
        let dir = format!("{workdir}/faults");
        prop_assert!(!Path::new(&dir).exists(), "{:?}", dir);
        prop_assert!(!Path::new(MARKER).exists(), "a hostile piece ran");
    }
}
