//! A small EDN reader (the subset Jepsen and Knossos histories use, which is most of
//! EDN): nil, booleans, integers, floats, strings, characters, keywords, symbols,
//! lists, vectors, maps, sets, tagged values, `;` comments and `#_` discards. Every
//! error carries the line and column where reading stopped.

use serde_json::{Map, Number, Value};

/// An EDN value.
#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Char(char),
    Keyword(String),
    Symbol(String),
    List(Vec<Edn>),
    Vector(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
    Set(Vec<Edn>),
    Tagged(String, Box<Edn>),
}

/// Line and column (1-based) in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A syntax error and where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {}, column {}: {message}", pos.line, pos.column)]
pub struct EdnError {
    pub pos: Pos,
    pub message: String,
}

impl Edn {
    /// Converts to JSON: keywords and symbols become their names, sequences arrays,
    /// map keys strings, tagged values their inner value.
    pub fn to_json(&self) -> Value {
        match self {
            Edn::Nil => Value::Null,
            Edn::Bool(b) => Value::Bool(*b),
            Edn::Int(i) => Value::Number((*i).into()),
            Edn::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => Value::String(s.clone()),
            Edn::Char(c) => Value::String(c.to_string()),
            Edn::List(v) | Edn::Vector(v) | Edn::Set(v) => {
                Value::Array(v.iter().map(Edn::to_json).collect())
            }
            Edn::Map(kv) => {
                let mut m = Map::new();
                for (k, v) in kv {
                    let key = match k.to_json() {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    m.insert(key, v.to_json());
                }
                Value::Object(m)
            }
            Edn::Tagged(_, v) => v.to_json(),
        }
    }
}

/// Reads a history: either one top-level vector or list of forms, or a sequence of
/// top-level forms. Returns each element with the position it starts at.
pub fn read_elements(src: &str) -> Result<Vec<(Edn, Pos)>, EdnError> {
    let mut r = Reader::new(src);
    r.skip_ws()?;
    let mut out = Vec::new();
    match r.peek() {
        Some(open @ (b'[' | b'(')) => {
            let close = if open == b'[' { b']' } else { b')' };
            r.bump();
            loop {
                r.skip_ws()?;
                match r.peek() {
                    None => return Err(r.err("unterminated top-level collection")),
                    Some(c) if c == close => {
                        r.bump();
                        break;
                    }
                    Some(_) => {
                        let pos = r.pos();
                        if let Some(v) = r.read()? {
                            out.push((v, pos));
                        }
                    }
                }
            }
            r.skip_ws()?;
            if r.peek().is_some() {
                return Err(r.err("unexpected text after the history's closing bracket"));
            }
        }
        _ => loop {
            r.skip_ws()?;
            if r.peek().is_none() {
                break;
            }
            let pos = r.pos();
            if let Some(v) = r.read()? {
                out.push((v, pos));
            }
        },
    }
    Ok(out)
}

/// Reads exactly one value from `src`.
pub fn read_one(src: &str) -> Result<Edn, EdnError> {
    let mut r = Reader::new(src);
    r.skip_ws()?;
    let v = loop {
        if r.peek().is_none() {
            return Err(r.err("no value"));
        }
        if let Some(v) = r.read()? {
            break v;
        }
        r.skip_ws()?;
    };
    r.skip_ws()?;
    if r.peek().is_some() {
        return Err(r.err("unexpected text after the value"));
    }
    Ok(v)
}

struct Reader<'a> {
    src: &'a [u8],
    i: usize,
    line: usize,
    col: usize,
}

fn is_delim(c: u8) -> bool {
    c.is_ascii_whitespace() || b",()[]{}\";".contains(&c)
}

impl<'a> Reader<'a> {
    fn new(src: &'a str) -> Self {
        Reader {
            src: src.as_bytes(),
            i: 0,
            line: 1,
            col: 1,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.col,
        }
    }

