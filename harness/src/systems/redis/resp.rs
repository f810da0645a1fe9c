//! A small RESP2 client: encodes commands as arrays of bulk strings, parses every
//! RESP2 reply type with bounded sizes and depth, and keeps one TCP connection that is
//! dropped after any error (a reply may be half read). Errors say whether the request
//! provably never left this machine ([`CallError::NotSent`]), which the client uses to
//! tell `fail` from `info`.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest bulk string accepted (a whole set read fits easily).
const MAX_BULK: usize = 64 << 20;
/// Most elements in one array reply.
const MAX_ARRAY: usize = 4 << 20;
/// Deepest nesting of arrays (ROLE and SENTINEL replies nest two or three deep).
const MAX_DEPTH: usize = 8;
/// Longest simple line (status, error, integer, length header).
const MAX_LINE: usize = 64 << 10;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    /// `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A bulk or status reply as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Status(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// An integer reply, or a bulk/status holding an integer.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => self.text()?.trim().parse().ok(),
        }
    }

    pub fn items(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(v)) => Some(v),
            _ => None,
        }
    }
}

/// Why a call did not produce a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent (connect refused, unreachable, connect timed out).
    #[error("{0}")]
    NotSent(String),
    /// The request may have been sent and executed; no reply came.
    #[error("{0}")]
    Unknown(String),
}

/// Encodes one command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, args);
    out
}

/// Appends one command to `out` (no allocation beyond `out` growing: this runs once
/// per op).
pub fn encode_into(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for a in args {
        header(out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// `<kind><n>\r\n`, the decimal written by hand instead of through `format!`.
fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut digits = [0u8; 20];
    let (mut i, mut n) = (digits.len(), n);
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(kind);
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<String, String> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| format!("reading reply: {e}"))?;
    if n == 0 {
        return Err("connection closed by the server".into());
    }
    if !buf.ends_with(b"\r\n") {
        return Err(if n >= MAX_LINE {
            format!("reply line longer than {MAX_LINE} bytes")
        } else {
            "reply truncated (no CRLF)".into()
        });
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).map_err(|_| "reply line is not UTF-8".into())
}

fn length(text: &str, max: usize, what: &str) -> Result<Option<usize>, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("bad {what} length {text:?}"))?;
    match n {
        -1 => Ok(None),
        n if n < -1 => Err(format!("bad {what} length {n}")),
        n if n as u64 > max as u64 => Err(format!("{what} of {n} exceeds the limit of {max}")),
        n => Ok(Some(n as usize)),
    }
}

/// Reads one reply. Arrays are assembled on an explicit stack (no recursion, no
/// allocation per element beyond the element itself), bounded in depth.
pub async fn read_reply<R: AsyncBufRead + Unpin + Send>(r: &mut R) -> Result<Reply, String> {
    // Open arrays: (expected length, items so far).
    let mut open: Vec<(usize, Vec<Reply>)> = Vec::new();
    loop {
        let line = read_line(r).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let mut value = match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => rest
                .parse()
                .map(Reply::Int)
                .map_err(|_| format!("bad integer reply {rest:?}"))?,
            "$" => match length(rest, MAX_BULK, "bulk string")? {
                None => Reply::Bulk(None),
                Some(n) => {
                    let mut buf = vec![0u8; n + 2];
                    r.read_exact(&mut buf)
                        .await
                        .map_err(|e| format!("reading a bulk string of {n} bytes: {e}"))?;
                    if !buf.ends_with(b"\r\n") {
                        return Err("bulk string not followed by CRLF".into());
                    }
                    buf.truncate(n);
                    Reply::Bulk(Some(buf))
                }
            },
            "*" => match length(rest, MAX_ARRAY, "array")? {
                None => Reply::Array(None),
                Some(0) => Reply::Array(Some(Vec::new())),
                Some(n) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(format!("reply nested deeper than {MAX_DEPTH}"));
                    }
                    open.push((n, Vec::with_capacity(n.min(1024))));
                    continue;
                }
            },
            _ => return Err(format!("unknown reply type in {line:?}")),
        };
        // Hand the value to its array; close every array that is now full.
        loop {
            let Some((want, items)) = open.last_mut() else {
                return Ok(value);
            };
            items.push(value);
            if items.len() < *want {
                break;
            }
            let Some((_, full)) = open.pop() else {
                return Err("reply parser lost its place".into());
            };
            value = Reply::Array(Some(full));
        }
    }
}

/// One connection to a Redis server or Sentinel.
pub struct Conn {
    stream: BufReader<TcpStream>,
    pub addr: SocketAddr,
    /// The encoded request, kept between calls so its allocation is reused.
    request: Vec<u8>,
}

