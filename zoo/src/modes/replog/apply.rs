//! Committing and applying a replicated log: raising the commit index, applying the
//! newly committed entries to the data in log order, and answering the client that
//! waits for each one. One implementation for the log-based modes' engine
//! ([`super::Core`]) and for `metadata-master`'s data groups, whose epoch is their
//! log's term, so a waiter's term and epoch are the same thing.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::log::RaftLog;
use crate::data::{ApplyError, Data};

/// A client waiting for its entry to be applied: the term (epoch) it appended the
/// entry in, and where to send the outcome of applying it.
pub(crate) struct Waiter {
    pub(crate) term: u64,
    pub(crate) tx: oneshot::Sender<Result<(), ApplyError>>,
}

/// The apply state of one replicated log, borrowed from the core that owns it.
pub(crate) struct Applier<'a> {
    pub(crate) log: &'a RaftLog,
    /// The highest index known committed.
    pub(crate) commit: &'a mut u64,
    /// The highest index applied to `data` (never above `commit`).
    pub(crate) applied: &'a mut u64,
    pub(crate) data: &'a mut Data,
    /// Per log index, the client waiting for that entry.
    pub(crate) waiters: &'a mut BTreeMap<u64, Waiter>,
}

impl Applier<'_> {
    /// Raises the commit index to `to` (at most the log's last index; never lowers
    /// it) and applies the newly committed entries. The waiter at an applied index
    /// gets the result only when it waited for that entry's term: a waiter whose
    /// entry was replaced by another term's is dropped, which its client sees as
    /// indeterminate.
    pub(crate) fn advance_commit(self, to: u64) {
        let to = to.min(self.log.last_index());
        if to <= *self.commit {
            return;
        }
        *self.commit = to;
        while *self.applied < to {
            *self.applied += 1;
            let Some(entry) = self.log.entry(*self.applied) else {
                break;
            };
            let result = self.data.apply(&entry.cmd);
            if let Some(w) = self.waiters.remove(&*self.applied) {
                if w.term == entry.term {
                    let _ = w.tx.send(result);
                }
            }
        }
    }

    /// Rebuilds the data from the log's first `to` entries (after entries this node
    /// had applied were replaced), answering nobody: the waiters are kept for the
    /// entries that commit later.
    pub(crate) fn rebuild(self, to: u64) {
        *self.data = Data::default();
        *self.applied = 0;
        *self.commit = 0;
        let waiters = std::mem::take(self.waiters);
        Applier {
            log: self.log,
            commit: self.commit,
            applied: self.applied,
            data: self.data,
            waiters: &mut BTreeMap::new(),
        }
        .advance_commit(to);
        *self.waiters = waiters;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Cmd, Entry};
    use crate::store::FsyncPolicy;

    fn log_of(dir: &std::path::Path, terms: &[u64]) -> RaftLog {
        let (mut log, _) = RaftLog::open(dir, FsyncPolicy::Never).expect("open log");
        for (i, &term) in terms.iter().enumerate() {
            log.append(Entry {
                term,
                cmd: Cmd::Add {
                    key: "s".into(),
                    value: i as i64 + 1,
                },
            })
            .expect("append");
        }
        log
    }

    #[test]
    fn commits_apply_in_order_and_answer_only_same_term_waiters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log_of(dir.path(), &[1, 1, 2]);
        let (mut commit, mut applied, mut data) = (0, 0, Data::default());
        let mut waiters = BTreeMap::new();
        let (tx2, mut rx2) = oneshot::channel();
        waiters.insert(2, Waiter { term: 1, tx: tx2 });
        // Waited for in term 1, but index 3 holds a term-2 entry: dropped.
        let (tx3, mut rx3) = oneshot::channel();
        waiters.insert(3, Waiter { term: 1, tx: tx3 });
        let mut applier = |to| {
            Applier {
                log: &log,
                commit: &mut commit,
                applied: &mut applied,
                data: &mut data,
                waiters: &mut waiters,
            }
            .advance_commit(to)
        };
        applier(1);
        assert!(rx2.try_recv().is_err(), "index 2 not committed yet");
        applier(10); // clamped to the log's end
        applier(0); // never lowered
        assert_eq!((commit, applied), (3, 3));
        assert_eq!(rx2.try_recv().expect("answered"), Ok(()));
        assert!(matches!(
            rx3.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert!(waiters.is_empty());
    }

    #[test]
    fn rebuild_reapplies_quietly_and_keeps_waiters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log_of(dir.path(), &[1, 1, 1]);
        let (mut commit, mut applied) = (3, 3);
        let mut data = Data::default();
        data.apply(&Cmd::Add {
            key: "s".into(),
            value: 99,
        })
        .expect("apply");
        let mut waiters = BTreeMap::new();
        let (tx, mut rx) = oneshot::channel();
        waiters.insert(3, Waiter { term: 1, tx });
        // A waiter at an index the rebuild re-applies is not answered either.
        let (tx1, mut rx1) = oneshot::channel();
        waiters.insert(1, Waiter { term: 1, tx: tx1 });
        Applier {
            log: &log,
            commit: &mut commit,
            applied: &mut applied,
            data: &mut data,
            waiters: &mut waiters,
        }
        .rebuild(2);
        assert_eq!((commit, applied), (2, 2));
        let mut want = Data::default();
        for value in [1, 2] {
            want.apply(&Cmd::Add {
                key: "s".into(),
                value,
            })
            .expect("apply");
        }
        assert_eq!(
            data, want,
            "the stale element is gone, entries 1..=2 applied"
        );
        assert!(rx.try_recv().is_err(), "the waiter at 3 still waits");
        assert!(waiters.contains_key(&3));
        assert!(rx1.try_recv().is_err() && waiters.contains_key(&1));
    }
}