    fn err(&self, message: impl Into<String>) -> EdnError {
        EdnError {
            pos: self.pos(),
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if c & 0xC0 != 0x80 {
            self.col += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) -> Result<(), EdnError> {
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || c == b',' {
                self.bump();
            } else if c == b';' {
                while let Some(c) = self.bump() {
                    if c == b'\n' {
                        break;
                    }
                }
            } else if c == b'#' && self.src.get(self.i + 1) == Some(&b'_') {
                self.bump();
                self.bump();
                self.skip_ws()?;
                self.read()?;
            } else {
                break;
            }
        }
        Ok(())
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        while let Some(c) = self.peek() {
            if is_delim(c) {
                break;
            }
            self.bump();
        }
        std::str::from_utf8(&self.src[start..self.i]).unwrap_or("")
    }

    fn seq(&mut self, close: u8, what: &str) -> Result<Vec<Edn>, EdnError> {
        let open = self.pos();
        let mut items = Vec::new();
        loop {
            self.skip_ws()?;
            match self.peek() {
                None => {
                    return Err(self.err(format!(
                        "unterminated {what} opened at line {}, column {}",
                        open.line,
                        open.column - 1
                    )))
                }
                Some(c) if c == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => {
                    if let Some(v) = self.read()? {
                        items.push(v);
                    }
                }
            }
        }
    }

    /// Reads one form; `None` for a form that reads as nothing (never, today).
    fn read(&mut self) -> Result<Option<Edn>, EdnError> {
        self.skip_ws()?;
        let Some(c) = self.peek() else {
            return Err(self.err("unexpected end of input"));
        };
        let v = match c {
            b'(' => {
                self.bump();
                Edn::List(self.seq(b')', "list")?)
            }
            b'[' => {
                self.bump();
                Edn::Vector(self.seq(b']', "vector")?)
            }
            b'{' => {
                self.bump();
                let at = self.pos();
                let items = self.seq(b'}', "map")?;
                if items.len() % 2 != 0 {
                    return Err(EdnError {
                        pos: Pos {
                            line: at.line,
                            column: at.column.saturating_sub(1),
                        },
                        message: "map has a key without a value".into(),
                    });
                }
                let mut it = items.into_iter();
                let mut kv = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    kv.push((k, v));
                }
                Edn::Map(kv)
            }
            b')' | b']' | b'}' => {
                return Err(self.err(format!("unexpected '{}'", c as char)));
            }
            b'"' => {
                self.bump();
                Edn::Str(self.string()?)
            }
            b'\\' => {
                self.bump();
                let t = self.token();
                Edn::Char(match t {
                    "newline" => '\n',
                    "space" => ' ',
                    "tab" => '\t',
                    "return" => '\r',
                    _ => {
                        let mut cs = t.chars();
                        match (cs.next(), cs.next()) {
                            (Some(ch), None) => ch,
                            _ => return Err(self.err(format!("bad character literal \\{t}"))),
                        }
                    }
                })
            }
            b'#' => {
                self.bump();
                match self.peek() {
                    Some(b'{') => {
                        self.bump();
                        Edn::Set(self.seq(b'}', "set")?)
                    }
                    _ => {
                        let tag = self.token().to_string();
                        if tag.is_empty() {
                            return Err(self.err("bad dispatch character after '#'"));
                        }
                        let Some(inner) = self.read()? else {
                            return Err(self.err("tag without a value"));
                        };
                        Edn::Tagged(tag, Box::new(inner))
                    }
                }
            }
            b':' => {
                self.bump();
                let t = self.token();
                if t.is_empty() {
                    return Err(self.err("empty keyword"));
                }
                Edn::Keyword(t.to_string())
            }
            _ => {
                let at = self.pos();
                let t = self.token();
                if t.is_empty() {
                    return Err(self.err(format!("unexpected character {:?}", c as char)));
                }
                atom(t).ok_or_else(|| EdnError {
                    pos: at,
                    message: format!("bad number {t:?}"),
                })?
            }
        };
        Ok(Some(v))
    }

    fn string(&mut self) -> Result<String, EdnError> {
        let mut out = Vec::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.bump() else {
                        return Err(self.err("unterminated string"));
                    };
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'\\' | b'"' => out.push(e),
                        b'u' => {
                            let hex: String =
                                (0..4).filter_map(|_| self.bump().map(char::from)).collect();
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err(format!("bad unicode escape \\u{hex}")))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        other => return Err(self.err(format!("bad escape \\{}", other as char))),
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

fn atom(t: &str) -> Option<Edn> {
    match t {
        "nil" => return Some(Edn::Nil),
        "true" => return Some(Edn::Bool(true)),
        "false" => return Some(Edn::Bool(false)),
        _ => {}
    }
    let first = t.as_bytes()[0];
    let numeric = first.is_ascii_digit()
        || ((first == b'-' || first == b'+') && t.len() > 1 && t.as_bytes()[1].is_ascii_digit());
    if !numeric {
        return Some(Edn::Symbol(t.to_string()));
    }
    let body = t.strip_suffix('N').unwrap_or(t);
    if let Ok(i) = body.parse::<i64>() {
        return Some(Edn::Int(i));
    }
    let body = t.strip_suffix('M').unwrap_or(t);
    body.parse::<f64>().ok().map(Edn::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_knossos_shapes() {
        let src = "; comment\n[{:process 1, :type :invoke, :f :cas, :value [1 2]}\n {:process :nemesis, :type :info, :f :start, :value #{1 2} :x #inst \"2020\" :s \"a\\\"b\" #_ :gone :c \\a}]";
        let els = read_elements(src).unwrap();
        assert_eq!(els.len(), 2);
        assert_eq!(els[0].1, Pos { line: 2, column: 2 });
        assert_eq!(els[1].1, Pos { line: 3, column: 2 });
        let json = els[1].0.to_json();
        assert_eq!(json["process"], "nemesis");
        assert_eq!(json["value"], serde_json::json!([1, 2]));
        assert_eq!(json["s"], "a\"b");
        assert_eq!(json["c"], "a");
        assert!(json.get("gone").is_none());
        assert_eq!(read_one("-12").unwrap(), Edn::Int(-12));
        assert_eq!(read_one("1.5").unwrap(), Edn::Float(1.5));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = read_elements("[{:a 1}\n {:b ]").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, column: 6 });
        let e = read_elements("[{:a 1}\n {:b 2}").unwrap_err();
        assert!(e.message.contains("unterminated top-level"), "{e}");
        let e = read_elements("{:a \"open").unwrap_err();
        assert!(e.message.contains("unterminated string"), "{e}");
        let e = read_elements("{:a 1 :b}").unwrap_err();
        assert!(e.message.contains("without a value"), "{e}");
        let e = read_elements("{:a 12x}").unwrap_err();
        assert_eq!(
            (e.pos.column, e.message.as_str()),
            (5, "bad number \"12x\"")
        );
    }
}
