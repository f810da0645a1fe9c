//! Shell quoting: the one function every argument passes through before it reaches a
//! remote (or local) shell, here at the bottom of the dependency graph so that both
//! the fault renderers of this crate and the harness's control layer use it.

/// Characters that are safe to leave unquoted in a POSIX shell word. `=` is left out on
/// purpose (a first word `A=b` would be an assignment), so is `~` (tilde expansion).
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '+' | '@' | '%')
}

/// Quotes `s` so that a POSIX shell reads it back as exactly one word equal to `s`:
/// safe words stay bare (readable logs), everything else is single-quoted with each
/// `'` written as `'\''`; the empty string becomes `''`. This is the one quoting
/// function of the workspace: the harness's `control::sh_quote` is this function.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_safe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Joins a program and its arguments into one quoted command line.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_bare_and_hostile_ones_are_quoted() {
        assert_eq!(quote("10.77.77.11"), "10.77.77.11");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(join(["iptables", "-A", "x;y"]), "iptables -A 'x;y'");
    }
}
