//! Fault markers: a small JSON file per fault kind on each node, under
//! `<workdir>/faults/`, recording a fault of ours in effect there — what it is, its
//! parameters, since when and which controller process applied it — so that
//! `splitbrain fault heal` and `fault status` run from another (new) controller
//! process know what to undo and can say who did it. A marker is written before
//! its fault is applied (atomically: temp file + rename), so a crash in between
//! leaves a marker for a fault that is not there, never the reverse; it is removed
//! once the fault is undone. One file per kind, because a node holds at most one
//! fault of each kind at a time (a new partition replaces the old one, and so on),
//! so every write is a blind replace that needs no read of the old state first.

use crate::grudge::Grudge;
use crate::shell::quote;
use serde::{Deserialize, Serialize};

/// A fault in effect on a node, with what is needed to undo it or explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MarkedFault {
    /// Partition rules: the whole grudge.
    Partition { grudge: Grudge },
    /// A packet fault toward the other nodes, e.g. `loss=10%`, and how it was applied.
    Packet { fault: String, method: String },
    /// A clock bump by `offset_s` seconds.
    Clock { offset_s: f64 },
    /// A clock strobe between two offsets, until a time (controller's clock).
    ClockStrobe {
        a_s: f64,
        b_s: f64,
        period_ms: u64,
        until_unix_s: f64,
    },
    /// The system's process stopped with SIGSTOP; `pid_file` names the process, so a
    /// heal that does not know the system still resumes exactly it.
    Pause {
        system: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid_file: Option<String>,
    },
    /// The system's process killed with SIGKILL; undone by starting it again with
    /// `restart`, the system's own restart command for this node (shell text run on
    /// the node; it starts nothing while the process still runs), so a heal that does
    /// not know the system still starts exactly it.
    Kill {
        system: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid_file: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restart: Option<String>,
    },
}

/// The marker files, one per kind of fault.
pub const KINDS: [&str; 5] = ["partition", "packet", "clock", "pause", "kill"];

impl MarkedFault {
    /// The file (without `.json`) this fault's marker lives in.
    pub fn file_kind(&self) -> &'static str {
        match self {
            MarkedFault::Partition { .. } => "partition",
            MarkedFault::Packet { .. } => "packet",
            MarkedFault::Clock { .. } | MarkedFault::ClockStrobe { .. } => "clock",
            MarkedFault::Pause { .. } => "pause",
            MarkedFault::Kill { .. } => "kill",
        }
    }
}

/// One marker file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub fault: MarkedFault,
    /// When it was applied: seconds since the Unix epoch on the controller.
    pub since_unix_s: f64,
    /// The controller process that applied it.
    pub controller_pid: u32,
    pub controller_host: String,
}

/// The marker directory under a node's workdir.
pub fn dir(workdir: &str) -> String {
    format!("{}/faults", workdir.trim_end_matches('/'))
}

/// Shell that writes `marker` on a node atomically (temp file + rename), replacing
/// the earlier marker of the same kind.
pub fn write_script(workdir: &str, marker: &Marker) -> String {
    let d = dir(workdir);
    let f = format!("{d}/{}.json", marker.fault.file_kind());
    // Serializing these plain types cannot fail; an empty object would still parse
    // as a bad marker and be reported.
    let json = serde_json::to_string(marker).unwrap_or_else(|_| "{}".into());
    format!(
        "{{ [ -d {d} ] || mkdir -p {d}; }} && printf '%s\\n' {json} > {tmp} && mv -f {tmp} {f}",
        d = quote(&d),
        json = quote(&json),
        tmp = quote(&format!("{f}.tmp")),
        f = quote(&f)
    )
}

/// Shell that removes the markers of `kinds` (idempotent; starts no program when
/// there is no marker directory).
pub fn remove_script(workdir: &str, kinds: &[&str]) -> String {
    let d = dir(workdir);
    let files: Vec<String> = kinds
        .iter()
        .map(|k| quote(&format!("{d}/{k}.json")))
        .collect();
    format!(
        "if [ -d {dq} ]; then rm -f {}; rmdir {dq} 2>/dev/null || true; fi",
        files.join(" "),
        dq = quote(&d)
    )
}

