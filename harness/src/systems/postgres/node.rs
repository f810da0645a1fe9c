//! Shell text run on a node for PostgreSQL: where its files live, the install check,
//! making a primary (initdb) or a standby (pg_basebackup -R), starting the postmaster
//! as the `postgres` user with the node's options, stopping and signalling the
//! postmaster and its children, and rejoining a deposed primary as a standby
//! (pg_rewind, else a new base backup). Every path and value is quoted with `sh_quote`.

use super::conf::{self, command_options, primary_conninfo, sql_literal, Mode, BIN, PORT};
use crate::control::sh_quote;
use crate::nodes::NodeSpec;
use nemesis::clock;

/// A node's PostgreSQL files.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Owned by `postgres`: the data dir, the log, the socket, our pid file.
    pub base: String,
    pub data: String,
    pub log: String,
    /// The postmaster's pid alone (the nemesis reads it; `postmaster.pid` has more lines).
    pub pid: String,
    /// The lab's offset file for libfaketime, when clock faults run.
    pub faketime: Option<String>,
}

impl Layout {
    /// On the lab under the node's workdir; on VMs at the standard place.
    pub fn new(node: &NodeSpec, lab: bool, faketime: bool) -> Layout {
        let base = if lab {
            format!("{}/postgres", node.workdir.trim_end_matches('/'))
        } else {
            "/var/lib/splitbrain/postgres".to_string()
        };
        Layout {
            data: format!("{base}/data"),
            log: format!("{base}/postgres.log"),
            pid: format!("{base}/postgres.pid"),
            faketime: faketime.then(|| clock::lab_offset_file(&node.workdir)),
            base,
        }
    }
}

fn bin(tool: &str) -> String {
    format!("{BIN}/{tool}")
}

fn as_postgres(cmd: &str) -> String {
    format!("runuser -u {} -- {cmd}", conf::OS_USER)
}

/// Checks for the binaries; installs `postgresql-15` with apt-get when missing (and
/// stops the cluster Debian starts on install: the harness runs its own).
pub fn install_script() -> String {
    let postgres = sh_quote(&bin("postgres"));
    format!(
        "if [ ! -x {postgres} ]; then \
           if ! command -v apt-get >/dev/null 2>&1; then echo 'PostgreSQL 15 is not installed ({BIN}/postgres missing) and this node has no apt-get' >&2; exit 3; fi; \
           if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15 2>&1); then \
             echo \"PostgreSQL 15 is not installed and 'apt-get install -y postgresql-15' failed (a lab node has no route out: install postgresql on the host): $(printf '%s' \"$out\" | tail -n 2 | tr '\\n' ' ')\" >&2; exit 3; fi; \
           (systemctl stop postgresql; systemctl disable postgresql) >/dev/null 2>&1 || true; \
         fi; \
         id -u {user} >/dev/null 2>&1 || {{ echo 'no OS user {user} (the postgresql package creates it)' >&2; exit 3; }}",
        user = conf::OS_USER
    )
}

/// Defines `pm`: prints the postmaster's pid when one of ours runs (checked against
/// the binary, so a reused pid is never signalled).
fn pm_function(l: &Layout) -> String {
    format!(
        "pm() {{ for f in {pid} {data}/postmaster.pid; do p=$(head -n1 \"$f\" 2>/dev/null); \
         if [ -n \"$p\" ] && [ \"$(readlink /proc/$p/exe 2>/dev/null)\" = {exe} ]; then echo \"$p\"; return 0; fi; done; return 1; }}",
        pid = sh_quote(&l.pid),
        data = sh_quote(&l.data),
        exe = sh_quote(&bin("postgres")),
    )
}

/// Stops the postmaster and every backend at once (immediate shutdown, then SIGKILL
/// to it and its children after 5 s); resumes a paused one first.
pub fn stop_script(l: &Layout) -> String {
    format!(
        "{pm}; if p=$(pm); then {cont} 2>/dev/null; kill -QUIT \"$p\" 2>/dev/null; \
         for i in $(seq 50); do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done; \
         {kill} 2>/dev/null; for i in $(seq 50); do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done; fi; \
         rm -f {pid}",
        pm = pm_function(l),
        pid = sh_quote(&l.pid),
        cont = group_kill("CONT"),
        kill = group_kill("KILL"),
    )
}

