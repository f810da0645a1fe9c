//! Packet faults toward chosen peers: loss, delay, jitter and duplication with tc
//! netem where the kernel has it; loss alone through iptables `statistic` where it
//! does not. Only packets to peer addresses are steered into the fault (a u32
//! filter per peer, or one iptables rule per peer), so the controller's traffic is
//! never touched. Our qdisc is recognisable by its handle `5b00:`.

use crate::iptables::ipt;
use crate::shell::quote;
use std::fmt;

/// Handle of our root prio qdisc.
pub const HANDLE: &str = "5b00:";
/// The chain for loss without netem, jumped to from OUTPUT.
pub const CHAIN_LOSS: &str = "SPLITBRAIN-LOSS";

/// What to do to packets toward the chosen peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PacketFault {
    /// Percent of packets dropped.
    pub loss_pct: f64,
    pub delay_ms: f64,
    pub jitter_ms: f64,
    /// Percent of packets duplicated.
    pub duplicate_pct: f64,
}

impl fmt::Display for PacketFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.loss_pct > 0.0 {
            parts.push(format!("loss={}%", self.loss_pct));
        }
        if self.delay_ms > 0.0 {
            parts.push(format!("delay={}ms", self.delay_ms));
        }
        if self.jitter_ms > 0.0 {
            parts.push(format!("jitter={}ms", self.jitter_ms));
        }
        if self.duplicate_pct > 0.0 {
            parts.push(format!("duplicate={}%", self.duplicate_pct));
        }
        f.write_str(&parts.join(","))
    }
}

impl PacketFault {
    /// `loss=10%,delay=100ms,jitter=20ms,duplicate=5%` (any subset, at least one).
    pub fn parse(text: &str) -> Result<PacketFault, String> {
        let mut p = PacketFault::default();
        for item in text.split(',').filter(|s| !s.trim().is_empty()) {
            let (k, v) = item.trim().split_once('=').ok_or_else(|| {
                format!("invalid packet fault {item:?}: expected key=value, e.g. loss=10%")
            })?;
            let num = |suffix: &str, max: f64| -> Result<f64, String> {
                let n = v.strip_suffix(suffix).unwrap_or(v);
                let x: f64 = n.parse().map_err(|_| {
                    format!("invalid packet fault {item:?}: {v:?} is not a number{suffix}")
                })?;
                if !(x.is_finite() && x > 0.0 && x <= max) {
                    return Err(format!(
                        "invalid packet fault {item:?}: must be above 0 and at most {max}{suffix}"
                    ));
                }
                Ok(x)
            };
            match k {
                "loss" => p.loss_pct = num("%", 100.0)?,
                "duplicate" => p.duplicate_pct = num("%", 100.0)?,
                "delay" => p.delay_ms = num("ms", 60_000.0)?,
                "jitter" => p.jitter_ms = num("ms", 60_000.0)?,
                _ => {
                    return Err(format!(
                        "invalid packet fault {item:?}: unknown key {k:?} (loss, delay, jitter, duplicate)"
                    ))
                }
            }
        }
        if p == PacketFault::default() {
            return Err(format!(
                "invalid packet fault {text:?}: give at least one of loss=, delay=, jitter=, duplicate="
            ));
        }
        if p.jitter_ms > 0.0 && p.delay_ms == 0.0 {
            return Err(format!(
                "invalid packet fault {text:?}: jitter needs a delay"
            ));
        }
        Ok(p)
    }

    /// The netem arguments, e.g. `delay 100ms 20ms loss 10% duplicate 5%`.
    pub fn netem_args(&self) -> String {
        let mut a = Vec::new();
        if self.delay_ms > 0.0 {
            a.push(format!("delay {}ms", self.delay_ms));
            if self.jitter_ms > 0.0 {
                a.push(format!("{}ms", self.jitter_ms));
            }
        }
        if self.loss_pct > 0.0 {
            a.push(format!("loss {}%", self.loss_pct));
        }
        if self.duplicate_pct > 0.0 {
            a.push(format!("duplicate {}%", self.duplicate_pct));
        }
        a.join(" ")
    }

    /// What needs netem (everything but loss).
    pub fn needs_netem(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.delay_ms > 0.0 {
            v.push("delay");
        }
        if self.jitter_ms > 0.0 {
            v.push("jitter");
        }
        if self.duplicate_pct > 0.0 {
            v.push("duplicate");
        }
        v
    }
}

/// How a node can do packet faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketMethod {
    Netem,
    /// No netem; the reason the probe gave.
    IptablesLoss {
        why: String,
    },
}

