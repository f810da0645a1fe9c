//! The Wing–Gong–Lowe search over one partition, Porcupine-style, as a resumable
//! state machine: call/return entries in an arena-backed doubly linked list with
//! u32 links, linearized ops lifted out of it, a DFS stack of (entry, previous
//! state), a cache of visited (linearized set, state) pairs keyed by an incremental
//! Zobrist hash of the set XOR the state's hash. Read-only ops that are legal are
//! committed without a backtracking alternative (see [`Model::read_only`]). Open
//! ops (no return: info or never completed) are optional, so they live in a second
//! list, are tried only after every completed candidate, are never placed where they
//! would not change the state, and need not be placed at all: the search succeeds
//! once every completed op is linearized. It first searches without them (any
//! linearization of the completed ops alone is a witness), and only when that fails
//! searches again with them. Two prunings keep the open ops from
//! multiplying the search: the model may name open ops no linearization needs
//! ([`Model::useless_open`]), which are left out, and of open ops that are the
//! same op the earliest called is tried first (it can stand wherever a later twin
//! can, so a later twin is tried only once its earlier twins are placed). The hot
//! loop allocates only when the model's state does and when the cache grows.

use super::cache::{hash_state, zobrist, Bits, Budget, Cache};
use crate::models::{Model, PartOp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const NIL: u32 = u32::MAX;
/// Head of the list of completed ops' calls and returns.
const HEAD: u32 = 0;
/// Head of the list of open ops' calls.
const OPEN: u32 = 1;
/// How many earlier open calls are compared when looking for an op's twin.
const TWIN_LOOKBACK: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Entry {
    prev: u32,
    next: u32,
    op: u32,
    /// The return entry of a completed op's call; `NIL` for open calls and returns.
    partner: u32,
    /// Position in the event order.
    rank: u32,
    is_call: bool,
}

struct Frame<S> {
    entry: u32,
    state: S,
    committed: bool,
    /// For an open op: the rank of the return that bounded the candidates.
    limit: u32,
}

/// Which list the cursor walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Completed,
    /// Open calls ranked below the limit.
    Open(u32),
}

/// Where a resumable search stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Paused,
    Linearizable,
    NotLinearizable,
}

/// Ops sorted into call/return events: closed intervals, so at equal coordinates a
/// call sorts before a return; open ops return after everything.
pub fn event_order<O>(ops: &[PartOp<O>]) -> Vec<(u32, bool)> {
    let mut ev: Vec<(u64, bool, u32)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        ev.push((op.call, false, i as u32));
        ev.push((op.ret.unwrap_or(u64::MAX), true, i as u32));
    }
    ev.sort_unstable();
    ev.into_iter().map(|(_, is_ret, i)| (i, !is_ret)).collect()
}

/// One partition's search.
pub struct Search<M: Model, B: Bits> {
    model: M,
    ops: Vec<M::Op>,
    read_only: Vec<bool>,
    /// For an open op: the latest open op called before it that is the same op
    /// (`NIL`: none).
    twin: Vec<u32>,
    zob: Vec<u64>,
    entries: Vec<Entry>,
    state: M::State,
    bits: B,
    set_hash: u64,
    stack: Vec<Frame<M::State>>,
    cache: Cache<M::State>,
    cursor: u32,
    phase: Phase,
    /// The longest linearization seen (op indices, in order).
    pub best: Vec<u32>,
    pub steps: u64,
    done: Option<Status>,
    /// First pass: completed ops only. A linearization of them alone is a witness
    /// (open ops are optional), and without the open ops the search is far smaller;
    /// only when it fails are the open ops tried, from the start with a new cache.
    completed_only: bool,
    budget: Budget,
}