/// Sends `sig` (`KILL`, `STOP`, `CONT`) to the postmaster and its children; KILL
/// waits until the postmaster is gone.
pub fn signal_script(l: &Layout, sig: &str) -> String {
    let missing = sh_quote(&format!(
        "no running postgres: pid file {} missing or stale",
        l.pid
    ));
    if sig == "CONT" {
        return format!(
            "{pm}; if p=$(pm); then {} 2>/dev/null || true; fi",
            group_kill("CONT"),
            pm = pm_function(l)
        );
    }
    let wait = if sig == "KILL" {
        format!(
            "; for i in $(seq 50); do {GONE} && break; sleep 0.1; done; \
             if ! {GONE}; then echo \"postgres (pid $p) still alive after SIGKILL\" >&2; exit 3; fi"
        )
    } else {
        String::new()
    };
    format!(
        "{pm}; p=$(pm) || {{ echo {missing} >&2; exit 3; }}; {}{wait}",
        group_kill(sig),
        pm = pm_function(l)
    )
}

/// Signals the postmaster `$p` and its children (by parent pid). Not the process
/// group: every PostgreSQL child calls `setsid()` and leads a group of its own.
fn group_kill(sig: &str) -> String {
    // The children are listed before the postmaster is signalled: once it is killed
    // they are re-parented and no longer found by its pid.
    format!(
        "c=$(pgrep -P \"$p\" | tr '\\n' ' '); kill -{sig} \"$p\" && {{ [ -z \"$c\" ] || kill -{sig} $c 2>/dev/null || true; }}"
    )
}

/// Shell test that `$p` is gone (a zombie counts as gone).
const GONE: &str =
    "{ s=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -c1); [ -z \"$s\" ] || [ \"$s\" = Z ]; }";

/// A fresh base dir owned by `postgres`. On the lab, directories above it that the
/// `postgres` user cannot traverse get search permission (x) for others, nothing more;
/// elsewhere that is an error naming the directory.
pub fn prepare_script(l: &Layout, lab: bool) -> String {
    let base = sh_quote(&l.base);
    let fix = if lab {
        "chmod o+x \"$d\" || { echo \"cannot make $d searchable for postgres\" >&2; exit 3; }"
    } else {
        "echo \"the postgres user cannot reach $d (needs search permission)\" >&2; exit 3"
    };
    format!(
        "{install}; {stop}; rm -rf {base} && mkdir -p {base} && d={base}; \
         while [ \"$d\" != / ]; do d=$(dirname \"$d\"); \
           if ! runuser -u postgres -- test -x \"$d\"; then {fix}; fi; done; \
         chown postgres:postgres {base} && chmod 700 {base}",
        install = install_script(),
        stop = stop_script(l),
    )
}

/// Starts the postmaster over the existing data dir and records its pid.
pub fn start_script(l: &Layout, node: &NodeSpec) -> String {
    let env = match &l.faketime {
        Some(f) => format!("env {} ", clock::faketime_env(f)),
        None => String::new(),
    };
    let pg_ctl = format!(
        "{env}{} -D {} -l {} -w -t 60 -s -o {} start",
        sh_quote(&bin("pg_ctl")),
        sh_quote(&l.data),
        sh_quote(&l.log),
        sh_quote(&command_options(node, &l.base)),
    );
    format!(
        "{} && head -n1 {} > {}",
        as_postgres(&pg_ctl),
        sh_quote(&format!("{}/postmaster.pid", l.data)),
        sh_quote(&l.pid)
    )
}

/// Starts only when no postmaster of ours runs (a restart never doubles a process).
pub fn restart_script(l: &Layout, node: &NodeSpec) -> String {
    format!(
        "{pm}; if pm >/dev/null; then echo 'postgres is still running' >&2; exit 3; fi; {start}",
        pm = pm_function(l),
        start = start_script(l, node)
    )
}

