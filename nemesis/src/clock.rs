//! Clock faults as shell text. Two paths:
//!
//! - **Lab** (one shared system clock): the system's processes run under libfaketime
//!   with `FAKETIME_TIMESTAMP_FILE` pointing at a per-node offset file and
//!   `FAKETIME_NO_CACHE=1`, so writing `+5.000000` to that file moves their wall clock
//!   at once; removing it resets. The monotonic clock is left alone
//!   (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as on a real node whose clock is set.
//!   Programs that do not call libc for time (Go binaries) ignore libfaketime.
//! - **Real nodes / VMs**: time sync (chrony, ntpd, systemd-timesyncd) is stopped and
//!   remembered in a state file, the clock is set with `date -s` (sub-second
//!   relative steps), and reset sets it to the controller's time and restarts the
//!   services that were stopped.
//!
//! A strobe flips between two offsets every few milliseconds for a while, in a
//! background loop whose pid is kept so that a heal can stop it.

use crate::shell::quote;
use std::fmt;

/// Where Debian's `faketime` package puts the preload library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Time sync services stopped for clock faults on real nodes.
pub const TIME_SYNC_SERVICES: &[&str] = &[
    "chrony",
    "chronyd",
    "ntp",
    "ntpd",
    "ntpsec",
    "systemd-timesyncd",
];

/// A clock offset in seconds (positive: ahead of the controller).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset(pub f64);

impl Offset {
    /// `+5s`, `-250ms`, `+1.5s`, `3` (seconds); at most a day either way.
    pub fn parse(text: &str) -> Result<Offset, String> {
        let t = text.trim();
        let bad = || format!("invalid clock offset {text:?}: expected e.g. +5s, -250ms, +1.5s");
        let (sign, rest) = match t.strip_prefix('-') {
            Some(r) => (-1.0, r),
            None => (1.0, t.strip_prefix('+').unwrap_or(t)),
        };
        let (num, scale) = if let Some(n) = rest.strip_suffix("ms") {
            (n, 1e-3)
        } else if let Some(n) = rest.strip_suffix('s') {
            (n, 1.0)
        } else {
            (rest, 1.0)
        };
        if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad());
        }
        let v: f64 = num.parse().map_err(|_| bad())?;
        let secs = sign * v * scale;
        if !secs.is_finite() || secs.abs() > 86_400.0 {
            return Err(format!(
                "invalid clock offset {text:?}: at most a day either way"
            ));
        }
        Ok(Offset(secs))
    }

    /// libfaketime's relative form, e.g. `+5.000000`.
    pub fn faketime(self) -> String {
        format!("{:+.6}", self.0)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:+.3}s", self.0)
    }
}

/// The per-node offset file of the lab path, under the node's workdir.
pub fn lab_offset_file(workdir: &str) -> String {
    format!("{}/faketime.rc", workdir.trim_end_matches('/'))
}

/// The pid file of a running strobe loop, under the node's workdir.
pub fn strobe_pid_file(workdir: &str) -> String {
    format!("{}/clock-strobe.pid", workdir.trim_end_matches('/'))
}

/// Environment assignments that start a process under libfaketime reading `file`.
pub fn faketime_env(file: &str) -> String {
    format!(
        "LD_PRELOAD={} FAKETIME_TIMESTAMP_FILE={} FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1",
        quote(LIBFAKETIME),
        quote(file)
    )
}

/// Lab: sets the offset (atomically: temp file + rename).
pub fn lab_bump_script(file: &str, offset: Offset) -> String {
    let f = quote(file);
    let tmp = quote(&format!("{file}.tmp"));
    format!(
        "[ -r {lib} ] || {{ echo {msg} >&2; exit 3; }}; printf '%s\\n' {v} > {tmp} && mv {tmp} {f}",
        lib = quote(LIBFAKETIME),
        msg = quote(&format!(
            "libfaketime missing at {LIBFAKETIME}: install the faketime package"
        )),
        v = quote(&offset.faketime()),
    )
}

