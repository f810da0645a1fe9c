//! A small async client for the zoo protocol: one connection, one outstanding request
//! at a time, every step bounded by a timeout. Used by the harness and by zoo nodes
//! to talk to their peers.
//!
//! Every failure says whether the request may have reached the server
//! ([`ClientError::request_sent`], [`CallError::outcome`]): a failed connect means
//! the operation did not happen; a timeout after sending means it may have.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::proto::{
    CasAck, ErrorCode, ErrorReply, Outcome, ReadReply, RegisterReply, Request, Response, RoleInfo,
    WriteAck,
};
use crate::wire::{write_json_line, Frame, LineReader, MAX_RESPONSE_LINE};

/// A transport failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {addr}: no answer within {timeout:?}")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("connection to {addr} is unusable after an earlier failure; reconnect")]
    Poisoned { addr: SocketAddr },
    #[error("send to {addr}: {source}")]
    Send {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no response from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr} closed the connection before answering")]
    Closed { addr: SocketAddr },
    #[error("receive from {addr}: {source}")]
    Receive {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bad response from {addr}: {detail}")]
    BadResponse { addr: SocketAddr, detail: String },
}

impl ClientError {
    /// Whether any byte of the request may have reached the server. `false` means the
    /// operation certainly did not happen.
    pub fn request_sent(&self) -> bool {
        !matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Poisoned { .. }
        )
    }
}

/// The failure of a typed call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Transport(#[from] ClientError),
    #[error("server error: {0}")]
    Server(ErrorReply),
    #[error("unexpected response: {0:?}")]
    Unexpected(Box<Response>),
}

impl CallError {
    /// Jepsen's `fail` (`NotApplied`) versus `info` (`Indeterminate`) for this failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            CallError::Transport(e) if !e.request_sent() => Outcome::NotApplied,
            CallError::Transport(_) => Outcome::Indeterminate,
            CallError::Server(reply) => reply.outcome,
            CallError::Unexpected(_) => Outcome::Indeterminate,
        }
    }
}

/// One connection to a zoo node.
pub struct Client {
    addr: SocketAddr,
    reader: LineReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    poisoned: bool,
}