/// The primary: initdb, our settings and pg_hba lines, start.
pub fn primary_script(
    l: &Layout,
    node: &NodeSpec,
    all: &[NodeSpec],
    mode: Mode,
    lab: bool,
) -> String {
    let standbys: Vec<String> = all
        .iter()
        .filter(|n| n.name != node.name)
        .map(|n| n.name.clone())
        .collect();
    let data = sh_quote(&l.data);
    format!(
        "{prep} && {initdb} >/dev/null && printf '%s' {settings} >> {data}/postgresql.conf && \
         printf '%s' {hba} >> {data}/pg_hba.conf && {start}",
        prep = prepare_script(l, lab),
        initdb = as_postgres(&format!(
            "{} -D {data} -U postgres -A trust -E UTF8 --no-sync",
            sh_quote(&bin("initdb"))
        )),
        settings = sh_quote(&conf::settings(mode, &standbys)),
        hba = sh_quote(&conf::hba(lab, all)),
        start = start_script(l, node),
    )
}

/// Points the data dir's `postgresql.auto.conf` at `primary_host` (and drops any
/// `synchronous_standby_names` copied from the source: the supervisor sets it on
/// promotion), and marks it a standby.
fn follow_script(l: &Layout, node: &NodeSpec, primary_host: &str) -> String {
    let auto = sh_quote(&format!("{}/postgresql.auto.conf", l.data));
    let line = format!(
        "primary_conninfo = {}\n",
        sql_literal(&primary_conninfo(primary_host, &node.name))
    );
    format!(
        "sed -i '/^primary_conninfo/d;/^synchronous_standby_names/d' {auto} && printf '%s' {line} >> {auto} && \
         chown postgres:postgres {auto} && {touch}",
        line = sh_quote(&line),
        touch = as_postgres(&format!(
            "touch {}",
            sh_quote(&format!("{}/standby.signal", l.data))
        )),
    )
}

/// Waits (from this node's network namespace) until `host` accepts connections.
fn wait_for(host: &str, seconds: u32) -> String {
    format!(
        "i=0; until {} -q -U postgres -d postgres -h {h} -p {PORT} -t 1; do i=$((i+1)); \
         if [ $i -ge {n} ]; then echo 'postgres at {host} not ready after {seconds} s' >&2; exit 3; fi; sleep 0.5; done",
        sh_quote(&bin("pg_isready")),
        h = sh_quote(host),
        n = seconds * 2,
    )
}

fn basebackup(l: &Layout, node: &NodeSpec, primary_host: &str) -> String {
    as_postgres(&format!(
        "{} -D {} -R -X stream -c fast -d {}",
        sh_quote(&bin("pg_basebackup")),
        sh_quote(&l.data),
        sh_quote(&primary_conninfo(primary_host, &node.name)),
    ))
}

/// A standby: wait for the primary, copy it with `pg_basebackup -R`, start.
pub fn standby_script(l: &Layout, node: &NodeSpec, primary_host: &str, lab: bool) -> String {
    format!(
        "{prep} && {wait} && {bb} && {follow} && {start}",
        prep = prepare_script(l, lab),
        wait = wait_for(primary_host, 60),
        bb = basebackup(l, node, primary_host),
        follow = follow_script(l, node, primary_host),
        start = start_script(l, node),
    )
}

/// Whether this node reaches `host`'s postmaster (from its own namespace): exit 0 yes.
pub fn reaches_script(host: &str) -> String {
    format!(
        "{} -q -U postgres -d postgres -h {} -p {PORT} -t 1",
        sh_quote(&bin("pg_isready")),
        sh_quote(host)
    )
}

