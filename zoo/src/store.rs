//! A node's durable data (`async-failover`): per key a set, list or register of
//! integers ([`Data`]), held in memory and persisted to an
//! append-only log (`<data-dir>/data.log`, one JSON record a line), with the
//! replication position (lineage, offset) and the node's epoch. Recovery replays the
//! log; a torn last line (crash mid-write) is cut off, any other damage stops the node.
//! A full resync replaces the log atomically with a snapshot. An exclusive lock on
//! `<data-dir>/zoo.lock` keeps two processes off one data directory.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{ApplyError, Data};
use crate::proto::{DataImage, Element, Lineage, LineageFork, Op, OpKind};

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncPolicy {
    /// fsync after every append, before the write is acknowledged.
    Always,
    /// Leave it to the OS (survives a process kill, not a machine crash).
    Never,
}

/// Replication metadata, persisted with the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The highest epoch this node has taken part in.
    pub epoch: u64,
    pub lineage: Lineage,
    pub previous: Option<LineageFork>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Record {
    Meta(Meta),
    Add {
        offset: u64,
        key: String,
        value: Element,
        #[serde(default, skip_serializing_if = "OpKind::is_add")]
        kind: OpKind,
    },
    Snapshot {
        meta: Meta,
        offset: u64,
        #[serde(flatten)]
        image: DataImage,
    },
}

/// A storage failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {dir} is in use by another zoo process (lock {lock} held)")]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("{path} line {line}: {detail}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("storage refused: an earlier write to {path} failed ({cause}); restart the node")]
    Broken { path: PathBuf, cause: String },
    #[error("replicated batch starts at offset {got}, local offset is {expected}")]
    OutOfOrder { expected: u64, got: u64 },
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// No log existed: the node starts empty.
    pub fresh: bool,
    pub records: usize,
    /// Bytes of a torn final record that were cut off.
    pub torn_bytes: usize,
}

