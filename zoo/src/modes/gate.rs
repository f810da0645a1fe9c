//! The gate every mode puts in front of its own request handling: peer requests are
//! taken only from configured peers, a simulated partition (`debug_block_peers`) drops
//! a blocked peer's requests and answers, and a node that is shutting down refuses all
//! but `role`. Also the `debug_block_peers` request itself.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::eventlog::EventLog;
use crate::log_event;
use crate::peers::PeerPool;
use crate::proto::{ErrorCode, ErrorReply, Request, Response};
use crate::server::Reply;

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply::not_applied(code, message))
}

/// `Ok(sender)` (the peer that sent a peer request, `None` for clients) when the
/// request may be handled; `Err(reply)` when it is answered, or dropped, here.
pub(crate) async fn admit(
    cfg: &Config,
    peers: &PeerPool,
    stopping: &AtomicBool,
    request: &Request,
) -> Result<Option<String>, Reply> {
    let sender = request.peer_sender().map(str::to_string);
    if let Some(from) = &sender {
        if !cfg.nodes.contains_key(from) || *from == cfg.node {
            return Err(Reply::Send(error(
                ErrorCode::BadRequest,
                format!("`{from}` is not a peer of {}", cfg.node),
            )));
        }
        if peers.is_blocked(from) {
            // Simulated DROP: say nothing until the sender has given up.
            tokio::time::sleep(cfg.peer_timeout * 4).await;
            return Err(Reply::Drop);
        }
    }
    if stopping.load(Ordering::SeqCst) && !matches!(request, Request::Role) {
        return Err(Reply::Send(error(
            ErrorCode::ShuttingDown,
            format!("{} is shutting down", cfg.node),
        )));
    }
    Ok(sender)
}

/// The reply to a handled request. A partition that began while it was being handled
/// (a fetch waiting for new operations, say) swallows the answer too.
pub(crate) fn finish(peers: &PeerPool, sender: Option<&str>, response: Response) -> Reply {
    if sender.is_some_and(|from| peers.is_blocked(from)) {
        return Reply::Drop;
    }
    Reply::Send(response)
}

/// Answers `debug_block_peers`: refused unless the node runs with
/// `--debug-fault-injection`.
pub(crate) fn debug_block(
    cfg: &Config,
    peers: &PeerPool,
    log: &EventLog,
    blocked: &[String],
) -> Response {
    if !cfg.debug_fault_injection {
        return error(
            ErrorCode::Unsupported,
            format!(
                "{}: debug_block_peers needs --debug-fault-injection",
                cfg.node
            ),
        );
    }
    match peers.set_blocked(blocked) {
        Ok(blocked) => {
            log_event!(
                log,
                "debug-block-peers",
                "simulated partition: blocking [{}]",
                blocked.join(",")
            );
            Response::DebugBlocked { peers: blocked }
        }
        Err(e) => error(ErrorCode::BadRequest, format!("debug_block_peers: {e}")),
    }
}
