//! etcd 3.4's JSON gateway as the harness speaks it: request bodies for put, range,
//! prefix range and compare-and-set transactions (keys and values base64), parsing of
//! the answers it needs (response header, kvs, txn `succeeded`, the raft status in
//! `/debug/vars`), and the classification of gateway errors into "the request was
//! rejected before it was proposed to Raft" (`fail`) and "it may have been" (`info`).

use crate::systems::FailKind;
use data_encoding::BASE64;
use serde_json::{json, Value};

/// Gateway paths (etcd 3.4 serves `/v3/`; `/v3beta/` is its deprecated alias).
pub const PUT: &str = "/v3/kv/put";
pub const RANGE: &str = "/v3/kv/range";
pub const TXN: &str = "/v3/kv/txn";
/// Go's expvar page; its `raft.status` is one consistent snapshot of the member's
/// Raft state (term, lead, role), unlike `/v3/maintenance/status`.
pub const VARS: &str = "/debug/vars";

pub fn b64(s: &str) -> String {
    BASE64.encode(s.as_bytes())
}

/// Decodes a base64 field into text.
pub fn unb64(field: &str, v: &Value) -> Result<String, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{field}: expected a base64 string, got {v}"))?;
    let bytes = BASE64
        .decode(s.as_bytes())
        .map_err(|e| format!("{field}: bad base64 {s:?}: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{field}: not UTF-8"))
}

/// The first key after every key that starts with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    "\0".to_string()
}

pub fn put_body(key: &str, value: &str) -> Value {
    json!({"key": b64(key), "value": b64(value)})
}

/// A linearizable read of one key (`serializable` left false).
pub fn get_body(key: &str) -> Value {
    json!({"key": b64(key)})
}

/// A linearizable read of every key under `prefix`, keys only, oldest first (by
/// create revision: the order the puts were committed in).
pub fn prefix_body(prefix: &str) -> Value {
    json!({
        "key": b64(prefix),
        "range_end": b64(&prefix_end(prefix)),
        "keys_only": true,
        "sort_order": "ASCEND",
        "sort_target": "CREATE",
    })
}

/// Puts `to` at `key` if its value is `from` (a missing key never matches).
pub fn cas_body(key: &str, from: &str, to: &str) -> Value {
    json!({
        "compare": [{"key": b64(key), "result": "EQUAL", "target": "VALUE", "value": b64(from)}],
        "success": [{"request_put": {"key": b64(key), "value": b64(to)}}],
    })
}

/// A uint64 the gateway may send as a JSON string (proto3 JSON) or a number.
fn u64_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The response header fields the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The member that answered.
    pub member_id: u64,
    /// The term of the newest entry that member had applied when it answered.
    pub raft_term: u64,
}

pub fn header(resp: &Value) -> Result<Header, String> {
    let h = resp.get("header").ok_or("answer without a header")?;
    Ok(Header {
        member_id: u64_of(h.get("member_id")).ok_or("header without member_id")?,
        raft_term: u64_of(h.get("raft_term")).ok_or("header without raft_term")?,
    })
}

/// Whether a txn's comparisons held (proto3 JSON leaves `false` out).
pub fn succeeded(resp: &Value) -> bool {
    resp.get("succeeded").and_then(Value::as_bool) == Some(true)
}

/// The `kvs` of a range answer as (key, value) pairs; `value` is `None` for
/// `keys_only` reads.
pub fn kvs(resp: &Value) -> Result<Vec<(String, Option<String>)>, String> {
    let Some(list) = resp.get("kvs") else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or("kvs is not a list")?;
    list.iter()
        .map(|kv| {
            let key = unb64("key", kv.get("key").unwrap_or(&Value::Null))?;
            let value = match kv.get("value") {
                Some(v) => Some(unb64("value", v)?),
                None => None,
            };
            Ok((key, value))
        })
        .collect()
}

/// A member's Raft state, from `raft.status` in `/debug/vars`: all fields from one
/// snapshot the Raft goroutine took, so `lead` is the leader of `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    pub term: u64,
    /// 0 when the member knows no leader.
    pub lead: u64,
    pub is_leader: bool,
}

pub fn raft_status(vars: &Value) -> Result<RaftStatus, String> {
    let s = vars
        .get("raft.status")
        .filter(|s| !s.is_null())
        .ok_or("no raft.status in /debug/vars (the member is not running Raft yet)")?;
    let hex = |field: &str| {
        let v = s
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("raft.status without {field}"))?;
        u64::from_str_radix(v, 16).map_err(|_| format!("raft.status {field}: bad id {v:?}"))
    };
    let term = u64_of(s.get("term")).ok_or("raft.status without term")?;
    let state = s
        .get("raftState")
        .and_then(Value::as_str)
        .ok_or("raft.status without raftState")?;
    Ok(RaftStatus {
        id: hex("id")?,
        term,
        lead: hex("lead")?,
        is_leader: state == "StateLeader",
    })
}

/// A gateway error: gRPC code and message (`{"error": .., "message": .., "code": ..}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub http_status: u16,
    pub code: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(
                f,
                "{} (grpc code {c}, http {})",
                self.message, self.http_status
            ),
            None => write!(f, "{} (http {})", self.message, self.http_status),
        }
    }
}

pub fn gateway_error(http_status: u16, body: &[u8]) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).cloned();
    let message = field("message")
        .or_else(|| field("error"))
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(200)
                .collect()
        });
    GatewayError {
        http_status,
        code: field("code").and_then(|c| c.as_u64()),
        message,
    }
}

