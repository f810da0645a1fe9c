//! A minimal HTTP/1.1 client for etcd's JSON gateway: one kept-alive TCP connection
//! per client, `POST` with a JSON body or `GET`, responses framed by Content-Length,
//! chunked transfer coding (with trailers, which the gateway sends on errors) or the
//! end of the connection. It tells apart "nothing was sent" (connecting failed) from
//! "the request may have reached the server", which decides `fail` versus `info`.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bound on the status line plus headers (and on trailers).
const MAX_HEAD: usize = 64 << 10;
/// Bound on one response body: a set read of a long run stays far below it.
pub const MAX_BODY: usize = 256 << 20;

/// Why an exchange did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Nothing was sent: the connection could not be opened.
    NotSent(String),
    /// The request may have reached the server (sent, then the exchange broke).
    Unknown(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::NotSent(e) | HttpError::Unknown(e) => f.write_str(e),
        }
    }
}

/// One response: status code and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A connection to one server; after any error it must be dropped (a late answer to
/// an abandoned request would otherwise be read as the next one's).
pub struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
    /// The server asked to close (or the body ran to the end of the connection).
    closed: bool,
}

impl Conn {
    /// Opens a connection to `addr` within `timeout`; `host` goes in the Host header.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, HttpError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(HttpError::NotSent(format!("connect {addr}: {e}"))),
            Err(_) => {
                return Err(HttpError::NotSent(format!(
                    "connect {addr}: timed out after {timeout:?}"
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream: BufReader::new(stream),
            host: addr.to_string(),
            closed: false,
        })
    }

    /// Whether the server closed the connection after the last response.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends one request (`body` as JSON for `POST`, none for `GET`) and reads the
    /// response. Not cancel-safe: on timeout the caller drops the connection.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        let unknown = |what: &str, e: std::io::Error| HttpError::Unknown(format!("{what}: {e}"));
        self.stream
            .get_mut()
            .write_all(&msg)
            .await
            .map_err(|e| unknown("sending the request", e))?;
        let (resp, closed) = read_response(&mut self.stream)
            .await
            .map_err(|e| unknown("reading the response", e))?;
        self.closed = closed;
        Ok(resp)
    }
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    budget: &mut usize,
) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    if n > *budget || !line.ends_with(b"\n") {
        return Err(bad("response head too long or cut off"));
    }
    *budget -= n;
    let text = String::from_utf8(line).map_err(|_| bad("response head is not UTF-8"))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one response: `(response, whether the connection is done)`.
pub async fn read_response<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> std::io::Result<(Response, bool)> {
    let mut budget = MAX_HEAD;
    let status_line = read_line(r, &mut budget).await?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| bad(format!("bad status code in {status_line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, version == "HTTP/1.0");
    loop {
        let line = read_line(r, &mut budget).await?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("bad header line {line:?}")));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
                length = Some(n);
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => close |= value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut b = MAX_HEAD;
            let line = read_line(r, &mut b).await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                let mut t = MAX_HEAD;
                while !read_line(r, &mut t).await?.is_empty() {}
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(bad(format!("response body over {MAX_BODY} bytes")));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).await?;
            if &crlf != b"\r\n" {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(bad(format!("response body over {MAX_BODY} bytes")));
        }
        body.resize(n, 0);
        r.read_exact(&mut body).await?;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        // No framing: the body runs to the end of the connection.
        (&mut *r)
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut body)
            .await?;
        if body.len() > MAX_BODY {
            return Err(bad(format!("response body over {MAX_BODY} bytes")));
        }
        close = true;
    }
    Ok((Response { status, body }, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8]) -> std::io::Result<(Response, bool)> {
        read_response(&mut BufReader::new(raw)).await
    }

    #[tokio::test]
    async fn content_length_body_and_keep_alive() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}NEXT";
        let (r, closed) = parse(raw).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), closed),
            (200, &b"{\"a\":1}"[..], false)
        );
    }

    #[tokio::test]
    async fn chunked_body_with_trailer_as_the_gateway_sends_errors() {
        let raw = b"HTTP/1.1 404 Not Found\r\nTrailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\n{\"err\r\nA;x=1\r\nor\":\"lost\"\r\n1\r\n}\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n";
        let (r, closed) = parse(raw).await.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(String::from_utf8(r.body).unwrap(), "{\"error\":\"lost\"}");
        assert!(!closed);
    }

    #[tokio::test]
    async fn close_and_unframed_bodies_end_the_connection() {
        let (r, closed) =
            parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
        assert_eq!((r.body.as_slice(), closed), (&b"ok"[..], true));
        let (r, closed) = parse(b"HTTP/1.0 200 OK\r\n\r\nall of it").await.unwrap();
        assert_eq!((r.body.as_slice(), closed), (&b"all of it"[..], true));
    }

    #[tokio::test]
    async fn malformed_responses_are_errors_not_panics() {
        for raw in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            assert!(
                parse(raw).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent() {
        // Bind then drop a listener: its port is closed on loopback.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let e = Conn::connect(addr, Duration::from_secs(2))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, HttpError::NotSent(_)), "{e:?}");
    }

    #[tokio::test]
    async fn request_round_trip_over_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut s = BufReader::new(s);
            let mut got = Vec::new();
            for _ in 0..2 {
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    s.read_line(&mut line).await.unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                let mut body = vec![0; len];
                s.read_exact(&mut body).await.unwrap();
                got.push((head.lines().next().unwrap().to_string(), body));
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                s.get_mut().write_all(reply).await.unwrap();
            }
            got
        });
        let mut c = Conn::connect(addr, Duration::from_secs(2)).await.unwrap();
        let r = c.request("POST", "/v3/kv/put", b"{\"k\":1}").await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = c.request("GET", "/debug/vars", b"").await.unwrap();
        assert_eq!(r.status, 200);
        let got = server.await.unwrap();
        assert_eq!(got[0].0, "POST /v3/kv/put HTTP/1.1");
        assert_eq!(got[0].1, b"{\"k\":1}");
        assert_eq!(
            (got[1].0.as_str(), got[1].1.len()),
            ("GET /debug/vars HTTP/1.1", 0)
        );
    }
}
