//! The data of a ring node: per key the surviving versions (one under last-write-wins,
//! possibly several concurrent siblings under vector clocks), persisted as an
//! append-only `DATA_DIR/ring.log` of every version that was kept when it arrived.
//! Replaying the log in order takes the same decisions again, so recovery rebuilds
//! the same state. Also the list of this node's own writes, which it pushes to peers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;

use crate::config::Config;
use crate::proto::{Element, ObjectKind, VersionedWrite};
use crate::store::{io_err, lock_data_dir, FsyncPolicy, StoreError};

/// How concurrent versions of a key are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The larger (timestamp, origin) replaces the other.
    LastWriteWins,
    /// A version replaces those its vector clock dominates; concurrent ones coexist.
    VectorClock,
}

/// A key's value as a client sees it: siblings merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Current {
    /// Sets: the union, sorted. Lists: the siblings' elements in (timestamp, origin)
    /// order, each element once. Registers: the largest sibling value, if any.
    pub values: Vec<Element>,
    /// Registers with concurrent siblings: every sibling value (else empty).
    pub siblings: Vec<Element>,
    /// The pointwise maximum of the siblings' vector clocks.
    pub clock: BTreeMap<String, u64>,
}

pub struct RingStore {
    policy: Policy,
    path: PathBuf,
    file: File,
    _lock: File,
    fsync: FsyncPolicy,
    versions: BTreeMap<String, Vec<VersionedWrite>>,
    /// This node's writes, in order, and per peer how many were pushed to it.
    pub own: Vec<VersionedWrite>,
    pub pushed: BTreeMap<String, usize>,
}

