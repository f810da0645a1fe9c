//! Newline framing for the protocol: bounded line reads (an over-long or non-UTF-8
//! line is reported and skipped, never buffered without limit) and line writes.

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest request line a server accepts.
pub const MAX_REQUEST_LINE: usize = 1 << 20;
/// Longest response line a client accepts (snapshots of the whole data set are large).
pub const MAX_RESPONSE_LINE: usize = 256 << 20;

/// One framed line, or why it could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Line(String),
    /// The line exceeded the limit; it was read up to its newline and dropped.
    TooLong {
        limit: usize,
    },
    /// The line was not UTF-8.
    NotUtf8,
}

/// Reads newline-terminated lines of bounded length.
pub struct LineReader<R> {
    inner: BufReader<R>,
    limit: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner: BufReader::new(inner),
            limit,
        }
    }

    /// The next frame; `None` at a clean end of stream. Bytes after the last newline
    /// at end of stream count as a final line.
    pub async fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        let mut line: Vec<u8> = Vec::new();
        let mut too_long = false;
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                if line.is_empty() && !too_long {
                    return Ok(None);
                }
                break;
            }
            let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if !too_long {
                if line.len() + chunk.len() > self.limit {
                    too_long = true;
                    line = Vec::new();
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            let used = found.unwrap_or(buf.len());
            self.inner.consume(used);
            if found.is_some() {
                break;
            }
        }
        if too_long {
            return Ok(Some(Frame::TooLong { limit: self.limit }));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(match String::from_utf8(line) {
            Ok(s) => Frame::Line(s),
            Err(_) => Frame::NotUtf8,
        }))
    }
}

/// Writes `msg` as one JSON line and flushes.
pub async fn write_json_line<W, T>(w: &mut W, msg: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let mut bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], limit: usize) -> Vec<Frame> {
        let mut r = LineReader::new(input, limit);
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().await.unwrap() {
            out.push(f);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_bounds_length() {
        let got = frames(b"ab\r\nxxxxxxxxxx\n\xff\ncd", 4).await;
        assert_eq!(
            got,
            vec![
                Frame::Line("ab".into()),
                Frame::TooLong { limit: 4 },
                Frame::NotUtf8,
                Frame::Line("cd".into()),
            ]
        );
        assert_eq!(frames(b"", 4).await, vec![]);
        assert_eq!(frames(b"\n", 4).await, vec![Frame::Line(String::new())]);
    }
}
