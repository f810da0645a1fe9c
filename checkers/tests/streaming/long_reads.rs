//! Long final reads (what the scanner reads straight into a set): random
//! histories with lists on both sides of `SET_FROM`, holding repeats, negative,
//! huge and boundary elements, some damaged in place (blanks, floats, `-0`,
//! nested lists, strings, out-of-range or empty elements, a missing `]`); both
//! streaming checkers must give the reference's report, or the reader's error.

use super::{
    dual_master_agrees, random_history, ref_dual_master, ref_lost_writes, set_checker_agrees,
    to_jsonl, Rng,
};
use checkers::history::JsonlWriter;
use checkers::{dual_master, lost_writes, Op, OpType, Process};
use serde_json::{json, Value};

/// A long final read: mostly every element `0..n`, some missing, some repeated,
/// shuffled a little; sometimes negative, huge or boundary values (the
/// sets keep values below a limit of at least 2^16 as bits, the rest listed).
fn long_read(rng: &mut Rng, n: usize) -> Vec<i64> {
    let mut xs: Vec<i64> = (0..n as i64).filter(|_| !rng.chance(3)).collect();
    let limit = 64 * n as i64 + (1 << 16);
    // The histories' writes include -2 and -1: sets list negative values apart.
    for v in [-2, -1] {
        if rng.chance(50) {
            let at = rng.below(xs.len() as u64 + 1) as usize;
            xs.insert(at, v);
        }
    }
    for _ in 0..rng.below(6) {
        let odd = *rng.pick(&[
            -1,
            -2,
            i64::MIN,
            i64::MAX,
            1 << 40,
            limit - 1,
            limit,
            limit + 1,
            (1 << 16) - 1,
            1 << 16,
            (1 << 16) + 1,
            3,
            7,
        ]);
        let at = rng.below(xs.len() as u64 + 1) as usize;
        xs.insert(at, odd);
    }
    for _ in 0..rng.below(20) {
        let (i, j) = (
            rng.below(xs.len().max(1) as u64),
            rng.below(xs.len().max(1) as u64),
        );
        if !xs.is_empty() {
            xs.swap(i as usize, j as usize);
        }
    }
    xs
}

/// Damages a long line's integer list in place, as a hostile or broken writer
/// might: blanks, a float, `-0`, a leading zero, a nested list, a string, an
/// element past `i64`, an empty element, or a missing `]`.
fn damage_list(rng: &mut Rng, line: &str) -> String {
    let Some(open) = line.find("\"value\":[") else {
        return line.to_string();
    };
    let commas: Vec<usize> = line[open..]
        .match_indices(',')
        .map(|(i, _)| open + i)
        .take_while(|&i| {
            !line[i..].starts_with(",\"node\"") && !line[i..].starts_with(",\"final\"")
        })
        .collect();
    if commas.len() < 2 {
        return line.to_string();
    }
    let at = commas[rng.below(commas.len() as u64 - 1) as usize];
    let with = *rng.pick(&[
        ", ",
        " ,\t",
        ",1.5,",
        ",-0,",
        ",01,",
        ",[1],",
        ",\"7\",",
        ",9223372036854775808,",
        ",,",
        ",-,",
        "]",
    ]);
    format!("{}{with}{}", &line[..at], &line[at + 1..])
}

