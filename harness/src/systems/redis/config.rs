//! Files and shell text of the Redis + Sentinel system on one node: where its files
//! live (the node's workdir on the lab, standard locations on VMs), the `redis.conf`
//! and `sentinel.conf` written fresh at every setup, the package check and install,
//! and the commands that start and stop `redis-server` and `redis-sentinel` (under
//! libfaketime, with libtcmalloc preloaded first, when clock faults are planned).

use crate::control::sh_quote;
use nemesis::clock;
use std::net::IpAddr;

/// Debian's tcmalloc, preloaded before libfaketime: Debian's redis-server (jemalloc)
/// hangs at start under libfaketime alone (clock_gettime recursion during malloc init).
pub const LIBTCMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4";

/// The name Sentinel monitors the master under.
pub const MASTER_NAME: &str = "splitbrain";

/// Where the system keeps its files on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Configuration, pid files, Sentinel's working directory.
    pub base: String,
    /// The data directory of redis-server (AOF).
    pub data: String,
    /// Both logs.
    pub logs: String,
}

impl Paths {
    /// On the lab every node keeps its files under its own workdir (the namespaces
    /// share one filesystem); on VMs the standard locations.
    pub fn for_node(workdir: &str, lab: bool) -> Paths {
        if lab {
            let base = format!("{}/redis", workdir.trim_end_matches('/'));
            Paths {
                data: format!("{base}/data"),
                logs: base.clone(),
                base,
            }
        } else {
            Paths {
                base: "/var/lib/splitbrain/redis".into(),
                data: "/var/lib/splitbrain/redis/data".into(),
                logs: "/var/log/splitbrain/redis".into(),
            }
        }
    }

    /// Refuses a layout Redis would not read back: Redis 7 takes a config file path
    /// holding `*`, `?` or `[` for a glob pattern and, when the pattern matches
    /// nothing, starts silently with its defaults (no daemon, port 6379); Sentinel
    /// also rewrites its config at that path, so escaping cannot help.
    pub fn check(&self, node: &str) -> Result<(), String> {
        for p in [self.redis_conf(), self.sentinel_conf()] {
            if p.contains(['*', '?', '[']) {
                return Err(format!(
                    "{node}: redis-sentinel cannot use the config file {p:?}: Redis reads a path with `*`, `?` or `[` as a glob pattern; use a workdir without them"
                ));
            }
        }
        Ok(())
    }

    pub fn redis_conf(&self) -> String {
        format!("{}/redis.conf", self.base)
    }
    pub fn sentinel_conf(&self) -> String {
        format!("{}/sentinel.conf", self.base)
    }
    pub fn redis_pid(&self) -> String {
        format!("{}/redis.pid", self.base)
    }
    pub fn sentinel_pid(&self) -> String {
        format!("{}/sentinel.pid", self.base)
    }
    pub fn redis_log(&self) -> String {
        format!("{}/redis.log", self.logs)
    }
    pub fn sentinel_log(&self) -> String {
        format!("{}/sentinel.log", self.logs)
    }
}

/// What differs between the modes, and Sentinel's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub redis_port: u16,
    pub sentinel_port: u16,
    /// `sentinel down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `sentinel failover-timeout` (a failed election is retried after twice this).
    pub failover_timeout_ms: u64,
    /// `min-replicas-to-write` (0: the master accepts writes with no replica).
    pub min_replicas_to_write: u32,
    /// `min-replicas-max-lag`, seconds.
    pub min_replicas_max_lag_s: u32,
}

impl Tuning {
    /// The modes: `sentinel` (Redis's defaults for writes: a master accepts writes
    /// alone) and `min-replicas-1` (a master refuses writes when no replica has
    /// acknowledged within 2 s).
    pub fn for_mode(mode: &str) -> Option<Tuning> {
        let base = Tuning {
            redis_port: 6379,
            sentinel_port: 26379,
            down_after_ms: 1500,
            // Two Sentinels that start an election at once split the votes; a
            // sentinel retries after twice the failover timeout, so 2 s keeps a
            // second try (or third) inside a 10 s fault.
            failover_timeout_ms: 2000,
            min_replicas_to_write: 0,
            min_replicas_max_lag_s: 10,
        };
        match mode {
            "sentinel" => Some(base),
            "min-replicas-1" => Some(Tuning {
                min_replicas_to_write: 1,
                min_replicas_max_lag_s: 2,
                ..base
            }),
            _ => None,
        }
    }
}

/// A value for `redis.conf` and `sentinel.conf`: double-quoted, `\\` and `"` escaped
/// and every byte outside printable ASCII as `\xHH`, which Redis's config parser
/// reads back verbatim (a workdir may hold spaces, quotes or a newline).
pub fn conf_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Sentinel's quorum for `nodes` sentinels: a majority.
pub fn quorum(nodes: usize) -> usize {
    nodes / 2 + 1
}

