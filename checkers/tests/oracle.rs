//! Property test: random small concurrent register and cas-register histories (with
//! info, fail and never-completed ops, one or two keys) checked by the WGL search and
//! by a brute-force oracle that tries every order must agree. A fast subset runs
//! here; the benchmark (`cargo bench -p checkers --bench corpus`) runs 100,000.

mod common;

#[test]
fn search_agrees_with_brute_force_on_random_histories() {
    let stats = common::oracle_run(30_000, 0x0dd_ba11);
    let invalid = stats.cases - stats.valid;
    // Both answers must be well represented, or the comparison would prove little.
    assert!(
        stats.valid * 5 >= stats.cases,
        "only {} of {} valid",
        stats.valid,
        stats.cases
    );
    assert!(
        invalid * 5 >= stats.cases,
        "only {invalid} of {} invalid",
        stats.cases
    );
}

/// Known answers for the search's two prunings of open ops: twins (the same open op
/// twice) that a linearization needs both of, an open cas chain that makes a value
/// observable, and open ops nothing observes left out of a valid history that
/// would otherwise need them all tried.
#[test]
fn open_op_prunings_keep_the_answers() {
    use checkers::history::read_jsonl;
    use checkers::models::{ModelConfig, ModelKind};
    use checkers::operation::{pair, PairOptions};
    use checkers::Validity;
    let check = |lines: &[String]| {
        let text = lines.join("\n");
        let history = read_jsonl(text.as_bytes()).expect("parses");
        let ops = pair(&history, PairOptions::default()).expect("pairs");
        let cfg = ModelConfig {
            init: serde_json::json!(0),
            ..ModelConfig::default()
        };
        ModelKind::CasRegister
            .check(&ops, &cfg, &checkers::linear::CheckOptions::default())
            .expect("compiles")
            .verdict
    };
    let op = |i: u64, p: u64, ty: &str, f: &str, v: &str| {
        format!(
            r#"{{"index":{i},"time":{i},"process":{p},"type":"{ty}","f":"{f}","key":"k","value":{v}}}"#
        )
    };
    // Two open `cas 0 -> 1`, both needed: 0 -> 1 (read 1), write 0, 0 -> 1 (read 1).
    let twins = [
        op(0, 1, "invoke", "cas", "[0,1]"),
        op(1, 2, "invoke", "cas", "[0,1]"),
        op(2, 3, "invoke", "read", "null"),
        op(3, 3, "ok", "read", "1"),
        op(4, 3, "invoke", "write", "0"),
        op(5, 3, "ok", "write", "0"),
        op(6, 3, "invoke", "read", "null"),
        op(7, 3, "ok", "read", "1"),
    ];
    assert_eq!(check(&twins), Validity::Valid);
    // Without the second twin the second read of 1 is impossible.
    let one: Vec<String> = twins
        .iter()
        .filter(|l| !l.contains("\"process\":2"))
        .cloned()
        .collect();
    assert_eq!(check(&one), Validity::Invalid);
    // An open write of 5 that only an open `cas 5 -> 1` makes observable (read 1).
    let chain = [
        op(0, 1, "invoke", "write", "5"),
        op(1, 2, "invoke", "cas", "[5,1]"),
        op(2, 3, "invoke", "read", "null"),
        op(3, 3, "ok", "read", "1"),
    ];
    assert_eq!(check(&chain), Validity::Valid);
}
