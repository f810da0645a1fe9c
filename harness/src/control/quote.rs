//! Shell quoting: the one function every argument passes through before it reaches a
//! remote (or local) `sh -c`, and a small command builder on top of it.
//!
//! Data never goes into a command line any other way: [`sh_quote`] for single words,
//! [`Cmd`] to assemble a command from a program and its arguments.

use std::fmt;

/// Characters that are safe to leave unquoted in a POSIX shell word. `=` is left out on
/// purpose (a first word `A=b` would be an assignment), so is `~` (tilde expansion).
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '+' | '@' | '%')
}

/// Quotes `s` so that a POSIX shell reads it back as exactly one word equal to `s`.
///
/// Words made only of safe characters are returned as they are (keeps logs readable);
/// everything else is wrapped in single quotes, with each `'` written as `'\''`. The
/// empty string becomes `''`. A NUL byte cannot be part of any argument a program
/// receives; commands containing one are refused by `exec` rather than truncated.
pub fn sh_quote(s: &str) -> String {
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

/// A shell command assembled from a program and quoted arguments.
///
/// ```
/// use harness::control::quote::Cmd;
/// let c = Cmd::new("iptables").arg("-A").arg("splitbrain").arg("-s").arg("10.77.77.2");
/// assert_eq!(c.to_string(), "iptables -A splitbrain -s 10.77.77.2");
/// assert_eq!(Cmd::new("echo").arg("it's").to_string(), r"echo 'it'\''s'");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    words: Vec<String>,
}

impl Cmd {
    /// Starts a command; the program name is quoted like any argument.
    pub fn new(program: impl AsRef<str>) -> Cmd {
        Cmd {
            words: vec![sh_quote(program.as_ref())],
        }
    }

    /// Appends one argument, quoted.
    pub fn arg(mut self, arg: impl AsRef<str>) -> Cmd {
        self.words.push(sh_quote(arg.as_ref()));
        self
    }

    /// Appends several arguments, each quoted.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.words
            .extend(args.into_iter().map(|a| sh_quote(a.as_ref())));
        self
    }

    /// Appends shell syntax verbatim (`>`, `2>&1`, `&&`, `|`). Only for constant,
    /// trusted text written in our own source, never for data.
    pub fn raw(mut self, syntax: &'static str) -> Cmd {
        self.words.push(syntax.to_string());
        self
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("'"), r"''\'''");
        assert_eq!(sh_quote("A=b"), "'A=b'");
        assert_eq!(sh_quote("~"), "'~'");
        assert_eq!(sh_quote("$(id)"), "'$(id)'");
        assert_eq!(sh_quote("é"), "'é'");
    }

    #[test]
    fn builder_quotes_every_argument() {
        let c = Cmd::new("printf")
            .arg("%s\n")
            .args(["a;b", "x"])
            .raw(">")
            .arg("/tmp/o u t");
        assert_eq!(c.to_string(), "printf '%s\n' 'a;b' x > '/tmp/o u t'");
    }
}
