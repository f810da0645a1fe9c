//! History file formats `splitbrain check` reads: our `history.jsonl`, Jepsen /
//! Knossos EDN histories, and Porcupine's etcd and kv logs. Each parses from a
//! string into history [`Op`]s plus the source line of each op, with the first bad
//! record reported by line and column, and says how it should be paired and which
//! model fits it by default.

pub mod edn;
pub mod porcupine;

use crate::history::{HistoryError, JsonlReader, Op, OpType, Process};
use crate::models::{ModelConfig, ModelKind};
use crate::operation::{PairOptions, TimeSource};
use edn::{Edn, Pos};
use serde_json::{Map, Value};

/// The formats `--format` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Edn,
    PorcupineEtcd,
    PorcupineKv,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Jsonl,
        Format::Edn,
        Format::PorcupineEtcd,
        Format::PorcupineKv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Edn => "edn",
            Format::PorcupineEtcd => "porcupine-etcd",
            Format::PorcupineKv => "porcupine-kv",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Guesses the format from the first meaningful line, then the file name.
    pub fn detect(file_name: &str, text: &str) -> Option<Format> {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with(';'));
        if let Some(l) = first {
            if l.starts_with("{\"") || l.starts_with("{ \"") {
                return Some(Format::Jsonl);
            }
            if l.contains("jepsen.util") {
                return Some(Format::PorcupineEtcd);
            }
            if l.starts_with("{:process") {
                let kv = [":f :get", ":f :put", ":f :append"];
                return Some(if kv.iter().any(|f| l.contains(f)) {
                    Format::PorcupineKv
                } else {
                    Format::Edn
                });
            }
            if l.starts_with('[') || l.starts_with('{') || l.starts_with('(') {
                return Some(Format::Edn);
            }
        }
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".jsonl") || lower.ends_with(".json") {
            Some(Format::Jsonl)
        } else if lower.ends_with(".edn") {
            Some(Format::Edn)
        } else if lower.ends_with(".log") {
            Some(Format::PorcupineEtcd)
        } else {
            None
        }
    }

    /// How ops of this format pair up.
    pub fn pair_options(self) -> PairOptions {
        match self {
            Format::Jsonl => PairOptions {
                time: TimeSource::TimeField,
                reinvoke_leaves_open: false,
            },
            Format::Edn => PairOptions::default(),
            Format::PorcupineEtcd | Format::PorcupineKv => PairOptions {
                time: TimeSource::Position,
                reinvoke_leaves_open: true,
            },
        }
    }

    /// The model to use when none is named (`None`: infer from the functions).
    pub fn default_model(self) -> Option<ModelKind> {
        match self {
            Format::PorcupineEtcd => Some(ModelKind::Etcd),
            Format::PorcupineKv => Some(ModelKind::Kv),
            _ => None,
        }
    }

    /// Model settings matching the format's conventions: Knossos histories start
    /// registers at 0 and treat a read of nil as unknown.
    pub fn model_config(self) -> ModelConfig {
        match self {
            Format::Edn => ModelConfig {
                init: Value::from(0),
                nil_read_is_unknown: true,
                multi_init: Vec::new(),
            },
            _ => ModelConfig::default(),
        }
    }
}

/// A parsed history: ops and the 1-based line each one starts on.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub ops: Vec<Op>,
    pub lines: Vec<usize>,
}

