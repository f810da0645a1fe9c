//! The zoo wire protocol: newline-delimited JSON, one request line answered by one
//! response line, on one TCP port per node that serves both clients and peers.
//!
//! These types are the contract between zoo nodes and the splitbrain harness; their
//! JSON shapes are stable. Requests are tagged by `"op"`, responses by `"type"`:
//!
//! ```text
//! -> {"op":"add","key":"s","value":7}
//! <- {"type":"added","key":"s","value":7,"master":"n1","epoch":1}
//! -> {"op":"read","key":"s","local":true}
//! <- {"type":"values","key":"s","values":[7],"node":"n2","role":"replica","epoch":1}
//! -> {"op":"role"}
//! <- {"type":"role","node":"n2","role":"replica","epoch":1,"master":"n1","lineage":{"epoch":1,"node":"n1"},"offset":1}
//! -> {"op":"nonsense"}
//! <- {"type":"error","code":"bad_request","outcome":"not_applied","message":"..."}
//! ```
//!
//! Requests reject unknown fields (a typo is a bad request); responses tolerate
//! them, so fields can be added without breaking older clients.
//! Variants marked *peer* are spoken between zoo nodes; a client has no reason to send them.

use std::fmt;

use serde::{Deserialize, Serialize};

mod control;
mod replication;
pub use control::{group_of, ControlView, GroupAssignment, GroupMap, GroupRole, GroupStatus};
pub use replication::{
    Cmd, DataImage, Entry, Lineage, LineageFork, ObjectKind, Op, OpKind, VersionedWrite,
};