/// The data of one node.
pub struct Store {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    _lock: File,
    fsync: FsyncPolicy,
    broken: Option<String>,
    meta: Meta,
    data: Data,
    offset: u64,
    /// Operations `log_start+1 ..= offset`, kept for replicas to fetch.
    ops: Vec<Op>,
    log_start: u64,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` when absent and takes `<dir>/zoo.lock` (flock, not waiting), so two
/// processes never share one data directory; every mode's store opens through it and
/// keeps the returned file for its lifetime.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<File, StoreError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock_path = dir.join("zoo.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(StoreError::Locked {
            dir: dir.to_path_buf(),
            lock: lock_path,
        });
    }
    Ok(lock)
}

impl Store {
    /// Opens (creating when absent) the store in `dir`; `fresh_meta` is the metadata
    /// of a node that has no log yet.
    pub fn open(
        dir: &Path,
        fsync: FsyncPolicy,
        fresh_meta: Meta,
    ) -> Result<(Store, Recovery), StoreError> {
        let lock = lock_data_dir(dir)?;
        let path = dir.join("data.log");
        let mut store = Store {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .map_err(io_err(&path))?,
            path,
            dir: dir.to_path_buf(),
            _lock: lock,
            fsync,
            broken: None,
            meta: fresh_meta.clone(),
            data: Data::default(),
            offset: 0,
            ops: Vec::new(),
            log_start: 0,
        };
        let recovery = store.recover()?;
        if recovery.fresh {
            store.write_records(&[Record::Meta(fresh_meta)])?;
        }
        Ok((store, recovery))
    }

    fn recover(&mut self) -> Result<Recovery, StoreError> {
        let mut bytes = Vec::new();
        self.file
            .read_to_end(&mut bytes)
            .map_err(io_err(&self.path))?;
        if bytes.is_empty() {
            return Ok(Recovery {
                fresh: true,
                records: 0,
                torn_bytes: 0,
            });
        }
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
            let record: Record =
                serde_json::from_slice(line).map_err(|e| corrupt(e.to_string()))?;
            match record {
                Record::Meta(meta) => self.meta = meta,
                Record::Add {
                    offset,
                    key,
                    value,
                    kind,
                } => {
                    if offset != self.offset + 1 {
                        return Err(corrupt(format!(
                            "add at offset {offset} follows offset {}",
                            self.offset
                        )));
                    }
                    self.apply(Op { key, value, kind });
                }
                Record::Snapshot {
                    meta,
                    offset,
                    image,
                } => {
                    self.install(meta, offset, image);
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

    fn apply(&mut self, op: Op) {
        // The master appends only operations that apply; a replica's copy of the
        // same history applies them the same way.
        let _ = self.data.apply(&op.cmd());
        self.ops.push(op);
        self.offset += 1;
    }

    fn install(&mut self, meta: Meta, offset: u64, image: DataImage) {
        self.meta = meta;
        self.offset = offset;
        self.log_start = offset;
        self.ops.clear();
        self.data = Data::from_image(image);
    }

    fn write_records(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if let Some(cause) = &self.broken {
            return Err(StoreError::Broken {
                path: self.path.clone(),
                cause: cause.clone(),
            });
        }
        let mut buf = Vec::new();
        for r in records {
            // Serializing our own plain records cannot fail; report it if it ever does.
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
            // A partial record may now end the file: refuse further appends rather
            // than write valid records after garbage.
            self.broken = Some(source.to_string());
            return Err(StoreError::Io {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Appends `op` and applies it; returns its offset.
    pub fn append(&mut self, op: Op) -> Result<u64, StoreError> {
        self.write_records(&[Record::Add {
            offset: self.offset + 1,
            key: op.key.clone(),
            value: op.value,
            kind: op.kind,
        }])?;
        self.apply(op);
        Ok(self.offset)
    }

    /// Appends a replicated batch that must start right after the local offset.
    pub fn append_batch(&mut self, start: u64, ops: Vec<Op>) -> Result<u64, StoreError> {
        if start != self.offset {
            return Err(StoreError::OutOfOrder {
                expected: self.offset,
                got: start,
            });
        }
        let records: Vec<Record> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| Record::Add {
                offset: start + 1 + i as u64,
                key: op.key.clone(),
                value: op.value,
                kind: op.kind,
            })
            .collect();
        self.write_records(&records)?;
        for op in ops {
            self.apply(op);
        }
        Ok(self.offset)
    }

    /// Persists new metadata.
    pub fn set_meta(&mut self, meta: Meta) -> Result<(), StoreError> {
        self.write_records(&[Record::Meta(meta.clone())])?;
        self.meta = meta;
        Ok(())
    }

    /// Discards all data and takes `sets` at `offset` instead (full resync). The log
    /// is replaced atomically: a crash leaves either the old or the new one.
    pub fn replace_with_snapshot(
        &mut self,
        meta: Meta,
        offset: u64,
        image: DataImage,
    ) -> Result<(), StoreError> {
        if let Some(cause) = &self.broken {
            return Err(StoreError::Broken {
                path: self.path.clone(),
                cause: cause.clone(),
            });
        }
        let tmp = self.dir.join("data.log.tmp");
        let record = Record::Snapshot {
            meta: meta.clone(),
            offset,
            image: image.clone(),
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| StoreError::Io {
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&line).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        self.file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        self.install(meta, offset, image);
        Ok(())
    }

    /// fsyncs the log (used at shutdown).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Operations after `offset`, at most `max`; `None` when they are no longer
    /// (or not yet) held here, so the caller must send a snapshot.
    pub fn ops_after(&self, offset: u64, max: usize) -> Option<Vec<Op>> {
        if offset < self.log_start || offset > self.offset {
            return None;
        }
        let from = (offset - self.log_start) as usize;
        let to = self.ops.len().min(from + max);
        Some(self.ops[from..to].to_vec())
    }

    /// The whole data set.
    pub fn snapshot(&self) -> DataImage {
        self.data.image()
    }

    /// The data, for reads and for checking that an operation applies.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The set under `key`, sorted.
    pub fn read(&self, key: &str) -> Result<Vec<Element>, ApplyError> {
        self.data.set(key)
    }

    /// Number of elements (and registers) over all keys.
    pub fn element_count(&self) -> usize {
        self.data.element_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(epoch: u64, node: &str) -> Meta {
        Meta {
            epoch,
            lineage: Lineage {
                epoch,
                node: node.into(),
            },
            previous: None,
        }
    }

    fn op(key: &str, value: Element) -> Op {
        Op {
            kind: OpKind::Add,
            key: key.into(),
            value,
        }
    }

    #[test]
    fn recovers_appends_meta_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, rec) = Store::open(dir.path(), FsyncPolicy::Always, meta(1, "n1")).unwrap();
            assert!(rec.fresh);
            s.append(op("a", 1)).unwrap();
            s.append_batch(1, vec![op("a", 2), op("b", 3)]).unwrap();
            s.set_meta(meta(2, "n2")).unwrap();
            assert!(matches!(
                s.append_batch(7, vec![op("a", 9)]),
                Err(StoreError::OutOfOrder {
                    expected: 3,
                    got: 7
                })
            ));
        }
        {
            let (mut s, rec) = Store::open(dir.path(), FsyncPolicy::Never, meta(9, "zz")).unwrap();
            assert!(!rec.fresh);
            assert_eq!(s.offset(), 3);
            assert_eq!(s.read("a").unwrap(), vec![1, 2]);
            assert_eq!(s.meta(), &meta(2, "n2"));
            assert_eq!(s.ops_after(1, 10), Some(vec![op("a", 2), op("b", 3)]));
            let mut image = DataImage::default();
            image.sets.insert("c".to_string(), vec![5, 6]);
            image.registers.insert("r".to_string(), 9);
            s.replace_with_snapshot(meta(3, "n3"), 40, image).unwrap();
            s.append(op("c", 7)).unwrap();
            assert_eq!(
                s.ops_after(3, 10),
                None,
                "before the snapshot: resync needed"
            );
        }
        let (s, _) = Store::open(dir.path(), FsyncPolicy::Never, meta(9, "zz")).unwrap();
        assert_eq!(s.read("a").unwrap(), Vec::<Element>::new());
        assert_eq!(s.read("c").unwrap(), vec![5, 6, 7]);
        assert_eq!(s.offset(), 41);
        assert_eq!(s.meta(), &meta(3, "n3"));
        assert_eq!(s.ops_after(40, 10), Some(vec![op("c", 7)]));
    }

    #[test]
    fn cuts_a_torn_tail_and_rejects_damage_inside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), FsyncPolicy::Always, meta(1, "n1")).unwrap();
            s.append(op("a", 1)).unwrap();
        }
        let path = dir.path().join("data.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"t":"add","offset":2,"ke"#).unwrap();
        drop(f);
        {
            let (mut s, rec) = Store::open(dir.path(), FsyncPolicy::Always, meta(1, "n1")).unwrap();
            assert_eq!(rec.torn_bytes, 25);
            assert_eq!(s.offset(), 1);
            s.append(op("a", 2)).unwrap();
        }
        let (s, _) = Store::open(dir.path(), FsyncPolicy::Always, meta(1, "n1")).unwrap();
        assert_eq!(s.read("a").unwrap(), vec![1, 2]);
        drop(s);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replacen("\"offset\":2", "\"offset\":5", 1)).unwrap();
        let err = Store::open(dir.path(), FsyncPolicy::Always, meta(1, "n1"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn a_second_process_cannot_open_the_same_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, _) = Store::open(dir.path(), FsyncPolicy::Never, meta(1, "n1")).unwrap();
        let err = Store::open(dir.path(), FsyncPolicy::Never, meta(1, "n1"))
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }
}
