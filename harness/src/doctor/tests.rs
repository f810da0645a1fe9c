//! Known-answer tests of doctor's probe parsing and judgement, and the probe script
//! run for real on this machine.

use super::node::skipped_after;
use super::probe::{self, Facts, Place, Sudo, Tool};
use super::*;

fn facts(text: &str) -> Facts {
    probe::parse(text)
}

const HEALTHY_VM: &str = "uid=0\nuser=root\nos_id=debian\nos_like=\niptables_path=/usr/sbin/iptables\niptables=ok\ntc_path=/usr/sbin/tc\nnetem=netem\ncapeff=000001ffffffffff\ndate=yes\nfaketime=yes\nsystemd=yes\ntimesync_unit=chrony\ndisk_dir=/opt\ndisk_avail_kb=20000000\ndisk_writable=yes\n";

fn status_of(rows: &[Row], check: Check) -> (Status, String, Option<String>) {
    let r = rows
        .iter()
        .find(|r| r.check == check)
        .unwrap_or_else(|| panic!("no {check} row in {rows:?}"));
    (r.status, r.detail.clone(), r.fix.clone())
}

#[test]
fn healthy_vm_passes_every_check() {
    let f = facts(HEALTHY_VM);
    assert_eq!(f.uid, Some(0));
    assert_eq!(f.iptables, Tool::Ok);
    assert_eq!(f.cap_eff, Some(0x1ff_ffff_ffff));
    let rows = probe::judge("n1", Place::Remote, false, &f);
    let checks: Vec<Check> = rows.iter().map(|r| r.check).collect();
    assert_eq!(checks, NODE_CHECKS[3..10].to_vec());
    for r in &rows {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.fix.is_none(), "{r:?}");
    }
}

#[test]
fn missing_iptables_and_tc_name_the_install_command_for_the_os() {
    let deb = HEALTHY_VM
        .replace(
            "iptables_path=/usr/sbin/iptables\niptables=ok",
            "iptables=missing",
        )
        .replace("tc_path=/usr/sbin/tc\nnetem=netem", "tc=missing");
    let rows = probe::judge("n3", Place::Remote, false, &facts(&deb));
    let (s, d, fix) = status_of(&rows, Check::Iptables);
    assert_eq!(s, Status::Fail);
    assert!(d.contains("not found"), "{d}");
    assert_eq!(fix.as_deref(), Some("on n3: `apt-get install -y iptables`"));
    let (s, _, fix) = status_of(&rows, Check::Tc);
    assert_eq!(
        (s, fix.as_deref()),
        (Status::Fail, Some("on n3: `apt-get install -y iproute2`"))
    );
    assert_eq!(status_of(&rows, Check::Netem).0, Status::Fail);
    let rhel = deb.replace("os_id=debian", "os_id=rocky\nos_like=rhel centos fedora");
    let rows = probe::judge("n3", Place::Remote, false, &facts(&rhel));
    assert_eq!(
        status_of(&rows, Check::Tc).2.as_deref(),
        Some("on n3: `dnf install -y iproute-tc`")
    );
}

#[test]
fn no_netem_is_a_warning_that_explains_the_fallback() {
    let text = HEALTHY_VM.replace(
        "netem=netem",
        "netem=no-netem Error: Specified qdisc kind is unknown.",
    );
    for place in [Place::Lab, Place::Remote] {
        let rows = probe::judge("n2", place, false, &facts(&text));
        let (s, d, fix) = status_of(&rows, Check::Netem);
        assert_eq!(s, Status::Warn);
        assert!(
            d.contains("qdisc kind is unknown")
                && d.contains("iptables `statistic`")
                && d.contains("refused"),
            "{d}"
        );
        let fix = fix.unwrap();
        assert!(fix.contains("modprobe sch_netem"), "{fix}");
        assert_eq!(fix.contains("this machine"), place == Place::Lab, "{fix}");
    }
}

#[test]
fn sudo_cases_for_a_non_root_login() {
    let user = HEALTHY_VM
        .replace("uid=0\nuser=root", "uid=1000\nuser=ops")
        .replace("capeff=000001ffffffffff", "capeff=0000000000000000")
        .replace(
            "iptables=ok",
            "iptables=err iptables v1.8.9 (nf_tables): Permission denied (you must be root)",
        );
    let with = |sudo: &str, pw: bool| {
        probe::judge(
            "n1",
            Place::Remote,
            pw,
            &facts(&format!("{user}sudo={sudo}\n")),
        )
    };
    let rows = with("missing", false);
    let (s, _, fix) = status_of(&rows, Check::Sudo);
    assert_eq!(s, Status::Fail);
    assert!(fix
        .unwrap()
        .contains("apt-get install -y sudo && echo 'ops ALL=(ALL) NOPASSWD: ALL'"));
    assert_eq!(
        status_of(&with("needs-password", false), Check::Sudo).0,
        Status::Fail
    );
    assert_eq!(
        status_of(&with("needs-password", true), Check::Sudo).0,
        Status::Warn
    );
    let rows = with("nopasswd", false);
    assert_eq!(status_of(&rows, Check::Sudo).0, Status::Warn);
    let (s, d, _) = status_of(&rows, Check::Iptables);
    assert!(s == Status::Fail && d.contains("Permission denied"), "{d}");
    let (s, d, _) = status_of(&rows, Check::ClockRights);
    assert!(s == Status::Fail && d.contains("CAP_SYS_TIME"), "{d}");
    assert_eq!(facts("sudo=nopasswd\n").sudo, Some(Sudo::NoPassword));
}

