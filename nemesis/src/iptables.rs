//! Renders a [`Grudge`] as one `iptables-restore --noflush` transaction per node.
//! Rules live only in chains the harness owns (`SPLITBRAIN-IN`, `SPLITBRAIN-OUT`),
//! jumped to from INPUT and OUTPUT; applying and healing touch those chains and the
//! jumps to them, never the user's rules or any other chain. Each script sends one
//! restore input guessing the usual state (atomic: all of it or nothing, so a wrong
//! guess changes nothing), else reads the filter table to learn which jumps exist
//! and sends the exact one, and prints our rules as read back afterwards, which
//! [`verify_applied`] and [`verify_healed`] check. No subshell, no pipeline: on a
//! loaded node every started process shows in the time to apply and heal. Traffic from and to the controller
//! is never matched, since only node addresses appear in rules.

use crate::grudge::Grudge;
use crate::netem::CHAIN_LOSS;
use crate::shell::{join, quote};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The chain for incoming packets.
pub const CHAIN_IN: &str = "SPLITBRAIN-IN";
/// The chain for outgoing packets.
pub const CHAIN_OUT: &str = "SPLITBRAIN-OUT";

/// Our partition chains and the built-in chain that jumps to each.
const PARTITION_CHAINS: [(&str, &str); 2] = [("INPUT", CHAIN_IN), ("OUTPUT", CHAIN_OUT)];

/// Every chain of ours (partitions and packet loss) and the chain jumping to it.
const ALL_CHAINS: [(&str, &str); 3] = [
    ("INPUT", CHAIN_IN),
    ("OUTPUT", CHAIN_OUT),
    ("OUTPUT", CHAIN_LOSS),
];

/// Starts the line of our rules read back; what follows is parsed by
/// [`PartitionRules::parse`].
pub const READBACK_MARK: &str = "--- splitbrain rules";

/// One iptables command line (waiting up to 5 s for the xtables lock).
pub(crate) fn ipt(args: &[&str]) -> String {
    let mut words = vec!["iptables", "-w", "5"];
    words.extend_from_slice(args);
    join(words)
}

/// Checks that a node address can stand in a restore line as one word: an IP
/// literal or a host name (letters, digits, `.`, `-`, `:`).
fn rule_address<'a>(node: &str, addr: &'a str) -> Result<&'a str, String> {
    let ok = !addr.is_empty()
        && !addr.starts_with('-')
        && addr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if ok {
        Ok(addr)
    } else {
        Err(format!(
            "address {addr:?} of node {node:?} cannot go into an iptables rule (expected an IP address or host name)"
        ))
    }
}

/// Delimits the here-documents of the scripts; no restore line contains it.
const EOF_MARK: &str = "SPLITBRAIN_EOF";

/// A here-document body: `lines`, one per line, then the delimiter. The lines go in
/// unquoted (so `$del` and `$cur` expand): every line is built from fixed text and
/// addresses [`rule_address`] checked, none holds `$`, `` ` `` or `\`.
fn heredoc(lines: &[String]) -> String {
    format!("{}\n{EOF_MARK}", lines.join("\n"))
}

/// Shell that sets `$del` to a delete line for every jump to one of `chains` in
/// `$cur` (the saved filter table), so a restore removes exactly the jumps there
/// are (one normally; more if a crash left two). Runs in this shell (no fork).
fn delete_jumps(chains: &[(&str, &str)]) -> String {
    let pats: Vec<String> = chains
        .iter()
        .map(|(from, to)| quote(&format!("-A {from} -j {to}")))
        .collect();
    format!(
        "del=''\nwhile IFS= read -r l; do case \"$l\" in {}) del=\"$del-D ${{l#-A }}\n\";; esac; done <<{EOF_MARK}\n$cur\n{EOF_MARK}",
        pats.join("|")
    )
}

/// Shell that prints [`READBACK_MARK`] and then our partition lines of the saved
/// filter table in `$cur` (chain declarations, jumps, rules).
fn print_readback() -> String {
    format!(
        "printf '%s\\n' {mark}\nwhile IFS= read -r l; do case \"$l\" in *{CHAIN_IN}*|*{CHAIN_OUT}*) printf '%s\\n' \"$l\";; esac; done <<{EOF_MARK}\n$cur\n{EOF_MARK}",
        mark = quote(READBACK_MARK)
    )
}

const SAVE: &str = "cur=$(iptables-save -t filter)";
const RESTORE: &str = "iptables-restore -w 5 -n";

