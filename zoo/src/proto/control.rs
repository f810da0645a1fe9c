//! Wire types of the `metadata-master` mode's control layer: the group map the
//! coordinator owns (which data group a key belongs to, and each group's master,
//! epoch and in-sync replica set), the status each node reports to the coordinator,
//! and the control view a node adds to its `role` answer.

use serde::{Deserialize, Serialize};

use super::RoleKind;

/// The data group `key` belongs to when the map has `groups` groups: FNV-1a of the
/// key's bytes, modulo the group count (the same on every node and client).
pub fn group_of(key: &str, groups: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % groups.max(1) as u64) as usize
}

/// One data group as the coordinator assigned it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAssignment {
    /// The master's epoch: the map version in which this master was assigned
    /// (unique: one committed map per version).
    pub epoch: u64,
    /// The master, `None` while the group has none.
    pub master: Option<String>,
    /// The in-sync replicas (the master included), sorted: the nodes that hold every
    /// write the master acknowledged, so the ones a new master is chosen from.
    pub isr: Vec<String>,
}

/// The coordinator's map: one assignment per data group, versioned. Maps are
/// ordered by (`cterm`, `version`): the coordinator term that wrote it, then its
/// version (which only grows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMap {
    pub cterm: u64,
    pub version: u64,
    pub groups: Vec<GroupAssignment>,
}

impl GroupMap {
    /// The map's place in the order maps replace each other in.
    pub fn position(&self) -> (u64, u64) {
        (self.cterm, self.version)
    }
}

/// What a node tells the coordinator about one data group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The highest epoch the node has seen for this group.
    pub epoch: u64,
    /// Whether it acts as the group's master in that epoch.
    pub master: bool,
    pub last_index: u64,
    pub last_term: u64,
}

/// A node's view of one data group, in its `role` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRole {
    pub group: usize,
    pub role: RoleKind,
    pub epoch: u64,
    pub master: Option<String>,
    pub isr: Vec<String>,
    pub last_index: u64,
    pub commit: u64,
}

/// `metadata-master`: a node's view of the control layer, in its `role` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlView {
    /// The coordinator this node follows (itself when it coordinates), if any.
    pub coordinator: Option<String>,
    /// Whether this node is the coordinator now.
    pub is_coordinator: bool,
    /// The coordinator term this node is in.
    pub cterm: u64,
    /// The version of the newest committed map this node holds.
    pub map_version: u64,
    pub groups: Vec<GroupRole>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_groups_deterministically() {
        assert_eq!(group_of("anything", 1), 0);
        assert_eq!(group_of("k", 0), 0, "no groups: everything in group 0");
        let spread: std::collections::BTreeSet<usize> =
            (0..64).map(|i| group_of(&format!("key{i}"), 4)).collect();
        assert_eq!(spread.len(), 4, "64 keys hit every one of 4 groups");
        assert_eq!(group_of("key7", 4), group_of("key7", 4));
        assert!(
            GroupMap {
                cterm: 2,
                version: 1,
                groups: vec![]
            }
            .position()
                > (1, 9)
        );
    }
}
