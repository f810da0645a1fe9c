//! Renders a [`Grudge`] as iptables commands per node. Rules live only in chains the
//! harness owns (`SPLITBRAIN-IN`, `SPLITBRAIN-OUT`), jumped to from INPUT and OUTPUT;
//! healing removes the jumps and those chains and never touches the user's rules.
//! Traffic from and to the controller is never matched, since only node addresses
//! appear in rules.

use crate::grudge::Grudge;
use crate::shell::join;
use std::collections::{BTreeMap, BTreeSet};

/// The chain for incoming packets.
pub const CHAIN_IN: &str = "SPLITBRAIN-IN";
/// The chain for outgoing packets.
pub const CHAIN_OUT: &str = "SPLITBRAIN-OUT";

/// One iptables command line (waiting up to 5 s for the xtables lock).
pub(crate) fn ipt(args: &[&str]) -> String {
    let mut words = vec!["iptables", "-w", "5"];
    words.extend_from_slice(args);
    join(words)
}

/// Commands that remove every rule of ours on a node; idempotent (succeed when
/// nothing is there).
pub fn heal_commands() -> Vec<String> {
    let mut cmds = Vec::new();
    for (builtin, chain) in [("INPUT", CHAIN_IN), ("OUTPUT", CHAIN_OUT)] {
        // Delete every jump (there should be one; loop in case a crash left two).
        cmds.push(format!(
            "while {} 2>/dev/null; do :; done",
            ipt(&["-D", builtin, "-j", chain])
        ));
        cmds.push(format!("{} 2>/dev/null || true", ipt(&["-F", chain])));
        cmds.push(format!("{} 2>/dev/null || true", ipt(&["-X", chain])));
    }
    cmds
}

/// One node's script to apply its part of `grudge`: it first heals (so applying is
/// idempotent and replaces any earlier partition), then creates our chains, adds a
/// DROP rule per peer address in each direction, and jumps to the chains first.
/// `addresses` maps node names to the addresses peers use to reach them.
pub fn apply_script(
    node: &str,
    grudge: &Grudge,
    addresses: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut cmds = heal_commands();
    cmds.push(ipt(&["-N", CHAIN_IN]));
    cmds.push(ipt(&["-N", CHAIN_OUT]));
    if let Some(peers) = grudge.0.get(node) {
        for peer in peers {
            let addr = addresses
                .get(peer)
                .ok_or_else(|| format!("no address known for node {peer:?} in the grudge"))?;
            cmds.push(ipt(&["-A", CHAIN_IN, "-s", addr, "-j", "DROP"]));
            cmds.push(ipt(&["-A", CHAIN_OUT, "-d", addr, "-j", "DROP"]));
        }
    }
    cmds.push(ipt(&["-I", "INPUT", "1", "-j", CHAIN_IN]));
    cmds.push(ipt(&["-I", "OUTPUT", "1", "-j", CHAIN_OUT]));
    Ok(script(&cmds))
}

/// The heal of one node as one script.
pub fn heal_script() -> String {
    script(&heal_commands())
}

/// Joins commands so the script stops at the first failing one (heal lines carry
/// their own `|| true`).
fn script(cmds: &[String]) -> String {
    format!("set -e\n{}\n", cmds.join("\n"))
}

/// Prints the partition rules of a node: our two chains and the jumps to them.
pub fn status_script() -> String {
    format!(
        "{} 2>/dev/null | grep -- '-j {CHAIN_IN}' || true; {} 2>/dev/null | grep -- '-j {CHAIN_OUT}' || true; {} 2>/dev/null || true; {} 2>/dev/null || true",
        ipt(&["-S", "INPUT"]),
        ipt(&["-S", "OUTPUT"]),
        ipt(&["-S", CHAIN_IN]),
        ipt(&["-S", CHAIN_OUT])
    )
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
}

impl PartitionRules {
    /// Parses [`status_script`]'s output.
    pub fn parse(out: &str) -> PartitionRules {
        let mut r = PartitionRules::default();
        let bare = |a: &str| a.strip_suffix("/32").unwrap_or(a).to_string();
        for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w[..] {
                ["-A", "INPUT", "-j", CHAIN_IN] => r.jumps_in += 1,
                ["-A", "OUTPUT", "-j", CHAIN_OUT] => r.jumps_out += 1,
                ["-N", _] => {}
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

    pub fn is_healed(&self) -> bool {
        self.jumps_in == 0
            && self.jumps_out == 0
            && self.drop_from.is_empty()
            && self.drop_to.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> BTreeMap<String, String> {
        (1..=3)
            .map(|i| (format!("n{i}"), format!("10.77.77.1{i}")))
            .collect()
    }

    #[test]
    fn isolate_renders_drops_for_each_peer_both_ways() {
        let nodes: Vec<String> = addrs().keys().cloned().collect();
        let g = Grudge::between(&nodes[..1], &nodes[1..]);
        let s1 = apply_script("n1", &g, &addrs()).unwrap();
        assert!(s1.contains("iptables -w 5 -A SPLITBRAIN-IN -s 10.77.77.12 -j DROP"));
        assert!(s1.contains("iptables -w 5 -A SPLITBRAIN-OUT -d 10.77.77.13 -j DROP"));
        assert!(s1.contains("iptables -w 5 -I INPUT 1 -j SPLITBRAIN-IN"));
        let s2 = apply_script("n2", &g, &addrs()).unwrap();
        assert!(s2.contains("-s 10.77.77.11 -j DROP") && !s2.contains("10.77.77.13"));
        // the heal comes first, so applying twice replaces rather than stacks
        assert!(s2.find("-F SPLITBRAIN-IN").unwrap() < s2.find("-N SPLITBRAIN-IN").unwrap());
        let mut missing = addrs();
        missing.remove("n2");
        assert!(apply_script("n1", &g, &missing)
            .unwrap_err()
            .contains("\"n2\""));
    }

    #[test]
    fn rules_read_back() {
        let out = "-A INPUT -j SPLITBRAIN-IN\n-A OUTPUT -j SPLITBRAIN-OUT\n-N SPLITBRAIN-IN\n-A SPLITBRAIN-IN -s 10.77.77.12/32 -j DROP\n-N SPLITBRAIN-OUT\n-A SPLITBRAIN-OUT -d 10.77.77.12/32 -j DROP\n-A SPLITBRAIN-OUT -d 10.77.77.13/32 -j DROP\n";
        let r = PartitionRules::parse(out);
        assert_eq!((r.jumps_in, r.jumps_out), (1, 1));
        assert_eq!(
            r.cut_addresses(),
            BTreeSet::from(["10.77.77.12".to_string()])
        );
        assert!(r.foreign.is_empty() && !r.is_healed());
        let r = PartitionRules::parse("-N SPLITBRAIN-IN\n-A SPLITBRAIN-IN -s 10.77.77.12/32 -j DROP\n-A SPLITBRAIN-IN -p tcp -j ACCEPT\n");
        assert!(r.cut_addresses().is_empty(), "no jump: nothing is cut");
        assert_eq!(r.foreign, vec!["-A SPLITBRAIN-IN -p tcp -j ACCEPT"]);
        assert!(PartitionRules::parse("").is_healed());
    }

    #[test]
    fn heal_touches_only_our_chains() {
        let h = heal_script();
        for line in h.lines().skip(1) {
            assert!(line.contains("SPLITBRAIN-"), "{line}");
            assert!(!line.contains(" -F INPUT") && !line.contains(" -F OUTPUT"));
        }
    }
}
