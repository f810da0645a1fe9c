//! What `doctor` asks a node and how it judges the answer: one POSIX shell probe that
//! prints `key=value` facts (user, sudo, iptables, tc and netem, capabilities, time
//! sync, free disk), the typed [`Facts`] parsed from it, and the pure judgement of
//! those facts into table rows with the exact fix for each failure.

use super::{Check, Row, Status};
use nemesis::clock::{LIBFAKETIME, SYNC_STATE, TIME_SYNC_SERVICES};
use nemesis::shell::quote;

/// Below this much free space in a node's workdir a test cannot keep its files.
pub const DISK_FAIL_KB: u64 = 256 * 1024;
/// Below this much free space long runs may fill the disk.
pub const DISK_WARN_KB: u64 = 1024 * 1024;
/// Clock offsets up to this are fine (seconds, beyond the reading's uncertainty).
pub const OFFSET_OK_S: f64 = 0.1;
/// Clock offsets beyond this distort clock-fault and last-write-wins results.
pub const OFFSET_FAIL_S: f64 = 1.0;

/// Capability bit of CAP_SYS_TIME (linux/capability.h).
const CAP_SYS_TIME: u32 = 25;

/// The probe run on a node whose files live under `workdir`. Prints one `key=value`
/// per line; never fails as a whole.
pub fn script(workdir: &str) -> String {
    let netem = nemesis::netem::detect_script();
    format!(
        r#"echo "uid=$(id -u)"; echo "user=$(id -un)"
if [ -r /etc/os-release ]; then ( . /etc/os-release; echo "os_id=${{ID:-}}"; echo "os_like=${{ID_LIKE:-}}" ); fi
if [ "$(id -u)" != 0 ]; then if ! command -v sudo >/dev/null 2>&1; then echo sudo=missing; elif sudo -n true >/dev/null 2>&1; then echo sudo=nopasswd; else echo sudo=needs-password; fi; fi
if p=$(command -v iptables); then echo "iptables_path=$p"; if e=$(iptables -w 5 -S INPUT 2>&1 >/dev/null); then echo iptables=ok; else echo "iptables=err $(printf '%s' "$e" | head -n 1)"; fi; else echo iptables=missing; fi
if p=$(command -v tc); then echo "tc_path=$p"; echo "netem=$( {{ {netem}; }} 2>&1 | head -n 1)"; else echo tc=missing; fi
echo "capeff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)"
if command -v date >/dev/null 2>&1; then echo date=yes; else echo date=missing; fi
if [ -r {lib} ]; then echo faketime=yes; else echo faketime=no; fi
if [ -d /run/systemd/system ]; then echo systemd=yes; for s in {services}; do if systemctl is-active --quiet "$s" 2>/dev/null; then echo "timesync_unit=$s"; fi; done; else echo systemd=no; fi
for p in chronyd ntpd systemd-timesyn; do if pgrep -x "$p" >/dev/null 2>&1; then echo "timesync_proc=$p"; fi; done
if [ -f {state} ]; then echo "timesync_stopped=$(sort -u {state} | tr '\n' ' ')"; fi
d={workdir}; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; echo "disk_dir=$d"
echo "disk_avail_kb=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {{print $4}}')"
if [ -w "$d" ]; then echo disk_writable=yes; else echo disk_writable=no; fi
"#,
        lib = quote(LIBFAKETIME),
        services = TIME_SYNC_SERVICES.join(" "),
        state = quote(SYNC_STATE),
        workdir = quote(workdir),
    )
}

/// What a tool check found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Tool {
    /// The probe said nothing (it was cut short).
    #[default]
    Unknown,
    Missing,
    /// Present and working.
    Ok,
    /// Present but failing, with the first line of its error.
    Broken(String),
}

/// The sudo state of a non-root login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sudo {
    Missing,
    NoPassword,
    NeedsPassword,
}

/// Everything the probe reported about one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub uid: Option<u32>,
    pub user: String,
    /// `ID` and `ID_LIKE` of /etc/os-release.
    pub os: Vec<String>,
    /// `None` for root (not asked).
    pub sudo: Option<Sudo>,
    pub iptables: Tool,
    pub tc: Tool,
    /// The netem probe's line (`netem` or `no-netem REASON`), when tc exists.
    pub netem: Option<String>,
    pub cap_eff: Option<u64>,
    pub date: bool,
    pub faketime: bool,
    pub systemd: bool,
    /// Active time sync units (systemd).
    pub timesync_units: Vec<String>,
    /// Running time sync daemons (by process name).
    pub timesync_procs: Vec<String>,
    /// Services an earlier clock fault stopped and nobody restarted.
    pub timesync_stopped: Option<String>,
    pub disk_dir: String,
    pub disk_avail_kb: Option<u64>,
    pub disk_writable: bool,
}

