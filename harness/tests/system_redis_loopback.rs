//! Redis + Sentinel through the `System` interface on this machine's loopback (no lab,
//! no lab lock): three nodes on 127.77.0.1-3 with their own ports, real
//! `redis-server` and `redis-sentinel`. Checks setup and readiness, Sentinel-based
//! discovery and write attribution, every workload's commands and their outcome
//! classes, a Sentinel failover after `kill -9` of the master that clients follow, the
//! restart of a killed node, final reads, and a teardown that leaves no process.
//! A second test starts a node under libfaketime (tcmalloc preloaded first) and reads
//! the skewed clock back from Redis's `TIME`. Skips with a note when redis-server is
//! not installed, unless CI=true.

use harness::control::{LocalExec, Target};
use harness::nodes::NodeSpec;
use harness::systems::redis::config::Tuning;
use harness::systems::redis::RedisSentinel;
use harness::systems::{FailKind, NodeHandle, Outcome, System, SystemClient};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::{Invocation, OpFn};

fn available(test: &str) -> bool {
    let ok = ["redis-server", "redis-sentinel"].iter().all(|b| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{test}: CI=true but redis-server/redis-sentinel are missing"
        );
        eprintln!("{test}: skipped: redis-server and redis-sentinel are not installed");
    }
    ok
}

/// Kills every daemon whose pid file lies under the test's directory, also when the
/// test fails.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let script = format!(
            "for f in $(find {} -name '*.pid' 2>/dev/null); do kill -9 \"$(cat \"$f\")\" 2>/dev/null; done; true",
            self.0.display()
        );
        let _ = Command::new("sh").args(["-c", &script]).status();
    }
}

fn nodes(dir: &Path, n: usize, net: u8) -> Vec<NodeHandle> {
    (1..=n)
        .map(|i| {
            let spec = NodeSpec {
                name: format!("n{i}"),
                host: format!("127.77.{net}.{i}"),
                port: 0,
                user: None,
                workdir: dir.join(format!("n{i}")).display().to_string(),
            };
            NodeHandle {
                remote: Arc::new(Target::Local(LocalExec::new(
                    spec.clone(),
                    Duration::from_secs(30),
                ))),
                spec,
            }
        })
        .collect()
}

fn tuning(port_base: u16) -> Tuning {
    Tuning {
        redis_port: port_base,
        sentinel_port: port_base + 20000,
        ..Tuning::for_mode("sentinel").unwrap()
    }
}

fn inv(f: OpFn, key: &str, value: Value) -> Invocation {
    Invocation {
        f,
        key: Some(key.into()),
        value,
        is_final: false,
    }
}

async fn ok<C: SystemClient>(c: &mut C, i: &Invocation) -> (Value, serde_json::Map<String, Value>) {
    match c.invoke(i, Duration::from_secs(3)).await {
        Outcome::Ok { value, extra } => (value, extra),
        other => panic!("{i:?}: {other:?}"),
    }
}

async fn setup(system: &RedisSentinel, handles: &[NodeHandle]) {
    let specs: Vec<NodeSpec> = handles.iter().map(|h| h.spec.clone()).collect();
    for h in handles {
        system.setup_node(h, &specs).await.expect("setup");
    }
    system
        .await_ready(&specs, Duration::from_secs(40))
        .await
        .expect("ready");
}