/// State file remembering which time sync services the harness stopped.
pub const SYNC_STATE: &str = "/var/lib/splitbrain-timesync-stopped";

/// Real node: stops every active time sync service and remembers it (idempotent).
pub fn stop_time_sync_script() -> String {
    format!(
        "for s in {}; do if systemctl is-active --quiet \"$s\" 2>/dev/null; then systemctl stop \"$s\" && echo \"$s\" >> {st}; fi; done; true",
        TIME_SYNC_SERVICES.join(" "),
        st = SYNC_STATE
    )
}

/// Real node: restarts the services [`stop_time_sync_script`] stopped (idempotent).
pub fn restore_time_sync_script() -> String {
    format!(
        "if [ -f {st} ]; then for s in $(sort -u {st}); do systemctl start \"$s\" || echo \"restarting $s failed\" >&2; done; rm -f {st}; fi"
    , st = SYNC_STATE)
}

/// Real node: steps the clock by `offset` (sub-second precision via GNU date's
/// relative items).
pub fn real_bump_script(offset: Offset) -> String {
    format!(
        "{}; date -s {} >/dev/null",
        stop_time_sync_script(),
        quote(&format!("{:+.6} seconds", offset.0))
    )
}

/// Real node: sets the clock to the controller's time `controller_epoch` (seconds
/// since the epoch, taken as the command is sent) and restarts time sync.
pub fn real_reset_script(controller_epoch: f64) -> String {
    format!(
        "date -s {} >/dev/null; {}",
        quote(&format!("@{controller_epoch:.6}")),
        restore_time_sync_script()
    )
}

/// Where a strobe runs: the lab (offset file) or the real clock.
#[derive(Debug, Clone, PartialEq)]
pub enum ClockTarget {
    Lab { offset_file: String },
    Real,
}

/// Starts a background loop flipping between offsets `a` and `b` every `period_ms`
/// for `duration_s`, then resets (lab: remove
/// the file; real: step back by the last offset). Its pid goes to `pid_file`.
pub fn strobe_script(
    target: &ClockTarget,
    a: Offset,
    b: Offset,
    period_ms: u64,
    duration_s: u64,
    pid_file: &str,
) -> String {
    let sleep = format!("{:.3}", period_ms.max(1) as f64 / 1000.0);
    let (set_a, set_b, end) = match target {
        ClockTarget::Lab { offset_file } => {
            let f = quote(offset_file);
            (
                format!("printf '%s\\n' {} > {f}", quote(&a.faketime())),
                format!("printf '%s\\n' {} > {f}", quote(&b.faketime())),
                format!("rm -f {f}"),
            )
        }
        ClockTarget::Real => {
            let step =
                |d: f64| format!("date -s {} >/dev/null", quote(&format!("{d:+.6} seconds")));
            // the loop starts at a: flip by (b - a) and back; at the end undo a.
            (step(a.0 - b.0), step(b.0 - a.0), step(-a.0))
        }
    };
    let first = match target {
        ClockTarget::Lab { .. } => String::new(),
        ClockTarget::Real => format!(
            "{}; date -s {} >/dev/null; ",
            stop_time_sync_script(),
            quote(&format!("{:+.6} seconds", a.0))
        ),
    };
    let body = format!(
        "{first}end=$(( $(date +%s) + {duration_s} )); while [ \"$(date +%s)\" -lt \"$end\" ]; do {set_b}; sleep {sleep}; {set_a}; sleep {sleep}; done; {end}; rm -f {pf}",
        pf = quote(pid_file)
    );
    format!(
        "nohup sh -c {} >/dev/null 2>&1 & echo $! > {}",
        quote(&body),
        quote(pid_file)
    )
}

/// Stops a running strobe (idempotent).
pub fn stop_strobe_script(pid_file: &str) -> String {
    let f = quote(pid_file);
    format!("if [ -f {f} ]; then kill \"$(cat {f})\" 2>/dev/null || true; rm -f {f}; fi")
}