/// `redis.conf` of one node; `master` is `None` on the initial master.
pub fn redis_conf(paths: &Paths, t: &Tuning, ip: IpAddr, master: Option<IpAddr>) -> String {
    let mut c = format!(
        "# Written by splitbrain at setup; Sentinel rewrites it (CONFIG REWRITE) when it\n\
         # reconfigures this node.\n\
         bind {ip}\n\
         port {port}\n\
         protected-mode no\n\
         daemonize yes\n\
         pidfile {pid}\n\
         logfile {log}\n\
         loglevel notice\n\
         dir {data}\n\
         save \"\"\n\
         appendonly yes\n\
         appendfsync everysec\n\
         repl-diskless-sync yes\n\
         repl-diskless-sync-delay 0\n\
         replica-announce-ip {ip}\n\
         min-replicas-to-write {mr}\n\
         min-replicas-max-lag {lag}\n",
        port = t.redis_port,
        pid = conf_quote(&paths.redis_pid()),
        log = conf_quote(&paths.redis_log()),
        data = conf_quote(&paths.data),
        mr = t.min_replicas_to_write,
        lag = t.min_replicas_max_lag_s,
    );
    if let Some(m) = master {
        c.push_str(&format!("replicaof {m} {}\n", t.redis_port));
    }
    c
}

/// `sentinel.conf` of one node, monitoring `master` with a majority quorum.
pub fn sentinel_conf(
    paths: &Paths,
    t: &Tuning,
    ip: IpAddr,
    master: IpAddr,
    nodes: usize,
) -> String {
    format!(
        "# Written by splitbrain at setup; Sentinel rewrites it as it learns.\n\
         bind {ip}\n\
         port {sport}\n\
         protected-mode no\n\
         daemonize yes\n\
         pidfile {pid}\n\
         logfile {log}\n\
         dir {base}\n\
         sentinel announce-ip {ip}\n\
         sentinel monitor {name} {master} {rport} {q}\n\
         sentinel down-after-milliseconds {name} {down}\n\
         sentinel failover-timeout {name} {fo}\n\
         sentinel parallel-syncs {name} 1\n",
        sport = t.sentinel_port,
        pid = conf_quote(&paths.sentinel_pid()),
        log = conf_quote(&paths.sentinel_log()),
        base = conf_quote(&paths.base),
        name = MASTER_NAME,
        rport = t.redis_port,
        q = quorum(nodes),
        down = t.down_after_ms,
        fo = t.failover_timeout_ms,
    )
}

/// The environment prefix that runs a process under the node's libfaketime offset
/// file, tcmalloc first in `LD_PRELOAD` (the later assignment wins in the shell).
pub fn faketime_prefix(workdir: &str) -> String {
    let file = clock::lab_offset_file(workdir);
    format!(
        "{} LD_PRELOAD={}",
        clock::faketime_env(&file),
        sh_quote(&format!("{LIBTCMALLOC} {}", clock::LIBFAKETIME))
    )
}

/// Starts redis-server over its existing config and data; with `faketime`, under the
/// node's clock offset.
pub fn start_redis(paths: &Paths, faketime: Option<&str>) -> String {
    let cmd = format!("redis-server {}", sh_quote(&paths.redis_conf()));
    with_env(cmd, faketime)
}

/// Starts redis-sentinel over its config.
pub fn start_sentinel(paths: &Paths, faketime: Option<&str>) -> String {
    let cmd = format!("redis-sentinel {}", sh_quote(&paths.sentinel_conf()));
    with_env(cmd, faketime)
}

fn with_env(cmd: String, faketime: Option<&str>) -> String {
    match faketime {
        Some(workdir) => format!("{} {cmd}", faketime_prefix(workdir)),
        None => cmd,
    }
}

/// Stops the process whose pid file is `pid`: TERM, up to 5 s, then KILL.
pub fn stop_script(pid: &str) -> String {
    let pid = sh_quote(pid);
    format!(
        "if [ -f {pid} ]; then p=$(cat {pid}); if [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null; then kill -TERM \"$p\"; \
         for i in $(seq 50); do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done; \
         kill -KILL \"$p\" 2>/dev/null || true; fi; rm -f {pid}; fi"
    )
}