/// Rejoins a deposed primary as a standby of `primary_host`: stop it, `pg_rewind`
/// onto the new primary's timeline, else a fresh base backup; follow; start. Prints
/// `rewound` or `recloned`.
pub fn rejoin_script(l: &Layout, node: &NodeSpec, primary_host: &str) -> String {
    let source = format!("host={primary_host} port={PORT} user=postgres");
    let rewind = as_postgres(&format!(
        "{} -D {} --source-server={}",
        sh_quote(&bin("pg_rewind")),
        sh_quote(&l.data),
        sh_quote(&source)
    ));
    format!(
        "{stop}; if {rewind} >> {log} 2>&1; then how=rewound; else how=recloned; \
         rm -rf {data} && {bb} || exit 3; fi; {follow} && {start} && echo $how",
        stop = stop_script(l),
        log = sh_quote(&l.log),
        data = sh_quote(&l.data),
        bb = basebackup(l, node, primary_host),
        follow = follow_script(l, node, primary_host),
        start = start_script(l, node),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeSpec {
        NodeSpec {
            name: "n2".into(),
            host: "10.77.77.12".into(),
            port: 22,
            user: None,
            workdir: "/var/lib/splitbrain/lab/work/n2/".into(),
        }
    }

    #[test]
    fn layout_per_place() {
        let l = Layout::new(&node(), true, false);
        assert_eq!(l.data, "/var/lib/splitbrain/lab/work/n2/postgres/data");
        assert_eq!(
            l.pid,
            "/var/lib/splitbrain/lab/work/n2/postgres/postgres.pid"
        );
        assert!(l.faketime.is_none());
        let vm = Layout::new(&node(), false, false);
        assert_eq!(vm.base, "/var/lib/splitbrain/postgres");
        assert!(Layout::new(&node(), true, true).faketime.is_some());
    }

    #[test]
    fn scripts_name_the_right_things() {
        let l = Layout::new(&node(), true, true);
        let start = start_script(&l, &node());
        assert!(start.starts_with("runuser -u postgres -- env LD_PRELOAD="));
        assert!(start.contains("cluster_name=n2"));
        assert!(start.contains("listen_addresses=10.77.77.12"));
        let sb = standby_script(&l, &node(), "10.77.77.11", true);
        assert!(sb.contains("pg_basebackup"));
        assert!(sb.contains("application_name=n2"));
        assert!(sb.contains("chmod o+x"));
        assert!(!standby_script(&l, &node(), "10.77.77.11", false).contains("chmod o+x"));
        // Group signals, never by name.
        let stop = signal_script(&l, "STOP");
        assert!(stop.contains("kill -STOP \"$p\" && ") && stop.contains("pgrep -P"));
        assert!(!stop_script(&l).contains("pkill"));
        assert!(rejoin_script(&l, &node(), "10.77.77.13").contains("pg_rewind"));
    }

    /// The signal reaches the parent and each of its children, in `sh` (dash).
    #[test]
    fn signal_reaches_parent_and_children() {
        let script = format!(
            "sh -c 'sleep 30 & sleep 30 & wait' >/dev/null 2>&1 & p=$!; pp=$p; sleep 0.3; kids=$(pgrep -P \"$p\" | tr '\\n' ' '); \
             {}; sleep 0.3; alive=''; for q in $p $kids; do p=$q; {GONE} || alive=\"$alive $q\"; done; \
             [ -n \"$kids\" ] && [ -z \"$alive\" ] && echo dead || {{ kill -KILL $pp $kids 2>/dev/null; echo \"alive:$alive children:$kids\"; }}",
            group_kill("KILL")
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "dead",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The scripts are valid shell (parsed by `sh -n`, not run).
    #[test]
    fn scripts_parse() {
        let l = Layout::new(&node(), true, true);
        let n = node();
        let all = vec![n.clone()];
        for s in [
            install_script(),
            stop_script(&l),
            signal_script(&l, "KILL"),
            signal_script(&l, "CONT"),
            restart_script(&l, &n),
            primary_script(&l, &n, &all, Mode::SyncAll, true),
            standby_script(&l, &n, "10.77.77.11", true),
            rejoin_script(&l, &n, "10.77.77.11"),
            reaches_script("10.77.77.11"),
        ] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&s)
                .output()
                .expect("sh runs");
            assert!(
                out.status.success(),
                "{s}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