#[tokio::test]
async fn discovery_workloads_failover_and_restart_on_loopback() {
    if !available("redis loopback") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let handles = nodes(dir.path(), 3, 0);
    let specs: Vec<NodeSpec> = handles.iter().map(|h| h.spec.clone()).collect();
    let system = RedisSentinel::with_tuning("sentinel", tuning(17379), true);
    setup(&system, &handles).await;

    // n1 is the initial master in Sentinel's epoch 0; the others follow it.
    let roles = system.roles(&specs, Duration::from_secs(2)).await;
    assert_eq!(roles.len(), 3, "{roles:?}");
    assert!(roles[0].is_master && roles[0].epoch == Some(0), "{roles:?}");
    assert!(roles[1..]
        .iter()
        .all(|r| !r.is_master && r.master.as_deref() == Some("n1")));
    let version = system.version(&handles[0]).await.expect("version");
    assert!(version.starts_with("Redis server v="), "{version}");

    // A client bound to n2 finds n1 through Sentinel and attributes its writes to it.
    let mut c = system.client(&specs[1]);
    for e in 0..5 {
        let (_, extra) = ok(&mut c, &inv(OpFn::Add, "set", json!(e))).await;
        assert_eq!(extra["acked_by"], "n1");
        assert_eq!(extra["epoch"], 0);
    }
    let (v, extra) = ok(&mut c, &inv(OpFn::Read, "set", Value::Null)).await;
    assert_eq!(
        (v, &extra["served_by"]),
        (json!([0, 1, 2, 3, 4]), &json!("n1"))
    );
    assert_eq!(
        ok(&mut c, &inv(OpFn::ReadRegister, "r1", Value::Null))
            .await
            .0,
        Value::Null
    );
    ok(&mut c, &inv(OpFn::Write, "r1", json!(3))).await;
    ok(&mut c, &inv(OpFn::Cas, "r1", json!([3, 4]))).await;
    match c
        .invoke(&inv(OpFn::Cas, "r1", json!([3, 1])), Duration::from_secs(3))
        .await
    {
        Outcome::Fail {
            error,
            kind: FailKind::Rejected,
        } => assert!(error.contains("does not hold 3"), "{error}"),
        other => panic!("a cas from the wrong value must fail: {other:?}"),
    }
    assert_eq!(
        ok(&mut c, &inv(OpFn::ReadRegister, "r1", Value::Null))
            .await
            .0,
        json!(4)
    );
    ok(&mut c, &inv(OpFn::Append, "l1", json!(7))).await;
    ok(&mut c, &inv(OpFn::Append, "l1", json!(5))).await;
    assert_eq!(
        ok(&mut c, &inv(OpFn::ReadList, "l1", Value::Null)).await.0,
        json!([7, 5])
    );
    match c
        .invoke(&inv(OpFn::Add, "set", json!("x")), Duration::from_secs(1))
        .await
    {
        Outcome::Fail {
            error,
            kind: FailKind::Rejected,
        } => assert!(error.contains("non-integer"), "{error}"),
        other => panic!("{other:?}"),
    }

    // kill -9 of the master: Sentinel promotes a replica in a higher epoch and the
    // client follows it.
    system.kill_node(&handles[0]).await.expect("kill n1");
    let start = Instant::now();
    let (new_master, epoch) = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no failover within 30 s"
        );
        let (_, extra) = match c
            .invoke(&inv(OpFn::Add, "set", json!(100)), Duration::from_secs(2))
            .await
        {
            Outcome::Ok { value, extra } => (value, extra),
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if extra["acked_by"] != "n1" {
            break (
                extra["acked_by"].as_str().unwrap().to_string(),
                extra["epoch"].as_u64().unwrap(),
            );
        }
    };
    assert!(
        ["n2", "n3"].contains(&new_master.as_str()) && epoch >= 1,
        "{new_master} {epoch}"
    );
    let roles = system.roles(&specs, Duration::from_secs(2)).await;
    let m = roles.iter().find(|r| r.node == new_master).unwrap();
    assert!(m.is_master, "{roles:?}");

    // The killed node comes back over its own config and data.
    system
        .restart_node(&handles[0], &specs)
        .await
        .expect("restart");
    let start = Instant::now();
    while system.process_state(&handles[0]).await.map_or(true, |s| {
        !matches!(s, nemesis::process::ProcessState::Alive { .. })
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "n1 did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        system.restart_node(&handles[0], &specs).await.is_err(),
        "a second restart must refuse"
    );

    // Final reads: each node's own copy; the new master holds everything acked.
    let mut fin = system.client(&specs[2]);
    let read = Invocation {
        is_final: true,
        ..inv(OpFn::Read, "set", Value::Null)
    };
    // Sentinel reconfigures the replicas once n1 is back and drops their clients
    // (CLIENT KILL), so a read may fail on a closed connection: the runner's final
    // reads retry such a failure within their budget, and so does this loop.
    let start = Instant::now();
    let mut last = String::new();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "n3 never caught up: {last}"
        );
        match fin.invoke(&read, Duration::from_secs(3)).await {
            Outcome::Ok { value, extra } => {
                assert_eq!(extra["served_by"], "n3");
                if value == json!([0, 1, 2, 3, 4, 100]) {
                    break;
                }
                last = value.to_string();
            }
            other => {
                last = format!("{other:?}");
                fin = system.client(&specs[2]);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for h in &handles {
        system.teardown_node(h).await.expect("teardown");
    }
    for h in &handles {
        let s = system.process_state(h).await.expect("state");
        assert_eq!(
            s,
            nemesis::process::ProcessState::NotStarted,
            "{}",
            h.spec.name
        );
        assert!(!Path::new(&format!("{}/redis/sentinel.pid", h.spec.workdir)).exists());
    }
    // The logs the runner collects exist.
    for p in system.log_paths(&specs[0]) {
        assert!(Path::new(&p).is_file(), "{p}");
    }
}

#[tokio::test]
async fn redis_under_libfaketime_starts_and_sees_the_offset() {
    if !available("redis faketime") {
        return;
    }
    for lib in [
        harness::systems::redis::config::LIBTCMALLOC,
        nemesis::clock::LIBFAKETIME,
    ] {
        assert!(
            Path::new(lib).exists() || std::env::var("CI").map_or(true, |v| v != "true"),
            "{lib} missing (CI installs libtcmalloc-minimal4 and faketime)"
        );
        if !Path::new(lib).exists() {
            eprintln!("redis faketime: skipped: {lib} missing");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let handles = nodes(dir.path(), 1, 1);
    let mut system = RedisSentinel::with_tuning("sentinel", tuning(17479), true);
    system.faketime = true;
    setup(&system, &handles).await;
    let offset_file = nemesis::clock::lab_offset_file(&handles[0].spec.workdir);
    std::fs::write(&offset_file, "+100\n").unwrap();
    let mut c = Command::new("redis-cli");
    c.args(["-h", "127.77.1.1", "-p", "17479", "TIME"]);
    let out = c.output().expect("redis-cli");
    let seen: f64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("TIME reply");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (seen - now - 100.0).abs() < 5.0,
        "redis sees {seen}, now {now}"
    );
    system.teardown_node(&handles[0]).await.expect("teardown");
}