impl<M: Model, B: Bits> Search<M, B> {
    pub fn new(model: M, ops: Vec<PartOp<M::Op>>, budget: Budget) -> Self {
        let n = ops.len();
        let order = event_order(&ops);
        let open: Vec<bool> = ops.iter().map(|o| o.ret.is_none()).collect();
        let ops: Vec<M::Op> = ops.into_iter().map(|p| p.op).collect();
        let useless = model.useless_open(&ops, &open);
        let mut twin = vec![NIL; n];
        let blank = Entry {
            prev: NIL,
            next: NIL,
            op: NIL,
            partner: NIL,
            rank: 0,
            is_call: false,
        };
        let mut entries = Vec::with_capacity(2 * n + 2);
        entries.push(blank);
        entries.push(blank);
        let mut call_entry = vec![NIL; n];
        let (mut last_done, mut last_open) = (HEAD, OPEN);
        // Open calls linked so far, latest first, for finding twins.
        let mut open_calls: Vec<u32> = Vec::new();
        for (rank, &(op, is_call)) in order.iter().enumerate() {
            let open = open[op as usize];
            if open && (!is_call || useless[op as usize]) {
                continue;
            }
            if open {
                // A bounded look back keeps this linear; a twin further back is
                // only a pruning missed (the op is then tried on its own).
                let same = open_calls
                    .iter()
                    .rev()
                    .take(TWIN_LOOKBACK)
                    .find(|&&o| ops[o as usize] == ops[op as usize]);
                twin[op as usize] = same.copied().unwrap_or(NIL);
                open_calls.push(op);
            }
            let id = entries.len() as u32;
            let tail = if open { &mut last_open } else { &mut last_done };
            entries.push(Entry {
                prev: *tail,
                next: NIL,
                op,
                partner: NIL,
                rank: rank as u32,
                is_call,
            });
            entries[*tail as usize].next = id;
            *tail = id;
            if is_call {
                call_entry[op as usize] = id;
            } else {
                entries[call_entry[op as usize] as usize].partner = id;
            }
        }
        let read_only = ops.iter().map(|o| model.read_only(o)).collect();
        let state = model.init();
        let cursor = entries[HEAD as usize].next;
        let has_open = entries[OPEN as usize].next != NIL;
        let bits = B::with_capacity(n);
        let words = bits.words().len();
        Search {
            read_only,
            twin,
            zob: zobrist(n, 0x5eed_1234_abcd_0042),
            entries,
            state,
            bits,
            set_hash: 0,
            stack: Vec::with_capacity(n),
            cache: Cache::new(words, budget.clone()),
            budget,
            completed_only: has_open,
            cursor,
            phase: Phase::Completed,
            best: Vec::new(),
            steps: 0,
            done: if cursor == NIL {
                Some(Status::Linearizable)
            } else {
                None
            },
            model,
            ops,
        }
    }

    pub fn model(&self) -> &M {
        &self.model
    }

