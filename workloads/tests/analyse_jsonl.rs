//! `WorkloadKind::analyse_jsonl` (the set workload's checkers in one streaming pass
//! over the file) must give exactly the results of `analyse_with` on the history
//! read into memory: same checkers, verdicts, summaries and details, on random set
//! histories with failovers, lost writes, faults, masterless role answers and a
//! latency budget; and the other workloads, which read the history, likewise.

use checkers::history::{read_jsonl, JsonlWriter};
use checkers::{Op, OpType, Process};
use serde_json::{json, Value};
use std::time::Duration;
use workloads::{AnalyseOptions, WorkloadKind};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// A set run: clients add through n1 then n2 (with a window where both accept),
/// role observations, a partition, final reads that miss some elements.
fn set_history(rng: &mut Rng, ops: u64, masterless: bool) -> String {
    let mut w = JsonlWriter::new(Vec::new());
    let mut put = |mut op: Op| w.append(&mut op).expect("writing to memory");
    let switch = ops / 2;
    let mut t = 0;
    let mut present = Vec::new();
    for i in 0..ops {
        t += 1 + rng.below(3) * 1_000_000;
        let p = Process::Client(i % 4);
        let mut inv = Op::new(t, p, OpType::Invoke, "add", json!(i));
        inv.key = Some("set".into());
        inv.node = Some(format!("n{}", 1 + rng.below(3)));
        put(inv);
        let done = match rng.below(10) {
            0 => OpType::Fail,
            1 => OpType::Info,
            _ => OpType::Ok,
        };
        let by = if i < switch || (i % 4 < 2 && i < switch + ops / 10) {
            "n1"
        } else {
            "n2"
        };
        let mut end = Op::new(t + rng.below(5_000_000), p, done, "add", json!(i));
        end.key = Some("set".into());
        if done == OpType::Ok {
            end.extra.insert("acked_by".into(), json!(by));
            end.extra
                .insert("epoch".into(), json!(if by == "n1" { 1 } else { 2 }));
        }
        put(end);
        if done != OpType::Fail && !(by == "n1" && i >= switch && rng.below(2) == 0) {
            present.push(i);
        }
        if i % 10 == 0 {
            for n in 1..=3 {
                let master = (n == 1 && i < switch + ops / 10) || (n == 2 && i >= switch);
                let role = if master { "master" } else { "replica" };
                let mut v = json!({"role": role, "epoch": if i >= switch { 2 } else { 1 }});
                if masterless {
                    v["masterless"] = json!(true);
                }
                let mut op = Op::new(t, Process::Client(100 + n), OpType::Ok, "role", v);
                op.node = Some(format!("n{n}"));
                put(op);
            }
        }
        if i == ops / 3 {
            put(Op::new(
                t,
                Process::Nemesis,
                OpType::Info,
                "start-partition",
                Value::Null,
            ));
        }
        if i == ops / 3 * 2 {
            put(Op::new(
                t,
                Process::Nemesis,
                OpType::Info,
                "stop-partition",
                Value::Null,
            ));
        }
    }
    for n in 1..=3u64 {
        let p = Process::Client(1000 + n);
        let mut r = Op::new(t + 10, p, OpType::Invoke, "read", Value::Null);
        r.key = Some("set".into());
        r.extra.insert("final".into(), json!(true));
        put(r);
        let held: Vec<u64> = present
            .iter()
            .copied()
            .filter(|_| n != 3 || rng.below(50) != 0)
            .collect();
        let mut ok = Op::new(t + 20, p, OpType::Ok, "read", json!(held));
        ok.key = Some("set".into());
        ok.node = Some(format!("n{n}"));
        ok.extra.insert("final".into(), json!(true));
        put(ok);
    }
    String::from_utf8(w.into_inner()).expect("utf-8")
}

fn both(kind: WorkloadKind, text: &str, opts: &AnalyseOptions) -> (Value, Value) {
    let history = read_jsonl(text.as_bytes()).expect("history parses");
    let want = serde_json::to_value(kind.analyse_with(&history, opts)).expect("results");
    let got = kind
        .analyse_jsonl(text.as_bytes(), opts)
        .expect("history parses");
    (serde_json::to_value(got).expect("results"), want)
}

#[test]
fn streamed_set_analysis_equals_the_in_memory_one() {
    let mut rng = Rng(0xa11);
    let mut invalid = 0;
    for case in 0..40 {
        let masterless = case % 5 == 4;
        let n = 50 + rng.below(400);
        let text = set_history(&mut rng, n, masterless);
        let budget = (case % 2 == 0).then(|| Duration::from_millis(rng.below(40)));
        let opts = AnalyseOptions {
            latency_budget: budget,
        };
        let (got, want) = both(WorkloadKind::Set, &text, &opts);
        assert_eq!(got, want, "case {case}");
        let names: Vec<&str> = want
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|c| c["checker"].as_str())
            .collect();
        assert_eq!(names, ["lost-writes", "dual-master", "availability"]);
        invalid += usize::from(want[0]["valid"] == "invalid");
    }
    assert!(invalid >= 10, "only {invalid} cases with lost writes");
}

#[test]
fn other_workloads_read_the_history_and_agree_too() {
    let text = concat!(
        "{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"key\":\"k\",\"value\":1}\n",
        "{\"index\":1,\"time\":2,\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"key\":\"k\",\"value\":1,\"acked_by\":\"n1\"}\n",
        "{\"index\":2,\"time\":3,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"value\":null}\n",
        "{\"index\":3,\"time\":4,\"process\":0,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"value\":2}\n",
    );
    let opts = AnalyseOptions::default();
    let (mut got, mut want) = both(WorkloadKind::Register, text, &opts);
    // The linearizability checker reports its own running time.
    for r in [&mut got, &mut want] {
        let elapsed = r[0]["details"]
            .as_object_mut()
            .map(|d| d.remove("elapsed_s"));
        assert!(elapsed.flatten().is_some(), "{r}");
    }
    assert_eq!(got, want);
    assert_eq!(want[0]["valid"], "invalid", "{want}");
    let bad = format!("{text}{{\"index\":4,\"time\"\n");
    for kind in [WorkloadKind::Set, WorkloadKind::Register] {
        let err = kind
            .analyse_jsonl(bad.as_bytes(), &opts)
            .expect_err("a bad line");
        assert!(err.to_string().starts_with("line 5"), "{err}");
    }
}