/// Integer elements of the sets the zoo stores.
pub type Element = i64;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Add `value` to the set under `key`. A replica forwards it to the master it
    /// believes in and relays the answer. Success: [`Response::Added`].
    Add { key: String, value: Element },
    /// Read the set under `key`. `local: true` answers from this node's own copy
    /// (whatever its role); `local: false` reads from the master this node believes in
    /// (forwarded when this node is a replica). Success: [`Response::Values`].
    Read {
        key: String,
        #[serde(default)]
        local: bool,
    },
    /// This node's view of its role. Success: [`Response::Role`].
    Role,
    /// This node's wall clock as its process reads it (so a skewed clock shows).
    /// Success: [`Response::Time`]. Answered by every mode and the router.
    Time,
    /// *peer*: heartbeat from `from`, carrying the sender's own view. Answered with
    /// [`Response::Role`] describing the receiver.
    Ping { from: String, view: RoleInfo },
    /// *peer*: a replica asks its master for the operations after `offset` of
    /// `lineage`; the master may wait up to `wait_ms` for new ones. Answered with
    /// [`Response::Ops`] or, when the replica's history cannot be continued,
    /// [`Response::Snapshot`] (full resync).
    Fetch {
        from: String,
        lineage: Lineage,
        offset: u64,
        wait_ms: u64,
    },
    /// *peer*: an `add` a replica received from a client and forwards to its master.
    /// The receiver never forwards it again.
    ForwardAdd {
        from: String,
        key: String,
        value: Element,
    },
    /// *peer*: a non-local `read` forwarded to the master.
    ForwardRead { from: String, key: String },
    /// Write `value` to the register under `key`. Success: [`Response::Written`].
    Write { key: String, value: Element },
    /// Compare-and-set the register under `key` from `from` to `to`. Success:
    /// [`Response::CasOk`]; a register not holding `from` gives error `cas_mismatch`.
    Cas {
        key: String,
        from: Element,
        to: Element,
    },
    /// Read the register under `key` (`local` as for `read`). Success:
    /// [`Response::Register`].
    Get {
        key: String,
        #[serde(default)]
        local: bool,
    },
    /// Append `value` to the list under `key`. Success: [`Response::Appended`].
    Append { key: String, value: Element },
    /// Read the list under `key` (`local` as for `read`). Success: [`Response::List`].
    ReadList {
        key: String,
        #[serde(default)]
        local: bool,
    },
    /// *peer*: a client request a non-master forwards to the master it believes in
    /// (log-based and ring modes). The receiver never forwards it again.
    Forward { from: String, request: Box<Request> },
    /// *peer*: a candidate asks for a vote in `term`; its log ends at
    /// (`last_term`, `last_index`). Answered with [`Response::VoteReply`].
    Vote {
        from: String,
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    /// *peer*: the master of `term` sends log entries `prev_index+1 ..` (empty for a
    /// heartbeat) and its commit index. Answered with [`Response::EntriesAck`].
    AppendEntries {
        from: String,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// *peer*: the ring modes push the writes a node accepted to every peer. Answered
    /// with [`Response::Gossiped`].
    Gossip {
        from: String,
        writes: Vec<VersionedWrite>,
    },
    /// *peer* (`metadata-master`): a coordinator candidate asks for a vote in
    /// coordinator term `cterm`; it holds the map at (`map_cterm`, `map_version`).
    /// `pre`: would the receiver vote (nothing changes)? Answered with
    /// [`Response::VoteReply`].
    CtrlVote {
        from: String,
        cterm: u64,
        map_cterm: u64,
        map_version: u64,
        #[serde(default)]
        pre: bool,
    },
    /// *peer* (`metadata-master`): the coordinator of `cterm` sends its map, either
    /// a proposal to hold (`committed: false`) or the committed map to act on.
    /// Answered with [`Response::CtrlAck`].
    CtrlSync {
        from: String,
        cterm: u64,
        map: GroupMap,
        committed: bool,
    },
    /// *peer* (`metadata-master`): the master of `group` in `epoch` asks the
    /// coordinator to add replicas to, or remove them from, the in-sync set.
    /// Answered with [`Response::IsrChanged`].
    IsrChange {
        from: String,
        group: usize,
        epoch: u64,
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// *peer* (`metadata-master`): the master of `group` in `epoch` sends log
    /// entries `prev_index+1 ..` (empty for a heartbeat) and its commit index.
    /// Answered with [`Response::EntriesAck`] (`term` = the receiver's epoch).
    GroupAppend {
        from: String,
        group: usize,
        epoch: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// Test-only fault injection, refused unless the node was started with
    /// `--debug-fault-injection`: from now on this node neither sends to nor answers
    /// the named peers (an empty list heals). Models an iptables DROP partition on a
    /// single machine, where real packet filtering is not available to a unit test.
    DebugBlockPeers { peers: Vec<String> },
}

impl Request {
    /// The request's `op` tag, for error messages.
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Add { .. } => "add",
            Request::Read { .. } => "read",
            Request::Role => "role",
            Request::Time => "time",
            Request::Ping { .. } => "ping",
            Request::Fetch { .. } => "fetch",
            Request::ForwardAdd { .. } => "forward_add",
            Request::ForwardRead { .. } => "forward_read",
            Request::Write { .. } => "write",
            Request::Cas { .. } => "cas",
            Request::Get { .. } => "get",
            Request::Append { .. } => "append",
            Request::ReadList { .. } => "read_list",
            Request::Forward { .. } => "forward",
            Request::Vote { .. } => "vote",
            Request::AppendEntries { .. } => "append_entries",
            Request::Gossip { .. } => "gossip",
            Request::DebugBlockPeers { .. } => "debug_block_peers",
            Request::CtrlVote { .. } => "ctrl_vote",
            Request::CtrlSync { .. } => "ctrl_sync",
            Request::IsrChange { .. } => "isr_change",
            Request::GroupAppend { .. } => "group_append",
        }
    }

    /// The peer that sent this request, for peer requests.
    pub fn peer_sender(&self) -> Option<&str> {
        match self {
            Request::Ping { from, .. }
            | Request::Fetch { from, .. }
            | Request::ForwardAdd { from, .. }
            | Request::ForwardRead { from, .. }
            | Request::Forward { from, .. }
            | Request::Vote { from, .. }
            | Request::AppendEntries { from, .. }
            | Request::Gossip { from, .. }
            | Request::CtrlVote { from, .. }
            | Request::CtrlSync { from, .. }
            | Request::IsrChange { from, .. }
            | Request::GroupAppend { from, .. } => Some(from),
            Request::Add { .. }
            | Request::Write { .. }
            | Request::Cas { .. }
            | Request::Get { .. }
            | Request::Append { .. }
            | Request::ReadList { .. }
            | Request::Read { .. }
            | Request::Role
            | Request::Time
            | Request::DebugBlockPeers { .. } => None,
        }
    }
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// An `add` was applied by `master` (the node that accepted it as master) in
    /// `epoch`. The write is acknowledged; under asynchronous replication it may
    /// still be lost later, which is the point of the flawed modes.
    Added(WriteAck),
    /// The set under `key` as held by the node that served the read.
    Values(ReadReply),
    /// A node's view of itself: answer to `role` and to `ping`.
    Role(RoleInfo),
    /// *peer*: operations `start+1 ..= start+ops.len()` of the master's `lineage`.
    Ops {
        lineage: Lineage,
        previous: Option<LineageFork>,
        start: u64,
        ops: Vec<Op>,
    },
    /// *peer*: the master's whole data set at `offset` of `lineage`; the replica
    /// discards its own data and takes this instead.
    Snapshot {
        lineage: Lineage,
        previous: Option<LineageFork>,
        offset: u64,
        #[serde(flatten)]
        image: DataImage,
    },
    /// A register `write` was applied (see [`Response::Added`] for the attribution).
    Written(WriteAck),
    /// A list `append` was applied.
    Appended(WriteAck),
    /// A `cas` was applied.
    CasOk(CasAck),
    /// The register under `key` (`value` null when never written).
    Register(RegisterReply),
    /// The list under `key`, in append order.
    List(ReadReply),
    /// *peer*: answer to `vote`.
    VoteReply { term: u64, granted: bool },
    /// *peer*: answer to `append_entries`: whether the entries matched at
    /// `prev_index`, and the receiver's last log index afterwards.
    EntriesAck {
        term: u64,
        success: bool,
        last_index: u64,
    },
    /// *peer*: answer to `gossip`: how many of the writes replaced the receiver's data.
    Gossiped { applied: usize },
    /// The answering process's wall clock, milliseconds since the Unix epoch
    /// (negative before it): answer to `time`.
    Time { unix_ms: i64 },
    /// *peer*: answer to `ctrl_sync`: whether the map was taken, the receiver's
    /// coordinator term, the version of the newest committed map it acts on, and
    /// its status per data group.
    CtrlAck {
        cterm: u64,
        success: bool,
        map_version: u64,
        status: Vec<GroupStatus>,
    },
    /// *peer*: answer to `isr_change`: the group's assignment in the committed map
    /// of `version`.
    IsrChanged {
        version: u64,
        assignment: GroupAssignment,
    },
    /// The peers this node now blocks (answer to `debug_block_peers`).
    DebugBlocked { peers: Vec<String> },
    /// The request failed; see [`ErrorReply::outcome`] for whether it may have taken effect.
    Error(ErrorReply),
}

/// An acknowledged `add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    pub key: String,
    pub value: Element,
    /// The node that accepted the write as master (not the one the client talked to,
    /// when that one forwarded it).
    pub master: String,
    /// The epoch in which `master` accepted it.
    pub epoch: u64,
}