/// Shell that prints every marker as `--- marker KIND` followed by its content.
pub fn read_script(workdir: &str) -> String {
    let d = dir(workdir);
    format!(
        "if [ -d {d} ]; then for k in {kinds}; do f={d}/$k.json; if [ -f \"$f\" ]; then printf '%s\\n' \"--- marker $k\"; cat \"$f\"; fi; done; fi",
        d = quote(&d),
        kinds = KINDS.join(" ")
    )
}

/// Parses [`read_script`]'s output: the markers, and a line per unreadable one.
pub fn parse(out: &str) -> (Vec<Marker>, Vec<String>) {
    let (mut markers, mut errors) = (Vec::new(), Vec::new());
    for chunk in out.split("--- marker ").skip(1) {
        let (kind, body) = chunk.split_once('\n').unwrap_or((chunk, ""));
        match serde_json::from_str::<Marker>(body.trim()) {
            Ok(m) => markers.push(m),
            Err(e) => errors.push(format!("marker {}: unreadable: {e}", kind.trim())),
        }
    }
    (markers, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn marker(fault: MarkedFault) -> Marker {
        Marker {
            fault,
            since_unix_s: 1_763_800_000.5,
            controller_pid: 4242,
            controller_host: "ctl's host".into(),
        }
    }

    #[test]
    fn markers_round_trip_through_the_shell_and_replace_per_kind() {
        let tmp = std::env::temp_dir().join(format!("nemesis-marker-{}", std::process::id()));
        let w = tmp.join("work n1");
        let w = w.to_str().unwrap();
        assert_eq!(sh(&read_script(w)), "", "no directory: nothing");
        let nodes = ["n1".to_string(), "n2".to_string()];
        let p = marker(MarkedFault::Partition {
            grudge: Grudge::between(&nodes[..1], &nodes[1..]),
        });
        sh(&write_script(w, &p));
        sh(&write_script(
            w,
            &marker(MarkedFault::Clock { offset_s: 2.0 }),
        ));
        sh(&write_script(
            w,
            &marker(MarkedFault::Clock { offset_s: -1.5 }),
        ));
        sh(&write_script(
            w,
            &marker(MarkedFault::Kill {
                system: "zoo raft".into(),
                pid_file: Some("/w n1/zoo/zoo.pid".into()),
                restart: Some("if [ -f '/w n1/zoo/zoo.pid' ]; then echo \"it's up\"; fi".into()),
            }),
        ));
        let (got, errors) = parse(&sh(&read_script(w)));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            got,
            vec![
                p,
                marker(MarkedFault::Clock { offset_s: -1.5 }),
                marker(MarkedFault::Kill {
                    system: "zoo raft".into(),
                    pid_file: Some("/w n1/zoo/zoo.pid".into()),
                    restart: Some(
                        "if [ -f '/w n1/zoo/zoo.pid' ]; then echo \"it's up\"; fi".into()
                    ),
                }),
            ]
        );
        sh(&remove_script(w, &["partition", "clock"]));
        let (got, _) = parse(&sh(&read_script(w)));
        assert_eq!(got.len(), 1);
        sh(&remove_script(w, &KINDS));
        assert!(
            !std::path::Path::new(&dir(w)).exists(),
            "empty directory removed"
        );
        sh(&remove_script(w, &KINDS));
        // A marker written before pause and kill markers named their pid file.
        let (old, errors) = parse(
            "--- marker pause\n{\"fault\":{\"kind\":\"pause\",\"system\":\"zoo raft\"},\"since_unix_s\":1.0,\"controller_pid\":7,\"controller_host\":\"h\"}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            old[0].fault,
            MarkedFault::Pause {
                system: "zoo raft".into(),
                pid_file: None
            }
        );
        let (_, errors) = parse("--- marker kill\n{\"fault\": 3}\n");
        assert!(
            errors[0].starts_with("marker kill: unreadable"),
            "{errors:?}"
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
