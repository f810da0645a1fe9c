//! The history line scanner (`scan::scan_ints`, and the two drivers built on it)
//! against serde_json, as property tests: lines as the recorder writes them, the
//! same lines with their fields shuffled, whitespace between every token, and
//! hostile edits (quotes, backslashes, unicode escapes, digits, brackets, dropped
//! or doubled characters, repeated fields). Whenever the scanner reads a line it
//! must read exactly what serde reads, integer lists included; otherwise it must
//! step aside and leave the caller's buffer as it was. Whole histories of such
//! lines must stream through the one-thread and the parallel driver as the serde
//! reader reads them, errors included; and a line
//! read where it stands in a block (`scan_line_at`) must be read exactly as the line
//! reader's cut and trimmed line, or not at all; and read with its integer list
//! as a set (`scan_line_set_at`, what the parallel driver does for long lists),
//! exactly as without, the set holding the list's elements.

use checkers::blocks::for_each_view_par;
use checkers::history::{parse_line, read_jsonl};
use checkers::scan::{
    for_each_view, scan_ints, scan_line_at, scan_line_set_at, Members, OpView, ValueRef,
};
use checkers::Op;
use proptest::prelude::*;

/// A JSON value as text, chosen to sit on the edges of the fast path.
fn value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
        (0u64..1000).prop_map(|u| u.to_string()),
        Just("-0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("1.5".to_string()),
        Just("2e3".to_string()),
        Just("007".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("\"master\"".to_string()),
        Just("\"a\\\"b\"".to_string()),
        Just("\"\\u00e9t\\u00e9\"".to_string()),
        Just("\"é\"".to_string()),
        "[a-z]{0,12}".prop_map(|s| format!("\"{s}\"")),
    ];
    scalar.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|xs| format!("[{}]", xs.join(","))),
            prop::collection::vec(any::<i32>(), 0..40).prop_map(|xs| {
                let xs: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
                format!("[{}]", xs.join(","))
            }),
            // Lists of integers that are not quite JSON.
            prop::sample::select(vec![
                "[1,2,]",
                "[,1]",
                "[1,,2]",
                "[1 2]",
                "[-]",
                "[01]",
                "[1]]",
                "[[1]",
                "[1,-0]",
                "[1.0]",
                "[1e2]",
                "[2,-9223372036854775809]",
                "[+1]",
                "[1,\"2\"]",
                "[ ]",
            ])
            .prop_map(str::to_string),
            prop::collection::vec(("role|epoch|x", inner), 0..4).prop_map(|kv| {
                let kv: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", kv.join(","))
            }),
        ]
    })
}

/// The fields of one entry, as (name, JSON text), in the recorder's order.
fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
    let process = prop_oneof![
        (0u64..20).prop_map(|p| p.to_string()),
        Just("\"nemesis\"".to_string()),
        Just("2000003".to_string()),
    ];
    let kind = prop::sample::select(vec!["\"invoke\"", "\"ok\"", "\"fail\"", "\"info\""]);
    let f = prop::sample::select(vec![
        "\"add\"",
        "\"read\"",
        "\"role\"",
        "\"write\"",
        "\"a\\u0064d\"",
    ]);
    let name = prop::sample::select(vec!["\"n1\"", "\"set\"", "null", "\"k\\\"1\"", "\"é\""]);
    (
        (any::<u32>(), any::<u64>(), process, kind, f),
        (
            prop::option::of(name.clone()),
            prop::option::of(value()),
            prop::option::of(name.clone()),
            prop::option::of(name),
            prop::option::of(value()),
            prop::option::of(prop::sample::select(vec!["true", "false", "1"])),
            prop::option::of(value()),
        ),
    )
        .prop_map(|((index, time, process, kind, f), rest)| {
            let (key, value, node, acked_by, epoch, fin, note) = rest;
            let mut out = vec![
                ("index".to_string(), index.to_string()),
                ("time".to_string(), time.to_string()),
                ("process".to_string(), process),
                ("type".to_string(), kind.to_string()),
                ("f".to_string(), f.to_string()),
            ];
            for (k, v) in [
                ("key", key.map(str::to_string)),
                ("value", value),
                ("node", node.map(str::to_string)),
                ("acked_by", acked_by.map(str::to_string)),
                ("epoch", epoch),
                ("final", fin.map(str::to_string)),
                ("note", note),
            ] {
                if let Some(v) = v {
                    out.push((k.to_string(), v));
                }
            }
            out
        })
}