/// Prints `netem` or `no-netem REASON`. Probes on a throw-away dummy link, else on
/// `lo` with a zero delay removed at once.
pub fn detect_script() -> String {
    "probe() { if out=$(tc qdisc add dev \"$1\" root handle 5b0f: netem delay 0ms 2>&1); then tc qdisc del dev \"$1\" root 2>/dev/null; echo netem; else echo \"no-netem $out\" | head -n 1; fi; }; \
     if ip link add sbprobe0 type dummy 2>/dev/null; then probe sbprobe0; ip link del sbprobe0 2>/dev/null; else probe lo; fi"
        .to_string()
}

pub fn parse_detect(out: &str) -> PacketMethod {
    let line = out.trim();
    if line == "netem" {
        PacketMethod::Netem
    } else {
        let why = line.strip_prefix("no-netem").unwrap_or(line).trim();
        PacketMethod::IptablesLoss {
            why: if why.is_empty() {
                "tc netem probe failed".into()
            } else {
                why.to_string()
            },
        }
    }
}

/// One node's script applying `fault` to packets toward `peers` (addresses).
/// Replaces any earlier packet fault of ours. Errors name what this node cannot do.
pub fn apply_script(
    method: &PacketMethod,
    fault: &PacketFault,
    peers: &[String],
) -> Result<String, String> {
    if peers.is_empty() {
        return Err("no peers to apply a packet fault toward".into());
    }
    let mut cmds = vec![heal_script()];
    match method {
        PacketMethod::Netem => {
            cmds.push(format!(
                "dev=$(ip -o route get {} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'); [ -n \"$dev\" ] || {{ echo 'no route to the first peer' >&2; exit 3; }}",
                quote(&peers[0])
            ));
            cmds.push(format!(
                "tc qdisc add dev \"$dev\" root handle {HANDLE} prio bands 4 priomap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"
            ));
            cmds.push(format!(
                "tc qdisc add dev \"$dev\" parent 5b00:4 handle 5b40: netem {}",
                fault.netem_args()
            ));
            for p in peers {
                cmds.push(format!(
                    "a=$(getent ahostsv4 {} | awk 'NR==1{{print $1}}'); tc filter add dev \"$dev\" parent {HANDLE} protocol ip prio 1 u32 match ip dst \"$a\"/32 flowid 5b00:4",
                    quote(p)
                ));
            }
        }
        PacketMethod::IptablesLoss { why } => {
            let need = fault.needs_netem();
            if !need.is_empty() {
                return Err(format!(
                    "{} needs tc netem, which this node lacks ({why}); only loss works here, through iptables statistic",
                    need.join(", ")
                ));
            }
            let prob = format!("{:.4}", fault.loss_pct / 100.0);
            cmds.push(ipt(&["-N", CHAIN_LOSS]));
            for p in peers {
                cmds.push(ipt(&[
                    "-A",
                    CHAIN_LOSS,
                    "-d",
                    p,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &prob,
                    "-j",
                    "DROP",
                ]));
            }
            cmds.push(ipt(&["-I", "OUTPUT", "1", "-j", CHAIN_LOSS]));
        }
    }
    Ok(format!("set -e\n{}\n", cmds.join("\n")))
}

/// Removes our qdisc from every interface (idempotent): one `tc qdisc show` for all
/// interfaces, a delete only where our root qdisc is. Sets `rc=3` when a delete
/// fails; never exits and starts no subshell (composes into a node's heal script).
pub fn heal_qdisc_script() -> String {
    format!(
        "q=$(tc qdisc show 2>/dev/null) || q=''\nwhile read -r _ kind handle _ dev where _; do if [ \"$kind $handle $where\" = \"prio {HANDLE} root\" ]; then tc qdisc del dev \"$dev\" root || rc=3; fi; done <<SPLITBRAIN_EOF\n$q\nSPLITBRAIN_EOF"
    )
}

/// Removes our qdisc from every interface and our loss chain (idempotent).
pub fn heal_script() -> String {
    format!(
        "{}\nwhile {} 2>/dev/null; do :; done; {} 2>/dev/null || true; {} 2>/dev/null || true",
        heal_qdisc_script(),
        ipt(&["-D", "OUTPUT", "-j", CHAIN_LOSS]),
        ipt(&["-F", CHAIN_LOSS]),
        ipt(&["-X", CHAIN_LOSS])
    )
}