/// Parses the probe's output; unknown keys are ignored, odd values leave a field unset.
pub fn parse(out: &str) -> Facts {
    let mut f = Facts::default();
    for line in out.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k {
            "uid" => f.uid = v.parse().ok(),
            "user" => f.user = v.to_string(),
            "os_id" | "os_like" => f.os.extend(v.split_whitespace().map(str::to_string)),
            "sudo" => {
                f.sudo = match v {
                    "missing" => Some(Sudo::Missing),
                    "nopasswd" => Some(Sudo::NoPassword),
                    "needs-password" => Some(Sudo::NeedsPassword),
                    _ => None,
                }
            }
            "iptables" | "tc" => {
                let t = match v {
                    "ok" => Tool::Ok,
                    "missing" => Tool::Missing,
                    other => Tool::Broken(other.strip_prefix("err").unwrap_or(other).trim().into()),
                };
                if k == "iptables" {
                    f.iptables = t;
                } else {
                    f.tc = t;
                }
            }
            "tc_path" => f.tc = Tool::Ok,
            "netem" => f.netem = Some(v.to_string()),
            "capeff" => f.cap_eff = u64::from_str_radix(v, 16).ok(),
            "date" => f.date = v == "yes",
            "faketime" => f.faketime = v == "yes",
            "systemd" => f.systemd = v == "yes",
            "timesync_unit" => f.timesync_units.push(v.to_string()),
            "timesync_proc" => f.timesync_procs.push(v.to_string()),
            "timesync_stopped" => f.timesync_stopped = Some(v.to_string()),
            "disk_dir" => f.disk_dir = v.to_string(),
            "disk_avail_kb" => f.disk_avail_kb = v.parse().ok(),
            "disk_writable" => f.disk_writable = v == "yes",
            _ => {}
        }
    }
    f
}

/// Package manager families, for install commands.
fn install(os: &[String], package: Pkg) -> String {
    let has = |ids: &[&str]| os.iter().any(|o| ids.contains(&o.as_str()));
    let (cmd, name) = if has(&["debian", "ubuntu"]) {
        ("apt-get install -y", package.debian())
    } else if has(&["fedora", "rhel", "centos", "rocky", "almalinux"]) {
        ("dnf install -y", package.fedora())
    } else if has(&["alpine"]) {
        ("apk add", package.debian())
    } else if has(&["suse", "opensuse"]) {
        ("zypper install -y", package.debian())
    } else {
        ("apt-get install -y", package.debian())
    };
    format!("{cmd} {name}")
}

/// Packages a fix may install.
#[derive(Clone, Copy)]
enum Pkg {
    Iptables,
    Iproute,
    Chrony,
    Faketime,
    Sudo,
    Coreutils,
}

impl Pkg {
    fn debian(self) -> &'static str {
        match self {
            Pkg::Iptables => "iptables",
            Pkg::Iproute => "iproute2",
            Pkg::Chrony => "chrony",
            Pkg::Faketime => "faketime",
            Pkg::Sudo => "sudo",
            Pkg::Coreutils => "coreutils",
        }
    }
    fn fedora(self) -> &'static str {
        match self {
            Pkg::Iproute => "iproute-tc",
            Pkg::Faketime => "libfaketime",
            other => other.debian(),
        }
    }
}

/// Where a node runs: the lab shares this machine's kernel and clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Lab,
    Remote,
}

