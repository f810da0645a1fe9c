//! Linearizability checking: runs one [`search::Search`] per partition, smallest
//! first, in round-robin time slices on a few threads so a hard partition can never
//! starve an easy refutation; the first non-linearizable partition cancels the rest;
//! the time limit is honoured within a slice and yields `unknown`. Results come back
//! as a [`CheckResult`] with a readable counterexample per failing partition.

pub mod cache;
mod report;
pub mod search;

pub use report::{Counterexample, OpView, PartitionReport};

use crate::models::{Model, PartOp, Partition};
pub use crate::verdict::Validity;
use cache::{Bits, Budget};
use search::{Search, Status};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Knobs of the search.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Give up (verdict `unknown`) after this long; `None` = no limit.
    pub time_limit: Option<Duration>,
    /// Worker threads for partitions (at least 1).
    pub threads: usize,
    /// Bytes all caches of one check may use; past it they stop growing.
    pub cache_limit: usize,
    /// How long a partition runs before the next one gets a turn.
    pub slice: Duration,
    /// Stop the other partitions once one is found not linearizable.
    pub stop_on_first_invalid: bool,
    /// Split a partition whose model declares independent components for every op
    /// ([`Model::footprint`]) into one search per component.
    pub locality: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            time_limit: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cache_limit: 4 << 30,
            slice: Duration::from_millis(10),
            stop_on_first_invalid: true,
            locality: true,
        }
    }
}

/// The outcome of checking one history.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub verdict: Validity,
    /// One report per partition, in key order.
    pub partitions: Vec<PartitionReport>,
    pub elapsed: Duration,
}

impl CheckResult {
    /// The first non-linearizable partition, if any.
    pub fn failing(&self) -> Option<&PartitionReport> {
        self.partitions
            .iter()
            .filter(|p| p.verdict == Validity::Invalid)
            .min_by_key(|p| p.ops.len())
    }
}

trait Task: Send {
    fn size(&self) -> usize;
    fn run(&mut self, until: Instant, cancel: &AtomicBool) -> Status;
    fn report(&self, status: Status, reason: Option<String>) -> PartitionReport;
}

struct PartTask<M: Model, B: Bits> {
    key: Option<String>,
    views: Vec<OpView>,
    search: Search<M, B>,
    elapsed: Duration,
}

impl<M: Model, B: Bits> Task for PartTask<M, B> {
    fn size(&self) -> usize {
        self.views.len()
    }

    fn run(&mut self, until: Instant, cancel: &AtomicBool) -> Status {
        let t0 = Instant::now();
        let s = self.search.run(until, cancel);
        self.elapsed += t0.elapsed();
        s
    }

    fn report(&self, status: Status, reason: Option<String>) -> PartitionReport {
        report::build(
            self.key.clone(),
            &self.views,
            &self.search,
            status,
            reason,
            self.elapsed,
        )
    }
}

fn task<M: Model>(part: Partition<M>, budget: &Budget) -> Box<dyn Task> {
    fn make<M: Model, B: Bits>(part: Partition<M>, budget: &Budget) -> Box<dyn Task> {
        let views = part
            .ops
            .iter()
            .map(|p| OpView {
                source: p.source,
                call: p.call,
                ret: p.ret,
                description: report::abbreviate(part.model.describe_op(&p.op)),
            })
            .collect();
        Box::new(PartTask {
            key: part.key,
            views,
            search: Search::<M, B>::new(part.model, part.ops, budget.clone()),
            elapsed: Duration::ZERO,
        })
    }
    match part.ops.len().div_ceil(64) {
        0 | 1 => make::<M, [u64; 1]>(part, budget),
        2 => make::<M, [u64; 2]>(part, budget),
        3 | 4 => make::<M, [u64; 4]>(part, budget),
        5..=8 => make::<M, [u64; 8]>(part, budget),
        9..=16 => make::<M, [u64; 16]>(part, budget),
        17..=32 => make::<M, [u64; 32]>(part, budget),
        _ => make::<M, Box<[u64]>>(part, budget),
    }
}