/// Whether clock `a` has seen everything `b` has.
fn covers(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> bool {
    b.iter().all(|(n, c)| a.get(n).is_some_and(|x| x >= c))
}

fn stamp(w: &VersionedWrite) -> (u64, &str) {
    (w.ts_ms, w.origin.as_str())
}

impl RingStore {
    /// Opens `DATA_DIR/ring.log`; returns the store, records replayed, torn bytes cut.
    pub fn open(cfg: &Config, policy: Policy) -> Result<(RingStore, usize, usize), StoreError> {
        let dir = &cfg.data_dir;
        let lock = lock_data_dir(dir)?;
        let path = dir.join("ring.log");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn = bytes.len() - complete;
        let mut store = RingStore {
            policy,
            path: path.clone(),
            file,
            _lock: lock,
            fsync: cfg.fsync,
            versions: BTreeMap::new(),
            own: Vec::new(),
            pushed: BTreeMap::new(),
        };
        let mut records = 0;
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let w: VersionedWrite =
                serde_json::from_slice(line).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    line: i + 1,
                    detail: e.to_string(),
                })?;
            if w.origin == cfg.node {
                store.own.push(w.clone());
            }
            store.keep(w);
            records += 1;
        }
        if torn > 0 {
            store
                .file
                .set_len(complete as u64)
                .map_err(io_err(&store.path))?;
        }
        Ok((store, records, torn))
    }

    /// Whether `w` survives against the versions held for its key.
    fn wins(&self, w: &VersionedWrite) -> bool {
        let Some(held) = self.versions.get(&w.key) else {
            return true;
        };
        match self.policy {
            Policy::LastWriteWins => held.iter().all(|h| stamp(w) > stamp(h)),
            Policy::VectorClock => !held.iter().any(|h| covers(&h.vclock, &w.vclock)),
        }
    }

    /// Takes `w` into memory if it survives; returns whether it did.
    fn keep(&mut self, w: VersionedWrite) -> bool {
        if !self.wins(&w) {
            return false;
        }
        let held = self.versions.entry(w.key.clone()).or_default();
        match self.policy {
            Policy::LastWriteWins => held.clear(),
            Policy::VectorClock => held.retain(|h| !covers(&w.vclock, &h.vclock)),
        }
        held.push(w);
        true
    }

    /// Persists and keeps `w` if it survives; returns whether it did.
    pub fn offer(&mut self, w: VersionedWrite) -> Result<bool, StoreError> {
        if !self.wins(&w) {
            return Ok(false);
        }
        let mut line = serde_json::to_vec(&w).map_err(|e| StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io_err(&self.path))?;
        if self.fsync == FsyncPolicy::Always {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(self.keep(w))
    }

    /// The value of `key` read as `kind`, siblings merged.
    pub fn current(&self, key: &str, kind: ObjectKind) -> Result<Current, String> {
        let Some(held) = self.versions.get(key) else {
            return Ok(Current::default());
        };
        if let Some(other) = held.iter().find(|h| h.kind != kind) {
            return Err(format!(
                "key `{key}` holds a {:?}, not a {kind:?}",
                other.kind
            ));
        }
        let mut clock = BTreeMap::new();
        for h in held {
            for (n, c) in &h.vclock {
                let e = clock.entry(n.clone()).or_insert(0);
                *e = (*e).max(*c);
            }
        }
        let mut ordered: Vec<&VersionedWrite> = held.iter().collect();
        ordered.sort_by(|a, b| stamp(a).cmp(&stamp(b)));
        let (values, siblings) = match kind {
            ObjectKind::Set => {
                let all: BTreeSet<Element> = held.iter().flat_map(|h| h.values.clone()).collect();
                (all.into_iter().collect(), Vec::new())
            }
            ObjectKind::List => {
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                for v in ordered.iter().flat_map(|h| h.values.iter()) {
                    if seen.insert(*v) {
                        out.push(*v);
                    }
                }
                (out, Vec::new())
            }
            ObjectKind::Register => {
                let vals: BTreeSet<Element> = held
                    .iter()
                    .filter_map(|h| h.values.first().copied())
                    .collect();
                let top = vals.iter().next_back().copied();
                let siblings = if vals.len() > 1 {
                    vals.into_iter().collect()
                } else {
                    Vec::new()
                };
                (top.into_iter().collect(), siblings)
            }
        };
        Ok(Current {
            values,
            siblings,
            clock,
        })
    }

    pub fn keys(&self) -> usize {
        self.versions.len()
    }

    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn w(origin: &str, ts: u64, values: &[i64], clock: &[(&str, u64)]) -> VersionedWrite {
        VersionedWrite {
            key: "k".into(),
            kind: ObjectKind::Set,
            values: values.to_vec(),
            ts_ms: ts,
            origin: origin.into(),
            vclock: clock.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
        }
    }

    fn cfg(dir: &Path) -> Config {
        use clap::Parser;
        let args = crate::config::Args::try_parse_from([
            "zoo",
            "--mode",
            "lww-ring",
            "--node",
            "a",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "a=127.0.0.1:1,b=127.0.0.1:2",
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .unwrap();
        Config::try_from(args).unwrap()
    }

    #[test]
    fn lww_keeps_the_later_stamp_and_vclock_keeps_concurrent_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        {
            let (mut s, _, _) = RingStore::open(&c, Policy::LastWriteWins).unwrap();
            assert!(s.offer(w("a", 10, &[1], &[])).unwrap());
            assert!(
                !s.offer(w("b", 9, &[2], &[])).unwrap(),
                "earlier stamp loses"
            );
            assert!(
                s.offer(w("b", 10, &[3], &[])).unwrap(),
                "tie: larger origin"
            );
            assert_eq!(s.current("k", ObjectKind::Set).unwrap().values, vec![3]);
        }
        let (s, records, _) = RingStore::open(&c, Policy::LastWriteWins).unwrap();
        assert_eq!(records, 2);
        assert_eq!(s.current("k", ObjectKind::Set).unwrap().values, vec![3]);
        assert!(s.current("k", ObjectKind::List).is_err());
        drop(s);

        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let (mut s, _, _) = RingStore::open(&c, Policy::VectorClock).unwrap();
        assert!(s.offer(w("a", 10, &[1], &[("a", 1)])).unwrap());
        // Concurrent with a1: both kept, read as the union.
        assert!(s.offer(w("b", 5, &[2], &[("b", 1)])).unwrap());
        assert!(!s.offer(w("b", 5, &[2], &[("b", 1)])).unwrap(), "duplicate");
        let cur = s.current("k", ObjectKind::Set).unwrap();
        assert_eq!(cur.values, vec![1, 2]);
        assert_eq!(cur.clock.get("a"), Some(&1));
        // A write that saw both replaces both.
        assert!(s
            .offer(w("a", 11, &[1, 2, 3], &[("a", 2), ("b", 1)]))
            .unwrap());
        drop(s);
        let (s, _, _) = RingStore::open(&c, Policy::VectorClock).unwrap();
        assert_eq!(s.versions["k"].len(), 1);
        assert_eq!(
            s.current("k", ObjectKind::Set).unwrap().values,
            vec![1, 2, 3]
        );
    }
}