/// Judges the probe's facts for `node`: the sudo, iptables, tc, netem, clock rights,
/// time sync and disk rows (in that order).
pub fn judge(node: &str, place: Place, password_given: bool, f: &Facts) -> Vec<Row> {
    let on = |cmd: String| Some(format!("on {node}: `{cmd}`"));
    let row = |check, status, detail: String, fix: Option<String>| Row {
        node: node.to_string(),
        check,
        status,
        detail,
        fix,
    };
    let root = f.uid == Some(0);
    let mut rows = Vec::new();
    let sudoers = format!(
        "echo '{} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/splitbrain",
        f.user
    );
    let no_sudo_note = "but splitbrain runs node commands as the login user without sudo: use --username root for faults";
    rows.push(match (root, &f.sudo) {
        (true, _) => row(Check::Sudo, Status::Ok, "logged in as root".into(), None),
        (false, Some(Sudo::NoPassword)) => row(
            Check::Sudo,
            Status::Warn,
            format!("{} has sudo without password, {no_sudo_note}", f.user),
            None,
        ),
        (false, Some(Sudo::NeedsPassword)) if password_given => row(
            Check::Sudo,
            Status::Warn,
            format!("{} has sudo with the password, {no_sudo_note}", f.user),
            None,
        ),
        (false, Some(Sudo::NeedsPassword)) => row(
            Check::Sudo,
            Status::Fail,
            format!("{} is not root and sudo wants a password (none given: set SPLITBRAIN_SSH_PASSWORD)", f.user),
            on(sudoers),
        ),
        (false, Some(Sudo::Missing)) => row(
            Check::Sudo,
            Status::Fail,
            format!("{} is not root and sudo is not installed", f.user),
            on(format!("{} && {sudoers}", install(&f.os, Pkg::Sudo))),
        ),
        (false, None) => row(
            Check::Sudo,
            Status::Fail,
            "the probe did not report the login user (cut short?)".into(),
            None,
        ),
    });
    rows.push(match &f.iptables {
        Tool::Ok => row(Check::Iptables, Status::Ok, "iptables -S works".into(), None),
        Tool::Missing => row(
            Check::Iptables,
            Status::Fail,
            "iptables not found in PATH: partitions and the packet-loss fallback need it".into(),
            on(install(&f.os, Pkg::Iptables)),
        ),
        Tool::Broken(e) if !root => row(
            Check::Iptables,
            Status::Fail,
            format!("iptables fails for {}: {e}", f.user),
            Some("log in as root: `--username root`".into()),
        ),
        Tool::Broken(e) => row(
            Check::Iptables,
            Status::Fail,
            format!("iptables fails: {e}"),
            on("modprobe ip_tables iptable_filter || update-alternatives --set iptables /usr/sbin/iptables-nft".into()),
        ),
        Tool::Unknown => row(Check::Iptables, Status::Fail, "not reported by the probe".into(), None),
    });
    let tc_ok = f.tc == Tool::Ok;
    rows.push(if tc_ok {
        row(Check::Tc, Status::Ok, "tc found".into(), None)
    } else {
        row(
            Check::Tc,
            Status::Fail,
            "tc not found in PATH: packet faults need it".into(),
            on(install(&f.os, Pkg::Iproute)),
        )
    });
    rows.push(match f.netem.as_deref().map(nemesis::netem::parse_detect) {
        Some(nemesis::netem::PacketMethod::Netem) => {
            row(Check::Netem, Status::Ok, "tc qdisc netem works".into(), None)
        }
        Some(nemesis::netem::PacketMethod::IptablesLoss { why }) => {
            let kernel = match place {
                Place::Lab => "on this machine (the lab shares its kernel)".to_string(),
                Place::Remote => format!("on {node}"),
            };
            row(
                Check::Netem,
                Status::Warn,
                format!("no netem ({why}); fallback: packet loss is done with iptables `statistic` drops, delay/jitter/duplicate faults are refused"),
                Some(format!("{kernel}: `modprobe sch_netem` (Ubuntu: `apt-get install -y linux-modules-extra-$(uname -r)` first)")),
            )
        }
        None => row(
            Check::Netem,
            Status::Fail,
            "not probed: tc is missing".into(),
            on(install(&f.os, Pkg::Iproute)),
        ),
    });
    rows.push(clock_rights(node, place, f, &on));
    rows.push(time_sync(node, place, f, &on));
    rows.push(disk(f, &on, node));
    rows
}

fn clock_rights(node: &str, place: Place, f: &Facts, on: &dyn Fn(String) -> Option<String>) -> Row {
    let row = |status, detail: String, fix| Row {
        node: node.to_string(),
        check: Check::ClockRights,
        status,
        detail,
        fix,
    };
    if place == Place::Lab {
        return if f.faketime {
            row(
                Status::Ok,
                format!("lab: clock faults go through libfaketime ({LIBFAKETIME}), the shared clock is never set"),
                None,
            )
        } else {
            row(
                Status::Fail,
                format!("lab: libfaketime missing at {LIBFAKETIME}; clock faults need it"),
                Some(format!(
                    "on this machine: `{}`",
                    install(&f.os, Pkg::Faketime)
                )),
            )
        };
    }
    let cap = f.cap_eff.map(|c| c & (1u64 << CAP_SYS_TIME) != 0);
    match (cap, f.date) {
        (Some(true), true) => row(Status::Ok, "CAP_SYS_TIME held, date present (clock not changed)".into(), None),
        (Some(true), false) => row(Status::Fail, "date not found in PATH".into(), on(install(&f.os, Pkg::Coreutils))),
        (Some(false), _) => row(
            Status::Fail,
            format!("{} lacks CAP_SYS_TIME: clock faults cannot set the clock (containers drop it)", f.user),
            Some(format!("log in as root on a VM, or grant the capability (docker: `--cap-add SYS_TIME`) on {node}")),
        ),
        (None, _) => row(Status::Fail, "CapEff not readable from /proc/self/status".into(), None),
    }
}

