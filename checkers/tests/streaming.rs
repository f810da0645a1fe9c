//! The streaming set (lost-writes) and dual-master checkers against the in-memory
//! implementations they replaced (kept verbatim in `tests/reference/`): on random
//! histories — interleaved processes, keys, failed and indeterminate ops, orphan
//! completions, malformed values, final reads, role observations, out-of-order
//! times — `check(&[Op])` and `check_jsonl` must both give the reference's report
//! exactly, also with long final reads (`long_reads`: read as sets by the
//! scanner, with hostile and broken lists; `reader`: the block reader against
//! the line reader on long lines). And the line scanner's fast path must
//! agree with the serde parse on random lines, or step aside.

#[path = "streaming/long_reads.rs"]
mod long_reads;
#[path = "streaming/reader.rs"]
mod reader;
#[path = "reference/dual_master.rs"]
mod ref_dual_master;
#[path = "reference/lost_writes.rs"]
mod ref_lost_writes;

use checkers::history::{parse_line, JsonlWriter};
use checkers::scan::{for_each_view, scan, OpView};
use checkers::{dual_master, lost_writes, Op, OpType, Process};
use serde_json::{json, Value};

/// splitmix64: small, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

fn random_value(rng: &mut Rng, f: &str, kind: OpType) -> Value {
    match (f, kind) {
        ("role", OpType::Ok) => {
            let role = *rng.pick(&["master", "replica", "master", "candidate"]);
            match rng.below(6) {
                0 => json!({"role": role}),
                1 => json!({"epoch": 1}),
                2 => json!("master"),
                _ => json!({"role": role, "epoch": rng.below(4), "master": "n1"}),
            }
        }
        ("read", OpType::Ok) => {
            if rng.chance(5) {
                return json!([1, "x"]);
            }
            if rng.chance(3) {
                return json!({"not": "a list"});
            }
            let n = rng.below(12);
            Value::Array((0..n).map(|_| json!(rng.below(16) as i64 - 2)).collect())
        }
        ("read", OpType::Invoke) => Value::Null,
        ("cas", _) => json!([rng.below(4), rng.below(4)]),
        _ => match rng.below(20) {
            0 => json!("x"),
            1 => json!(1.5),
            2 => Value::Null,
            3 => json!(u64::MAX),
            _ => json!(rng.below(16) as i64 - 2),
        },
    }
}

/// A random history of a few processes, keys and nodes.
fn random_history(rng: &mut Rng, len: usize) -> Vec<Op> {
    let fs = [
        "add", "add", "read", "role", "write", "cas", "append", "other",
    ];
    let mut open: Vec<Option<&str>> = vec![None; 6];
    let mut ops = Vec::new();
    let mut t = 0u64;
    let nodes = ["n1", "n2", "n3"];
    let keyed = rng.chance(50);
    for _ in 0..len {
        t += rng.below(5);
        let time = if rng.chance(10) {
            t.saturating_sub(7)
        } else {
            t
        };
        if rng.chance(3) {
            ops.push(Op::new(
                time,
                Process::Nemesis,
                OpType::Info,
                "start-partition",
                Value::Null,
            ));
            continue;
        }
        if rng.chance(25) {
            // A role observation: n1 mostly master, n2 master in the second half.
            let node = *rng.pick(&nodes);
            let master = match node {
                "n1" => rng.chance(80),
                "n2" => ops.len() > len / 2 && rng.chance(80),
                _ => rng.chance(10),
            };
            let role = if master { "master" } else { "replica" };
            let epoch = if node == "n1" { 1 } else { 1 + rng.below(2) };
            let v = json!({"role": role, "epoch": epoch});
            let mut op = Op::new(time, Process::Client(100), OpType::Ok, "role", v);
            op.node = Some(node.to_string());
            ops.push(op);
            continue;
        }
        let p = rng.below(open.len() as u64) as usize;
        let (f, kind) = match open[p] {
            Some(f) if !rng.chance(5) => {
                open[p] = None;
                let f = if rng.chance(3) { *rng.pick(&fs) } else { f };
                (
                    f,
                    *rng.pick(&[
                        OpType::Ok,
                        OpType::Ok,
                        OpType::Ok,
                        OpType::Fail,
                        OpType::Info,
                    ]),
                )
            }
            _ if rng.chance(3) => (*rng.pick(&fs), OpType::Ok),
            _ => {
                let f = *rng.pick(&fs);
                open[p] = Some(f);
                (f, OpType::Invoke)
            }
        };
        let mut op = Op::new(
            time,
            Process::Client(p as u64),
            kind,
            f,
            random_value(rng, f, kind),
        );
        if keyed || rng.chance(10) {
            op.key = Some((*rng.pick(&["a", "b", ""])).to_string());
        }
        if rng.chance(80) {
            op.node = Some((*rng.pick(&nodes)).to_string());
        }
        if f == "read" && rng.chance(40) {
            op.extra.insert("final".into(), json!(true));
        }
        if rng.chance(5) {
            op.extra
                .insert("final".into(), json!(rng.pick(&["yes", "true"])));
        }
        if kind == OpType::Ok && rng.chance(80) {
            let by = match rng.below(10) {
                0 => json!(7),
                _ => json!(rng.pick(&nodes)),
            };
            op.extra.insert("acked_by".into(), by);
        }
        if rng.chance(70) {
            let e = match rng.below(10) {
                0 => json!(-1),
                1 => json!("2"),
                _ => json!(rng.below(4)),
            };
            op.extra.insert("epoch".into(), e);
        }
        ops.push(op);
    }
    ops
}

