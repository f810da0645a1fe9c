//! The durable state of a `metadata-master` node outside its group logs:
//! `<data-dir>/control.json` holds the coordinator term, the vote of that term, the
//! newest map this node holds (possibly an uncommitted proposal) and the newest
//! committed map it acts on. Each change rewrites the file atomically (temporary
//! file, fsync, rename, fsync of the directory), so a crash leaves the old state or
//! the new one. `<data-dir>/zoo.lock` keeps two processes off one directory; each
//! data group's log lives in `<data-dir>/group-<g>/` (see [`crate::modes::replog`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::proto::GroupMap;
use crate::store::{io_err, lock_data_dir, FsyncPolicy, StoreError};

/// What `control.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    pub cterm: u64,
    pub voted_for: Option<String>,
    /// The newest map held: what a vote compares.
    pub held: GroupMap,
    /// The newest committed map: what the data groups act on.
    pub committed: GroupMap,
}

/// The persisted control state of one node.
pub struct ControlStore {
    path: PathBuf,
    dir: PathBuf,
    _lock: File,
    fsync: FsyncPolicy,
    pub state: ControlState,
}

impl ControlStore {
    /// Opens `dir` (created when absent), taking its lock; a missing file is a
    /// fresh node, an unreadable one stops the node.
    pub fn open(dir: &Path, fsync: FsyncPolicy) -> Result<(ControlStore, bool), StoreError> {
        let lock = lock_data_dir(dir)?;
        let path = dir.join("control.json");
        let (state, fresh) = match fs::read(&path) {
            Ok(bytes) => {
                let state = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    line: 1,
                    detail: e.to_string(),
                })?;
                (state, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (ControlState::default(), true),
            Err(e) => return Err(io_err(&path)(e)),
        };
        Ok((
            ControlStore {
                path,
                dir: dir.to_path_buf(),
                _lock: lock,
                fsync,
                state,
            },
            fresh,
        ))
    }

    /// Makes `state` the durable state (and the one in memory, once written).
    pub fn save(&mut self, state: ControlState) -> Result<(), StoreError> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&state).map_err(|e| StoreError::Io {
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
        let always = self.fsync == FsyncPolicy::Always;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        if always {
            f.sync_data().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        if always {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir))?;
        }
        self.state = state;
        Ok(())
    }

    /// Changes the state through `f` and persists it; on a storage error the
    /// state in memory stays as it was.
    pub fn update(&mut self, f: impl FnOnce(&mut ControlState)) -> Result<(), StoreError> {
        let mut next = self.state.clone();
        f(&mut next);
        if next == self.state {
            return Ok(());
        }
        self.save(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::GroupAssignment;

    #[test]
    fn state_survives_reopen_and_the_lock_excludes_a_second_process() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, fresh) = ControlStore::open(dir.path(), FsyncPolicy::Always).unwrap();
            assert!(fresh);
            s.update(|st| {
                st.cterm = 3;
                st.voted_for = Some("n2".into());
                st.committed = GroupMap {
                    cterm: 3,
                    version: 7,
                    groups: vec![GroupAssignment {
                        epoch: 7,
                        master: Some("n3".into()),
                        isr: vec!["n2".into(), "n3".into()],
                    }],
                };
            })
            .unwrap();
            assert!(ControlStore::open(dir.path(), FsyncPolicy::Never).is_err());
        }
        let (s, fresh) = ControlStore::open(dir.path(), FsyncPolicy::Never).unwrap();
        assert!(!fresh);
        assert_eq!(s.state.cterm, 3);
        assert_eq!(s.state.committed.groups[0].master.as_deref(), Some("n3"));
        drop(s);
        fs::write(dir.path().join("control.json"), b"{\"cterm\":").unwrap();
        let err = ControlStore::open(dir.path(), FsyncPolicy::Never)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("control.json line 1"), "{err}");
    }
}
