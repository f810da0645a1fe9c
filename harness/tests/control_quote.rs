//! Property test of the one quoting function: any string (quotes, `;`, `$()`,
//! backticks, newlines, non-ASCII) survives `sh -c "printf %s <quoted>"` verbatim.

use harness::control::{sh_quote, Cmd};
use proptest::prelude::*;

fn through_sh(script: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Strings weighted towards shell metacharacters. NUL is excluded: no argument can
/// hold one, and `exec` refuses such commands.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("$(touch /tmp/splitbrain-pwned)".to_string()),
        Just("`id`".to_string()),
        Just(";".to_string()),
        Just("&&".to_string()),
        Just("|".to_string()),
        Just("\n".to_string()),
        Just("$HOME".to_string()),
        Just("*".to_string()),
        Just("~".to_string()),
        Just("'\\''".to_string()),
        Just("-n".to_string()),
        Just("%s".to_string()),
        "[^\u{0}]{0,4}",
        "[a-z=/.]{0,4}",
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_string_arrives_verbatim(s in hostile()) {
        let got = through_sh(&format!("printf %s {}", sh_quote(&s)));
        prop_assert_eq!(got, s);
        prop_assert!(!std::path::Path::new("/tmp/splitbrain-pwned").exists());
    }

    #[test]
    fn builder_keeps_word_boundaries(a in hostile(), b in hostile()) {
        let cmd = Cmd::new("printf").arg("%s|%s").arg(&a).arg(&b).to_string();
        prop_assert_eq!(through_sh(&cmd), format!("{a}|{b}"));
    }
}