impl Client {
    /// Connects, giving up after `connect_timeout`.
    pub async fn connect(addr: SocketAddr, connect_timeout: Duration) -> Result<Self, ClientError> {
        let stream = match timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ClientError::Connect { addr, source }),
            Err(_) => {
                return Err(ClientError::ConnectTimeout {
                    addr,
                    timeout: connect_timeout,
                })
            }
        };
        // Small request/response lines: latency matters more than batching.
        stream
            .set_nodelay(true)
            .map_err(|source| ClientError::Connect { addr, source })?;
        let (r, w) = stream.into_split();
        Ok(Client {
            addr,
            reader: LineReader::new(r, MAX_RESPONSE_LINE),
            writer: w,
            poisoned: false,
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether an earlier failure left this connection unusable (a late answer to
    /// the failed request could otherwise be taken for the answer to the next one).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Sends `request` and waits up to `deadline` (sending and receiving together)
    /// for its response. Any failure poisons the connection.
    pub async fn call(
        &mut self,
        request: &Request,
        deadline: Duration,
    ) -> Result<Response, ClientError> {
        if self.poisoned {
            return Err(ClientError::Poisoned { addr: self.addr });
        }
        self.poisoned = true;
        let addr = self.addr;
        let exchange = async {
            write_json_line(&mut self.writer, request)
                .await
                .map_err(|source| ClientError::Send { addr, source })?;
            match self.reader.next_frame().await {
                Ok(Some(Frame::Line(line))) => {
                    serde_json::from_str::<Response>(&line).map_err(|e| ClientError::BadResponse {
                        addr,
                        detail: format!("{e}: {}", truncate(&line, 200)),
                    })
                }
                Ok(Some(Frame::TooLong { limit })) => Err(ClientError::BadResponse {
                    addr,
                    detail: format!("response line longer than {limit} bytes"),
                }),
                Ok(Some(Frame::NotUtf8)) => Err(ClientError::BadResponse {
                    addr,
                    detail: "response line is not UTF-8".into(),
                }),
                Ok(None) => Err(ClientError::Closed { addr }),
                Err(source) => Err(ClientError::Receive { addr, source }),
            }
        };
        let response = timeout(deadline, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                timeout: deadline,
            })??;
        self.poisoned = false;
        Ok(response)
    }

    /// Adds `value` to the set `key`.
    pub async fn add(
        &mut self,
        key: &str,
        value: i64,
        deadline: Duration,
    ) -> Result<WriteAck, CallError> {
        let req = Request::Add {
            key: key.to_string(),
            value,
        };
        match self.call(&req, deadline).await? {
            Response::Added(ack) => Ok(ack),
            other => Err(unexpected(other)),
        }
    }

    /// Reads the set `key`: this node's own copy when `local`, else the master's.
    pub async fn read(
        &mut self,
        key: &str,
        local: bool,
        deadline: Duration,
    ) -> Result<ReadReply, CallError> {
        let req = Request::Read {
            key: key.to_string(),
            local,
        };
        match self.call(&req, deadline).await? {
            Response::Values(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Writes `value` to the register `key`.
    pub async fn write(
        &mut self,
        key: &str,
        value: i64,
        deadline: Duration,
    ) -> Result<WriteAck, CallError> {
        let req = Request::Write {
            key: key.to_string(),
            value,
        };
        match self.call(&req, deadline).await? {
            Response::Written(ack) => Ok(ack),
            other => Err(unexpected(other)),
        }
    }

    /// Compare-and-set of the register `key` from `from` to `to`.
    pub async fn cas(
        &mut self,
        key: &str,
        from: i64,
        to: i64,
        deadline: Duration,
    ) -> Result<CasAck, CallError> {
        let req = Request::Cas {
            key: key.to_string(),
            from,
            to,
        };
        match self.call(&req, deadline).await? {
            Response::CasOk(ack) => Ok(ack),
            other => Err(unexpected(other)),
        }
    }

    /// Reads the register `key` (`local` as for [`Client::read`]).
    pub async fn get(
        &mut self,
        key: &str,
        local: bool,
        deadline: Duration,
    ) -> Result<RegisterReply, CallError> {
        let req = Request::Get {
            key: key.to_string(),
            local,
        };
        match self.call(&req, deadline).await? {
            Response::Register(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Appends `value` to the list `key`.
    pub async fn append(
        &mut self,
        key: &str,
        value: i64,
        deadline: Duration,
    ) -> Result<WriteAck, CallError> {
        let req = Request::Append {
            key: key.to_string(),
            value,
        };
        match self.call(&req, deadline).await? {
            Response::Appended(ack) => Ok(ack),
            other => Err(unexpected(other)),
        }
    }

    /// Reads the list `key` (`local` as for [`Client::read`]).
    pub async fn read_list(
        &mut self,
        key: &str,
        local: bool,
        deadline: Duration,
    ) -> Result<ReadReply, CallError> {
        let req = Request::ReadList {
            key: key.to_string(),
            local,
        };
        match self.call(&req, deadline).await? {
            Response::List(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Asks the node for its role.
    pub async fn role(&mut self, deadline: Duration) -> Result<RoleInfo, CallError> {
        match self.call(&Request::Role, deadline).await? {
            Response::Role(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }
}

/// Sends `request` to `addr` and follows `redirect` errors (`--client-routing
/// redirect`) to the named master, at most `max_hops` times; each hop opens a new
/// connection bounded by `deadline`. Returns the final response and the address that
/// gave it. A redirect to an address that is not a socket address is an error reply.
pub async fn call_following_redirects(
    addr: SocketAddr,
    request: &Request,
    deadline: Duration,
    max_hops: usize,
) -> Result<(Response, SocketAddr), ClientError> {
    let mut at = addr;
    let mut hops = 0;
    loop {
        let mut client = Client::connect(at, deadline).await?;
        let response = client.call(request, deadline).await?;
        match &response {
            Response::Error(e) if e.code == ErrorCode::Redirect && hops < max_hops => {
                let Some(next) = e.addr.as_deref().and_then(|a| a.parse().ok()) else {
                    return Err(ClientError::BadResponse {
                        addr: at,
                        detail: format!("redirect without a valid address: {e}"),
                    });
                };
                at = next;
                hops += 1;
            }
            _ => return Ok((response, at)),
        }
    }
}

fn unexpected(response: Response) -> CallError {
    match response {
        Response::Error(reply) => CallError::Server(reply),
        other => CallError::Unexpected(Box::new(other)),
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