fn time_sync(node: &str, place: Place, f: &Facts, on: &dyn Fn(String) -> Option<String>) -> Row {
    let row = |status, detail: String, fix| Row {
        node: node.to_string(),
        check: Check::TimeSync,
        status,
        detail,
        fix,
    };
    if let Some(stopped) = &f.timesync_stopped {
        return row(
            Status::Fail,
            format!(
                "time sync ({}) was stopped by an earlier clock fault and not restarted",
                stopped.trim()
            ),
            Some("`splitbrain fault clock reset` (with the same --nodes)".into()),
        );
    }
    if place == Place::Lab {
        return row(
            Status::Ok,
            "lab: nodes share this machine's clock, nothing to sync".into(),
            None,
        );
    }
    match (f.timesync_units.first(), f.timesync_procs.first()) {
        (Some(u), _) => row(Status::Ok, format!("{u} active (clock faults stop and restore it)"), None),
        (None, Some(p)) if !f.systemd => row(
            Status::Warn,
            format!("{p} runs but not under systemd: clock faults stop time sync with systemctl and cannot stop it"),
            on(format!("pkill -x {p} before clock tests")),
        ),
        (None, Some(p)) => row(Status::Warn, format!("{p} runs but no known unit is active"), None),
        (None, None) => row(
            Status::Warn,
            "no time sync service active: node clocks drift apart between runs".into(),
            on(format!("{} && systemctl enable --now chrony", install(&f.os, Pkg::Chrony))),
        ),
    }
}

fn disk(f: &Facts, on: &dyn Fn(String) -> Option<String>, node: &str) -> Row {
    let row = |status, detail: String, fix| Row {
        node: node.to_string(),
        check: Check::Disk,
        status,
        detail,
        fix,
    };
    let dir = &f.disk_dir;
    let Some(kb) = f.disk_avail_kb else {
        return row(
            Status::Fail,
            format!("df gave no free space for {dir:?}"),
            None,
        );
    };
    let free = format!("{:.1} GiB free in {dir}", kb as f64 / (1024.0 * 1024.0));
    if !f.disk_writable {
        return row(
            Status::Fail,
            format!("{free}, not writable by {}", f.user),
            on(format!("mkdir -p {dir} && chown {} {dir}", quote(&f.user))),
        );
    }
    let fix = on(format!(
        "df -h {} ; free space there, or set workdir= in the nodes file to a larger filesystem",
        quote(dir)
    ));
    if kb < DISK_FAIL_KB {
        row(Status::Fail, format!("only {free}"), fix)
    } else if kb < DISK_WARN_KB {
        row(
            Status::Warn,
            format!("only {free} (long runs write logs)"),
            fix,
        )
    } else {
        row(Status::Ok, free, None)
    }
}

/// Judges a clock reading: `offset` seconds ahead of the controller, within `uncertainty`.
pub fn judge_offset(node: &str, place: Place, os: &[String], offset: f64, uncertainty: f64) -> Row {
    let beyond = (offset.abs() - uncertainty).max(0.0);
    let detail = format!("{offset:+.3}s (±{uncertainty:.3}s)");
    let fix = match place {
        Place::Lab => {
            "`splitbrain fault clock reset` (a lab offset file is left from a clock fault)"
                .to_string()
        }
        Place::Remote => format!(
            "on {node}: `{} && systemctl enable --now chrony && chronyc makestep`",
            install(os, Pkg::Chrony)
        ),
    };
    let (status, fix) = if beyond <= OFFSET_OK_S {
        (Status::Ok, None)
    } else if beyond <= OFFSET_FAIL_S {
        (Status::Warn, Some(fix))
    } else {
        (Status::Fail, Some(fix))
    };
    Row {
        node: node.to_string(),
        check: Check::ClockOffset,
        status,
        detail,
        fix,
    }
}
