//! The Wing–Gong–Lowe search over one partition, Porcupine-style, as a resumable
//! state machine: call/return entries in an arena-backed doubly linked list with
//! u32 links, linearized ops lifted out of it, a DFS stack of (entry, previous
//! state), a cache of visited (linearized set, state) pairs keyed by an incremental
//! Zobrist hash of the set XOR the state's hash. Read-only ops that are legal are
//! committed without a backtracking alternative (see [`Model::read_only`]). The hot
//! loop allocates only when the model's state does and when the cache grows.

use super::cache::{hash_state, zobrist, Bits, Budget, Cache};
use crate::models::{Model, PartOp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;

#[derive(Clone, Copy, Debug)]
struct Entry {
    prev: u32,
    next: u32,
    op: u32,
    partner: u32,
    is_call: bool,
}

struct Frame<S> {
    entry: u32,
    state: S,
    committed: bool,
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
    zob: Vec<u64>,
    entries: Vec<Entry>,
    state: M::State,
    bits: B,
    set_hash: u64,
    stack: Vec<Frame<M::State>>,
    cache: Cache<M::State>,
    cursor: u32,
    /// The longest linearization seen (op indices, in order).
    pub best: Vec<u32>,
    pub steps: u64,
    done: Option<Status>,
}

impl<M: Model, B: Bits> Search<M, B> {
    pub fn new(model: M, ops: Vec<PartOp<M::Op>>, budget: Budget) -> Self {
        let n = ops.len();
        let order = event_order(&ops);
        let mut entries = Vec::with_capacity(2 * n + 1);
        entries.push(Entry {
            prev: NIL,
            next: NIL,
            op: NIL,
            partner: NIL,
            is_call: false,
        });
        let mut call_entry = vec![NIL; n];
        for (k, &(op, is_call)) in order.iter().enumerate() {
            let id = (k + 1) as u32;
            let partner = if is_call {
                call_entry[op as usize] = id;
                NIL
            } else {
                call_entry[op as usize]
            };
            if !is_call {
                entries[partner as usize].partner = id;
            }
            entries.push(Entry {
                prev: id - 1,
                next: NIL,
                op,
                partner,
                is_call,
            });
            entries[(id - 1) as usize].next = id;
        }
        let ops: Vec<M::Op> = ops.into_iter().map(|p| p.op).collect();
        let read_only = ops.iter().map(|o| model.read_only(o)).collect();
        let state = model.init();
        let cursor = entries[HEAD as usize].next;
        let bits = B::with_capacity(n);
        let words = bits.words().len();
        Search {
            read_only,
            zob: zobrist(n, 0x5eed_1234_abcd_0042),
            entries,
            state,
            bits,
            set_hash: 0,
            stack: Vec::with_capacity(n),
            cache: Cache::new(words, budget),
            cursor,
            best: Vec::new(),
            steps: 0,
            done: if n == 0 {
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

    #[inline(always)]
    fn lift(&mut self, e: u32) {
        let r = self.entries[e as usize].partner;
        self.unlink(e);
        self.unlink(r);
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
        self.relink(r);
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

    /// Runs until done, `deadline`, or `cancel`; checks both every 1024 steps.
    pub fn run(&mut self, deadline: Instant, cancel: &AtomicBool) -> Status {
        if let Some(s) = self.done {
            return s;
        }
        let mut best_len = self.best.len();
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
            let entry = self.entries[e as usize];
            if entry.is_call {
                let op = entry.op;
                if let Some(next) = self.model.step(&self.state, &self.ops[op as usize]) {
                    self.bits.set(op);
                    let h = self.set_hash ^ self.zob[op as usize] ^ hash_state(&next);
                    if self.cache.insert(h, self.bits.words(), &next) {
                        let prev = std::mem::replace(&mut self.state, next);
                        self.stack.push(Frame {
                            entry: e,
                            state: prev,
                            committed: self.read_only[op as usize],
                        });
                        self.set_hash ^= self.zob[op as usize];
                        self.lift(e);
                        self.cursor = self.entries[HEAD as usize].next;
                        if self.stack.len() > best_len {
                            self.record_best();
                            best_len = self.best.len();
                        }
                        continue;
                    }
                    self.bits.clear(op);
                    if self.read_only[op as usize] {
                        // This configuration plus the read was explored and failed,
                        // so this configuration fails too.
                        if !self.backtrack() {
                            self.done = Some(Status::NotLinearizable);
                            return Status::NotLinearizable;
                        }
                        continue;
                    }
                }
                self.cursor = entry.next;
            } else if !self.backtrack() {
                self.done = Some(Status::NotLinearizable);
                return Status::NotLinearizable;
            }
        }
    }
}