/// Checks for the binaries (and, with clock faults, libfaketime and tcmalloc); installs
/// what is missing with apt-get. When it had to install the server packages it stops
/// Debian's own units, which would otherwise run beside ours. Exit 3 with one line
/// when the install fails.
pub fn install_script(node: &str, faketime: bool, lab: bool) -> String {
    let mut checks = vec![
        "command -v redis-server >/dev/null 2>&1 || missing=\"$missing redis-server\"".to_string(),
        "command -v redis-sentinel >/dev/null 2>&1 || missing=\"$missing redis-sentinel\"".into(),
    ];
    if faketime {
        checks.push(format!(
            "[ -r {} ] || missing=\"$missing libfaketime\"",
            sh_quote(clock::LIBFAKETIME)
        ));
        checks.push(format!(
            "[ -r {} ] || missing=\"$missing libtcmalloc-minimal4\"",
            sh_quote(LIBTCMALLOC)
        ));
    }
    let hint = if lab {
        " (the lab has no route out: install them on this machine, e.g. apt-get install -y redis-server redis-sentinel libtcmalloc-minimal4)"
    } else {
        ""
    };
    let fail = sh_quote(&format!(
        "{node}: apt-get install -y of the missing packages failed{hint}; see the apt output above"
    ));
    format!(
        "missing=''; {checks}; if [ -n \"$missing\" ]; then \
         echo \"installing:$missing\" >&2; \
         export DEBIAN_FRONTEND=noninteractive; \
         apt-get install -y $missing >&2 || {{ apt-get update >&2 && apt-get install -y $missing >&2; }} || {{ echo {fail} >&2; exit 3; }}; \
         case \"$missing\" in *redis-s*) if command -v systemctl >/dev/null 2>&1; then \
         systemctl disable --now redis-server redis-sentinel >/dev/null 2>&1 || true; fi;; esac; fi",
        checks = checks.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lab_and_vm_layouts() {
        let p = Paths::for_node("/var/lib/splitbrain/lab/work/n2/", true);
        assert_eq!(p.base, "/var/lib/splitbrain/lab/work/n2/redis");
        assert_eq!(
            p.redis_pid(),
            "/var/lib/splitbrain/lab/work/n2/redis/redis.pid"
        );
        assert_eq!(
            p.sentinel_log(),
            "/var/lib/splitbrain/lab/work/n2/redis/sentinel.log"
        );
        let v = Paths::for_node("/opt/splitbrain", false);
        assert_eq!(v.data, "/var/lib/splitbrain/redis/data");
        assert_eq!(v.redis_log(), "/var/log/splitbrain/redis/redis.log");
    }

    #[test]
    fn conf_values_and_glob_paths() {
        assert_eq!(conf_quote("/w/n1"), "\"/w/n1\"");
        assert_eq!(conf_quote("a \"b\\\né"), "\"a \\\"b\\\\\\x0a\\xc3\\xa9\"");
        assert!(Paths::for_node("/w/n 1'\"", true).check("n1").is_ok());
        assert_eq!(
            Paths::for_node("/w/n[1]", true).check("n1").unwrap_err(),
            "n1: redis-sentinel cannot use the config file \"/w/n[1]/redis/redis.conf\": Redis reads a path with `*`, `?` or `[` as a glob pattern; use a workdir without them"
        );
        assert!(Paths::for_node("/w/*", true).check("n1").is_err());
        assert!(
            Paths::for_node("/opt/a?", false).check("n1").is_ok(),
            "VM paths are fixed"
        );
    }

    #[test]
    fn configs_name_the_master_quorum_and_mode() {
        let p = Paths::for_node("/w/n2", true);
        let t = Tuning::for_mode("sentinel").unwrap();
        let r = redis_conf(&p, &t, ip("10.77.77.12"), Some(ip("10.77.77.11")));
        assert!(r.contains("bind 10.77.77.12\n"));
        assert!(r.contains("replicaof 10.77.77.11 6379\n"));
        assert!(r.contains("min-replicas-to-write 0\n"));
        assert!(r.contains("appendonly yes\n"));
        let m = redis_conf(&p, &t, ip("10.77.77.11"), None);
        assert!(!m.contains("replicaof"));
        let s = sentinel_conf(&p, &t, ip("10.77.77.12"), ip("10.77.77.11"), 5);
        assert!(s.contains("sentinel monitor splitbrain 10.77.77.11 6379 3\n"));
        assert!(s.contains("sentinel down-after-milliseconds splitbrain 1500\n"));
        assert!(s.contains("sentinel announce-ip 10.77.77.12\n"));
        let t1 = Tuning::for_mode("min-replicas-1").unwrap();
        assert!(redis_conf(&p, &t1, ip("10.0.0.1"), None).contains("min-replicas-to-write 1\n"));
        assert_eq!(Tuning::for_mode("raft"), None);
        assert_eq!((quorum(5), quorum(3), quorum(4)), (3, 2, 3));
    }

    #[test]
    fn faketime_preloads_tcmalloc_first() {
        let s = start_redis(&Paths::for_node("/w/n1", true), Some("/w/n1"));
        let last = s.rfind("LD_PRELOAD=").unwrap();
        let tail = &s[last..];
        let tc = tail.find("libtcmalloc").unwrap();
        let ft = tail.find("libfaketime").unwrap();
        assert!(tc < ft, "{s}");
        assert!(
            s.contains("FAKETIME_TIMESTAMP_FILE=/w/n1/faketime.rc "),
            "{s}"
        );
        assert!(s.ends_with("redis-server /w/n1/redis/redis.conf"), "{s}");
        assert_eq!(
            start_sentinel(&Paths::for_node("/w/n1", true), None),
            "redis-sentinel /w/n1/redis/sentinel.conf"
        );
    }

    #[test]
    fn install_names_what_is_missing_and_the_lab_hint() {
        let s = install_script("n3", true, true);
        assert!(s.contains("libtcmalloc-minimal4"));
        assert!(s.contains(
            "n3: apt-get install -y of the missing packages failed (the lab has no route out"
        ));
        assert!(!install_script("n3", false, false).contains("libtcmalloc"));
    }
}
