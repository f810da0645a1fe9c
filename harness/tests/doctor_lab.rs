//! `splitbrain doctor` on the lab, for real:
//!
//! - the lab as `lab up` makes it: exit 0, every check ok but netem, which is ok where
//!   the kernel has sch_netem and otherwise a warning that explains the fallback;
//! - an empty known_hosts: every node's host key fails with the `ssh-keyscan` fix;
//! - a node without iptables: a second sshd in n3's network namespace, started in a
//!   private mount namespace whose /usr/sbin is a tmpfs of links to everything but
//!   `iptables*`/`ip6tables*`/`xtables*` (nothing outside that namespace changes): the
//!   iptables check fails with the install command, nothing else fails, exit 3 with one
//!   stderr line naming the node and the check.
//!
//! Needs root (skips otherwise; fails under `CI=true`); holds the lab lock; kills the
//! extra sshd and takes the lab down at the end, also on failure.

mod lab_support;

use harness::lab;
use lab_support::splitbrain;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STATE: &str = lab::DEFAULT_STATE_DIR;
/// Port of the extra sshd (the lab's own listens on 22).
const HIDDEN_PORT: u16 = 2222;

struct Cleanup {
    sshd: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.sshd {
            let _ = child.kill();
            let _ = child.wait();
        }
        lab_support::heal_and_down();
    }
}

/// Runs doctor with `args` (plus `--json`); exit code, rows, stderr.
fn doctor(args: &[&str], results: &Path) -> (i32, Vec<Value>, String) {
    let out = Command::new(splitbrain())
        .arg("doctor")
        .args(args)
        // Generous: the lab shares this machine with whatever else runs on it.
        .args(["--ssh-connect-timeout", "30s"])
        .args(["--json", "--results-dir"])
        .arg(results)
        .output()
        .expect("run splitbrain doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rows: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {stdout} {stderr}"));
    (out.status.code().unwrap_or(-1), rows, stderr)
}

fn rows_of<'a>(rows: &'a [Value], check: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["check"] == check).collect()
}

/// Netem is ok, or (no sch_netem here) a warning that explains the fallback.
fn netem_ok_or_explained(r: &Value) {
    match r["status"].as_str() {
        Some("ok") => {}
        Some("warn") => {
            let d = r["detail"].as_str().unwrap_or("");
            assert!(d.contains("fallback") && d.contains("iptables"), "{r}");
            assert!(
                r["fix"]
                    .as_str()
                    .unwrap_or("")
                    .contains("modprobe sch_netem"),
                "{r}"
            );
        }
        _ => panic!("netem row neither ok nor an explained warning: {r}"),
    }
}

