//! PostgreSQL configuration as text: the replication modes and their
//! `synchronous_standby_names`, the settings every node runs with, `pg_hba.conf` lines,
//! connection strings and SQL / conninfo quoting. Pure functions, unit-tested; the
//! shell scripts that write them live in `node.rs`.

use crate::nodes::NodeSpec;
use std::net::IpAddr;

/// The port every node's postmaster listens on (each lab node has its own address).
pub const PORT: u16 = 5432;

/// Where Debian's PostgreSQL 15 binaries live.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The OS user that owns the data directories and runs the postmaster.
pub const OS_USER: &str = "postgres";

/// The classic replication modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `synchronous_standby_names = ''`: a commit returns once it is on the primary.
    Async,
    /// `ANY 1 (every standby)`: a commit waits for one standby to flush it.
    SyncAny1,
    /// `FIRST k (all k standbys)`: a commit waits for every standby.
    SyncAll,
}

impl Mode {
    pub const NAMES: &'static [&'static str] = &["async", "sync-any-1", "sync-all"];

    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "async" => Ok(Mode::Async),
            "sync-any-1" => Ok(Mode::SyncAny1),
            "sync-all" => Ok(Mode::SyncAll),
            _ => Err(format!(
                "unknown postgres mode {s:?} (known: {})",
                Mode::NAMES.join(", ")
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::SyncAny1 => "sync-any-1",
            Mode::SyncAll => "sync-all",
        }
    }

    /// `synchronous_standby_names` for a primary whose standbys are `standbys`.
    /// `FIRST k` over all k standbys and `ANY k` over them mean the same (every one
    /// must flush); `FIRST` is used so `pg_stat_replication` shows them as `sync`.
    pub fn sync_names(self, standbys: &[String]) -> String {
        let list = || {
            standbys
                .iter()
                .map(|s| format!("\"{}\"", s.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Mode::Async => String::new(),
            _ if standbys.is_empty() => String::new(),
            Mode::SyncAny1 => format!("ANY 1 ({})", list()),
            Mode::SyncAll => format!("FIRST {} ({})", standbys.len(), list()),
        }
    }
}

/// A SQL string literal: `'...'` with quotes doubled (standard_conforming_strings is on).
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One conninfo value, quoted when it needs to be.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// The `primary_conninfo` of a standby named `app` streaming from `host`. Short
/// timeouts and keepalives so a standby notices a silent primary within seconds.
pub fn primary_conninfo(host: &str, app: &str) -> String {
    format!(
        "host={} port={PORT} user=postgres application_name={} connect_timeout=2 \
         keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=2",
        conninfo_value(host),
        conninfo_value(app)
    )
}

/// Settings appended to the primary's `postgresql.conf` (standbys copy them with
/// `pg_basebackup`). Per-node settings (address, name, socket directory) go on the
/// command line instead, see [`command_options`].
pub fn settings(mode: Mode, standbys: &[String]) -> String {
    let lines = [
        "# splitbrain: streaming replication under test".to_string(),
        "wal_level = replica".into(),
        "max_wal_senders = 16".into(),
        "wal_keep_size = '512MB'".into(),
        "hot_standby = on".into(),
        // pg_rewind needs hint bits WAL-logged to rejoin a deposed primary.
        "wal_log_hints = on".into(),
        // Notice a silent peer within seconds (the defaults are 60 s).
        "wal_receiver_timeout = '2s'".into(),
        "wal_sender_timeout = '2s'".into(),
        "wal_retrieve_retry_interval = '1s'".into(),
        "wal_receiver_status_interval = '1s'".into(),
        "tcp_keepalives_idle = 1".into(),
        "tcp_keepalives_interval = 1".into(),
        "tcp_keepalives_count = 2".into(),
        "synchronous_commit = on".into(),
        format!(
            "synchronous_standby_names = {}",
            sql_literal(&mode.sync_names(standbys))
        ),
        "shared_buffers = '32MB'".into(),
        "max_connections = 100".into(),
        "logging_collector = off".into(),
        "log_line_prefix = '%m [%p] %a: '".into(),
        "log_min_messages = info".into(),
    ];
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// `pg_hba.conf` lines: trust for the postgres user (queries and replication) from
/// the lab's subnet, or on VMs from every node's address and the nodes' own subnets
/// (`samenet`; the controller must be on one of them).
pub fn hba(lab: bool, nodes: &[NodeSpec]) -> String {
    let mut sources: Vec<String> = Vec::new();
    if lab {
        sources.push("10.77.77.0/24".into());
    } else {
        sources.push("samenet".into());
        for n in nodes {
            let src = match n.host.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => format!("{a}/32"),
                Ok(IpAddr::V6(a)) => format!("{a}/128"),
                Err(_) => n.host.clone(),
            };
            if !sources.contains(&src) {
                sources.push(src);
            }
        }
    }
    let mut s = String::from("# splitbrain: the nodes and the controller\n");
    for src in &sources {
        s.push_str(&format!("host all postgres {src} trust\n"));
        s.push_str(&format!("host replication postgres {src} trust\n"));
    }
    s
}

/// The postmaster's per-node options (`pg_ctl -o`): listen on the node's address,
/// name the node (its `application_name` as a standby), keep the socket in its dir.
pub fn command_options(node: &NodeSpec, socket_dir: &str) -> String {
    format!(
        "-c listen_addresses={} -c port={PORT} -c cluster_name={} -c unix_socket_directories={}",
        node.host, node.name, socket_dir
    )
}

/// Whether `s` can go unquoted into `pg_ctl -o` (which hands it to a shell) and into
/// a setting: paths, host names and node names are held to this.
pub fn plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
}