#[test]
fn long_final_reads_are_checked_as_the_in_memory_checkers_do() {
    use checkers::history::read_jsonl;
    use checkers::scan::SET_FROM;
    let mut rng = Rng(0x10_0f1a1);
    let (mut damaged, mut refused, mut as_sets) = (0, 0, 0);
    let cases = 160;
    for case in 0..cases {
        let len = 1 + rng.below(40) as usize;
        let mut ops = random_history(&mut rng, len);
        let keyed = rng.chance(50);
        for r in 0..1 + rng.below(3) {
            // Lists on both sides of the size the scanner reads into a set.
            let n = if case % 20 == 0 {
                SET_FROM
            } else {
                500 + rng.below(8000) as usize
            };
            let p = Process::Client(50 + r);
            let t = 1000 + r;
            let mut inv = Op::new(t, p, OpType::Invoke, "read", Value::Null);
            let mut ok = Op::new(t + 1, p, OpType::Ok, "read", json!(long_read(&mut rng, n)));
            for op in [&mut inv, &mut ok] {
                op.key = keyed.then(|| "a".to_string());
                op.node = Some(format!("n{}", r + 1));
                op.extra.insert("final".into(), json!(true));
            }
            let at = rng.below(ops.len() as u64 + 1) as usize;
            ops.insert(at, ok);
            ops.insert(at, inv);
        }
        let (_, clean) = to_jsonl(&mut rng, &ops);
        let mut text = String::new();
        for line in clean.lines() {
            if line.len() > 2000 && rng.chance(30) {
                damaged += 1;
                text.push_str(&damage_list(&mut rng, line));
            } else {
                text.push_str(line);
            }
            as_sets += usize::from(line.len() >= SET_FROM + 200);
            text.push('\n');
        }
        let parsed = match read_jsonl(text.as_bytes()) {
            Ok(ops) => ops,
            Err(want) => {
                // A broken list: the same error, at the same line, from both.
                refused += 1;
                let got = lost_writes::check_jsonl(text.as_bytes()).expect_err("refused");
                assert_eq!(got.to_string(), want.to_string(), "case {case}");
                let got = dual_master::check_jsonl(text.as_bytes()).expect_err("refused");
                assert_eq!(got.to_string(), want.to_string(), "case {case}");
                continue;
            }
        };
        let label = format!("case {case}");
        set_checker_agrees(&parsed, &text, &label, "");
        dual_master_agrees(&parsed, &text, &label, "");
    }
    assert!(
        damaged > 20 && refused > 5 && as_sets > 50,
        "{damaged} damaged, {refused} refused, {as_sets} read as sets"
    );
}

#[test]
fn a_long_final_read_keeps_negative_and_huge_elements() {
    // Two masters at once, both acknowledging writes; one long final read (read as
    // a set by the scanner) holding -1, 2^40 and 0..6000 but not -5 or 2^41.
    let mut ops = Vec::new();
    let role = |t: u64, node: &str| {
        let mut op = Op::new(
            t,
            Process::Client(100),
            OpType::Ok,
            "role",
            json!({"role": "master", "epoch": 1}),
        );
        op.node = Some(node.to_string());
        op
    };
    ops.push(role(1, "n1"));
    ops.push(role(2, "n2"));
    for (i, (v, by)) in [
        (-1i64, "n1"),
        (1 << 40, "n2"),
        (-5, "n1"),
        (1 << 41, "n2"),
        (7, "n1"),
    ]
    .into_iter()
    .enumerate()
    {
        let p = Process::Client(i as u64);
        let t = 10 + 10 * i as u64;
        let mut inv = Op::new(t, p, OpType::Invoke, "add", json!(v));
        inv.key = Some("s".into());
        ops.push(inv);
        let mut ok = Op::new(t + 1, p, OpType::Ok, "add", json!(v));
        ok.key = Some("s".into());
        ok.extra.insert("acked_by".into(), json!(by));
        ok.extra.insert("epoch".into(), json!(1));
        ops.push(ok);
    }
    ops.push(role(100, "n1"));
    ops.push(role(101, "n2"));
    let mut held: Vec<i64> = (0..6000).collect();
    held.extend([-1, 1 << 40]);
    let p = Process::Client(50);
    let mut inv = Op::new(200, p, OpType::Invoke, "read", Value::Null);
    let mut ok = Op::new(201, p, OpType::Ok, "read", json!(held));
    for op in [&mut inv, &mut ok] {
        op.key = Some("s".into());
        op.node = Some("n3".into());
        op.extra.insert("final".into(), json!(true));
    }
    ops.extend([inv, ok]);
    let mut w = JsonlWriter::new(Vec::new());
    for op in &mut ops {
        w.append(op).expect("writing to memory");
    }
    let text = w.into_inner();
    assert!(text.len() > checkers::scan::SET_FROM);
    let set = lost_writes::check_jsonl(&text[..]).expect("parses");
    assert_eq!(
        set.lost.iter().map(|w| w.element).collect::<Vec<_>>(),
        vec![-5, 1 << 41]
    );
    assert_eq!(
        serde_json::to_value(&set).expect("report"),
        serde_json::to_value(ref_lost_writes::check(&ops)).expect("report")
    );
    let dual = dual_master::check_jsonl(&text[..]).expect("parses");
    let lost: Vec<Value> = dual.intervals[0]
        .masters
        .iter()
        .flat_map(|s| s.lost.iter().map(|w| w.value.clone()))
        .collect();
    assert_eq!(lost, vec![json!(-5), json!(1u64 << 41)]);
    assert_eq!(
        serde_json::to_value(&dual).expect("report"),
        serde_json::to_value(ref_dual_master::check(&ops)).expect("report")
    );
}