/// How a line is laid out and then damaged.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Double(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let hostile = prop::sample::select(vec![
        '"', '\\', ',', ':', '{', '}', '[', ']', '-', '0', '7', '.', 'e', ' ', '\t', 'u', 'n', 'é',
        '\u{1}',
    ]);
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), hostile).prop_map(|(i, c)| Edit::Insert(i, c)),
            any::<usize>().prop_map(Edit::Delete),
            any::<usize>().prop_map(Edit::Double),
        ],
        0..3,
    )
}

/// Builds the line: fields shuffled by `order` (when set), whitespace after
/// tokens outside strings (when `spaced`), a repeated field (when `repeat`).
fn line(
    mut fields: Vec<(String, String)>,
    order: Option<Vec<usize>>,
    spaced: bool,
    repeat: Option<usize>,
) -> String {
    if let Some(order) = order {
        for (i, j) in order.into_iter().enumerate() {
            let n = fields.len();
            fields.swap(i % n, j % n);
        }
    }
    if let Some(r) = repeat {
        let again = fields[r % fields.len()].clone();
        fields.push(again);
    }
    let text = format!(
        "{{{}}}",
        fields
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    if !spaced {
        return text;
    }
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for ch in text.chars() {
        out.push(ch);
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if ch == '"' {
            in_string = true;
        } else if matches!(ch, '{' | '[' | ',' | ':') {
            out.push_str(" \t");
        }
    }
    out.replace('}', " }").replace(']', "\n]")
}

fn damage(mut text: String, edits: &[Edit]) -> String {
    for e in edits {
        let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        if cuts.is_empty() {
            break;
        }
        let at = |i: usize| cuts[i % cuts.len()];
        match *e {
            Edit::Insert(i, c) => text.insert(at(i), c),
            Edit::Delete(i) => {
                text.remove(at(i));
            }
            Edit::Double(i) => {
                let c = text[at(i)..].chars().next().unwrap_or(' ');
                text.insert(at(i), c);
            }
        }
    }
    text
}

/// The scanner's reading of `text` equals serde's, or it stepped aside cleanly.
fn agrees(text: &str) -> Result<bool, TestCaseError> {
    let mut buf = vec![11, -7];
    let Some((mut view, range)) = scan_ints(text, &mut buf) else {
        prop_assert_eq!(&buf, &vec![11, -7], "a refused line left elements behind");
        return Ok(false);
    };
    let op = match parse_line(text, 1) {
        Ok(op) => op,
        Err(e) => return Err(TestCaseError::fail(format!("serde refuses it: {e}"))),
    };
    prop_assert_eq!(&buf[..2], &[11, -7]);
    if let (Some(r), ValueRef::Raw(raw)) = (range.clone(), view.value) {
        view.value = ValueRef::Ints(raw, &buf[r]);
    }
    let slow = OpView::of(&op);
    prop_assert_eq!(
        (view.index, view.time, view.process, view.kind, view.f),
        (slow.index, slow.time, slow.process, slow.kind, slow.f)
    );
    prop_assert_eq!((view.key, view.node), (slow.key, slow.node));
    prop_assert_eq!(
        (view.is_final, view.acked_by, view.epoch),
        (slow.is_final, slow.acked_by, slow.epoch)
    );
    prop_assert_eq!(view.value.to_value(), op.value.clone());
    prop_assert_eq!(view.value.as_i64(), slow.value.as_i64());
    prop_assert_eq!(view.value.as_u64(), slow.value.as_u64());
    prop_assert_eq!(view.value.as_str(), slow.value.as_str());
    prop_assert_eq!(view.value.is_array(), slow.value.is_array());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (fast_ints, slow_ints) = (
        view.value.ints(&mut a).map(<[i64]>::to_vec),
        slow.value.ints(&mut b).map(<[i64]>::to_vec),
    );
    prop_assert_eq!(&fast_ints, &slow_ints);
    // The elements were read on the scanner's side exactly when they are a list.
    prop_assert_eq!(range.is_some(), slow_ints.is_some());
    for field in ["role", "epoch"] {
        prop_assert_eq!(
            view.value.get(field).map(|v| v.to_value()),
            slow.value.get(field).map(|v| v.to_value())
        );
    }
    Ok(true)
}

/// `scan_line_at` on `line` inside a block (after `before`, followed by `after`)
/// reads exactly what `scan_ints` reads on that line as a line reader cuts and
/// trims it, and says where the next line starts; or it steps aside cleanly.
fn agrees_in_block(before: &str, line: &str, after: &str) -> Result<(), TestCaseError> {
    let text = format!("{before}{line}{after}");
    let at = before.len();
    let mut buf = vec![5];
    let Some((view, range, next)) = scan_line_at(&text, at, &mut buf) else {
        prop_assert_eq!(&buf, &vec![5], "a refused line left elements behind");
        return Ok(());
    };
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    prop_assert_eq!(
        next,
        (end + 1).min(text.len()),
        "where the next line starts"
    );
    let cut = text[at..end].trim();
    let mut want_buf = vec![5];
    let want = scan_ints(cut, &mut want_buf);
    prop_assert!(
        want.is_some(),
        "read in a block but not as a line: {:?}",
        cut
    );
    let (want, want_range) = want.unwrap_or_else(|| unreachable!());
    prop_assert_eq!(&buf, &want_buf);
    prop_assert_eq!(range, want_range);
    prop_assert_eq!(
        (view.index, view.time, view.process, view.kind, view.f),
        (want.index, want.time, want.process, want.kind, want.f)
    );
    prop_assert_eq!((view.key, view.node), (want.key, want.node));
    prop_assert_eq!(
        (view.is_final, view.acked_by, view.epoch),
        (want.is_final, want.acked_by, want.epoch)
    );
    prop_assert_eq!(view.value.to_value(), want.value.to_value());
    // And that reading is serde's (the line scanner's own property).
    agrees(cut)?;
    Ok(())
}

/// `scan_line_set_at` with every list read as a set reads what `scan_line_at`
/// reads, refuses what it refuses, and its set holds exactly the list's elements.
fn set_agrees(text: &str, at: usize, set_from: usize) -> Result<(), TestCaseError> {
    let (mut buf, mut set_buf) = (vec![3], vec![3]);
    let want = scan_line_at(text, at, &mut buf);
    let got = scan_line_set_at(text, at, &mut set_buf, set_from);
    let (Some((want, want_range, want_next)), Some((got, got_range, set, next))) = (want, got)
    else {
        prop_assert!(
            scan_line_at(text, at, &mut Vec::new()).is_none()
                && scan_line_set_at(text, at, &mut Vec::new(), set_from).is_none(),
            "one read it, the other not: {:?}",
            text
        );
        prop_assert_eq!(&set_buf, &vec![3], "a refused line left elements behind");
        return Ok(());
    };
    prop_assert_eq!(next, want_next);
    prop_assert_eq!(
        (got.index, got.time, got.process, got.kind, got.f),
        (want.index, want.time, want.process, want.kind, want.f)
    );
    prop_assert_eq!((got.key, got.node), (want.key, want.node));
    prop_assert_eq!(
        (got.is_final, got.acked_by, got.epoch),
        (want.is_final, want.acked_by, want.epoch)
    );
    prop_assert_eq!(got.value.to_value(), want.value.to_value());
    let listed = want_range.clone().map(|r| buf[r].to_vec());
    let long = want.value.as_str().is_none()
        && matches!(want.value, ValueRef::Raw(raw) if raw.len() >= set_from);
    match (set, listed) {
        (Some(set), Some(xs)) => {
            prop_assert!(long, "a short list read as a set");
            prop_assert_eq!(got_range, None);
            prop_assert_eq!(&set_buf, &vec![3], "a set's elements went to the buffer");
            let mut want_set: Vec<i64> = xs.clone();
            want_set.sort_unstable();
            want_set.dedup();
            let mut got_set: Vec<i64> = set.iter().collect();
            got_set.sort_unstable();
            prop_assert_eq!(&got_set, &want_set);
            prop_assert_eq!(set.list_len(), xs.len());
            prop_assert!(xs.iter().all(|&x| set.contains(x)));
            prop_assert!(!set.contains(i64::MIN + 1) || xs.contains(&(i64::MIN + 1)));
            // The same set as one made from the elements (as a checker does).
            let of = Members::of(&xs);
            prop_assert!(want_set.iter().all(|&x| of.contains(x) && set.contains(x)));
        }
        (None, listed) => {
            prop_assert!(listed.is_none() || !long, "a long list not read as a set");
            prop_assert_eq!(got_range, want_range);
            prop_assert_eq!(&set_buf, &buf);
        }
        (Some(_), None) => prop_assert!(false, "a set of what is no list of integers"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn a_list_read_as_a_set_is_the_list_read_one_by_one(
        fields in fields(),
        spaced in any::<bool>(),
        edits in edits(),
        set_from in prop::sample::select(vec![1usize, 2, 3, 6, 20]),
        after in prop::sample::select(vec!["", "\n", "\n{\"value\":[1]}\n", " x\n"]),
    ) {
        let clean = line(fields, None, spaced, None);
        for l in [clean.clone(), damage(clean, &edits)] {
            set_agrees(&format!("{l}{after}"), 0, set_from)?;
            set_agrees(&format!("{{}}\n{l}{after}"), 3, set_from)?;
        }
    }

    #[test]
    fn a_line_read_inside_its_block_is_the_line_readers_line(
        fields in fields(),
        spaced in any::<bool>(),
        edits in edits(),
        before in prop::sample::select(vec!["", "{}\n", "x\n", "  \n", "{\"index\":1}"]),
        pad in prop::sample::select(vec!["", " ", "\t \r", "\n", "\u{a0}", "\u{b}"]),
        after in prop::sample::select(vec!["", "\n", "\r\n", " \n{}", "}\n", " x\n", ",\"a\":1}\n", "\u{a0}\n"]),
    ) {
        let clean = line(fields, None, spaced, None);
        for l in [clean.clone(), damage(clean, &edits)] {
            agrees_in_block(before, &format!("{pad}{l}{pad}"), after)?;
            agrees_in_block(before, &l, after)?;
        }
    }

    #[test]
    fn the_scanner_reads_what_serde_reads_or_steps_aside(
        fields in fields(),
        order in prop::option::of(prop::collection::vec(any::<usize>(), 0..8)),
        spaced in any::<bool>(),
        repeat in prop::option::weighted(0.1, any::<usize>()),
        edits in edits(),
    ) {
        let clean = line(fields, order, spaced, repeat);
        agrees(&clean)?;
        agrees(&damage(clean, &edits))?;
    }

    #[test]
    fn both_drivers_stream_what_the_serde_reader_reads(
        lines in prop::collection::vec((fields(), any::<bool>(), edits()), 1..12),
        blank in any::<bool>(),
    ) {
        let mut text = String::new();
        for (f, spaced, e) in lines {
            let l = line(f, None, spaced, None);
            // Damage one line in four; the reader must stop there as serde does.
            let l = if e.len() == 2 { damage(l, &e).replace('\n', " ") } else { l.replace('\n', " ") };
            text.push_str(&l);
            text.push('\n');
            if blank {
                text.push_str("  \n");
            }
        }
        let want = read_jsonl(text.as_bytes())
            .map(|ops: Vec<Op>| ops.iter().map(|o| (o.index, o.f.clone(), o.value.clone(), o.value.as_i64())).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        let mut seen = Vec::new();
        let one = for_each_view(text.as_bytes(), |v| seen.push((v.index, v.f.to_string(), v.value.to_value(), v.value.as_i64())))
            .map(|()| std::mem::take(&mut seen))
            .map_err(|e| e.to_string());
        let par = for_each_view_par(text.as_bytes(), |v| seen.push((v.index, v.f.to_string(), v.value.to_value(), v.value.as_i64())))
            .map(|()| seen)
            .map_err(|e| e.to_string());
        prop_assert_eq!(&one, &want);
        prop_assert_eq!(&par, &want);
    }
}

#[test]
fn a_recorded_line_takes_the_fast_path_and_odd_ones_do_not_lose_it() {
    // The recorder's own layout, a final read of integers: read on the fast path.
    let rec = r#"{"index":7,"time":90,"process":1000001,"type":"ok","f":"read","key":"set","value":[0,1,-2,3],"node":"n2","final":true}"#;
    let mut buf = Vec::new();
    let (v, r) = scan_ints(rec, &mut buf).expect("fast path");
    assert_eq!(r, Some(0..4));
    assert_eq!(buf, vec![0, 1, -2, 3]);
    assert!(v.is_final);
    // Any order and spacing still reads on the fast path, with the same result.
    let odd = "{ \"value\" : [ 0 ,1, -2 , 3 ] , \"final\":true,\"node\":\"n2\",\"key\":\"set\",\"f\":\"read\",\"type\":\"ok\",\"process\":1000001,\"time\":90,\"index\":7 }";
    let mut buf2 = Vec::new();
    let (v2, r2) = scan_ints(odd, &mut buf2).expect("fast path");
    assert_eq!((r2, buf2), (Some(0..4), buf));
    assert_eq!((v2.index, v2.f, v2.node), (v.index, v.f, v.node));
    // An element outside i64 keeps the value raw; serde agrees it is no list of i64.
    let big = rec.replace("-2", "9223372036854775808");
    let mut buf3 = Vec::new();
    let (v3, r3) = scan_ints(&big, &mut buf3).expect("fast path");
    assert_eq!((r3, buf3.len()), (None, 0));
    assert!(v3.value.ints(&mut Vec::new()).is_none());
    // An escaped quote anywhere sends the line to serde.
    let esc = rec.replace("\"n2\"", "\"n\\\"2\"");
    assert!(scan_ints(&esc, &mut Vec::new()).is_none());
}
