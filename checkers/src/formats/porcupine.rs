//! Porcupine's Jepsen etcd log format (`INFO  jepsen.util - <process> <type> <f>
//! <value>`), read with Porcupine's semantics: `:info` lines are ignored (the op
//! stays open to the end), `:fail :cas` is a definite failed compare, and
//! `:fail :read :timed-out` is a read with an unknown result. Lines of other
//! loggers are skipped; a `jepsen.util` line that is none of the recognised forms
//! is an error naming its line and column. (Porcupine's kv logs are EDN maps, one
//! per line, and are read by the EDN reader.)

use super::{FormatError, Parsed};
use crate::history::{Op, OpType, Process};
use serde_json::Value;

const MARK: &str = "jepsen.util";

/// Parses an etcd log.
pub fn parse_etcd(text: &str) -> Result<Parsed, FormatError> {
    let mut out = Parsed::default();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let body = raw.trim_end();
        if body.trim().is_empty() {
            continue;
        }
        let Some(at) = body.find(MARK) else {
            if looks_like_log_line(body) {
                continue;
            }
            return Err(FormatError {
                line,
                column: 1,
                message: "not a Jepsen log line (expected \"INFO  jepsen.util - <process> <type> <f> <value>\")".into(),
            });
        };
        if let Some(op) = parse_entry(body, at + MARK.len(), line)? {
            out.ops.push(Op {
                index: out.ops.len() as u64,
                ..op
            });
            out.lines.push(line);
        }
    }
    Ok(out)
}

fn looks_like_log_line(s: &str) -> bool {
    ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
        .iter()
        .any(|l| s.starts_with(l))
        && !s.contains(MARK)
}

/// Whitespace-separated tokens with their 1-based byte columns.
fn tokens(s: &str, from: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        out.push((start + 1, &s[start..i]));
    }
    out
}

fn parse_entry(s: &str, after_mark: usize, line: usize) -> Result<Option<Op>, FormatError> {
    let toks = tokens(s, after_mark);
    let err = |column: usize, message: String| FormatError {
        line,
        column,
        message,
    };
    let end = s.len() + 1;
    let tok = |i: usize| toks.get(i).copied();
    match tok(0) {
        Some((_, "-")) => {}
        Some((c, t)) => return Err(err(c, format!("expected \"-\" after {MARK}, got {t:?}"))),
        None => return Err(err(end, format!("truncated entry: nothing after {MARK}"))),
    }
    let (pc, ptext) = tok(1).ok_or_else(|| err(end, "truncated entry: no process".into()))?;
    let process: u64 = ptext.parse().map_err(|_| {
        err(
            pc,
            format!("process must be a non-negative integer, got {ptext:?}"),
        )
    })?;
    let (tc, ty) = tok(2).ok_or_else(|| err(end, "truncated entry: no type".into()))?;
    let kind = match ty {
        ":invoke" => OpType::Invoke,
        ":ok" => OpType::Ok,
        ":fail" => OpType::Fail,
        ":info" => return Ok(None),
        other => {
            return Err(err(
                tc,
                format!("unknown type {other:?} (expected :invoke, :ok, :fail or :info)"),
            ))
        }
    };
    let (fc, f) = tok(3).ok_or_else(|| err(end, "truncated entry: no function".into()))?;
    let f = match f {
        ":read" | ":write" | ":cas" => &f[1..],
        other => {
            return Err(err(
                fc,
                format!("unknown function {other:?} (expected :read, :write or :cas)"),
            ))
        }
    };
    let (vc, _) = tok(4).ok_or_else(|| err(end, "truncated entry: no value".into()))?;
    let vtext = s[vc - 1..].trim();
    let int = |t: &str| t.parse::<i64>().ok().map(Value::from);
    let value = match (kind, f, vtext) {
        (OpType::Invoke, "read", "nil") => Some(Value::Null),
        (OpType::Ok, "read", "nil") => Some(Value::Null),
        (OpType::Ok, "read", t) | (OpType::Invoke | OpType::Ok, "write", t) => int(t),
        (OpType::Fail, "read", ":timed-out") => {
            return Ok(Some(Op::new(
                line as u64,
                Process::Client(process),
                OpType::Info,
                "read",
                Value::Null,
            )))
        }
        (OpType::Invoke | OpType::Ok | OpType::Fail, "cas", t) => {
            let inner = t.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
            inner.and_then(|inner| {
                let parts: Vec<&str> = inner.split_whitespace().collect();
                match parts.as_slice() {
                    [a, b] => Some(Value::Array(vec![int(a)?, int(b)?])),
                    _ => None,
                }
            })
        }
        _ => None,
    };
    let Some(value) = value else {
        return Err(err(
            vc,
            format!(
                "unrecognised value {vtext:?} for {} {f} (the etcd log format has nil / N for read and write, [from to] for cas, :timed-out for a failed read)",
                ty
            ),
        ));
    };
    Ok(Some(Op::new(
        line as u64,
        Process::Client(process),
        kind,
        f,
        value,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form_with_porcupine_semantics() {
        let text = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
INFO  jepsen.util - 0\t:ok\t:read\t3\n\
INFO  jepsen.util - 1 :invoke :cas   [3 0]\n\
INFO  jepsen.util - 1\t:fail\t:cas\t[3 0]\n\
INFO  jepsen.util - 2\t:invoke\t:write\t4\n\
INFO  jepsen.util - 2\t:info\t:write\t:timed-out\n\
INFO  jepsen.core - something else\n\
INFO  jepsen.util - 3\t:invoke\t:read\tnil\n\
INFO  jepsen.util - 3\t:fail\t:read\t:timed-out\n";
        let p = parse_etcd(text).unwrap();
        let kinds: Vec<_> = p.ops.iter().map(|o| (o.kind, o.f.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (OpType::Invoke, "read"),
                (OpType::Ok, "read"),
                (OpType::Invoke, "cas"),
                (OpType::Fail, "cas"),
                (OpType::Invoke, "write"),
                (OpType::Invoke, "read"),
                (OpType::Info, "read"),
            ]
        );
        assert_eq!(p.ops[3].value, serde_json::json!([3, 0]));
        assert_eq!(p.lines, vec![1, 2, 3, 4, 5, 8, 9]);
    }

    #[test]
    fn truncated_and_unknown_lines_are_errors_with_columns() {
        let e = parse_etcd(
            "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 3\t:ok\t:re",
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown function"), "{e}");
        let e = parse_etcd("INFO  jepsen.util - 3\t:ok").unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
        let e = parse_etcd("INFO  jepsen.util - 3\t:bogus\t:read\tnil").unwrap_err();
        assert_eq!((e.line, e.column), (1, 23));
        assert!(parse_etcd("garbage").is_err());
    }
}
