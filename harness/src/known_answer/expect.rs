//! What the known-answer matrix expects and what it saw: the expected checker results
//! per zoo mode × targeted fault (the table in zoo/README.md, parsed from there by a
//! test so the two cannot drift), what one seed's runs observed, and the verdict per
//! cell (sound cells must match on every seed, flawed cells must be caught on enough).

use crate::config::TargetedFault;
use crate::runner::RunOutcome;
use checkers::{Op, OpType, Validity};
use serde_json::Value;
use std::fmt;

/// How long no write may be acknowledged anywhere before the system counts as
/// unavailable (normal gaps between acknowledged writes are milliseconds).
pub const UNAVAILABLE_GAP_NS: u64 = 1_000_000_000;

/// Writes unavailable during the fault, measured over the whole system: the longest
/// stretch of the fault in which no write was acknowledged anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Avail {
    /// Every stretch shorter than [`UNAVAILABLE_GAP_NS`].
    No,
    /// A longer stretch, but writes were acknowledged again before the fault ended.
    Brief,
    /// No write acknowledged from some point (at least [`UNAVAILABLE_GAP_NS`]
    /// before the end) until the fault ended.
    Yes,
}

impl Avail {
    fn parse(s: &str) -> Option<Avail> {
        match s {
            "no" => Some(Avail::No),
            "brief" => Some(Avail::Brief),
            "yes" => Some(Avail::Yes),
            _ => None,
        }
    }
}

impl fmt::Display for Avail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Avail::No => "no",
            Avail::Brief => "brief",
            Avail::Yes => "yes",
        })
    }
}

/// One cell's results: expected (from the README) or observed (from one seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Results {
    /// Acknowledged writes lost (set workload).
    pub lost: bool,
    /// Two masters accepted writes at once; `None`: not applicable (masterless).
    pub dual: Option<bool>,
    /// The register history is linearizable.
    pub linearizable: bool,
    pub unavailable: Avail,
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for Results {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "L {}, D {}, Lin {}, U {}",
            yes_no(self.lost),
            self.dual.map_or("n/a", yes_no),
            yes_no(self.linearizable),
            self.unavailable
        )
    }
}

impl Results {
    /// Parses `L yes, D n/a, Lin no, U brief` (the README's cell text).
    pub fn parse(text: &str) -> Result<Results, String> {
        let mut parts = text.split(',').map(str::trim);
        let mut field = |name: &str| -> Result<String, String> {
            let p = parts
                .next()
                .ok_or_else(|| format!("{text:?}: missing {name}"))?;
            p.strip_prefix(name)
                .map(|v| v.trim().to_string())
                .ok_or_else(|| format!("{text:?}: expected {name} first in {p:?}"))
        };
        let b = |v: &str| match v {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(format!("{text:?}: expected yes or no, got {v:?}")),
        };
        let lost = b(&field("L ")?)?;
        let dual = match field("D ")?.as_str() {
            "n/a" => None,
            v => Some(b(v)?),
        };
        let linearizable = b(&field("Lin ")?)?;
        let u = field("U ")?;
        let unavailable = Avail::parse(&u)
            .ok_or_else(|| format!("{text:?}: U is no, brief or yes, not {u:?}"))?;
        Ok(Results {
            lost,
            dual,
            linearizable,
            unavailable,
        })
    }

    /// Whether these results show any safety anomaly.
    pub fn anomalous(&self) -> bool {
        self.lost || self.dual == Some(true) || !self.linearizable
    }

    /// Every anomaly `expected` names is in `self` (the cell is caught).
    pub fn catches(&self, expected: &Results) -> bool {
        (!expected.lost || self.lost)
            && (expected.dual != Some(true) || self.dual == Some(true))
            && (expected.linearizable || !self.linearizable)
    }

    /// An anomaly in `self` that `expected` does not name (a wrong answer).
    pub fn surprises(&self, expected: &Results) -> bool {
        (self.lost && !expected.lost)
            || (self.dual == Some(true) && expected.dual != Some(true))
            || (!self.linearizable && expected.linearizable)
    }
}

