//! The durable replicated log of the log-based modes: `<data-dir>/raft.log`, one JSON
//! record a line — the node's term and vote, each entry, and truncations of a
//! conflicting tail. Recovery replays it; a torn last line (crash mid-write) is cut
//! off, any other damage stops the node. `<data-dir>/zoo.lock` keeps two processes
//! off one directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::proto::Entry;
use crate::store::{io_err, lock_data_dir, FsyncPolicy, StoreError};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Record {
    State {
        term: u64,
        voted_for: Option<String>,
    },
    Entry {
        index: u64,
        #[serde(flatten)]
        entry: Entry,
    },
    /// Entries `from ..` were discarded (a new master's log replaced them).
    Truncate { from: u64 },
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub fresh: bool,
    pub records: usize,
    pub torn_bytes: usize,
}

/// The persisted log and vote of one node. Entry `i` (from 1) is `entries[i-1]`.
pub struct RaftLog {
    path: PathBuf,
    file: File,
    _lock: File,
    fsync: FsyncPolicy,
    broken: Option<String>,
    pub term: u64,
    pub voted_for: Option<String>,
    entries: Vec<Entry>,
}

impl RaftLog {
    /// Opens (creating when absent) the log in `dir`.
    pub fn open(dir: &Path, fsync: FsyncPolicy) -> Result<(RaftLog, Recovery), StoreError> {
        let lock = lock_data_dir(dir)?;
        let path = dir.join("raft.log");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut log = RaftLog {
            path,
            file,
            _lock: lock,
            fsync,
            broken: None,
            term: 0,
            voted_for: None,
            entries: Vec::new(),
        };
        let recovery = log.recover()?;
        Ok((log, recovery))
    }

    fn recover(&mut self) -> Result<Recovery, StoreError> {
        let mut bytes = Vec::new();
        self.file
            .read_to_end(&mut bytes)
            .map_err(io_err(&self.path))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn_bytes = bytes.len() - complete;
        let mut records = 0;
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let corrupt = |detail: String| StoreError::Corrupt {
                path: self.path.clone(),
                line: i + 1,
                detail,
            };
            match serde_json::from_slice::<Record>(line).map_err(|e| corrupt(e.to_string()))? {
                Record::State { term, voted_for } => {
                    self.term = term;
                    self.voted_for = voted_for;
                }
                Record::Entry { index, entry } => {
                    if index != self.last_index() + 1 {
                        return Err(corrupt(format!(
                            "entry {index} follows entry {}",
                            self.last_index()
                        )));
                    }
                    self.entries.push(entry);
                }
                Record::Truncate { from } => {
                    if from == 0 || from > self.last_index() + 1 {
                        return Err(corrupt(format!(
                            "truncate from {from} with {} entries",
                            self.last_index()
                        )));
                    }
                    self.entries.truncate((from - 1) as usize);
                }
            }
            records += 1;
        }
        if torn_bytes > 0 {
            self.file
                .set_len(complete as u64)
                .map_err(io_err(&self.path))?;
        }
        Ok(Recovery {
            fresh: records == 0,
            records,
            torn_bytes,
        })
    }

    fn write(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if let Some(cause) = &self.broken {
            return Err(StoreError::Broken {
                path: self.path.clone(),
                cause: cause.clone(),
            });
        }
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
            buf.push(b'\n');
        }
        let result = self.file.write_all(&buf).and_then(|()| match self.fsync {
            FsyncPolicy::Always => self.file.sync_data(),
            FsyncPolicy::Never => Ok(()),
        });
        if let Err(source) = result {
            self.broken = Some(source.to_string());
            return Err(StoreError::Io {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Persists a new term and vote.
    pub fn set_state(&mut self, term: u64, voted_for: Option<String>) -> Result<(), StoreError> {
        self.write(&[Record::State {
            term,
            voted_for: voted_for.clone(),
        }])?;
        self.term = term;
        self.voted_for = voted_for;
        Ok(())
    }

    /// Appends one entry; returns its index.
    pub fn append(&mut self, entry: Entry) -> Result<u64, StoreError> {
        let index = self.last_index() + 1;
        self.write(&[Record::Entry {
            index,
            entry: entry.clone(),
        }])?;
        self.entries.push(entry);
        Ok(index)
    }

    /// Makes the log hold `entries` at `prev+1 ..`: entries already there with the
    /// same term are kept, the first conflicting one and everything after it are
    /// replaced. Returns the index of the first entry discarded, if any.
    pub fn merge(&mut self, prev: u64, entries: Vec<Entry>) -> Result<Option<u64>, StoreError> {
        let mut truncated = None;
        let mut records = Vec::new();
        let mut new = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let index = prev + 1 + i as u64;
            match self.term_at(index) {
                Some(t) if t == e.term && truncated.is_none() => continue,
                Some(_) if truncated.is_none() => {
                    truncated = Some(index);
                    records.push(Record::Truncate { from: index });
                }
                _ => {}
            }
            records.push(Record::Entry {
                index,
                entry: e.clone(),
            });
            new.push(e);
        }
        if records.is_empty() {
            return Ok(None);
        }
        self.write(&records)?;
        if let Some(from) = truncated {
            self.entries.truncate((from - 1) as usize);
        }
        self.entries.extend(new);
        Ok(truncated)
    }

    pub fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.term)
    }

    /// The term of entry `index` (0 for index 0, `None` past the end).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.entries.get((index - 1) as usize).map(|e| e.term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        index
            .checked_sub(1)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// Entries `from ..`, at most `max`.
    pub fn entries_from(&self, from: u64, max: usize) -> Vec<Entry> {
        let start = (from.max(1) - 1) as usize;
        if start >= self.entries.len() {
            return Vec::new();
        }
        let end = self.entries.len().min(start + max);
        self.entries[start..end].to_vec()
    }

    /// fsyncs the log (used at shutdown).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Cmd;

    fn e(term: u64, v: i64) -> Entry {
        Entry {
            term,
            cmd: Cmd::Add {
                key: "k".into(),
                value: v,
            },
        }
    }

    #[test]
    fn merge_truncates_conflicts_and_recovery_replays() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut l, rec) = RaftLog::open(dir.path(), FsyncPolicy::Always).unwrap();
            assert!(rec.fresh);
            l.set_state(2, Some("n1".into())).unwrap();
            for v in 1..=4 {
                l.append(e(1, v)).unwrap();
            }
            // Entries 1-2 match, 3 conflicts: 3.. replaced.
            assert_eq!(l.merge(1, vec![e(1, 2), e(2, 30)]).unwrap(), Some(3));
            assert_eq!(l.last_index(), 3);
            assert_eq!(l.merge(0, vec![e(1, 1)]).unwrap(), None, "already held");
            assert_eq!(l.last_index(), 3, "a stale shorter batch truncates nothing");
        }
        let path = dir.path().join("raft.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"t":"entry","ind"#).unwrap();
        drop(f);
        let (l, rec) = RaftLog::open(dir.path(), FsyncPolicy::Never).unwrap();
        assert!(rec.torn_bytes > 0);
        assert_eq!((l.term, l.voted_for.as_deref()), (2, Some("n1")));
        assert_eq!(l.entries_from(1, 10), vec![e(1, 1), e(1, 2), e(2, 30)]);
        assert_eq!((l.last_index(), l.last_term()), (3, 2));
        drop(l);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"t\":\"entry\",\"index\":9,\"term\":1,\"cmd\":{\"c\":\"noop\"}}\n")
            .unwrap();
        drop(f);
        let err = RaftLog::open(dir.path(), FsyncPolicy::Never)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("entry 9 follows entry 3"), "{err}");
    }
}