/// Parses an LSN (`16/B374D848`) into a number that orders like the LSN.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some((hi << 32) | lo)
}

/// The timeline of a WAL file name (`000000020000000000000003` → 2).
pub fn walfile_timeline(name: &str) -> Option<u64> {
    name.get(..8).and_then(|t| u64::from_str_radix(t, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sync_names_per_mode() {
        let s = names(&["n2", "n3", "n4", "n5"]);
        assert_eq!(Mode::Async.sync_names(&s), "");
        assert_eq!(
            Mode::SyncAny1.sync_names(&s),
            r#"ANY 1 ("n2", "n3", "n4", "n5")"#
        );
        assert_eq!(
            Mode::SyncAll.sync_names(&s),
            r#"FIRST 4 ("n2", "n3", "n4", "n5")"#
        );
        assert_eq!(
            Mode::SyncAll.sync_names(&names(&["a\"b"])),
            r#"FIRST 1 ("a""b")"#
        );
        assert_eq!(Mode::SyncAll.sync_names(&[]), "");
        assert!(Mode::parse("sync").is_err());
        for m in Mode::NAMES {
            assert_eq!(Mode::parse(m).map(Mode::name), Ok(*m));
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(
            primary_conninfo("10.77.77.12", "n3"),
            "host=10.77.77.12 port=5432 user=postgres application_name=n3 connect_timeout=2 \
             keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=2"
        );
        assert!(primary_conninfo("h", "a b'c").contains("application_name='a b\\'c'"));
        assert!(settings(Mode::SyncAny1, &names(&["n2"]))
            .contains("synchronous_standby_names = 'ANY 1 (\"n2\")'\n"));
        assert!(settings(Mode::Async, &names(&["n2"])).contains("synchronous_standby_names = ''"));
        assert!(plain_word("/var/lib/splitbrain/lab/work/n1"));
        assert!(!plain_word("/srv/my dir"));
        assert!(!plain_word("a;b"));
    }

    #[test]
    fn hba_sources() {
        let n = |name: &str, host: &str| NodeSpec {
            name: name.into(),
            host: host.into(),
            port: 22,
            workdir: "/w".into(),
            user: None,
        };
        let lab = hba(true, &[n("n1", "10.77.77.11")]);
        assert!(lab.contains("host replication postgres 10.77.77.0/24 trust"));
        let vm = hba(false, &[n("n1", "192.168.56.11"), n("n2", "db2.example")]);
        assert!(vm.contains("host all postgres 192.168.56.11/32 trust"));
        assert!(vm.contains("host replication postgres db2.example trust"));
        assert!(vm.contains("host all postgres samenet trust"));
    }

    #[test]
    fn lsn_and_timeline() {
        assert_eq!(parse_lsn("0/3016030"), Some(0x3016030));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert!(parse_lsn("1/2") < parse_lsn("2/0"));
        assert_eq!(parse_lsn("zz"), None);
        assert_eq!(walfile_timeline("000000020000000000000003"), Some(2));
        assert_eq!(walfile_timeline("0002"), None);
    }
}
