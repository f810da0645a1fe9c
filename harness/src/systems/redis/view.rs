//! What Redis and Sentinel say, as the client reads it: the cluster's members by
//! address, `ROLE` and `SENTINEL` replies parsed, which error replies mean "refused
//! before it ran" (`fail`) and which mean "find the master again", and each op's
//! reply turned into the history's value and attribution.

use super::resp::Reply;
use crate::systems::FailKind;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub ip: IpAddr,
}

/// Every node, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub members: Vec<Member>,
}

impl Cluster {
    pub fn name_of(&self, ip: &str) -> Option<&str> {
        let ip: IpAddr = ip.parse().ok()?;
        self.members
            .iter()
            .find(|m| m.ip == ip)
            .map(|m| m.name.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// A Sentinel's answer: the master's node and the configuration epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelView {
    pub master: String,
    pub epoch: Option<u64>,
}

/// A node's `ROLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRole {
    pub is_master: bool,
    /// The master it follows (itself when master); `None` if not a known node.
    pub master: Option<String>,
    /// Replica link state (`connected`, `connect`, `sync`, ...).
    pub link: Option<String>,
}

/// Parses `ROLE`: `["master", offset, replicas]` or `["slave", ip, port, state, offset]`.
pub fn parse_role(reply: &Reply, self_name: &str, cluster: &Cluster) -> Result<NodeRole, String> {
    let items = reply
        .items()
        .ok_or_else(|| format!("ROLE: unexpected reply {reply:?}"))?;
    match items.first().and_then(Reply::text).as_deref() {
        Some("master") => Ok(NodeRole {
            is_master: true,
            master: Some(self_name.to_string()),
            link: None,
        }),
        Some("slave") => Ok(NodeRole {
            is_master: false,
            master: items
                .get(1)
                .and_then(Reply::text)
                .and_then(|ip| cluster.name_of(&ip).map(String::from)),
            link: items.get(3).and_then(Reply::text),
        }),
        other => Err(format!("ROLE: unexpected role {other:?}")),
    }
}

/// Parses the pipelined `SENTINEL get-master-addr-by-name` and `SENTINEL master`.
pub fn parse_sentinel(replies: &[Reply], cluster: &Cluster) -> Result<SentinelView, String> {
    let [addr, info] = replies else {
        return Err("sentinel: expected two replies".into());
    };
    if let Reply::Error(e) = addr {
        return Err(format!("sentinel: {e}"));
    }
    let ip = addr
        .items()
        .and_then(|a| a.first())
        .and_then(Reply::text)
        .ok_or_else(|| format!("sentinel: no master address in {addr:?}"))?;
    let master = cluster
        .name_of(&ip)
        .ok_or_else(|| format!("sentinel names master {ip}, which is no node of this test"))?;
    let epoch = info.items().and_then(|kv| {
        kv.chunks(2)
            .find(|p| p[0].text().as_deref() == Some("config-epoch"))
            .and_then(|p| p.get(1)?.int())
            .and_then(|e| u64::try_from(e).ok())
    });
    Ok(SentinelView {
        master: master.to_string(),
        epoch,
    })
}

/// When an error reply means the command was refused before it ran (`fail`), of
/// which kind: the server cannot take writes now (read-only replica, no replicas, no
/// master, loading, busy, out of memory, cannot persist) or it declined the command
/// itself (an unknown script). `None`: it may have run (`info` for a write).
pub fn refused(e: &str) -> Option<FailKind> {
    const UNAVAILABLE: &[&str] = &[
        "READONLY",
        "NOREPLICAS",
        "MASTERDOWN",
        "LOADING",
        "MOVED",
        "ASK",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "BUSY",
        "OOM",
        "MISCONF",
    ];
    if UNAVAILABLE.iter().any(|p| e.starts_with(p)) {
        Some(FailKind::Unavailable)
    } else if e.starts_with("NOSCRIPT") {
        Some(FailKind::Rejected)
    } else {
        None
    }
}

/// Errors after which the client must find the master again.
pub fn lost_master(e: &str) -> bool {
    ["READONLY", "MOVED", "MASTERDOWN", "LOADING"]
        .iter()
        .any(|p| e.starts_with(p))
}

pub fn attribution(node: &str, epoch: Option<u64>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("acked_by".into(), json!(node));
    if let Some(e) = epoch {
        m.insert("epoch".into(), json!(e));
    }
    m
}

pub fn served(node: &str, role: &str, epoch: Option<u64>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("served_by".into(), json!(node));
    m.insert("role".into(), json!(role));
    if let Some(e) = epoch {
        m.insert("epoch".into(), json!(e));
    }
    m
}

pub fn ints(reply: &Reply) -> Result<Vec<i64>, String> {
    let items = reply
        .items()
        .ok_or_else(|| format!("expected an array, got {reply:?}"))?;
    items
        .iter()
        .map(|r| r.int().ok_or_else(|| format!("non-integer element {r:?}")))
        .collect()
}

/// Turns a reply into the op's value.
pub type ParseFn = fn(&Reply) -> Result<Value, String>;

pub fn sorted_ints(r: &Reply) -> Result<Value, String> {
    let mut v = ints(r)?;
    v.sort_unstable();
    Ok(json!(v))
}

pub fn list_ints(r: &Reply) -> Result<Value, String> {
    Ok(json!(ints(r)?))
}

pub fn register(r: &Reply) -> Result<Value, String> {
    match r {
        Reply::Bulk(None) => Ok(Value::Null),
        r => r
            .int()
            .map(|i| json!(i))
            .ok_or_else(|| format!("register holds a non-integer {r:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster {
            members: (1..=3)
                .map(|i| Member {
                    name: format!("n{i}"),
                    ip: format!("10.77.77.{}", 10 + i).parse().unwrap(),
                })
                .collect(),
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn role_replies() {
        let c = cluster();
        let master = Reply::Array(Some(vec![
            bulk("master"),
            Reply::Int(5),
            Reply::Array(Some(vec![])),
        ]));
        let r = parse_role(&master, "n2", &c).unwrap();
        assert!(r.is_master);
        assert_eq!(r.master.as_deref(), Some("n2"));
        let replica = Reply::Array(Some(vec![
            bulk("slave"),
            bulk("10.77.77.13"),
            Reply::Int(6379),
            bulk("connected"),
            Reply::Int(5),
        ]));
        let r = parse_role(&replica, "n1", &c).unwrap();
        assert_eq!(
            (r.is_master, r.master.as_deref(), r.link.as_deref()),
            (false, Some("n3"), Some("connected"))
        );
        let sentinel = Reply::Array(Some(vec![bulk("sentinel")]));
        assert!(parse_role(&sentinel, "n1", &c)
            .unwrap_err()
            .contains("unexpected role"));
        assert!(parse_role(&Reply::Int(1), "n1", &c).is_err());
    }

    #[test]
    fn sentinel_replies() {
        let c = cluster();
        let addr = Reply::Array(Some(vec![bulk("10.77.77.12"), bulk("6379")]));
        let info = Reply::Array(Some(vec![
            bulk("name"),
            bulk("splitbrain"),
            bulk("config-epoch"),
            bulk("4"),
        ]));
        assert_eq!(
            parse_sentinel(&[addr.clone(), info], &c),
            Ok(SentinelView {
                master: "n2".into(),
                epoch: Some(4)
            })
        );
        let none = Reply::Array(Some(vec![]));
        assert_eq!(
            parse_sentinel(&[addr, none.clone()], &c).unwrap().epoch,
            None
        );
        let stranger = Reply::Array(Some(vec![bulk("192.0.2.1"), bulk("6379")]));
        assert!(parse_sentinel(&[stranger, none.clone()], &c)
            .unwrap_err()
            .contains("no node of this test"));
        assert!(parse_sentinel(
            &[Reply::Error("ERR No such master".into()), none.clone()],
            &c
        )
        .unwrap_err()
        .contains("No such master"));
        assert!(parse_sentinel(&[Reply::Array(None), none], &c).is_err());
    }

    #[test]
    fn refusals_are_fail_and_the_rest_info() {
        assert_eq!(
            refused("READONLY You can't write against a read only replica."),
            Some(FailKind::Unavailable)
        );
        assert_eq!(
            refused("NOREPLICAS Not enough good replicas to write."),
            Some(FailKind::Unavailable)
        );
        assert_eq!(
            refused("NOSCRIPT No matching script."),
            Some(FailKind::Rejected)
        );
        assert_eq!(refused("ERR Error running script"), None);
        assert!(lost_master("READONLY x") && !lost_master("NOREPLICAS x"));
        assert_eq!(register(&Reply::Bulk(None)), Ok(Value::Null));
        assert_eq!(register(&bulk("3")), Ok(json!(3)));
        assert!(register(&bulk("x")).is_err());
        let set = Reply::Array(Some(vec![bulk("10"), bulk("2")]));
        assert_eq!(sorted_ints(&set), Ok(json!([2, 10])));
        assert_eq!(list_ints(&set), Ok(json!([10, 2])));
    }
}