#[test]
fn a_large_report_built_in_halves_is_exact() {
    // 48k elements and 30k lost or divergent writes: the set checker's report
    // passes (in two halves from 16k of either) run split, with every category
    // spread over both halves; known answers, and the reference's report.
    let n = 48_000i64;
    let mut ops = Vec::new();
    let mut t = 0;
    for e in 0..n {
        let p = Process::Client(1 + (e % 3) as u64);
        let done = if e % 97 == 0 {
            OpType::Fail
        } else {
            OpType::Ok
        };
        t += 10;
        ops.push(Op::new(t, p, OpType::Invoke, "add", json!(e)));
        let mut ok = Op::new(t + 5, p, done, "add", json!(e));
        ok.extra.insert("acked_by".into(), json!("n1"));
        ops.push(ok);
    }
    // n1 holds every third element and the failed ones, n2 all but every fifth;
    // both hold some never added (unexpected).
    let n1: Vec<i64> = (0..n)
        .filter(|e| e % 3 == 0 || e % 97 == 0)
        .chain([n + 5, -9])
        .collect();
    let n2: Vec<i64> = (0..n).filter(|e| e % 5 != 0).chain([n + 1, -9]).collect();
    for (i, (node, held)) in [("n1", n1), ("n2", n2)].into_iter().enumerate() {
        let p = Process::Client(10 + i as u64);
        let mut inv = Op::new(t + 100, p, OpType::Invoke, "read", Value::Null);
        let mut ok = Op::new(t + 200, p, OpType::Ok, "read", json!(held));
        for op in [&mut inv, &mut ok] {
            op.node = Some(node.into());
            op.extra.insert("final".into(), json!(true));
        }
        ops.extend([inv, ok]);
    }
    let mut w = JsonlWriter::new(Vec::new());
    for op in &mut ops {
        w.append(op).expect("writing to memory");
    }
    let text = w.into_inner();
    let r = lost_writes::check_jsonl(&text[..]).expect("parses");
    let acked = |e: &i64| e % 97 != 0;
    let want_lost: Vec<i64> = (0..n)
        .filter(|e| acked(e) && e % 3 != 0 && e % 5 == 0)
        .collect();
    let want_divergent: Vec<i64> = (0..n)
        .filter(|e| acked(e) && ((e % 3 == 0) != (e % 5 != 0)))
        .collect();
    assert!(want_divergent.len() > 16_384 && n > 16_384);
    assert_eq!(
        r.lost.iter().map(|w| w.element).collect::<Vec<_>>(),
        want_lost
    );
    assert_eq!(
        r.divergent.iter().map(|w| w.element).collect::<Vec<_>>(),
        want_divergent
    );
    for w in r.lost.iter().chain(&r.divergent) {
        let on: Vec<&str> = [("n1", w.element % 3 != 0), ("n2", w.element % 5 == 0)]
            .into_iter()
            .filter_map(|(n, missing)| missing.then_some(n))
            .collect();
        assert_eq!(w.missing_on, on, "{}", w.element);
    }
    let failed: Vec<i64> = (0..n).filter(|e| e % 97 == 0).collect();
    assert_eq!(r.failed_but_present_count, failed.len());
    assert_eq!(r.failed_but_present, failed[..20].to_vec());
    assert_eq!(r.unexpected, vec![-9, n + 1, n + 5]);
    assert_eq!(
        serde_json::to_value(&r).expect("report"),
        serde_json::to_value(ref_lost_writes::check(&ops)).expect("report")
    );
}
