//! What clients do. This crate owns the operation generators of each workload and
//! knows which checkers judge it; it does no I/O beyond reading a history from a
//! reader it is handed, and never talks to a system (the
//! harness turns each [`Invocation`] into a client call and records the outcome).

pub mod availability;
pub mod leader;
pub mod list_append;
pub mod mix;
pub mod register;
pub mod set;

use checkers::{Op, Validity};
pub use mix::OpMix;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// The operation functions clients perform, as they appear in `f` of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpFn {
    /// Add an element to a set.
    Add,
    /// Read a whole set.
    Read,
    /// Write a register.
    Write,
    /// Compare-and-set a register: value `[from, to]`.
    Cas,
    /// Read a register (`read` in the history).
    ReadRegister,
    /// Append an element to a list.
    Append,
    /// Read a whole list (`read` in the history).
    ReadList,
    /// Ask a node for its role (leader observation).
    Role,
}

impl OpFn {
    /// The name in `f` of the history; the three reads share `read`, as the checkers
    /// expect (the key tells which object was read).
    pub fn as_str(self) -> &'static str {
        match self {
            OpFn::Add => "add",
            OpFn::Read | OpFn::ReadRegister | OpFn::ReadList => "read",
            OpFn::Write => "write",
            OpFn::Cas => "cas",
            OpFn::Append => "append",
            OpFn::Role => "role",
        }
    }

    /// Whether the op changes data (and is attributed to the master that accepted it).
    pub fn is_write(self) -> bool {
        matches!(self, OpFn::Add | OpFn::Write | OpFn::Cas | OpFn::Append)
    }
}

/// One operation a client is asked to perform.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub f: OpFn,
    pub key: Option<String>,
    pub value: serde_json::Value,
    /// Part of the final reads after heal and recovery.
    pub is_final: bool,
}

/// The workloads splitbrain knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Add unique integers to a set, read it at the end: finds lost writes.
    Set,
    /// Read / write / cas on independent registers: judged linearizable per key.
    Register,
    /// Append unique integers to lists, read whole lists: lost appends, order anomalies.
    ListAppend,
}

impl WorkloadKind {
    pub const ALL: &'static [WorkloadKind] = &[
        WorkloadKind::Set,
        WorkloadKind::Register,
        WorkloadKind::ListAppend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Set => "set",
            WorkloadKind::Register => "register",
            WorkloadKind::ListAppend => "list-append",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WorkloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        WorkloadKind::ALL
            .iter()
            .copied()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = WorkloadKind::ALL.iter().map(|w| w.name()).collect();
                format!("unknown workload {s:?} (known: {})", names.join(", "))
            })
    }
}

/// Hands out invocations to client processes. Shared by all clients of a run, so
/// implementations keep their state behind `&mut self` and the runner serialises calls.
pub trait Generator: Send {
    /// The next operation for `process` during the main phase.
    fn next(&mut self, process: u64) -> Invocation;
    /// The reads every node answers after heal and recovery.
    fn final_reads(&self) -> Vec<Invocation>;
}

/// Knobs of the analysis after a run.
#[derive(Debug, Clone, Default)]
pub struct AnalyseOptions {
    /// Turns availability into a verdict: the first write after every fault must
    /// complete within this long of the fault's start.
    pub latency_budget: Option<std::time::Duration>,
}

/// One checker's outcome, ready to be stored and reported.
#[derive(Debug, Clone, Serialize)]
pub struct CheckerResult {
    /// Checker name (`lost-writes`, ...).
    pub checker: &'static str,
    pub valid: Validity,
    /// A one-line summary for tables and JUnit.
    pub summary: String,
    /// The checker's full report.
    pub details: serde_json::Value,
}

impl WorkloadKind {
    /// A seeded generator for this workload; `concurrency` is the number of client
    /// processes (process ids taken modulo it), which the per-key workloads group.
    pub fn generator(self, seed: u64, concurrency: u64) -> Box<dyn Generator> {
        self.generator_with(
            seed,
            concurrency,
            &self.default_mix(),
            register::DEFAULT_PROCESSES_PER_KEY,
        )
    }

    /// [`WorkloadKind::generator`] with the operations in the proportions of `mix`
    /// (from [`WorkloadKind::parse_op_mix`] or [`WorkloadKind::default_mix`] of the
    /// same workload) and, for the register workload, `processes_per_key` client
    /// processes sharing each key (at least 1, at most `concurrency`; the other
    /// workloads ignore it).
    pub fn generator_with(
        self,
        seed: u64,
        concurrency: u64,
        mix: &OpMix,
        processes_per_key: u64,
    ) -> Box<dyn Generator> {
        match self {
            WorkloadKind::Set => Box::new(set::SetGenerator::with_mix(seed, mix)),
            WorkloadKind::Register => {
                let opts = register::Options {
                    weights: [mix.weight("read"), mix.weight("write"), mix.weight("cas")],
                    processes_per_key,
                    ..register::Options::default()
                };
                Box::new(register::RegisterGenerator::new(seed, concurrency, opts))
            }
            WorkloadKind::ListAppend => Box::new(list_append::ListGenerator::with_mix(seed, mix)),
        }
    }

    /// Runs every checker that judges this workload over `history`, then the
    /// dual-master checker (every workload's writes are attributed to a master) and
    /// the availability checker.
    pub fn analyse(self, history: &[Op]) -> Vec<CheckerResult> {
        self.analyse_with(history, &AnalyseOptions::default())
    }

    /// [`WorkloadKind::analyse`] with options.
    pub fn analyse_with(self, history: &[Op], opts: &AnalyseOptions) -> Vec<CheckerResult> {
        let mut out = match self {
            WorkloadKind::Set => vec![set::analyse(history)],
            WorkloadKind::Register => vec![register::analyse(history)],
            WorkloadKind::ListAppend => vec![list_append::analyse(history)],
        };
        out.push(leader::analyse(history));
        out.push(availability::analyse(history, opts.latency_budget));
        out
    }

    /// [`WorkloadKind::analyse_with`] over a JSONL history read from `input`, with
    /// the same results. The set workload's checkers (lost writes, dual masters,
    /// availability) all run in one streaming pass that never holds the history;
    /// register (linearizability) and list-append need the whole history and read
    /// it into memory first. A bad line stops it with the reader's error.
    pub fn analyse_jsonl<R: std::io::Read + Send>(
        self,
        input: R,
        opts: &AnalyseOptions,
    ) -> Result<Vec<CheckerResult>, checkers::history::HistoryError> {
        if self != WorkloadKind::Set {
            let history = checkers::history::read_jsonl(std::io::BufReader::new(input))?;
            return Ok(self.analyse_with(&history, opts));
        }
        let mut set = checkers::lost_writes::SetChecker::new();
        let mut dual = checkers::dual_master::DualMasterChecker::new();
        let mut avail = checkers::availability::AvailabilityChecker::new();
        let mut roles = leader::RoleCount::default();
        checkers::blocks::for_each_view_par(input, |op| {
            set.observe(op);
            dual.observe(op);
            avail.observe(op);
            roles.observe(op);
        })?;
        let budget = opts.latency_budget;
        Ok(vec![
            set::result(set.finish()),
            leader::result(roles, || dual.finish()),
            availability::result(avail.finish(availability::budget_ns(budget)), budget),
        ])
    }
}
