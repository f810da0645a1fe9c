//! Shell quoting: the one function every argument passes through before it reaches a
//! remote (or local) `sh -c`, and a small command builder on top of it.
//!
//! Data never goes into a command line any other way: [`sh_quote`] for single words,
//! [`Cmd`] to assemble a command from a program and its arguments.

use std::fmt;

/// Quotes `s` so that a POSIX shell reads it back as exactly one word equal to `s`
/// (bare when every character is safe, single-quoted otherwise). The one quoting
/// function of the workspace lives in the nemesis crate, which renders fault commands
/// without depending on the harness; this is it.
pub use nemesis::shell::quote as sh_quote;

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