    pub fn ops(&self) -> &[M::Op] {
        &self.ops
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn cache_full(&self) -> bool {
        self.cache.full
    }

    /// Whether op `op` is linearized.
    #[inline(always)]
    fn placed(&self, op: u32) -> bool {
        self.bits.words()[(op >> 6) as usize] >> (op & 63) & 1 == 1
    }

    #[inline(always)]
    fn lift(&mut self, e: u32) {
        let r = self.entries[e as usize].partner;
        self.unlink(e);
        if r != NIL {
            self.unlink(r);
        }
    }

    #[inline(always)]
    fn unlink(&mut self, x: u32) {
        let Entry { prev, next, .. } = self.entries[x as usize];
        self.entries[prev as usize].next = next;
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    #[inline(always)]
    fn relink(&mut self, x: u32) {
        let Entry { prev, next, .. } = self.entries[x as usize];
        self.entries[prev as usize].next = x;
        if next != NIL {
            self.entries[next as usize].prev = x;
        }
    }

    #[inline(always)]
    fn unlift(&mut self, e: u32) {
        let r = self.entries[e as usize].partner;
        if r != NIL {
            self.relink(r);
        }
        self.relink(e);
    }

    /// Pops frames until one leaves an untried alternative; false when none is left.
    #[inline]
    fn backtrack(&mut self) -> bool {
        while let Some(f) = self.stack.pop() {
            let op = self.entries[f.entry as usize].op;
            self.unlift(f.entry);
            self.bits.clear(op);
            self.set_hash ^= self.zob[op as usize];
            self.state = f.state;
            if !f.committed {
                self.cursor = self.entries[f.entry as usize].next;
                self.phase = if f.limit == NIL {
                    Phase::Completed
                } else {
                    Phase::Open(f.limit)
                };
                return true;
            }
        }
        false
    }

    fn record_best(&mut self) {
        if self.stack.len() > self.best.len() {
            self.best.clear();
            let entries = &self.entries;
            self.best
                .extend(self.stack.iter().map(|f| entries[f.entry as usize].op));
        }
    }

    /// Linearizes op `op` (entry `e`) into `next` unless (set + op, next) was seen.
    #[inline(always)]
    fn push(&mut self, e: u32, op: u32, next: M::State, committed: bool, limit: u32) -> bool {
        self.bits.set(op);
        let h = self.set_hash ^ self.zob[op as usize] ^ hash_state(&next);
        if !self.cache.insert(h, self.bits.words(), &next) {
            self.bits.clear(op);
            return false;
        }
        let prev = std::mem::replace(&mut self.state, next);
        self.stack.push(Frame {
            entry: e,
            state: prev,
            committed,
            limit,
        });
        self.set_hash ^= self.zob[op as usize];
        self.lift(e);
        self.cursor = self.entries[HEAD as usize].next;
        self.phase = Phase::Completed;
        if self.stack.len() > self.best.len() {
            self.record_best();
        }
        true
    }

    /// After the first pass failed with everything backtracked: starts the second,
    /// with the open ops, from the initial configuration (which backtracking has
    /// restored) and an empty cache (what failed without open ops may not fail
    /// with them). False when there is no second pass to run.
    fn open_ops_next(&mut self) -> bool {
        if !self.completed_only {
            return false;
        }
        self.completed_only = false;
        let words = self.bits.words().len();
        self.cache = Cache::new(words, self.budget.clone());
        self.cursor = self.entries[HEAD as usize].next;
        self.phase = Phase::Completed;
        true
    }

    /// Runs until done, `deadline`, or `cancel`; checks both every 1024 steps.
    pub fn run(&mut self, deadline: Instant, cancel: &AtomicBool) -> Status {
        if let Some(s) = self.done {
            return s;
        }
        loop {
            if self.entries[HEAD as usize].next == NIL {
                self.record_best();
                self.done = Some(Status::Linearizable);
                return Status::Linearizable;
            }
            self.steps += 1;
            if self.steps & 1023 == 0
                && (cancel.load(Ordering::Relaxed) || Instant::now() >= deadline)
            {
                return Status::Paused;
            }
            let e = self.cursor;
            if let Phase::Open(limit) = self.phase {
                if e == NIL || self.entries[e as usize].rank > limit {
                    if !self.backtrack() {
                        self.done = Some(Status::NotLinearizable);
                        return Status::NotLinearizable;
                    }
                    continue;
                }
                let op = self.entries[e as usize].op;
                let twin = self.twin[op as usize];
                if twin != NIL && !self.placed(twin) {
                    // Its earlier twin can stand here as well and is tried instead.
                    self.cursor = self.entries[e as usize].next;
                    continue;
                }
                if let Some(next) = self.model.step(&self.state, &self.ops[op as usize]) {
                    // An open op that changes nothing here is no use here.
                    if next != self.state && self.push(e, op, next, false, limit) {
                        continue;
                    }
                }
                self.cursor = self.entries[e as usize].next;
                continue;
            }
            let entry = self.entries[e as usize];
            if entry.is_call {
                let op = entry.op;
                if let Some(next) = self.model.step(&self.state, &self.ops[op as usize]) {
                    let committed = self.read_only[op as usize];
                    if self.push(e, op, next, committed, NIL) {
                        continue;
                    }
                    if committed {
                        // This configuration plus the read was explored and failed,
                        // so this configuration fails too.
                        if !self.backtrack() && !self.open_ops_next() {
                            self.done = Some(Status::NotLinearizable);
                            return Status::NotLinearizable;
                        }
                        continue;
                    }
                }
                self.cursor = entry.next;
            } else if self.completed_only {
                if !self.backtrack() && !self.open_ops_next() {
                    self.done = Some(Status::NotLinearizable);
                    return Status::NotLinearizable;
                }
            } else {
                // Every completed candidate was tried: now the open ones before it.
                self.phase = Phase::Open(entry.rank);
                self.cursor = self.entries[OPEN as usize].next;
            }
        }
    }
}
