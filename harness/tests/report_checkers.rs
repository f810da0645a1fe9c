//! report.html and report.md for the register workload: the linearizability
//! counterexample is re-checked on the failing key and drawn (linearizability.html and
//! inline), and the dual-master intervals are listed with the writes each master
//! accepted. Known answer: n1 and n2 both act as master from 1 s to 2 s and accept
//! writes; a read of key k1 returns a value nobody wrote.

mod report_support;

use serde_json::{json, Value};
use std::io::Write;

fn line(out: &mut Vec<u8>, index: &mut u64, mut v: Value) {
    v["index"] = json!(*index);
    *index += 1;
    writeln!(out, "{v}").unwrap();
}

#[test]
fn counterexample_and_dual_masters_are_drawn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reg").join("20261122T101010");
    std::fs::create_dir_all(&dir).unwrap();
    let mut t = report_support::test_json("reg");
    t["workload"] = json!("register");
    std::fs::write(dir.join("test.json"), t.to_string()).unwrap();
    let (mut h, mut i) = (Vec::new(), 0u64);
    let ms = 1_000_000u64;
    // Role observations: n1 master epoch 1 throughout, n2 master epoch 2 from 1 s.
    for k in 0..30u64 {
        let at = k * 100 * ms;
        line(
            &mut h,
            &mut i,
            json!({"time": at, "process": 100, "type": "invoke", "f": "role", "value": null, "node": "n1"}),
        );
        line(
            &mut h,
            &mut i,
            json!({"time": at + 1, "process": 100, "type": "ok", "f": "role", "value": {"role": "master", "epoch": 1}, "node": "n1"}),
        );
        let role = if at >= 1000 * ms {
            json!({"role": "master", "epoch": 2})
        } else {
            json!({"role": "replica", "epoch": 1})
        };
        line(
            &mut h,
            &mut i,
            json!({"time": at + 2, "process": 101, "type": "invoke", "f": "role", "value": null, "node": "n2"}),
        );
        line(
            &mut h,
            &mut i,
            json!({"time": at + 3, "process": 101, "type": "ok", "f": "role", "value": role, "node": "n2"}),
        );
    }
    // Writes acknowledged by both masters during the overlap, then an impossible read.
    let ops = [
        (1200, 0, "write", json!(1), json!(1), "n1", Some(("n1", 1))),
        (1300, 1, "write", json!(2), json!(2), "n2", Some(("n2", 2))),
        (1600, 0, "read", Value::Null, json!(7), "n1", None),
    ];
    for (at, p, f, arg, res, node, by) in ops {
        let at = at * ms + 50;
        line(
            &mut h,
            &mut i,
            json!({"time": at, "process": p, "type": "invoke", "f": f, "key": "k1", "value": arg, "node": node}),
        );
        let mut ok = json!({"time": at + 5 * ms, "process": p, "type": "ok", "f": f, "key": "k1", "value": res, "node": node});
        if let Some((n, e)) = by {
            ok["acked_by"] = json!(n);
            ok["epoch"] = json!(e);
        }
        line(&mut h, &mut i, ok);
    }
    std::fs::write(dir.join("history.jsonl"), h).unwrap();

    let (run, files) = harness::report::rebuild(&dir).unwrap();
    let verdicts: Vec<(String, checkers::Validity)> = run
        .results
        .checkers
        .iter()
        .map(|c| (c.checker.clone(), c.valid))
        .collect();
    assert!(
        verdicts.contains(&("linearizable".into(), checkers::Validity::Invalid)),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("dual-master".into(), checkers::Validity::Invalid)),
        "{verdicts:?}"
    );
    assert!(files.iter().any(|f| f.ends_with("linearizability.html")));

    let page = std::fs::read_to_string(dir.join("linearizability.html")).unwrap();
    assert!(
        page.contains("key k1") && page.contains("#e53935"),
        "the blocking op is drawn red"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let linear = html
        .split("<div class=\"linear\">")
        .nth(1)
        .expect("inline counterexample");
    assert!(linear.contains("<svg") && linear.contains("#e53935"));
    assert!(html.contains("href=\"linearizability.html\""));
    let dual = html
        .split("<table class=\"dual\">")
        .nth(1)
        .expect("dual-master table");
    let dual = dual.split("</table>").next().unwrap();
    assert!(dual.contains("D1") && dual.contains("<td>n1</td>") && dual.contains("<td>n2</td>"));
    assert!(
        dual.contains("both-accepted-writes") || dual.contains("same-term"),
        "{dual}"
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("| D1 |") && md.contains("Failing key: `\"k1\"`"),
        "{md}"
    );
}