/// An acknowledged `cas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasAck {
    pub key: String,
    pub from: Element,
    pub to: Element,
    pub master: String,
    pub epoch: u64,
}

/// The answer to a `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub key: String,
    pub value: Option<Element>,
    /// `vclock-ring`: the concurrent values still unmerged, when more than one
    /// (`value` is then the largest). Absent elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<Element>,
    pub node: String,
    pub role: RoleKind,
    pub epoch: u64,
}

/// The answer to a `read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    pub key: String,
    /// The elements, sorted ascending, without duplicates.
    pub values: Vec<Element>,
    /// The node whose copy this is.
    pub node: String,
    /// That node's role and epoch when it answered.
    pub role: RoleKind,
    pub epoch: u64,
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleKind {
    Master,
    Replica,
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleKind::Master => "master",
            RoleKind::Replica => "replica",
        })
    }
}

/// What a node believes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// The answering node's name.
    pub node: String,
    pub role: RoleKind,
    /// The epoch this node is in: its own as master, its master's as replica.
    pub epoch: u64,
    /// The master this node believes in (itself when master), if any.
    pub master: Option<String>,
    /// The history this node's data belongs to.
    pub lineage: Lineage,
    /// How many operations of that history this node has applied. In the log-based
    /// modes: the last log index, with `lineage` = (term of that entry, this node).
    pub offset: u64,
    /// Log-based modes: the highest log index this node knows to be committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<u64>,
    /// `metadata-master`: the coordinator and every data group as this node sees
    /// them (the fields above describe group 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlView>,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub outcome: Outcome,
    /// One human-readable line.
    pub message: String,
    /// Code `redirect`: the master this node believes in, and its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

