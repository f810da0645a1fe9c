//! What the checkers found, in the shapes the reports show: the lost-writes checker's
//! details read back as typed rows, each tied to the exact ops of the history
//! (invoke and completion index, process), and the dual-master evidence drawn from
//! which node acknowledged each write.

use super::analysis::{self, Outcome, Paired};
use super::Run;
use std::collections::{HashMap, HashSet};

/// Rows shown per list in the reports (the full lists are in results.json).
pub const MAX_ROWS: usize = 500;

/// The lost-writes checker's details, read back from results.json with the checker's
/// own types.
pub use checkers::lost_writes::{MissingWrite, SetReport as SetDetails};

/// A missing write with the ops that performed it.
pub struct Evidence<'a> {
    pub write: &'a MissingWrite,
    pub op: Option<&'a Paired>,
}

/// Findings gathered once for all report formats.
pub struct Findings<'a> {
    /// Per checker (same order as results.checkers): set details when it is lost-writes.
    pub sets: Vec<Option<SetDetails>>,
    pub lost: HashSet<i64>,
    acked: HashMap<i64, &'a Paired>,
    pub spans: Vec<analysis::AckSpan>,
    pub overlaps: Vec<analysis::Overlap>,
    /// Seconds: the moment the timeline centres on.
    pub focus: f64,
}

impl<'a> Findings<'a> {
    pub fn of(run: &'a Run) -> Findings<'a> {
        let sets: Vec<Option<SetDetails>> = run
            .results
            .checkers
            .iter()
            .map(|c| {
                (c.checker == "lost-writes")
                    .then(|| serde_json::from_value(c.details.clone()).ok())
                    .flatten()
            })
            .collect();
        let lost: HashSet<i64> = sets
            .iter()
            .flatten()
            .flat_map(|s| s.lost.iter().map(|w| w.element))
            .collect();
        let acked = run
            .analysis
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && analysis::is_write(&o.f))
            .filter_map(|o| o.argument.as_i64().map(|v| (v, o)))
            .collect();
        let (spans, overlaps) = analysis::ack_spans(&run.analysis.ops);
        let first_lost = sets
            .iter()
            .flatten()
            .flat_map(|s| s.lost.iter().map(|w| w.acked_at as f64 / 1e9))
            .fold(f64::INFINITY, f64::min);
        let focus = if first_lost.is_finite() {
            first_lost
        } else {
            run.analysis.faults.first().map_or(0.0, |f| f.start)
        };
        Findings {
            sets,
            lost,
            acked,
            spans,
            overlaps,
            focus,
        }
    }

    /// `writes` tied to their ops, at most [`MAX_ROWS`].
    pub fn evidence<'b>(&self, writes: &'b [MissingWrite]) -> Vec<Evidence<'b>>
    where
        'a: 'b,
    {
        writes
            .iter()
            .take(MAX_ROWS)
            .map(|w| Evidence {
                write: w,
                op: self.acked.get(&w.element).copied(),
            })
            .collect()
    }
}

/// `e1, e2, ... (n in all)` for example lists.
pub fn examples(list: &[i64], count: usize) -> String {
    let shown: Vec<String> = list.iter().map(|e| e.to_string()).collect();
    if count > list.len() {
        format!("{} ... ({count} in all)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
