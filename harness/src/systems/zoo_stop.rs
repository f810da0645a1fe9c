//! The shell text that stops a zoo daemon on a node (teardown, and the clean start
//! of every run), and its test.

use crate::control::sh_quote;

/// Shell text that stops the daemon whose pid file is `pid`: TERM, up to 5 s, then KILL.
/// A daemon that has exited counts as stopped even while it waits, a zombie, for its
/// reaper: `--daemon` leaves it to the node's init, and an init that reaps only now
/// and then (the lab's does so every ~2 s) would otherwise hold each teardown that long.
pub(super) fn stop_script(pid: &str) -> String {
    let pid = sh_quote(pid);
    format!(
        "alive() {{ kill -0 \"$1\" 2>/dev/null || return 1; \
         [ \"$(sed 's/.*) //; s/ .*//' /proc/\"$1\"/stat 2>/dev/null)\" != Z ]; }}; \
         if [ -f {pid} ]; then p=$(cat {pid}); if alive \"$p\"; then kill -TERM \"$p\"; \
         for i in $(seq 100); do alive \"$p\" || break; sleep 0.05; done; \
         alive \"$p\" && kill -KILL \"$p\" 2>/dev/null; fi; rm -f {pid}; fi; true"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn stop_script_stops_a_live_daemon_and_does_not_wait_on_a_zombie() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("zoo.pid");
        let pid_s = pid.to_str().unwrap();
        let sh = |cmd: &str| std::process::Command::new("sh").arg("-c").arg(cmd).status();
        // A zombie: its parent (exec'd into `sleep`) never reaps it.
        let holder = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep 0.1 & echo $! > {}; exec sleep 20",
                sh_quote(pid_s)
            ))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(600));
        let t0 = Instant::now();
        assert!(sh(&stop_script(pid_s)).unwrap().success());
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(!pid.exists());
        // A live process: TERM stops it.
        let mut live = holder;
        std::fs::write(&pid, format!("{}\n", live.id())).unwrap();
        assert!(sh(&stop_script(pid_s)).unwrap().success());
        assert!(live.wait().is_ok() && !pid.exists());
    }
}