/// Starts n3's sshd config on HIDDEN_PORT in a mount namespace without iptables.
fn sshd_without_iptables(tmp: &Path) -> Child {
    let config = std::fs::read_to_string(Path::new(STATE).join("n3/sshd_config")).unwrap();
    let addr = "10.77.77.13";
    let config: String = config
        .lines()
        .map(|l| {
            if l.starts_with("ListenAddress") {
                format!("ListenAddress {addr}:{HIDDEN_PORT}\n")
            } else if l.starts_with("PidFile") {
                "PidFile none\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let cfg = tmp.join("sshd_config");
    std::fs::write(&cfg, config).unwrap();
    let orig = tmp.join("orig-sbin");
    std::fs::create_dir(&orig).unwrap();
    let script = format!(
        "set -e; mount --bind /usr/sbin {o}; mount -t tmpfs -o mode=755 sb-hide /usr/sbin; \
         for f in {o}/*; do b=${{f##*/}}; case $b in iptables*|ip6tables*|xtables*) ;; *) ln -s \"$f\" \"/usr/sbin/$b\";; esac; done; \
         exec {o}/sshd -D -e -f {c}",
        o = orig.display(),
        c = cfg.display()
    );
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            "sb-n3",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the extra sshd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect((addr, HIDDEN_PORT)).is_err() {
        assert!(
            Instant::now() < deadline,
            "extra sshd on {addr}:{HIDDEN_PORT} never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn doctor_on_the_lab_and_on_a_node_without_iptables() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if unsafe { libc::geteuid() } != 0 {
        assert!(!ci, "CI=true but not root; the lab tests need root");
        eprintln!("doctor_lab: skipped: needs root for network namespaces");
        return;
    }
    let _lock = lab::exclusive_use(Duration::from_secs(900)).expect("lab lock");
    let info = lab::up(&lab::LabConfig::default()).expect("lab up");
    let mut cleanup = Cleanup { sshd: None };
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");

    // 1. The lab as made: all ok but netem (ok or explained).
    let (code, rows, err) = doctor(&[], &results);
    assert_eq!(rows.len(), 2 + 11 * info.nodes.len(), "{rows:?}");
    for r in &rows {
        if r["check"] == "netem" {
            netem_ok_or_explained(r);
        } else {
            assert_eq!(r["status"], "ok", "{r}");
        }
    }
    assert_eq!(code, 0, "{err}");
    assert_eq!(rows_of(&rows, "clock-offset").len(), info.nodes.len());

    // 2. Nothing in known_hosts: host keys fail with the keyscan fix; the rest is skipped.
    let empty = tmp.path().join("known_hosts.empty");
    std::fs::write(&empty, "").unwrap();
    let (code, rows, err) = doctor(&["--known-hosts", empty.to_str().unwrap()], &results);
    assert_eq!(code, 3);
    for r in rows_of(&rows, "host-key") {
        assert_eq!(r["status"], "fail", "{r}");
        assert!(
            r["fix"]
                .as_str()
                .unwrap()
                .contains("ssh-keyscan -p 22 10.77.77.1"),
            "{r}"
        );
    }
    assert!(rows_of(&rows, "iptables")
        .iter()
        .all(|r| r["status"] == "skipped"));
    assert_eq!(err.lines().count(), 1, "{err}");

    // 3. A node whose sshd sees no iptables.
    cleanup.sshd = Some(sshd_without_iptables(tmp.path()));
    let kh_text = std::fs::read_to_string(&info.known_hosts).unwrap();
    let n3_key = kh_text
        .lines()
        .find(|l| l.starts_with("10.77.77.13 "))
        .expect("n3 in the lab's known_hosts");
    let kh = tmp.path().join("known_hosts");
    std::fs::write(
        &kh,
        n3_key.replacen("10.77.77.13", &format!("[10.77.77.13]:{HIDDEN_PORT}"), 1) + "\n",
    )
    .unwrap();
    let nodes = tmp.path().join("nodes");
    let workdir: PathBuf = Path::new(STATE).join("work/n3");
    std::fs::write(
        &nodes,
        format!(
            "n3-noipt 10.77.77.13:{HIDDEN_PORT} workdir={}\n",
            workdir.display()
        ),
    )
    .unwrap();
    let key = info.private_key.to_str().unwrap();
    let (code, rows, err) = doctor(
        &[
            "--nodes-file",
            nodes.to_str().unwrap(),
            "--ssh-private-key",
            key,
            "--known-hosts",
            kh.to_str().unwrap(),
        ],
        &results,
    );
    let ipt = rows_of(&rows, "iptables");
    assert_eq!(ipt.len(), 1);
    assert_eq!(ipt[0]["status"], "fail", "{rows:#?}");
    assert!(
        ipt[0]["detail"].as_str().unwrap().contains("not found"),
        "{:?}",
        ipt[0]
    );
    assert_eq!(ipt[0]["fix"], "on n3-noipt: `apt-get install -y iptables`");
    let failed: Vec<&Value> = rows.iter().filter(|r| r["status"] == "fail").collect();
    assert_eq!(failed.len(), 1, "only iptables may fail: {failed:?}");
    for r in &rows {
        if r["check"] == "netem" {
            netem_ok_or_explained(r);
        }
    }
    // tc is still there (only iptables was hidden), and the run ends with exit 3.
    assert_eq!(rows_of(&rows, "tc")[0]["status"], "ok");
    assert_eq!(code, 3);
    assert_eq!(
        err.trim(),
        "splitbrain: doctor: 1 check(s) failed: n3-noipt iptables (fixes in the table)"
    );
    // The lab's own n3 still has iptables: the mount namespace stayed private.
    let st = Command::new("ip")
        .args(["netns", "exec", "sb-n3", "iptables", "-S", "INPUT"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    drop(cleanup);
}