/// A bad record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct FormatError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl FormatError {
    pub fn at(pos: Pos, message: impl Into<String>) -> Self {
        FormatError {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

/// Parses `text` in `format`.
pub fn parse(format: Format, text: &str) -> Result<Parsed, FormatError> {
    match format {
        Format::Jsonl => parse_jsonl(text),
        Format::Edn | Format::PorcupineKv => parse_edn(text),
        Format::PorcupineEtcd => porcupine::parse_etcd(text),
    }
}

fn parse_jsonl(text: &str) -> Result<Parsed, FormatError> {
    let mut reader = JsonlReader::new(text.as_bytes());
    let mut out = Parsed::default();
    while let Some(item) = reader.next() {
        let op = item.map_err(|e| match e {
            HistoryError::Parse {
                line,
                column,
                message,
            } => FormatError {
                line,
                column,
                message,
            },
            HistoryError::Semantic { line, message } => FormatError {
                line,
                column: 1,
                message,
            },
            HistoryError::Io(e) => FormatError {
                line: reader.line() + 1,
                column: 1,
                message: e.to_string(),
            },
        })?;
        out.ops.push(op);
        out.lines.push(reader.line());
    }
    Ok(out)
}

fn parse_edn(text: &str) -> Result<Parsed, FormatError> {
    let elements = edn::read_elements(text).map_err(|e| FormatError::at(e.pos, e.message))?;
    let mut out = Parsed::default();
    for (i, (el, pos)) in elements.iter().enumerate() {
        let op = edn_op(i, el).map_err(|m| FormatError::at(*pos, m))?;
        out.ops.push(op);
        out.lines.push(pos.line);
    }
    Ok(out)
}

fn name_of(v: &Edn) -> Option<String> {
    match v {
        Edn::Keyword(s) | Edn::Symbol(s) | Edn::Str(s) => Some(s.clone()),
        Edn::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// One EDN op map to an [`Op`]. A `:process` that is not a non-negative integer
/// makes it a non-client op (the original is kept in `extra` as `process`).
fn edn_op(i: usize, el: &Edn) -> Result<Op, String> {
    let Edn::Map(fields) = el else {
        return Err(format!(
            "expected an op map {{:process .. :type ..}}, got {}",
            el.to_json()
        ));
    };
    let mut process = None;
    let mut kind = None;
    let mut f = None;
    let mut op = Op::new(0, Process::Nemesis, OpType::Info, "", Value::Null);
    op.index = i as u64;
    let mut extra = Map::new();
    for (k, v) in fields {
        let Some(key) = name_of(k) else {
            return Err(format!("op map key must be a keyword, got {}", k.to_json()));
        };
        match key.as_str() {
            "process" => {
                process = Some(match v {
                    Edn::Int(p) if *p >= 0 => Process::Client(*p as u64),
                    other => {
                        extra.insert("process".into(), other.to_json());
                        Process::Nemesis
                    }
                })
            }
            "type" => {
                kind = Some(match v {
                    Edn::Keyword(t) | Edn::Str(t) => match t.as_str() {
                        "invoke" => OpType::Invoke,
                        "ok" => OpType::Ok,
                        "fail" => OpType::Fail,
                        "info" => OpType::Info,
                        other => {
                            return Err(format!(
                                "unknown type :{other} (expected :invoke, :ok, :fail or :info)"
                            ))
                        }
                    },
                    other => return Err(format!("unknown type {}", other.to_json())),
                })
            }
            "f" => f = Some(name_of(v).ok_or_else(|| format!("bad :f {}", v.to_json()))?),
            "value" => op.value = v.to_json(),
            "key" => op.key = Some(name_of(v).unwrap_or_else(|| v.to_json().to_string())),
            "time" => match v {
                Edn::Int(t) if *t >= 0 => op.time = *t as u64,
                other => {
                    extra.insert("time".into(), other.to_json());
                }
            },
            "node" => op.node = name_of(v),
            "index" => {}
            _ => {
                extra.insert(key, v.to_json());
            }
        }
    }
    op.process = process.ok_or("op has no :process")?;
    op.kind = kind.ok_or("op has no :type")?;
    op.f = f.ok_or("op has no :f")?;
    op.extra = extra;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format() {
        assert_eq!(Format::detect("x", "{\"index\":0}"), Some(Format::Jsonl));
        assert_eq!(
            Format::detect("x", "INFO  jepsen.util - 0\t:invoke\t:read\tnil"),
            Some(Format::PorcupineEtcd)
        );
        assert_eq!(
            Format::detect(
                "x",
                "{:process 9, :type :invoke, :f :append, :key \"0\", :value \"x\"}"
            ),
            Some(Format::PorcupineKv)
        );
        assert_eq!(
            Format::detect("x", "; c\n[{:process 1}]"),
            Some(Format::Edn)
        );
        assert_eq!(Format::detect("h.jsonl", ""), Some(Format::Jsonl));
        assert_eq!(Format::detect("h.txt", "hello"), None);
    }

    #[test]
    fn edn_ops_keep_semantics_and_report_bad_records() {
        let p = parse(
            Format::Edn,
            "[{:process 0, :type :invoke, :f :read, :value nil, :error :x}\n {:process :nemesis, :type :info, :f :start}]",
        )
        .unwrap();
        assert_eq!(p.ops[0].process, Process::Client(0));
        assert_eq!(p.ops[0].extra["error"], "x");
        assert_eq!(p.ops[1].process, Process::Nemesis);
        assert_eq!(p.lines, vec![1, 2]);
        let e = parse(
            Format::Edn,
            "[{:process 0, :type :invoke, :f :read}\n {:process 0, :type :bogus, :f :read}]",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (2, 2));
        assert!(e.message.contains("unknown type :bogus"), "{e}");
    }

    #[test]
    fn jsonl_errors_carry_line_and_column() {
        let e = parse(Format::Jsonl, "{\"index\":0,\"time\":1,\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n\n{\"index\":1,\"ti")
            .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.column > 1);
    }
}