/// The restore input of one node's part of `grudge`, after the declarations and
/// jump deletions: a DROP rule per peer in each direction and the two jumps, first
/// in INPUT and OUTPUT.
fn apply_lines(
    node: &str,
    grudge: &Grudge,
    addresses: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    if let Some(peers) = grudge.0.get(node) {
        for peer in peers {
            let addr = addresses
                .get(peer)
                .ok_or_else(|| format!("no address known for node {peer:?} in the grudge"))?;
            let addr = rule_address(peer, addr)?;
            lines.push(format!("-A {CHAIN_IN} -s {addr} -j DROP"));
            lines.push(format!("-A {CHAIN_OUT} -d {addr} -j DROP"));
        }
    }
    for (from, to) in PARTITION_CHAINS {
        lines.push(format!("-I {from} 1 -j {to}"));
    }
    lines.push("COMMIT".into());
    Ok(lines)
}

/// One node's script to apply its part of `grudge` in one restore transaction:
/// our chains declared (created, or flushed when they exist: an earlier partition is
/// replaced), the jumps there are deleted, a DROP rule per peer address in each
/// direction added and one jump to each chain inserted first. Prints the read-back.
/// `addresses` maps node names to the addresses peers use to reach them.
///
/// The common case — no chain of ours yet, so no jump to one either — is tried
/// first without reading the table: a restore that creates the chains with `-N`,
/// which fails (atomically: nothing changed) when either exists; then the general
/// path reads the table and deletes exactly the jumps there are.
pub fn apply_script(
    node: &str,
    grudge: &Grudge,
    addresses: &BTreeMap<String, String>,
) -> Result<String, String> {
    let body = apply_lines(node, grudge, addresses)?;
    let guess: Vec<String> = std::iter::once("*filter".to_string())
        .chain(PARTITION_CHAINS.iter().map(|(_, c)| format!("-N {c}")))
        .chain(body.iter().cloned())
        .collect();
    let mut general: Vec<String> = std::iter::once("*filter".to_string())
        .chain(
            PARTITION_CHAINS
                .iter()
                .map(|(_, c)| format!(":{c} - [0:0]")),
        )
        .collect();
    // `$del` ends in a newline when not empty, so it shares a line with what follows.
    let mut rest = body;
    rest[0] = format!("$del{}", rest[0]);
    general.extend(rest);
    Ok(format!(
        "set -e\nif {RESTORE} 2>/dev/null <<{EOF_MARK}\n{}\nthen :\nelse\n{SAVE}\n{}\n{RESTORE} <<{EOF_MARK}\n{}\nfi\n{SAVE}\n{}\n",
        heredoc(&guess),
        delete_jumps(&PARTITION_CHAINS),
        heredoc(&general),
        print_readback()
    ))
}

/// One node's heal of every iptables rule of ours (partition chains and the packet
/// loss chain), as one restore transaction: the jumps there are deleted, the chains
/// declared (so deleting them cannot fail on a missing one) and deleted. Prints the
/// read-back. Idempotent.
///
/// The common case — one partition in place, one jump to each partition chain and
/// no loss chain — is tried first without reading the table: a restore that deletes
/// those two jumps and the three chains. Restores are atomic, so when the guess is
/// wrong (no partition, a loss jump, a doubled jump) nothing changed and the general
/// path runs: read the table, delete exactly the jumps there are (skipped when
/// nothing of ours is there). Sets `rc=3` when something failed and never exits,
/// so it composes with the other heals of a node's script (which reports `$rc`);
/// no subshell and no pipeline: only the iptables programs are started.
pub fn heal_script() -> String {
    let declare: Vec<String> = std::iter::once("*filter".to_string())
        .chain(ALL_CHAINS.iter().map(|(_, c)| format!(":{c} - [0:0]")))
        .collect();
    let tail: Vec<String> = ALL_CHAINS
        .iter()
        .map(|(_, c)| format!("-X {c}"))
        .chain(std::iter::once("COMMIT".to_string()))
        .collect();
    let guess: Vec<String> = declare
        .iter()
        .cloned()
        .chain(
            PARTITION_CHAINS
                .iter()
                .map(|(from, to)| format!("-D {from} -j {to}")),
        )
        .chain(tail.iter().cloned())
        .collect();
    let mut general = declare.clone();
    general.push(format!("$del{}", tail[0]));
    general.extend(tail[1..].iter().cloned());
    let ours: Vec<String> = ALL_CHAINS.iter().map(|(_, c)| format!("*{c}*")).collect();
    format!(
        "if {RESTORE} 2>/dev/null <<{EOF_MARK}\n{}\nthen {SAVE} || rc=3\nelif {SAVE}; then\ncase \"$cur\" in {})\n{}\nif {RESTORE} <<{EOF_MARK}\n{}\nthen {SAVE} || rc=3; else rc=3; fi;;\nesac\nelse rc=3; fi\n{}\n",
        heredoc(&guess),
        ours.join("|"),
        delete_jumps(&ALL_CHAINS),
        heredoc(&general),
        print_readback()
    )
}

