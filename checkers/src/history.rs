//! The history model: one [`Op`] per invocation or completion, in the order they
//! happened, with Jepsen's semantics (`invoke`, then `ok` / `fail` / `info`), and the
//! streaming JSONL reader and writer for `history.jsonl` (see DESIGN.md, Formats).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::io::{BufRead, Write};

/// What an entry of the history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// A process starts an operation.
    Invoke,
    /// The operation completed and took effect.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// The operation may or may not have taken effect (timeout, lost connection).
    Info,
}

/// Who performed an operation: a logical client process, or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) if n.as_u64().is_some() => {
                Ok(Process::Client(n.as_u64().unwrap_or(0)))
            }
            Value::String(s) if s == "nemesis" => Ok(Process::Nemesis),
            other => Err(serde::de::Error::custom(format!(
                "process must be a non-negative integer or \"nemesis\", got {other}"
            ))),
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, 0-based and dense.
    pub index: u64,
    /// Nanoseconds since the test began, on the controller's monotonic clock.
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The function: `add`, `read`, `write`, `cas`, `start-partition`, ...
    pub f: String,
    /// The key, for workloads over independent keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The argument (on invoke) or the result (on completion).
    #[serde(default)]
    pub value: Value,
    /// The node the client talked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Any further fields (error text, master that acknowledged, ...), kept as read.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Op {
    /// A new op with no key, node or extra fields; `index` is set by the writer or caller.
    pub fn new(
        time: u64,
        process: Process,
        kind: OpType,
        f: impl Into<String>,
        value: Value,
    ) -> Op {
        Op {
            index: 0,
            time,
            process,
            kind,
            f: f.into(),
            key: None,
            value,
            node: None,
            extra: Map::new(),
        }
    }

    pub fn is_client(&self) -> bool {
        matches!(self.process, Process::Client(_))
    }
}

/// A bad record in a history file, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}, column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("line {line}: {message}")]
    Semantic { line: usize, message: String },
    #[error("reading history: {0}")]
    Io(#[from] std::io::Error),
}

/// Streams a JSONL history; blank lines are skipped. Each item is one op or the
/// first error, after which the caller should stop.
pub struct JsonlReader<R> {
    input: R,
    line: usize,
    buf: String,
}

impl<R: BufRead> JsonlReader<R> {
    pub fn new(input: R) -> Self {
        JsonlReader {
            input,
            line: 0,
            buf: String::new(),
        }
    }
}

impl<R> JsonlReader<R> {
    /// The 1-based number of the last line read (0 before the first).
    pub fn line(&self) -> usize {
        self.line
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<Op, HistoryError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(HistoryError::Io(e))),
            }
            self.line += 1;
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            return Some(parse_line(text, self.line));
        }
    }
}

/// Parses one trimmed, non-blank line of a JSONL history; `line` is its 1-based
/// number, for the error.
pub fn parse_line(text: &str, line: usize) -> Result<Op, HistoryError> {
    serde_json::from_str::<Op>(text).map_err(|e| HistoryError::Parse {
        line,
        column: e.column(),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string(),
    })
}

/// Reads a whole JSONL history into memory, stopping at the first bad line.
pub fn read_jsonl<R: BufRead>(input: R) -> Result<Vec<Op>, HistoryError> {
    JsonlReader::new(input).collect()
}

/// Appends ops to a JSONL sink, numbering them densely and flushing after each one
/// so a crash of the writer keeps every op written so far.
pub struct JsonlWriter<W: Write> {
    out: W,
    next_index: u64,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W) -> Self {
        JsonlWriter { out, next_index: 0 }
    }

    /// Writes `op` with the next index (which it also stores in `op`) and flushes.
    pub fn append(&mut self, op: &mut Op) -> std::io::Result<()> {
        op.index = self.next_index;
        serde_json::to_writer(&mut self.out, op)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        self.next_index += 1;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.next_index
    }

    pub fn is_empty(&self) -> bool {
        self.next_index == 0
    }

    /// The sink, e.g. to sync it to disk.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_design_example_lines() {
        let text = r#"{"index":0,"time":1203400,"process":3,"type":"invoke","f":"write","key":"k7","value":42,"node":"n2"}
{"index":1,"time":1893300,"process":3,"type":"ok","f":"write","key":"k7","value":42,"node":"n2"}

{"index":2,"time":2000100,"process":"nemesis","type":"info","f":"start-partition","value":{"grudge":{"n1":["n3","n4"]}},"note":"kept"}
"#;
        let ops = read_jsonl(text.as_bytes()).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].process, Process::Client(3));
        assert_eq!(ops[1].kind, OpType::Ok);
        assert_eq!(ops[2].process, Process::Nemesis);
        assert_eq!(ops[2].extra.get("note"), Some(&json!("kept")));
        let mut w = JsonlWriter::new(Vec::new());
        for mut op in ops.clone() {
            w.append(&mut op).unwrap();
        }
        let again = read_jsonl(&w.into_inner()[..]).unwrap();
        assert_eq!(again, ops);
    }

    #[test]
    fn bad_lines_name_line_and_column() {
        let text = "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"add\",\"value\":1}\n{\"index\":1,\"time\":2,\"process\":1,\"type\":\"bogus\",\"f\":\"add\"}\n";
        let err = read_jsonl(text.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("line 2, column "), "{msg}");
        assert!(msg.contains("bogus"), "{msg}");
        let truncated = "{\"index\":0,\"time\":1,\"proc";
        assert!(read_jsonl(truncated.as_bytes())
            .unwrap_err()
            .to_string()
            .starts_with("line 1, column"));
        let bad_process = "{\"index\":0,\"time\":1,\"process\":-2,\"type\":\"ok\",\"f\":\"add\"}";
        assert!(read_jsonl(bad_process.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("process must be"));
    }
}