#[test]
fn time_sync_disk_and_lab_clock_rights() {
    let none = HEALTHY_VM.replace("timesync_unit=chrony\n", "");
    let (s, _, fix) = status_of(
        &probe::judge("n1", Place::Remote, false, &facts(&none)),
        Check::TimeSync,
    );
    assert_eq!(s, Status::Warn);
    assert_eq!(
        fix.as_deref(),
        Some("on n1: `apt-get install -y chrony && systemctl enable --now chrony`")
    );
    let stopped = format!("{HEALTHY_VM}timesync_stopped=chrony \n");
    let (s, d, _) = status_of(
        &probe::judge("n1", Place::Remote, false, &facts(&stopped)),
        Check::TimeSync,
    );
    assert!(s == Status::Fail && d.contains("chrony"), "{d}");
    let lab = probe::judge("n1", Place::Lab, false, &facts(&none));
    assert_eq!(status_of(&lab, Check::TimeSync).0, Status::Ok);
    assert!(status_of(&lab, Check::ClockRights)
        .1
        .contains("libfaketime"));
    let no_ft = none.replace("faketime=yes", "faketime=no");
    let (s, _, fix) = status_of(
        &probe::judge("n1", Place::Lab, false, &facts(&no_ft)),
        Check::ClockRights,
    );
    assert_eq!(
        (s, fix.as_deref()),
        (
            Status::Fail,
            Some("on this machine: `apt-get install -y faketime`")
        )
    );
    for (kb, want) in [
        ("100", Status::Fail),
        ("500000", Status::Warn),
        ("2000000", Status::Ok),
        ("junk", Status::Fail),
    ] {
        let text = HEALTHY_VM.replace("disk_avail_kb=20000000", &format!("disk_avail_kb={kb}"));
        assert_eq!(
            status_of(
                &probe::judge("n1", Place::Remote, false, &facts(&text)),
                Check::Disk
            )
            .0,
            want,
            "{kb}"
        );
    }
    let ro = HEALTHY_VM.replace("disk_writable=yes", "disk_writable=no");
    assert_eq!(
        status_of(
            &probe::judge("n1", Place::Remote, false, &facts(&ro)),
            Check::Disk
        )
        .0,
        Status::Fail
    );
}

#[test]
fn clock_offset_thresholds_account_for_uncertainty() {
    let os = vec!["debian".to_string()];
    let j = |o, u| probe::judge_offset("n1", Place::Remote, &os, o, u).status;
    assert_eq!(j(0.05, 0.001), Status::Ok);
    assert_eq!(j(-0.15, 0.1), Status::Ok);
    assert_eq!(j(0.5, 0.001), Status::Warn);
    assert_eq!(j(-3.0, 0.001), Status::Fail);
    let r = probe::judge_offset("n1", Place::Lab, &os, 5.0, 0.0);
    assert!(r.fix.unwrap().contains("fault clock reset"));
}

#[test]
fn a_cut_short_probe_fails_rather_than_passes() {
    let rows = probe::judge("n1", Place::Remote, false, &facts("uid=0\n"));
    for c in [Check::Iptables, Check::Tc, Check::Netem, Check::Disk] {
        assert_eq!(status_of(&rows, c).0, Status::Fail, "{c}");
    }
}

#[test]
fn skipped_rows_cover_the_rest_of_the_checks() {
    let r = skipped_after("n4", Check::Reachable, "unreachable");
    assert_eq!(r.len(), NODE_CHECKS.len() - 1);
    assert!(r
        .iter()
        .all(|r| r.status == Status::Skipped && r.detail == "not checked: unreachable"));
    assert_eq!(skipped_after("n4", Check::Auth, "x")[0].check, Check::Sudo);
}

#[test]
fn render_counts_each_status() {
    let rows = vec![
        row("n1", Check::Tc, Status::Ok, "tc found".into(), None),
        row(
            "n1",
            Check::Netem,
            Status::Warn,
            "no netem".into(),
            Some("modprobe".into()),
        ),
        row(
            "n2",
            Check::Reachable,
            Status::Fail,
            "refused".into(),
            Some("start it".into()),
        ),
    ];
    let t = render(&rows);
    assert!(t.ends_with("1 ok, 1 warnings, 1 failed, 0 skipped"), "{t}");
    assert!(t.contains("FAIL") && t.contains("start it"), "{t}");
}

/// The probe script itself, run by `sh` on this machine: every fact it reports parses.
#[test]
fn probe_script_runs_under_sh_here() {
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().join("not/yet/made");
    let uid = unsafe { libc::geteuid() };
    // As root, in a network namespace of its own: the netem probe adds a dummy link.
    let mut cmd = std::process::Command::new(if uid == 0 { "unshare" } else { "sh" });
    if uid == 0 {
        cmd.args(["--net", "sh"]);
    }
    let out = cmd
        .arg("-c")
        .arg(probe::script(workdir.to_str().unwrap()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let f = facts(&text);
    assert_eq!(f.uid, Some(uid), "{text}");
    assert_eq!(f.disk_dir, dir.path().to_str().unwrap(), "{text}");
    assert!(f.disk_avail_kb.is_some_and(|k| k > 0), "{text}");
    assert!(f.disk_writable && f.date && f.cap_eff.is_some(), "{text}");
    assert_ne!(f.iptables, Tool::Unknown, "{text}");
    if uid == 0 && std::path::Path::new("/usr/sbin/iptables").exists() {
        assert_eq!(f.iptables, Tool::Ok, "{text}");
    }
}