impl Conn {
    /// Connects within `timeout`; any failure is [`CallError::NotSent`].
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, CallError> {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(Conn {
                    stream: BufReader::new(s),
                    addr,
                    request: Vec::new(),
                })
            }
            Ok(Err(e)) => Err(CallError::NotSent(format!("connect to {addr}: {e}"))),
            Err(_) => Err(CallError::NotSent(format!(
                "connect to {addr}: timed out after {timeout:?}"
            ))),
        }
    }

    /// Sends every command in one write and reads one reply per command, all within
    /// `timeout`. Any error leaves the connection unusable: drop it.
    pub async fn pipeline(
        &mut self,
        cmds: &[&[&[u8]]],
        timeout: Duration,
    ) -> Result<Vec<Reply>, CallError> {
        let addr = self.addr;
        let mut out = std::mem::take(&mut self.request);
        out.clear();
        for c in cmds {
            encode_into(&mut out, c);
        }
        let work = async {
            self.stream
                .get_mut()
                .write_all(&out)
                .await
                .map_err(|e| format!("sending to {addr}: {e}"))?;
            let mut replies = Vec::with_capacity(cmds.len());
            for _ in cmds {
                replies.push(
                    read_reply(&mut self.stream)
                        .await
                        .map_err(|e| format!("{addr}: {e}"))?,
                );
            }
            Ok::<_, String>(replies)
        };
        let r = tokio::time::timeout(timeout, work).await;
        self.request = out;
        match r {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(CallError::Unknown(e)),
            Err(_) => Err(CallError::Unknown(format!(
                "{addr}: no reply within {timeout:?}"
            ))),
        }
    }

    /// One command.
    pub async fn call(&mut self, args: &[&[u8]], timeout: Duration) -> Result<Reply, CallError> {
        let mut r = self.pipeline(&[args], timeout).await?;
        r.pop().ok_or_else(|| CallError::Unknown("no reply".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply, String> {
        let mut r = BufReader::new(bytes);
        read_reply(&mut r).await
    }

    #[test]
    fn encodes_bulk_arrays() {
        assert_eq!(
            encode(&[b"SADD", b"set", b"42"]),
            b"*3\r\n$4\r\nSADD\r\n$3\r\nset\r\n$2\r\n42\r\n".to_vec()
        );
        assert_eq!(encode(&[b""]), b"*1\r\n$0\r\n\r\n".to_vec());
        let long = vec![b'x'; 1234567];
        let mut out = b"*1\r\n$1\r\na\r\n".to_vec();
        encode_into(&mut out, &[b"SET", &long[..10], &long]);
        let want = [
            &b"*1\r\n$1\r\na\r\n*3\r\n$3\r\nSET\r\n$10\r\n"[..],
            &long[..10],
            b"\r\n$1234567\r\n",
            &long,
            b"\r\n",
        ]
        .concat();
        assert_eq!(
            out, want,
            "appended after what was there, every length in decimal"
        );
    }

    #[tokio::test]
    async fn parses_every_reply_type() {
        assert_eq!(parse(b"+OK\r\n").await, Ok(Reply::Status("OK".into())));
        assert_eq!(
            parse(b"-READONLY You can't write\r\n").await,
            Ok(Reply::Error("READONLY You can't write".into()))
        );
        assert_eq!(parse(b":-3\r\n").await, Ok(Reply::Int(-3)));
        assert_eq!(parse(b"$-1\r\n").await, Ok(Reply::Bulk(None)));
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n").await,
            Ok(Reply::Bulk(Some(b"a\r\nb".to_vec())))
        );
        assert_eq!(parse(b"*-1\r\n").await, Ok(Reply::Array(None)));
        // Nested arrays that close together, and an empty one.
        assert_eq!(
            parse(b"*2\r\n*1\r\n*1\r\n:1\r\n*0\r\n").await,
            Ok(Reply::Array(Some(vec![
                Reply::Array(Some(vec![Reply::Array(Some(vec![Reply::Int(1)]))])),
                Reply::Array(Some(vec![])),
            ])))
        );
        let deepest = "*1\r\n".repeat(MAX_DEPTH) + ":1\r\n";
        assert!(parse(deepest.as_bytes()).await.is_ok());
        // ROLE of a master: ["master", offset, [[ip, port, offset], ...]].
        let role = parse(
            b"*3\r\n$6\r\nmaster\r\n:10\r\n*1\r\n*3\r\n$4\r\n10.1\r\n$4\r\n6379\r\n$1\r\n9\r\n",
        )
        .await
        .unwrap();
        let items = role.items().unwrap();
        assert_eq!(items[0].text().as_deref(), Some("master"));
        assert_eq!(items[1].int(), Some(10));
        assert_eq!(
            items[2].items().unwrap()[0].items().unwrap()[1].int(),
            Some(6379)
        );
    }

    #[tokio::test]
    async fn refuses_malformed_replies() {
        for (bytes, msg) in [
            (&b""[..], "connection closed"),
            (b"+OK", "truncated"),
            (b"?x\r\n", "unknown reply type"),
            (b":x\r\n", "bad integer"),
            (b"$-2\r\n", "bad bulk string length"),
            (b"$5\r\nab\r\n", "reading a bulk string"),
            (b"$2\r\nabcd", "not followed by CRLF"),
            (b"$99999999999\r\n", "exceeds the limit"),
            (b"*2\r\n:1\r\n", "connection closed"),
        ] {
            let e = parse(bytes).await.unwrap_err();
            assert!(e.contains(msg), "{bytes:?}: {e}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(parse(deep.as_bytes()).await.unwrap_err().contains("deeper"));
    }
}