/// Lab: resets the offset (idempotent); also stops a strobe.
pub fn lab_reset_script(file: &str, strobe_pid: &str) -> String {
    let f = quote(file);
    format!(
        "{}; if [ -e {f} ]; then rm -f {f}; fi",
        stop_strobe_script(strobe_pid)
    )
}

/// Prints the node's wall clock as `SECONDS.NANOS`; in the lab, as the system's
/// processes see it (through the same libfaketime settings).
pub fn read_clock_script(target: &ClockTarget) -> String {
    match target {
        ClockTarget::Lab { offset_file } => {
            format!(
                "if [ -r {lib} ]; then {} date +%s.%N; else date +%s.%N; fi",
                faketime_env(offset_file),
                lib = quote(LIBFAKETIME)
            )
        }
        ClockTarget::Real => "date +%s.%N".to_string(),
    }
}

/// Offset of a node's clock from the controller's: the node read `node_epoch`
/// between the controller's `sent` and `received` (epoch seconds); the midpoint is
/// the estimate, the half round trip its uncertainty.
pub fn offset_from(node_epoch: f64, sent: f64, received: f64) -> (f64, f64) {
    let mid = (sent + received) / 2.0;
    (node_epoch - mid, (received - sent).abs() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_and_render() {
        assert_eq!(Offset::parse("+5s").unwrap(), Offset(5.0));
        assert_eq!(Offset::parse("-250ms").unwrap(), Offset(-0.25));
        assert_eq!(Offset::parse("1.5").unwrap(), Offset(1.5));
        assert_eq!(Offset(-0.25).faketime(), "-0.250000");
        assert_eq!(Offset(5.0).faketime(), "+5.000000");
        for bad in ["", "+", "5x", "--1s", "+1e3s", "2d", "100000s"] {
            let e = Offset::parse(bad).unwrap_err();
            assert!(e.starts_with("invalid clock offset"), "{bad}: {e}");
        }
    }

    #[test]
    fn lab_and_real_scripts() {
        let f = lab_offset_file("/w/n1/");
        assert_eq!(f, "/w/n1/faketime.rc");
        let s = lab_bump_script(&f, Offset(-2.5));
        assert!(s.contains("printf '%s\\n' -2.500000 > /w/n1/faketime.rc.tmp && mv /w/n1/faketime.rc.tmp /w/n1/faketime.rc"), "{s}");
        assert!(faketime_env(&f).contains("FAKETIME_NO_CACHE=1"));
        let r = real_bump_script(Offset(0.75));
        assert!(
            r.contains("systemctl stop") && r.ends_with("date -s '+0.750000 seconds' >/dev/null"),
            "{r}"
        );
        let z = real_reset_script(1700000000.123456);
        assert!(
            z.starts_with("date -s @1700000000.123456 >/dev/null; if [ -f"),
            "{z}"
        );
        assert!(z.contains("systemctl start"));
        assert_eq!(offset_from(105.0, 99.0, 101.0), (5.0, 1.0));
    }

    #[test]
    fn strobe_loops_flip_and_end_reset() {
        let lab = ClockTarget::Lab {
            offset_file: "/w/f.rc".into(),
        };
        let s = strobe_script(&lab, Offset(0.0), Offset(2.0), 10, 5, "/w/s.pid");
        assert!(
            s.starts_with("nohup sh -c '") && s.ends_with("echo $! > /w/s.pid"),
            "{s}"
        );
        assert!(s.contains("+2.000000") && s.contains("+0.000000") && s.contains("sleep 0.010"));
        assert!(s.contains("rm -f /w/f.rc"));
        let r = strobe_script(
            &ClockTarget::Real,
            Offset(0.0),
            Offset(2.0),
            10,
            5,
            "/w/s.pid",
        );
        assert!(
            r.contains("+2.000000 seconds") && r.contains("-2.000000 seconds"),
            "{r}"
        );
        assert!(stop_strobe_script("/w/s.pid").contains("kill"));
    }
}