/// The history as JSONL; some lines with spaces after `:` and `,`, some blank lines.
fn to_jsonl(rng: &mut Rng, ops: &[Op]) -> (Vec<Op>, String) {
    let mut w = JsonlWriter::new(Vec::new());
    let mut numbered = Vec::new();
    for op in ops {
        let mut op = op.clone();
        w.append(&mut op).expect("writing to memory");
        numbered.push(op);
    }
    let text = String::from_utf8(w.into_inner()).expect("utf-8");
    let mut out = String::new();
    for line in text.lines() {
        match rng.below(10) {
            0 => out.push_str(&line.replace("\":", "\": ").replace(",\"", ", \"")),
            1 => {
                out.push_str("  ");
                out.push_str(line);
                out.push_str("\n\t");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    (numbered, out)
}

#[test]
fn streaming_checkers_agree_with_the_in_memory_ones_on_random_histories() {
    let mut rng = Rng(0x5e7_c0de);
    let (mut lost, mut dual, mut unknown) = (0, 0, 0);
    let cases = 3000;
    for case in 0..cases {
        let len = 1 + rng.below(60) as usize;
        let (ops, text) = {
            let h = random_history(&mut rng, len);
            to_jsonl(&mut rng, &h)
        };
        let label = format!("case {case}");
        let tail = format!("\n{text}");
        let want = set_checker_agrees(&ops, &text, &label, &tail);
        lost += usize::from(want["lost_count"].as_u64() > Some(0));
        unknown += usize::from(want["valid"] == "unknown");

        let want = dual_master_agrees(&ops, &text, &label, &tail);
        dual += usize::from(!want["intervals"].as_array().is_none_or(Vec::is_empty));
    }
    // The comparison proves little unless the interesting outcomes are common.
    for (what, n) in [
        ("lost writes", lost),
        ("dual masters", dual),
        ("unknown", unknown),
    ] {
        assert!(n * 20 >= cases, "only {n} of {cases} cases with {what}");
    }
}

/// The set checker, in memory and streamed from `text` (the JSONL of `ops`), gives
/// the reference's report; returns it. A failure names `label`, then `tail`.
fn set_checker_agrees(ops: &[Op], text: &str, label: &str, tail: &str) -> Value {
    let want = serde_json::to_value(ref_lost_writes::check(ops)).expect("report");
    let got = serde_json::to_value(lost_writes::check(ops)).expect("report");
    assert_eq!(got, want, "{label}: set checker in memory{tail}");
    let streamed = lost_writes::check_jsonl(text.as_bytes()).expect("history parses");
    let streamed = serde_json::to_value(streamed).expect("report");
    assert_eq!(streamed, want, "{label}: set checker streamed{tail}");
    want
}

/// As [`set_checker_agrees`], for the dual-master checker.
fn dual_master_agrees(ops: &[Op], text: &str, label: &str, tail: &str) -> Value {
    let want = serde_json::to_value(ref_dual_master::check(ops)).expect("report");
    let got = serde_json::to_value(dual_master::check(ops)).expect("report");
    assert_eq!(got, want, "{label}: dual-master in memory{tail}");
    let streamed = dual_master::check_jsonl(text.as_bytes()).expect("history parses");
    let streamed = serde_json::to_value(streamed).expect("report");
    assert_eq!(streamed, want, "{label}: dual-master streamed{tail}");
    want
}

/// Histories of masters handing over: each write is acknowledged by the master of its
/// moment (one node per epoch, epochs in order) or, now and then, by a stale one (an
/// older epoch's node), with overlapping invocations on two keys, some writes without
/// an epoch or a key, and role observations.
fn handover_history(rng: &mut Rng) -> Vec<Op> {
    let nodes = ["n1", "n2", "n3"];
    let mut ops = Vec::new();
    let mut open: Vec<(u64, u64, &str, Option<&str>, u64)> = Vec::new();
    let (mut t, mut epoch) = (0u64, 1u64);
    let writes = 2 + rng.below(40);
    for v in 0..writes {
        t += rng.below(4);
        if rng.chance(15) {
            epoch += 1;
        }
        let p = v % 7;
        let key = match rng.below(10) {
            0 => None,
            1..=4 => Some("a"),
            _ => Some("b"),
        };
        let f = *rng.pick(&["add", "write", "append"]);
        let mut inv = Op::new(t, Process::Client(p), OpType::Invoke, f, json!(v));
        inv.key = key.map(String::from);
        ops.push(inv);
        let e = if rng.chance(20) {
            1 + rng.below(epoch)
        } else {
            epoch
        };
        open.push((t + rng.below(12), p, f, key, e * 1000 + v));
        if rng.chance(20) {
            let node = *rng.pick(&nodes);
            let master = node == nodes[(epoch % 3) as usize];
            let role = if master { "master" } else { "replica" };
            let mut r = Op::new(
                t,
                Process::Client(900),
                OpType::Ok,
                "role",
                json!({"role": role, "epoch": epoch}),
            );
            r.node = Some(node.to_string());
            ops.push(r);
        }
    }
    open.sort();
    for (end, p, f, key, tag) in open {
        let (e, v) = (tag / 1000, tag % 1000);
        let mut ok = Op::new(end.max(t), Process::Client(p), OpType::Ok, f, json!(v));
        ok.key = key.map(String::from);
        // Now and then another node in the same epoch (two masters of one term).
        let by = if rng.chance(8) {
            *rng.pick(&nodes)
        } else {
            nodes[(e % 3) as usize]
        };
        ok.extra.insert("acked_by".into(), json!(by));
        if !rng.chance(10) {
            ok.extra.insert("epoch".into(), json!(e));
        }
        ops.push(ok);
    }
    for (i, op) in ops.iter_mut().enumerate() {
        op.index = i as u64;
    }
    ops
}

#[test]
fn stale_acknowledgements_agree_with_the_brute_force_oracle() {
    let mut rng = Rng(0x57a1e);
    let (mut stale, mut clean) = (0, 0);
    let cases = 2000;
    for case in 0..cases {
        let ops = handover_history(&mut rng);
        let (_, text) = to_jsonl(&mut rng, &ops);
        let want = dual_master_agrees(&ops, &text, &format!("case {case}"), &format!("\n{text}"));
        if want["stale_acks"].as_u64() > Some(0) {
            stale += 1;
        } else {
            clean += 1;
        }
    }
    assert!(
        stale * 10 >= cases && clean * 10 >= cases,
        "{stale} stale, {clean} clean"
    );
}

#[test]
fn streaming_stops_at_the_first_bad_line_with_the_readers_error() {
    let good = r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"add","value":1}"#;
    for bad in [
        "{\"index\":1,\"time\":2,\"process\":1,\"type\":\"bogus\",\"f\":\"add\"}",
        "{\"index\":1,\"time\":2,\"proc",
        "{\"index\":1,\"time\":-2,\"process\":1,\"type\":\"ok\",\"f\":\"add\"}",
        "{\"index\":1,\"index\":1,\"time\":2,\"process\":1,\"type\":\"ok\",\"f\":\"add\"}",
    ] {
        let text = format!("{good}\n\n{bad}\n{good}\n");
        let want = checkers::history::read_jsonl(text.as_bytes())
            .expect_err("reader rejects it")
            .to_string();
        let got = lost_writes::check_jsonl(text.as_bytes()).expect_err("bad line");
        assert_eq!(got.to_string(), want);
        assert!(want.starts_with("line 3"), "{want}");
        let got = dual_master::check_jsonl(text.as_bytes()).expect_err("bad line");
        assert_eq!(got.to_string(), want);
    }
    let invalid_utf8 = [good.as_bytes(), b"\n{\"f\":\"\xff\"}\n"].concat();
    let want = checkers::history::read_jsonl(&invalid_utf8[..]).expect_err("not utf-8");
    let got = lost_writes::check_jsonl(&invalid_utf8[..]).expect_err("not utf-8");
    assert_eq!(got.to_string(), want.to_string());
}

/// A random line: the known fields in any order, sometimes missing, repeated or of a
/// wrong type; extra fields with nested values, escapes, floats, big integers.
fn random_line(rng: &mut Rng) -> String {
    // Half the lines stay inside the fast path's subset, so both paths get exercised.
    let noisy = rng.chance(50);
    let scalar = move |rng: &mut Rng| -> String {
        let clean = [
            "0",
            "7",
            "-3",
            "18446744073709551615",
            "-9223372036854775808",
            "true",
            "false",
            "null",
            "\"n1\"",
            "\"é\"",
            "\"\"",
            "\"master\"",
            "\"nemesis\"",
        ];
        let odd = [
            "-0",
            "1.5",
            "2e3",
            "18446744073709551616",
            "-9223372036854775809",
            "01",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "[1,]",
            "tru",
            "\"\t\"",
        ];
        if noisy && rng.chance(30) {
            rng.pick(&odd).to_string()
        } else {
            rng.pick(&clean).to_string()
        }
    };
    fn value(rng: &mut Rng, depth: u32, scalar: &dyn Fn(&mut Rng) -> String) -> String {
        match rng.below(if depth > 3 { 1 } else { 5 }) {
            0 | 1 => scalar(rng),
            2 => {
                let n = rng.below(4);
                let items: Vec<String> = (0..n).map(|_| value(rng, depth + 1, scalar)).collect();
                format!("[{}]", items.join(","))
            }
            3 => {
                let n = rng.below(4);
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        let k = rng.pick(&["role", "epoch", "x", "role"]);
                        format!("\"{k}\":{}", value(rng, depth + 1, scalar))
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
            _ => format!(
                "[{}]",
                (0..rng.below(6))
                    .map(|i| (i as i64 - 2).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
    let mut fields: Vec<String> = Vec::new();
    let mut put = |rng: &mut Rng, k: &str, v: String| {
        if !(noisy && rng.chance(4)) {
            fields.push(format!("\"{k}\":{v}"));
        }
        if noisy && rng.chance(3) {
            fields.push(format!("\"{k}\":{v}"));
        }
    };
    let number = |rng: &mut Rng| {
        if noisy && rng.chance(10) {
            scalar(rng)
        } else {
            rng.below(100).to_string()
        }
    };
    let (index, time) = (number(rng), number(rng));
    put(rng, "index", index);
    put(rng, "time", time);
    let p = match rng.below(10) {
        0 if noisy => scalar(rng),
        1 => "\"nemesis\"".into(),
        _ => format!("{}", rng.below(5)),
    };
    put(rng, "process", p);
    let types: &[&str] = if noisy {
        &["\"invoke\"", "\"ok\"", "\"Ok\"", "1"]
    } else {
        &["\"invoke\"", "\"ok\"", "\"fail\"", "\"info\""]
    };
    let t = rng.pick(types).to_string();
    put(rng, "type", t);
    let f = if noisy && rng.chance(10) {
        scalar(rng)
    } else {
        rng.pick(&["\"add\"", "\"read\"", "\"role\""]).to_string()
    };
    put(rng, "f", f);
    for k in ["key", "node", "value", "final", "acked_by", "epoch", "note"] {
        if rng.chance(50) {
            let v = match k {
                "key" | "node" if !noisy => rng.pick(&["\"a\"", "null"]).to_string(),
                _ => value(rng, 0, &scalar),
            };
            put(rng, k, v);
        }
    }
    // Shuffle the fields.
    for i in (1..fields.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        fields.swap(i, j);
    }
    let sep = if rng.chance(10) { " , " } else { "," };
    let mut line = format!("{{{}}}", fields.join(sep));
    if noisy && rng.chance(5) {
        line.push_str(" x");
    }
    if rng.chance(5) {
        line = line.replacen(':', " :\t", 2);
    }
    line
}

fn views_agree(fast: &OpView<'_>, slow: &OpView<'_>) -> Result<(), String> {
    let same = fast.index == slow.index
        && fast.time == slow.time
        && fast.process == slow.process
        && fast.kind == slow.kind
        && fast.f == slow.f
        && fast.key == slow.key
        && fast.node == slow.node
        && fast.is_final == slow.is_final
        && fast.acked_by == slow.acked_by
        && fast.epoch == slow.epoch
        && fast.value.to_value() == slow.value.to_value()
        && fast.value.as_i64() == slow.value.as_i64()
        && fast.value.as_u64() == slow.value.as_u64()
        && fast.value.as_str() == slow.value.as_str()
        && fast.value.is_array() == slow.value.is_array();
    if !same {
        return Err(format!("fields differ: {fast:?} vs {slow:?}"));
    }
    for field in ["role", "epoch"] {
        let (a, b) = (fast.value.get(field), slow.value.get(field));
        if a.map(|v| v.to_value()) != b.map(|v| v.to_value()) {
            return Err(format!("get({field}) differs"));
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    if fast.value.int_list(&mut a) != slow.value.int_list(&mut b) || a != b {
        return Err("int_list differs".into());
    }
    let elems = |v: &OpView<'_>| {
        v.value
            .elements()
            .map(|es| es.iter().map(|e| e.to_value()).collect::<Vec<_>>())
    };
    if elems(fast) != elems(slow) {
        return Err("elements differ".into());
    }
    Ok(())
}

#[test]
fn the_scanner_agrees_with_serde_or_steps_aside() {
    let mut rng = Rng(0xface);
    let (mut fast, mut fallback) = (0, 0);
    for _ in 0..40_000 {
        let line = random_line(&mut rng);
        let slow = parse_line(&line, 1);
        match scan(&line) {
            Some(v) => {
                fast += 1;
                let op = slow
                    .unwrap_or_else(|e| panic!("serde rejects what the scanner took: {e}\n{line}"));
                if let Err(e) = views_agree(&v, &OpView::of(&op)) {
                    panic!("{e}\n{line}");
                }
            }
            None => fallback += 1,
        }
    }
    assert!(
        fast > 4000 && fallback > 4000,
        "fast {fast}, fallback {fallback}"
    );
}

#[test]
fn streaming_reads_what_the_reader_reads() {
    let mut rng = Rng(7);
    let ops = random_history(&mut rng, 500);
    let (numbered, text) = to_jsonl(&mut rng, &ops);
    let mut seen = Vec::new();
    for_each_view(text.as_bytes(), |v| {
        seen.push((v.index, v.time, v.f.to_string(), v.value.to_value()))
    })
    .expect("parses");
    let want: Vec<_> = numbered
        .iter()
        .map(|o| (o.index, o.time, o.f.clone(), o.value.clone()))
        .collect();
    assert_eq!(seen, want);
}