impl ErrorReply {
    /// An error for an operation that certainly did not take effect.
    pub fn not_applied(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            outcome: Outcome::NotApplied,
            message: message.into(),
            master: None,
            addr: None,
        }
    }

    /// An error for an operation that may or may not have taken effect.
    pub fn indeterminate(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            outcome: Outcome::Indeterminate,
            message: message.into(),
            master: None,
            addr: None,
        }
    }
}

impl ErrorReply {
    /// `--client-routing redirect`: ask the client to retry at `master` (`addr`).
    pub fn redirect(node: &str, master: &str, addr: std::net::SocketAddr) -> Self {
        ErrorReply {
            code: ErrorCode::Redirect,
            outcome: Outcome::NotApplied,
            message: format!("{node} is not master; master is {master} at {addr}"),
            master: Some(master.to_string()),
            addr: Some(addr.to_string()),
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?}): {}", self.code, self.outcome, self.message)
    }
}

/// Whether a failed operation may have happened: Jepsen's `fail` versus `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It definitely did not happen (Jepsen `fail`).
    NotApplied,
    /// It may have happened (Jepsen `info`).
    Indeterminate,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line was not a valid request. Always `not_applied`.
    BadRequest,
    /// This node is not master and knows no master. Always `not_applied`.
    NoMaster,
    /// A forwarded operation reached a node that is not master. Always `not_applied`.
    NotMaster,
    /// The master could not be reached; nothing was sent. Always `not_applied`.
    MasterUnreachable,
    /// The operation was sent to the master but no answer came back in time, or the
    /// connection broke after sending. Always `indeterminate`.
    ForwardLost,
    /// Persisting the operation failed; it may be partly written. `indeterminate`.
    Storage,
    /// The request is not available on this node (e.g. debug requests without
    /// `--debug-fault-injection`). Always `not_applied`.
    Unsupported,
    /// The node is shutting down. Always `not_applied`.
    ShuttingDown,
    /// This node is not master; the reply names the master to retry at
    /// (`--client-routing redirect`). Always `not_applied`.
    Redirect,
    /// A `cas` found another value. Always `not_applied`.
    CasMismatch,
    /// The key holds another kind of object (e.g. `append` to a set). `not_applied`.
    WrongType,
    /// The master could not get the write acknowledged as its mode requires
    /// (replicas or a majority unreachable) in time. Always `indeterminate`.
    NotReplicated,
}

#[cfg(test)]
mod tests;
