//! Client operations shared by the modes that keep a [`Data`]: which requests are
//! local reads or writes, the replicated command of a write, the acknowledgement of
//! an applied write and the answer to a read.

use crate::data::{ApplyError, Data};
use crate::proto::{
    CasAck, Cmd, Element, ErrorCode, ErrorReply, ReadReply, RegisterReply, Request, Response,
    RoleKind, WriteAck,
};

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply::not_applied(code, message))
}

/// Whether `request` is a read of this node's own copy (`local: true`).
pub(crate) fn is_local_read(request: &Request) -> bool {
    matches!(
        request,
        Request::Read { local: true, .. }
            | Request::Get { local: true, .. }
            | Request::ReadList { local: true, .. }
    )
}

/// The answer to a read request from `data`, attributed to `node` in `role`/`epoch`.
pub(crate) fn answer_read(
    data: &Data,
    request: &Request,
    node: &str,
    role: RoleKind,
    epoch: u64,
) -> Response {
    let node = node.to_string();
    let result = match request {
        Request::Read { key, .. } => data.set(key).map(|values| {
            Response::Values(ReadReply {
                key: key.clone(),
                values,
                node,
                role,
                epoch,
            })
        }),
        Request::ReadList { key, .. } => data.list(key).map(|values| {
            Response::List(ReadReply {
                key: key.clone(),
                values,
                node,
                role,
                epoch,
            })
        }),
        Request::Get { key, .. } => data.register(key).map(|value| {
            Response::Register(RegisterReply {
                key: key.clone(),
                value,
                siblings: Vec::new(),
                node,
                role,
                epoch,
            })
        }),
        other => {
            return error(
                ErrorCode::BadRequest,
                format!("{} is not a read", other.op_name()),
            )
        }
    };
    result.unwrap_or_else(apply_error)
}

/// The replicated command of a client write, `None` for reads.
pub(crate) fn command_of(request: &Request) -> Option<Cmd> {
    Some(match request {
        Request::Add { key, value } => Cmd::Add {
            key: key.clone(),
            value: *value,
        },
        Request::Write { key, value } => Cmd::Write {
            key: key.clone(),
            value: *value,
        },
        Request::Append { key, value } => Cmd::Append {
            key: key.clone(),
            value: *value,
        },
        Request::Cas { key, from, to } => Cmd::Cas {
            key: key.clone(),
            from: *from,
            to: *to,
        },
        _ => return None,
    })
}

/// The acknowledgement of an applied write.
pub(crate) fn ack(cmd: &Cmd, master: &str, epoch: u64) -> Response {
    let w = |key: &String, value: &Element| WriteAck {
        key: key.clone(),
        value: *value,
        master: master.to_string(),
        epoch,
    };
    match cmd {
        Cmd::Add { key, value } => Response::Added(w(key, value)),
        Cmd::Write { key, value } => Response::Written(w(key, value)),
        Cmd::Append { key, value } => Response::Appended(w(key, value)),
        Cmd::Cas { key, from, to } => Response::CasOk(CasAck {
            key: key.clone(),
            from: *from,
            to: *to,
            master: master.to_string(),
            epoch,
        }),
        Cmd::Noop => Response::Error(ErrorReply::not_applied(
            ErrorCode::BadRequest,
            "noop is not a client operation",
        )),
    }
}

pub(crate) fn apply_error(e: ApplyError) -> Response {
    let code = match e {
        ApplyError::WrongType { .. } => ErrorCode::WrongType,
        ApplyError::CasMismatch { .. } => ErrorCode::CasMismatch,
    };
    error(code, e.to_string())
}