/// Splits `part` by the components its model names for its ops (see
/// [`Model::footprint`]); unchanged if any op names none or all name the same one.
fn split_by_footprint<M: Model>(part: Partition<M>) -> Vec<Partition<M>> {
    let comps: Option<Vec<u32>> = part
        .ops
        .iter()
        .map(|o| part.model.footprint(&o.op))
        .collect();
    let Some(comps) = comps else {
        return vec![part];
    };
    let mut ids: Vec<u32> = comps.clone();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < 2 {
        return vec![part];
    }
    let mut groups: Vec<Vec<PartOp<M::Op>>> = (0..ids.len()).map(|_| Vec::new()).collect();
    for (op, c) in part.ops.into_iter().zip(comps) {
        let g = ids.binary_search(&c).unwrap_or(0);
        groups[g].push(op);
    }
    groups
        .into_iter()
        .zip(ids)
        .map(|(ops, c)| Partition {
            key: part.model.component_name(c).or(part.key.clone()),
            model: part.model.clone(),
            ops,
        })
        .collect()
}

/// Checks every partition and merges the verdicts.
pub fn check<M: Model>(parts: Vec<Partition<M>>, opts: &CheckOptions) -> CheckResult {
    let start = Instant::now();
    let deadline = opts
        .time_limit
        .map_or(start + Duration::from_secs(100 * 365 * 86_400), |d| {
            start + d
        });
    let budget = Budget::new(opts.cache_limit);
    let parts = if opts.locality {
        parts.into_iter().flat_map(split_by_footprint).collect()
    } else {
        parts
    };
    let mut tasks: Vec<Box<dyn Task>> = parts.into_iter().map(|p| task(p, &budget)).collect();
    tasks.sort_by_key(|t| t.size());
    let n = tasks.len();
    let cancel = AtomicBool::new(false);
    let finished: Vec<Mutex<Option<Status>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let tasks: Vec<Mutex<Box<dyn Task>>> = tasks.into_iter().map(Mutex::new).collect();
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..n).collect());
    let slice = if n == 1 {
        Duration::from_secs(100 * 365 * 86_400)
    } else {
        opts.slice
    };
    let worker = || loop {
        let Some(i) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
            return;
        };
        let Ok(mut t) = tasks[i].lock() else { return };
        let now = Instant::now();
        let until = deadline.min(now + slice);
        let status = t.run(until, &cancel);
        drop(t);
        match status {
            Status::Paused => {
                if !cancel.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok(mut q) = queue.lock() {
                        q.push_back(i);
                    }
                }
            }
            done => {
                if done == Status::NotLinearizable && opts.stop_on_first_invalid {
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                if let Ok(mut f) = finished[i].lock() {
                    *f = Some(done);
                }
            }
        }
    };
    let threads = opts.threads.clamp(1, n.max(1));
    if threads == 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(worker);
            }
        });
    }
    let cancelled = cancel.load(std::sync::atomic::Ordering::Relaxed);
    let mut reports: Vec<PartitionReport> = tasks
        .iter()
        .zip(&finished)
        .filter_map(|(t, f)| {
            let t = t.lock().ok()?;
            let status = f.lock().ok().and_then(|f| *f);
            Some(match status {
                Some(s) => t.report(s, None),
                None => {
                    let reason = if cancelled {
                        "not finished: another partition was already found not linearizable"
                            .to_string()
                    } else {
                        format!(
                            "time limit of {:.1} s reached",
                            opts.time_limit.unwrap_or_default().as_secs_f64()
                        )
                    };
                    t.report(Status::Paused, Some(reason))
                }
            })
        })
        .collect();
    reports.sort_by(|a, b| a.key.cmp(&b.key));
    let verdict = reports
        .iter()
        .fold(Validity::Valid, |v, p| v.and(p.verdict));
    CheckResult {
        verdict,
        partitions: reports,
        elapsed: start.elapsed(),
    }
}