/// Errors etcd returns before a request is handed to Raft, or that Raft returns when
/// it refuses the proposal outright: the write did not happen. Everything else that
/// can follow a proposal ("etcdserver: request timed out", "leader changed", "server
/// stopped", a broken gateway connection) leaves it undetermined. These say the
/// cluster cannot take writes now.
const NOT_PROPOSED_UNAVAILABLE: &[&str] = &[
    // processInternalRaftRequestOnce, before Propose.
    "etcdserver: too many requests",
    // Raft's Propose refused it (a follower that knows no leader drops proposals).
    "raft proposal dropped",
    "etcdserver: no leader",
    "etcdserver: not capable",
    // The gateway could not reach the member's own gRPC server.
    "transport: error while dialing",
];

/// Like [`NOT_PROPOSED_UNAVAILABLE`], but the request itself was refused (checked by
/// the gRPC layer or the txn validation before anything is proposed).
const NOT_PROPOSED_REJECTED: &[&str] = &[
    "etcdserver: request is too large",
    "etcdserver: too many operations in txn request",
    "etcdserver: duplicate key given in txn request",
    "etcdserver: key is not provided",
    "etcdserver: value is provided",
    "etcdserver: requested lease not found",
    "etcdserver: permission denied",
    "etcdserver: user name not found",
    "etcdserver: invalid auth token",
];

/// When a write rejected with `message` provably did not take effect, of which kind;
/// `None` when it may have.
pub fn write_not_applied(message: &str) -> Option<FailKind> {
    let m = message.to_ascii_lowercase();
    if NOT_PROPOSED_UNAVAILABLE.iter().any(|p| m.contains(p)) {
        Some(FailKind::Unavailable)
    } else if NOT_PROPOSED_REJECTED.iter().any(|p| m.contains(p)) {
        Some(FailKind::Rejected)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_prefix_ends() {
        assert_eq!(b64("foo"), "Zm9v");
        assert_eq!(unb64("k", &json!("YmFy")).unwrap(), "bar");
        assert!(unb64("k", &json!("@@")).unwrap_err().contains("bad base64"));
        assert!(unb64("k", &json!(3)).is_err());
        assert_eq!(prefix_end("set/"), "set0");
        assert_eq!(prefix_end("l1/"), "l10");
        assert_eq!(
            prefix_body("set/")["range_end"],
            json!(b64("set0")),
            "range_end is the prefix's successor"
        );
    }

    #[test]
    fn parses_answers_as_etcd_3_4_sends_them() {
        // Captured from etcd 3.4.23's gateway.
        let put: Value = serde_json::from_str(r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"}}"#).unwrap();
        assert_eq!(
            header(&put).unwrap(),
            Header {
                member_id: 3319814642761637952,
                raft_term: 2
            }
        );
        let range: Value = serde_json::from_str(r#"{"header":{"member_id":"1","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"eQ=="}],"count":"1"}"#).unwrap();
        assert_eq!(kvs(&range).unwrap(), vec![("foo".into(), Some("y".into()))]);
        assert_eq!(kvs(&json!({"header": {}})).unwrap(), vec![]);
        let failed_cas: Value =
            serde_json::from_str(r#"{"header":{"member_id":"1","revision":"2","raft_term":"2"}}"#)
                .unwrap();
        assert!(!succeeded(&failed_cas));
        assert!(succeeded(&json!({"succeeded": true})));
        assert!(header(&json!({"header": {"member_id": "x"}})).is_err());
    }

    #[test]
    fn raft_status_from_debug_vars() {
        let vars = json!({"raft.status": {"id": "2e1259d415f2a040", "term": 2, "vote": "2e1259d415f2a040",
            "commit": 7, "lead": "2e1259d415f2a040", "raftState": "StateLeader", "applied": 7}});
        let s = raft_status(&vars).unwrap();
        assert_eq!(s.id, 0x2e1259d415f2a040);
        assert_eq!((s.term, s.lead, s.is_leader), (2, s.id, true));
        let follower = json!({"raft.status": {"id": "a", "term": 5, "lead": "0", "raftState": "StateFollower"}});
        let s = raft_status(&follower).unwrap();
        assert_eq!((s.lead, s.is_leader), (0, false));
        assert!(raft_status(&json!({"raft.status": null})).is_err());
        assert!(raft_status(
            &json!({"raft.status": {"id": "zz", "term": 1, "lead": "0", "raftState": "x"}})
        )
        .is_err());
    }

    #[test]
    fn errors_before_proposal_fail_the_rest_are_undetermined() {
        let e = gateway_error(
            404,
            br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#,
        );
        assert_eq!(e.code, Some(5));
        assert_eq!(e.message, "etcdserver: requested lease not found");
        assert_eq!(write_not_applied(&e.message), Some(FailKind::Rejected));
        assert_eq!(
            write_not_applied("raft proposal dropped"),
            Some(FailKind::Unavailable)
        );
        assert_eq!(
            write_not_applied("etcdserver: too many requests"),
            Some(FailKind::Unavailable)
        );
        for after in [
            "etcdserver: request timed out",
            "etcdserver: request timed out, possibly due to previous leader failure",
            "etcdserver: leader changed",
            "etcdserver: server stopped",
            "transport is closing",
        ] {
            assert_eq!(write_not_applied(after), None, "{after}");
        }
        assert_eq!(gateway_error(502, b"Bad Gateway").message, "Bad Gateway");
    }
}
