//! The TCP front shared by all modes: accepts connections, frames and parses request
//! lines, hands each to the mode's [`Handler`] and writes its answer. Malformed lines
//! get a `bad_request` error and the connection stays usable. `time` is answered
//! here, the same for every mode: the process's wall clock.

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::client::truncate;
use crate::eventlog::EventLog;
use crate::log_event;
use crate::proto::{ErrorCode, ErrorReply, Request, Response};
use crate::wire::{write_json_line, Frame, LineReader, MAX_REQUEST_LINE};

/// What to do with a request.
pub enum Reply {
    Send(Response),
    /// Close the connection without answering (the request came from a peer this
    /// node is simulating a partition against).
    Drop,
}

/// A mode's request handling.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Reply> + Send;
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Serves connections until `shutdown` turns true.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    log: Arc<EventLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let h = handler.clone();
                    let l = log.clone();
                    tokio::spawn(async move { connection(stream, h, l).await });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    log_event!(log, "accept-error", "{e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut shutdown) => return,
        }
    }
}

async fn connection<H: Handler>(stream: TcpStream, handler: Arc<H>, log: Arc<EventLog>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut reader = LineReader::new(r, MAX_REQUEST_LINE);
    loop {
        let frame = match reader.next_frame().await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                log_event!(log, "connection-error", "from={peer} read: {e}");
                return;
            }
        };
        let reply = match frame {
            Frame::Line(line) if line.trim().is_empty() => continue,
            Frame::Line(line) => match serde_json::from_str::<Request>(&line) {
                Ok(Request::Time) => Reply::Send(wall_time()),
                Ok(request) => handler.handle(request).await,
                Err(e) => Reply::Send(bad_request(format!(
                    "cannot parse request `{}`: {e}",
                    truncate(&line, 200)
                ))),
            },
            Frame::TooLong { limit } => Reply::Send(bad_request(format!(
                "request line longer than {limit} bytes"
            ))),
            Frame::NotUtf8 => Reply::Send(bad_request("request line is not UTF-8".into())),
        };
        match reply {
            Reply::Send(response) => {
                if let Err(e) = write_json_line(&mut w, &response).await {
                    log_event!(log, "connection-error", "from={peer} write: {e}");
                    return;
                }
            }
            Reply::Drop => return,
        }
    }
}

/// The answer to `time`: this process's wall clock (as libfaketime, say, makes it
/// look) in milliseconds since the Unix epoch.
fn wall_time() -> Response {
    let unix_ms = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    Response::Time { unix_ms }
}

fn bad_request(message: String) -> Response {
    Response::Error(ErrorReply::not_applied(ErrorCode::BadRequest, message))
}
