//! The live progress line of a run (indicatif): elapsed / limit, client ops/s,
//! ok / fail / info counts and the faults in effect. It follows `history.jsonl` as
//! the recorder writes it, so it needs no hook in clients or nemesis; it is off when
//! stderr is not a terminal (CI logs stay clean).

use checkers::{Op, OpType, Process};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, IsTerminal, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(500);

/// Counts and faults read from the history so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Live {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Faults started and not yet stopped (`partition`, `kill`, ...).
    pub faults: BTreeSet<String>,
}

impl Live {
    /// Takes one history line into account; leader observations are not counted.
    pub fn feed(&mut self, line: &str) {
        let Ok(op) = serde_json::from_str::<Op>(line) else {
            return;
        };
        match op.process {
            Process::Nemesis => {
                if op.kind == OpType::Invoke {
                    return;
                }
                if let Some(f) = op.f.strip_prefix("start-") {
                    self.faults.insert(f.to_string());
                } else if let Some(f) = op.f.strip_prefix("stop-") {
                    self.faults.remove(f);
                } else if op.f == "heal-all" {
                    self.faults.clear();
                }
            }
            Process::Client(_) if op.f != "role" => match op.kind {
                OpType::Ok => self.ok += 1,
                OpType::Fail => self.fail += 1,
                OpType::Info => self.info += 1,
                OpType::Invoke => {}
            },
            Process::Client(_) => {}
        }
    }

    pub fn done(&self) -> u64 {
        self.ok + self.fail + self.info
    }

    /// The line's text.
    pub fn render(&self, elapsed: Duration, limit: Duration, rate: f64) -> String {
        let faults = if self.faults.is_empty() {
            "none".to_string()
        } else {
            self.faults.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        format!(
            "{:.0}s/{:.0}s  {:.0} ops/s  ok {} fail {} info {}  faults: {faults}",
            elapsed.as_secs_f64(),
            limit.as_secs_f64(),
            rate,
            self.ok,
            self.fail,
            self.info
        )
    }
}

/// A running progress line; dropping or [`Progress::finish`] clears it.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts following `history` when stderr is a terminal; otherwise does nothing.
    pub fn start(history: PathBuf, limit: Duration) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut live = Live::default();
            let mut offset = 0u64;
            let mut last = (start, 0u64);
            loop {
                tokio::time::sleep(TICK).await;
                offset = follow(&history, offset, &mut live).unwrap_or(offset);
                let now = Instant::now();
                let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let rate = live.done().saturating_sub(last.1) as f64 / dt;
                last = (now, live.done());
                bar.set_message(live.render(start.elapsed(), limit, rate));
                bar.tick();
            }
        });
        Progress { task: Some(task) }
    }

    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Feeds the complete lines after `offset`; returns the new offset.
fn follow(path: &PathBuf, offset: u64, live: &mut Live) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut r = BufReader::new(f);
    let mut at = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(at);
        }
        at += n as u64;
        live.feed(line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn counts_client_outcomes_and_tracks_faults_from_the_history() {
        let lines = [
            r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"add","value":1}"#,
            r#"{"index":1,"time":2,"process":0,"type":"ok","f":"add","value":1}"#,
            r#"{"index":2,"time":3,"process":"nemesis","type":"invoke","f":"start-partition","value":null}"#,
            r#"{"index":3,"time":4,"process":"nemesis","type":"info","f":"start-partition","value":null}"#,
            r#"{"index":4,"time":5,"process":1,"type":"fail","f":"add","value":2}"#,
            r#"{"index":5,"time":6,"process":2000000,"type":"ok","f":"role","value":{}}"#,
            r#"{"index":6,"time":7,"process":3,"type":"info","f":"read","value":null}"#,
            r#"{"index":7,"time":8,"process":"nemesis","type":"info","f":"start-kill","value":null}"#,
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        for l in &lines[..4] {
            writeln!(f, "{l}").unwrap();
        }
        // A half-written line is left for the next pass.
        write!(f, "{}", &lines[4][..10]).unwrap();
        let mut live = Live::default();
        let off = follow(&path, 0, &mut live).unwrap();
        assert_eq!((live.ok, live.faults.len()), (1, 1));
        writeln!(f, "{}", &lines[4][10..]).unwrap();
        for l in &lines[5..] {
            writeln!(f, "{l}").unwrap();
        }
        let off2 = follow(&path, off, &mut live).unwrap();
        assert!(off2 > off);
        assert_eq!((live.ok, live.fail, live.info), (1, 1, 1));
        let text = live.render(Duration::from_secs(3), Duration::from_secs(30), 12.4);
        assert_eq!(
            text,
            "3s/30s  12 ops/s  ok 1 fail 1 info 1  faults: kill, partition"
        );
        live.feed(r#"{"index":8,"time":9,"process":"nemesis","type":"info","f":"stop-kill","value":null}"#);
        live.feed(
            r#"{"index":9,"time":9,"process":"nemesis","type":"info","f":"heal-all","value":null}"#,
        );
        assert!(live.faults.is_empty());
        live.feed("not json");
        assert_eq!(live.done(), 3);
    }
}