/// The README's known-answer table: (mode, fault, expected), in reading order.
pub fn parse_readme(text: &str) -> Result<Vec<(String, TargetedFault, Results)>, String> {
    let section = text
        .split("## Known-answer matrix")
        .nth(1)
        .ok_or("no \"## Known-answer matrix\" section")?;
    let mut lines = section.lines().skip_while(|l| !l.starts_with("| mode |"));
    let header = lines.next().ok_or("no table starting with \"| mode |\"")?;
    let faults: Vec<TargetedFault> = header
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .skip(1)
        .map(|c| {
            TargetedFault::ALL
                .iter()
                .copied()
                .find(|t| t.name() == c)
                .ok_or_else(|| format!("unknown fault column {c:?}"))
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let cells = &cells[1..cells.len().saturating_sub(1)];
        let mode = cells
            .first()
            .ok_or("empty row")?
            .trim_matches('`')
            .to_string();
        if cells.len() != faults.len() + 1 {
            return Err(format!(
                "row {mode}: {} cells, expected {}",
                cells.len(),
                faults.len() + 1
            ));
        }
        for (f, c) in faults.iter().zip(&cells[1..]) {
            out.push((mode.clone(), *f, Results::parse(c)?));
        }
    }
    Ok(out)
}

/// The zoo README, compiled in: the expectations travel with the binary.
pub const ZOO_README: &str = include_str!("../../../zoo/README.md");

/// The expected results of `mode` under `fault`.
pub fn expected(mode: &str, fault: TargetedFault) -> Result<Results, String> {
    parse_readme(ZOO_README)?
        .into_iter()
        .find(|(m, f, _)| m == mode && *f == fault)
        .map(|(_, _, r)| r)
        .ok_or_else(|| {
            format!(
                "zoo/README.md has no expectation for {mode} under {}",
                fault.name()
            )
        })
}

/// Fault windows `(start, end)` in ns from the nemesis ops of a history: from the
/// invocation of `start-*` (a kill takes effect before its command returns) to the
/// invocation of `stop-*` (a write acknowledged while the heal runs was unblocked
/// by the heal: counting it would turn a system that stayed unavailable until the
/// end into one that recovered during the fault).
fn fault_windows(history: &[Op]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut open = None;
    for op in history.iter().filter(|o| !o.is_client()) {
        if op.f.starts_with("start-") && op.kind == OpType::Invoke {
            open = Some(op.time);
        } else if op.f.starts_with("stop-") && op.kind == OpType::Invoke {
            if let Some(s) = open.take() {
                out.push((s, op.time));
            }
        }
    }
    out
}

/// [`Avail`] over the fault windows of a history (the worst window counts).
pub fn unavailability(history: &[Op]) -> Avail {
    let mut acked: Vec<u64> = history
        .iter()
        .filter(|o| {
            o.is_client()
                && o.kind == OpType::Ok
                && checkers::dual_master::WRITE_FNS.contains(&o.f.as_str())
        })
        .map(|o| o.time)
        .collect();
    acked.sort_unstable();
    let mut worst = Avail::No;
    for (start, end) in fault_windows(history) {
        let inside: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|t| *t >= start && *t <= end)
            .collect();
        let mut prev = start;
        let mut long_gap = false;
        for t in &inside {
            long_gap |= t - prev >= UNAVAILABLE_GAP_NS;
            prev = *t;
        }
        let this = if end.saturating_sub(prev) >= UNAVAILABLE_GAP_NS {
            Avail::Yes
        } else if long_gap {
            Avail::Brief
        } else {
            Avail::No
        };
        worst = match (worst, this) {
            (Avail::Yes, _) | (_, Avail::Yes) => Avail::Yes,
            (Avail::Brief, _) | (_, Avail::Brief) => Avail::Brief,
            _ => Avail::No,
        };
    }
    worst
}

fn checker<'a>(o: &'a RunOutcome, name: &str) -> Option<&'a workloads::CheckerResult> {
    o.results.checkers.iter().find(|c| c.checker == name)
}

/// Dual masters in one run: `None` when the checker said it does not apply.
fn dual(o: &RunOutcome) -> Result<Option<bool>, String> {
    let c = checker(o, "dual-master").ok_or("no dual-master result")?;
    if c.details.get("applicable") == Some(&Value::Bool(false)) {
        return Ok(None);
    }
    Ok(Some(c.valid == Validity::Invalid))
}

/// One seed's observations: the set run (lost writes, dual masters, availability)
/// and the register run (linearizability, dual masters). A checker that could not
/// decide is an error: the cell is then neither caught nor passed.
pub fn observe(
    set: &RunOutcome,
    set_history: &[Op],
    register: &RunOutcome,
) -> Result<Results, String> {
    let lw = checker(set, "lost-writes").ok_or("set run: no lost-writes result")?;
    if lw.valid == Validity::Unknown {
        return Err(format!("set run: lost-writes unknown: {}", lw.summary));
    }
    let lost = lw
        .details
        .get("lost_count")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        > 0;
    let lin = checker(register, "linearizable").ok_or("register run: no linearizable result")?;
    let linearizable = match lin.valid {
        Validity::Valid => true,
        Validity::Invalid => false,
        Validity::Unknown => {
            return Err(format!(
                "register run: linearizable unknown: {}",
                lin.summary
            ))
        }
    };
    let dual = match (dual(set)?, dual(register)?) {
        (None, None) => None,
        (a, b) => Some(a == Some(true) || b == Some(true)),
    };
    Ok(Results {
        lost,
        dual,
        linearizable,
        unavailable: unavailability(set_history),
    })
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;