/// Prints the partition rules of a node (read-back format).
pub fn status_script() -> String {
    format!("{SAVE}\n{}", print_readback())
}

/// The part of a script's output after [`READBACK_MARK`] (all of it when the mark
/// is missing, which parses as foreign lines).
pub fn readback(out: &str) -> &str {
    match out.find(READBACK_MARK) {
        Some(i) => &out[i + READBACK_MARK.len()..],
        None => out,
    }
}

/// The partition rules read back from a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionRules {
    /// Jumps from INPUT to our chain and from OUTPUT to our chain.
    pub jumps_in: usize,
    pub jumps_out: usize,
    /// Addresses whose incoming packets are dropped, and outgoing.
    pub drop_from: BTreeSet<String>,
    pub drop_to: BTreeSet<String>,
    /// Rules in our chains that are not ours (someone edited them).
    pub foreign: Vec<String>,
    /// Whether our chains exist (even empty).
    pub chains: usize,
}

impl PartitionRules {
    /// Parses the read-back printed by [`apply_script`], [`heal_script`] or
    /// [`status_script`] (iptables-save lines; `iptables -S` lines work too).
    pub fn parse(out: &str) -> PartitionRules {
        let mut r = PartitionRules::default();
        let bare = |a: &str| a.strip_suffix("/32").unwrap_or(a).to_string();
        for line in readback(out)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w[..] {
                ["-A", "INPUT", "-j", CHAIN_IN] => r.jumps_in += 1,
                ["-A", "OUTPUT", "-j", CHAIN_OUT] => r.jumps_out += 1,
                ["-N", CHAIN_IN | CHAIN_OUT] => r.chains += 1,
                [c, ..] if c == format!(":{CHAIN_IN}") || c == format!(":{CHAIN_OUT}") => {
                    r.chains += 1
                }
                ["-A", CHAIN_IN, "-s", a, "-j", "DROP"] => {
                    r.drop_from.insert(bare(a));
                }
                ["-A", CHAIN_OUT, "-d", a, "-j", "DROP"] => {
                    r.drop_to.insert(bare(a));
                }
                _ => r.foreign.push(line.to_string()),
            }
        }
        r
    }

    /// Addresses cut both ways while our chains are in effect.
    pub fn cut_addresses(&self) -> BTreeSet<String> {
        if self.jumps_in == 0 || self.jumps_out == 0 {
            return BTreeSet::new();
        }
        self.drop_from
            .intersection(&self.drop_to)
            .cloned()
            .collect()
    }

    /// No jump, no chain and no rule of ours.
    pub fn is_healed(&self) -> bool {
        self.jumps_in == 0
            && self.jumps_out == 0
            && self.chains == 0
            && self.drop_from.is_empty()
            && self.drop_to.is_empty()
            && self.foreign.is_empty()
    }
}

/// Checks the read-back of [`apply_script`] on `node` against what it applied:
/// exactly one jump each way, no foreign rule, and every peer's address dropped
/// both ways (an address given as a host name is checked by count, since iptables
/// stores what the name resolved to).
pub fn verify_applied(
    node: &str,
    grudge: &Grudge,
    addresses: &BTreeMap<String, String>,
    out: &str,
) -> Result<(), String> {
    let r = PartitionRules::parse(out);
    let peers: Vec<&String> = grudge.0.get(node).into_iter().flatten().collect();
    let mut problems = Vec::new();
    if (r.jumps_in, r.jumps_out) != (1, 1) {
        problems.push(format!(
            "{} jump(s) from INPUT and {} from OUTPUT, expected one each",
            r.jumps_in, r.jumps_out
        ));
    }
    if !r.foreign.is_empty() {
        problems.push(format!("unexpected rules {:?}", r.foreign));
    }
    for peer in &peers {
        let addr = addresses.get(*peer).map(String::as_str).unwrap_or_default();
        if addr.parse::<IpAddr>().is_ok() && !r.cut_addresses().contains(addr) {
            problems.push(format!("{peer} ({addr}) is not cut both ways"));
        }
    }
    if r.drop_from.len() < peers.len() || r.drop_to.len() < peers.len() {
        problems.push(format!(
            "{} incoming and {} outgoing DROP rules for {} peer(s)",
            r.drop_from.len(),
            r.drop_to.len(),
            peers.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "partition rules read back wrong: {}",
            problems.join("; ")
        ))
    }
}

/// Checks the read-back of [`heal_script`]: nothing of ours left.
pub fn verify_healed(out: &str) -> Result<(), String> {
    let r = PartitionRules::parse(out);
    if r.is_healed() {
        Ok(())
    } else {
        let left: Vec<&str> = readback(out)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        Err(format!(
            "rules of ours left after heal: {}",
            left.join(" | ")
        ))
    }
}

#[cfg(test)]
#[path = "iptables_tests.rs"]
mod tests;
