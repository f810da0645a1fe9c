//! From a history's text to a linearizability verdict: parse in a [`Format`], pair
//! invocations with completions, pick the model, compile and search. Every input
//! problem comes back as one [`InputError`] naming the line and column of the first
//! bad record.

use crate::formats::{self, Format, FormatError, Parsed};
use crate::linear::{CheckOptions, CheckResult};
use crate::models::{ModelConfig, ModelKind};
use crate::operation::{pair, Operation};

/// A history that cannot be checked, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct InputError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl From<FormatError> for InputError {
    fn from(e: FormatError) -> Self {
        InputError {
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

/// A paired history with the model it will be checked against. The parsed ops
/// are not kept (a long history's `Op`s take several times its text): only the
/// source line of each, for messages.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub format: Format,
    pub model: ModelKind,
    pub config: ModelConfig,
    /// The source line of each parsed op, by position.
    pub lines: Vec<usize>,
    pub operations: Vec<Operation>,
}

impl Prepared {
    /// The source line of operation `i`'s invocation.
    pub fn line_of(&self, i: usize) -> usize {
        self.operations
            .get(i)
            .and_then(|o| self.lines.get(o.invoke_pos))
            .copied()
            .unwrap_or(0)
    }
}

/// Parses and pairs `text`; `model` overrides the format's default or the guess
/// from the functions used.
pub fn prepare(
    format: Format,
    model: Option<ModelKind>,
    text: &str,
) -> Result<Prepared, InputError> {
    prepare_parsed(format, model, formats::parse(format, text)?)
}

/// [`prepare`] for a history already parsed (so the caller can let go of its text
/// first); the ops are dropped once paired.
pub fn prepare_parsed(
    format: Format,
    model: Option<ModelKind>,
    mut parsed: Parsed,
) -> Result<Prepared, InputError> {
    drop_role_observations(&mut parsed);
    let operations = pair(&parsed.ops, format.pair_options()).map_err(|e| InputError {
        line: parsed.lines.get(e.pos).copied().unwrap_or(0),
        column: 1,
        message: e.message,
    })?;
    let model = match model.or(format.default_model()) {
        Some(m) => m,
        // A history without client ops is vacuously linearizable on any model.
        None if operations.is_empty() => ModelKind::Register,
        None => ModelKind::infer(&operations).ok_or_else(|| InputError {
            line: parsed.lines.first().copied().unwrap_or(1),
            column: 1,
            message: "cannot tell which model fits: no client op uses a known function \
                      (name one with --model)"
                .into(),
        })?,
    };
    let Parsed { ops, lines } = parsed;
    drop(ops);
    Ok(Prepared {
        format,
        model,
        config: format.model_config(),
        lines,
        operations,
    })
}

/// Leader observations (`f` = `role`, recorded by splitbrain for the dual-master
/// checker) ask a node about itself; they are no operations on the object checked.
fn drop_role_observations(parsed: &mut Parsed) {
    if !parsed.ops.iter().any(|o| o.f == "role") {
        return;
    }
    let (ops, lines): (Vec<_>, Vec<_>) = std::mem::take(&mut parsed.ops)
        .into_iter()
        .zip(std::mem::take(&mut parsed.lines))
        .filter(|(o, _)| o.f != "role")
        .unzip();
    parsed.ops = ops;
    parsed.lines = lines;
}

/// Runs the check.
pub fn check(p: &Prepared, opts: &CheckOptions) -> Result<CheckResult, InputError> {
    p.model
        .check(&p.operations, &p.config, opts)
        .map_err(|e| InputError {
            line: p.line_of(e.op),
            column: 1,
            message: e.message,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Validity;

    #[test]
    fn role_observations_are_dropped_and_lines_still_point_at_the_source() {
        let text = r#"{"index":0,"time":1,"process":2000000,"type":"invoke","f":"role","node":"n1"}
{"index":1,"time":2,"process":2000000,"type":"ok","f":"role","value":{"role":"master","epoch":1},"node":"n1"}
{"index":2,"time":3,"process":1,"type":"invoke","f":"write","key":"r0","value":1}
{"index":3,"time":4,"process":1,"type":"ok","f":"write","key":"r0","value":1}
{"index":4,"time":5,"process":1,"type":"invoke","f":"read","key":"r0","value":null}
{"index":5,"time":6,"process":1,"type":"ok","f":"read","key":"r0","value":1}
"#;
        let p = prepare(Format::Jsonl, None, text).unwrap();
        assert_eq!(p.model, ModelKind::Register);
        assert_eq!(p.operations.len(), 2);
        assert_eq!((p.line_of(0), p.line_of(1)), (3, 5));
        let r = check(&p, &CheckOptions::default()).unwrap();
        assert_eq!(r.verdict, Validity::Valid);
    }
}