/// Prints our qdiscs and loss rules, one per line (nothing when healed).
pub fn status_script() -> String {
    format!(
        "for d in $(ls /sys/class/net); do tc qdisc show dev \"$d\" 2>/dev/null | grep -E '5b00:|5b40:' | sed \"s/^/$d: /\"; done; {} 2>/dev/null | grep -- '^-A' || true",
        ipt(&["-S", CHAIN_LOSS])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_render() {
        let p = PacketFault::parse("loss=10%,delay=100ms,jitter=20ms,duplicate=5%").unwrap();
        assert_eq!(p.netem_args(), "delay 100ms 20ms loss 10% duplicate 5%");
        assert_eq!(
            p.to_string(),
            "loss=10%,delay=100ms,jitter=20ms,duplicate=5%"
        );
        for bad in [
            "",
            "loss",
            "loss=200%",
            "loss=-1%",
            "speed=3",
            "jitter=5ms",
            "delay=abc",
        ] {
            assert!(
                PacketFault::parse(bad)
                    .unwrap_err()
                    .starts_with("invalid packet fault"),
                "{bad}"
            );
        }
    }

    /// Runs [`heal_qdisc_script`] with a stand-in `tc` that prints `show` and
    /// records every other call; returns the recorded calls and the final `$rc`.
    fn heal_qdiscs_with(show: &str, del_fails: bool) -> (String, String) {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("nemesis-tc-{}-{del_fails}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("show"), show).unwrap();
        let tc = d.join("tc");
        std::fs::write(
            &tc,
            format!(
                "#!/bin/sh\nif [ \"$1 $2\" = 'qdisc show' ]; then cat {d}/show; exit 0; fi\necho \"$*\" >> {d}/calls\n{fail}\n",
                d = d.display(),
                fail = if del_fails { "exit 2" } else { "exit 0" }
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            d.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("rc=0\n{}\necho \"rc=$rc\"", heal_qdisc_script()))
            .env("PATH", path)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(d.join("calls")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&d);
        (
            calls,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    #[test]
    fn qdisc_heal_deletes_only_our_root_qdisc_and_reports_a_failed_delete() {
        let show = "qdisc noqueue 0: dev lo root refcnt 2\n\
                    qdisc prio 5b00: dev eth0 root refcnt 2 bands 4 priomap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
                    qdisc netem 5b40: dev eth0 parent 5b00:4 limit 1000 delay 50ms\n\
                    qdisc prio 1: dev eth1 root refcnt 2 bands 3\n\
                    qdisc prio 5b00: dev eth2 parent 1:1 bands 4\n";
        let (calls, rc) = heal_qdiscs_with(show, false);
        assert_eq!(calls, "qdisc del dev eth0 root\n");
        assert_eq!(rc, "rc=0");
        let (calls, rc) = heal_qdiscs_with("qdisc noqueue 0: dev lo root refcnt 2\n", false);
        assert_eq!((calls.as_str(), rc.as_str()), ("", "rc=0"));
        let (_, rc) = heal_qdiscs_with(show, true);
        assert_eq!(rc, "rc=3");
    }

    #[test]
    fn netem_filters_only_peers_and_fallback_refuses_what_it_cannot_do() {
        let peers = vec!["10.77.77.12".to_string(), "10.77.77.13".to_string()];
        let f = PacketFault::parse("delay=50ms").unwrap();
        let s = apply_script(&PacketMethod::Netem, &f, &peers).unwrap();
        assert!(
            s.contains("netem delay 50ms")
                && s.contains("u32 match ip dst \"$a\"/32 flowid 5b00:4")
        );
        assert_eq!(s.matches("tc filter add").count(), 2);
        assert!(
            s.contains("priomap 0 0 0 0"),
            "unmatched traffic stays in band 1"
        );
        let no = PacketMethod::IptablesLoss {
            why: "Specified qdisc kind is unknown.".into(),
        };
        let e = apply_script(&no, &f, &peers).unwrap_err();
        assert_eq!(e, "delay needs tc netem, which this node lacks (Specified qdisc kind is unknown.); only loss works here, through iptables statistic");
        let l = apply_script(&no, &PacketFault::parse("loss=25%").unwrap(), &peers).unwrap();
        assert!(l.contains("iptables -w 5 -A SPLITBRAIN-LOSS -d 10.77.77.13 -m statistic --mode random --probability 0.2500 -j DROP"), "{l}");
        assert_eq!(parse_detect("netem\n"), PacketMethod::Netem);
        assert_eq!(
            parse_detect("no-netem Error: Specified qdisc kind is unknown."),
            PacketMethod::IptablesLoss {
                why: "Error: Specified qdisc kind is unknown.".into()
            }
        );
        assert!(heal_script().contains("= \"prio 5b00: root\" ]"));
    }
}
