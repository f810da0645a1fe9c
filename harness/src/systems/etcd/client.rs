//! The etcd client of the harness: one kept-alive gateway connection per client,
//! every workload operation mapped onto puts, linearizable ranges and
//! compare-and-set transactions, each answer classified `ok` / `fail` / `info`, and
//! acknowledged writes attributed to the Raft leader of the term in their response
//! header (learned from the members' `raft.status`, shared by all clients).

use super::api::{self, GatewayError, RaftStatus};
use super::http::{Conn, HttpError};
use crate::systems::{FailKind, Outcome, SystemClient};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workloads::{Invocation, OpFn};

/// What the members said about themselves: member id to node name, and the leader of
/// every term seen (Raft allows one per term; a second one is kept as a conflict).
#[derive(Debug, Default)]
pub struct Members {
    names: HashMap<u64, String>,
    leaders: BTreeMap<u64, u64>,
    /// (term, leader first seen, other leader claimed): a Raft safety violation.
    pub conflicts: Vec<(u64, u64, u64)>,
}

impl Members {
    /// Records `status` as reported by `node` about itself.
    pub fn learn(&mut self, node: &str, s: &RaftStatus) {
        self.names.entry(s.id).or_insert_with(|| node.to_string());
        if s.lead != 0 {
            match self.leaders.get(&s.term) {
                None => {
                    self.leaders.insert(s.term, s.lead);
                }
                Some(&l) if l != s.lead => {
                    if !self.conflicts.contains(&(s.term, l, s.lead)) {
                        tracing::error!(
                            term = s.term,
                            "two leaders reported for one Raft term: {l:x} and {:x}",
                            s.lead
                        );
                        self.conflicts.push((s.term, l, s.lead));
                    }
                }
                Some(_) => {}
            }
        }
    }

    pub fn name(&self, id: u64) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// The node that led `term`, when it was seen.
    pub fn leader_of(&self, term: u64) -> Option<&str> {
        self.leaders.get(&term).and_then(|id| self.name(*id))
    }
}

pub type SharedMembers = Arc<Mutex<Members>>;

fn lock(m: &SharedMembers) -> std::sync::MutexGuard<'_, Members> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How one gateway call ended.
#[derive(Debug)]
enum CallError {
    /// Never sent (connection refused or timed out).
    NotSent(String),
    /// Sent; the answer never came or could not be read.
    Unknown(String),
    /// etcd answered with an error.
    Rejected(GatewayError),
}

/// A client bound to one node; connects on first use and after any failure.
pub struct EtcdClient {
    node: String,
    addr: Result<SocketAddr, String>,
    conn: Option<Conn>,
    connect_timeout: Duration,
    members: SharedMembers,
}

impl EtcdClient {
    pub fn new(
        node: &str,
        addr: Result<SocketAddr, String>,
        connect_timeout: Duration,
        members: SharedMembers,
    ) -> EtcdClient {
        EtcdClient {
            node: node.to_string(),
            addr,
            conn: None,
            connect_timeout,
            members,
        }
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, CallError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CallError::NotSent(format!("{}: no time left", self.node)));
        }
        if self.conn.as_ref().is_none_or(Conn::is_closed) {
            let addr = self.addr.clone().map_err(CallError::NotSent)?;
            let c = Conn::connect(addr, self.connect_timeout.min(left))
                .await
                .map_err(|e| CallError::NotSent(e.to_string()))?;
            self.conn = Some(c);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(CallError::NotSent("no connection".into()));
        };
        let bytes = if method == "POST" {
            body.to_string().into_bytes()
        } else {
            Vec::new()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let r = tokio::time::timeout(left, conn.request(method, path, &bytes)).await;
        let resp = match r {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                self.conn = None;
                return Err(match e {
                    HttpError::NotSent(m) => CallError::NotSent(m),
                    HttpError::Unknown(m) => CallError::Unknown(format!("{}: {m}", self.node)),
                });
            }
            Err(_) => {
                // The answer may still come on this connection: never reuse it.
                self.conn = None;
                return Err(CallError::Unknown(format!(
                    "{}: {path} timed out",
                    self.node
                )));
            }
        };
        if resp.status != 200 {
            return Err(CallError::Rejected(api::gateway_error(
                resp.status,
                &resp.body,
            )));
        }
        serde_json::from_slice(&resp.body).map_err(|e| {
            self.conn = None;
            CallError::Unknown(format!("{}: {path}: answer is not JSON: {e}", self.node))
        })
    }

    /// This node's Raft status (also teaches the shared member map).
    pub async fn raft_status(&mut self, timeout: Duration) -> Result<RaftStatus, String> {
        let deadline = Instant::now() + timeout;
        let vars = self
            .call("GET", api::VARS, &Value::Null, deadline)
            .await
            .map_err(|e| describe(&e))?;
        let s = api::raft_status(&vars).map_err(|e| format!("{}: {e}", self.node))?;
        lock(&self.members).learn(&self.node, &s);
        Ok(s)
    }

    /// `acked_by` (the leader of the header's term) and `epoch` (that term) of an
    /// acknowledged write; asks this node for its Raft status when the term's leader
    /// has not been seen yet.
    async fn attribution(&mut self, resp: &Value, deadline: Instant) -> Map<String, Value> {
        let mut extra = Map::new();
        let Ok(h) = api::header(resp) else {
            return extra;
        };
        extra.insert("epoch".into(), json!(h.raft_term));
        let known = lock(&self.members)
            .leader_of(h.raft_term)
            .map(str::to_string);
        let leader = match known {
            Some(l) => Some(l),
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = self.raft_status(left.max(Duration::from_millis(200))).await;
                lock(&self.members)
                    .leader_of(h.raft_term)
                    .map(str::to_string)
            }
        };
        match leader {
            Some(l) => {
                extra.insert("acked_by".into(), json!(l));
            }
            None => {
                extra.insert(
                    "attribution".into(),
                    json!(format!("leader of term {} not observed", h.raft_term)),
                );
            }
        }
        extra
    }

    async fn write(&mut self, path: &str, body: Value, value: Value, deadline: Instant) -> Outcome {
        match self.call("POST", path, &body, deadline).await {
            Ok(resp) => {
                if path == api::TXN && !api::succeeded(&resp) {
                    return Outcome::rejected("cas: the value did not match");
                }
                let extra = self.attribution(&resp, deadline).await;
                Outcome::Ok { value, extra }
            }
            Err(CallError::NotSent(error)) => Outcome::unavailable(error),
            Err(CallError::Rejected(e)) => match api::write_not_applied(&e.message) {
                Some(kind) => Outcome::Fail {
                    error: e.to_string(),
                    kind,
                },
                None => Outcome::Info {
                    error: e.to_string(),
                },
            },
            Err(e) => Outcome::Info {
                error: describe(&e),
            },
        }
    }

    /// A linearizable range; reads change nothing, so every error is `fail`: one the
    /// request itself caused is `rejected`, anything else `unavailable`.
    async fn read(&mut self, body: Value, deadline: Instant) -> Result<Value, Outcome> {
        self.call("POST", api::RANGE, &body, deadline)
            .await
            .map_err(|e| {
                let kind = match &e {
                    CallError::Rejected(g) => {
                        api::write_not_applied(&g.message).unwrap_or(FailKind::Unavailable)
                    }
                    CallError::NotSent(_) | CallError::Unknown(_) => FailKind::Unavailable,
                };
                Outcome::Fail {
                    error: describe(&e),
                    kind,
                }
            })
    }

    fn served(&self, resp: &Value) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("served_by".into(), json!(self.node));
        if let Ok(h) = api::header(resp) {
            extra.insert("epoch".into(), json!(h.raft_term));
        }
        extra
    }

    /// The integer elements stored as keys under `<key>/`, in commit order.
    async fn read_elements(&mut self, key: &str, deadline: Instant) -> Outcome {
        let prefix = format!("{key}/");
        let resp = match self.read(api::prefix_body(&prefix), deadline).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        let kvs = match api::kvs(&resp) {
            Ok(k) => k,
            Err(error) => return Outcome::rejected(error),
        };
        let mut values = Vec::with_capacity(kvs.len());
        for (k, _) in kvs {
            match k.strip_prefix(&prefix).and_then(|s| s.parse::<i64>().ok()) {
                Some(v) => values.push(v),
                None => return Outcome::rejected(format!("unexpected key {k:?} under {prefix}")),
            }
        }
        Outcome::Ok {
            value: Value::from(values),
            extra: self.served(&resp),
        }
    }
}

fn describe(e: &CallError) -> String {
    match e {
        CallError::NotSent(m) | CallError::Unknown(m) => m.clone(),
        CallError::Rejected(g) => g.to_string(),
    }
}

fn int(inv: &Invocation) -> Result<i64, String> {
    inv.value
        .as_i64()
        .ok_or_else(|| format!("{} of a non-integer {}", inv.f.as_str(), inv.value))
}

impl SystemClient for EtcdClient {
    async fn invoke(&mut self, inv: &Invocation, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let key = inv.key.clone().unwrap_or_default();
        match inv.f {
            // Set adds and list appends: one key per element, `<key>/<element>`.
            OpFn::Add | OpFn::Append => {
                let v = match int(inv) {
                    Ok(v) => v,
                    Err(error) => return Outcome::rejected(error),
                };
                let body = api::put_body(&format!("{key}/{v}"), &v.to_string());
                self.write(api::PUT, body, json!(v), deadline).await
            }
            OpFn::Read | OpFn::ReadList => self.read_elements(&key, deadline).await,
            OpFn::Write => {
                let v = match int(inv) {
                    Ok(v) => v,
                    Err(error) => return Outcome::rejected(error),
                };
                let body = api::put_body(&key, &v.to_string());
                self.write(api::PUT, body, json!(v), deadline).await
            }
            OpFn::Cas => {
                let pair = inv.value.as_array().and_then(|p| match p.as_slice() {
                    [a, b] => Some((a.as_i64()?, b.as_i64()?)),
                    _ => None,
                });
                let Some((from, to)) = pair else {
                    return Outcome::rejected(format!(
                        "cas needs [from, to] integers, got {}",
                        inv.value
                    ));
                };
                let body = api::cas_body(&key, &from.to_string(), &to.to_string());
                self.write(api::TXN, body, json!([from, to]), deadline)
                    .await
            }
            OpFn::ReadRegister => {
                let resp = match self.read(api::get_body(&key), deadline).await {
                    Ok(r) => r,
                    Err(o) => return o,
                };
                let value = match api::kvs(&resp) {
                    Ok(kvs) => match kvs.first() {
                        None => Value::Null,
                        Some((_, Some(v))) => match v.parse::<i64>() {
                            Ok(n) => json!(n),
                            Err(_) => {
                                return Outcome::rejected(format!(
                                    "register {key} holds {v:?}, not an integer"
                                ))
                            }
                        },
                        Some((_, None)) => Value::Null,
                    },
                    Err(error) => return Outcome::rejected(error),
                };
                Outcome::Ok {
                    value,
                    extra: self.served(&resp),
                }
            }
            OpFn::Role => match self.raft_status(timeout).await {
                Ok(s) => {
                    let master = lock(&self.members).name(s.lead).map(str::to_string);
                    Outcome::Ok {
                        value: json!({
                            "role": if s.is_leader { "master" } else { "replica" },
                            "epoch": s.term,
                            "master": master,
                        }),
                        extra: Map::new(),
                    }
                }
                Err(error) => Outcome::unavailable(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: u64, term: u64, lead: u64) -> RaftStatus {
        RaftStatus {
            id,
            term,
            lead,
            is_leader: id == lead,
        }
    }

    #[test]
    fn members_map_terms_to_leaders_and_keep_conflicts() {
        let mut m = Members::default();
        m.learn("n1", &st(11, 2, 11));
        m.learn("n2", &st(22, 2, 11));
        m.learn("n3", &st(33, 3, 0));
        assert_eq!(m.leader_of(2), Some("n1"));
        assert_eq!(m.leader_of(3), None, "no leader known for term 3");
        m.learn("n2", &st(22, 4, 22));
        assert_eq!(m.leader_of(4), Some("n2"));
        assert!(m.conflicts.is_empty());
        m.learn("n3", &st(33, 4, 33));
        assert_eq!(m.conflicts, vec![(4, 22, 33)]);
        assert_eq!(m.leader_of(4), Some("n2"), "the first claim stays");
    }

    #[tokio::test]
    async fn refused_writes_fail_and_reads_fail() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = EtcdClient::new(
            "n1",
            Ok(addr),
            Duration::from_secs(1),
            SharedMembers::default(),
        );
        let add = Invocation {
            f: OpFn::Add,
            key: Some("set".into()),
            value: json!(1),
            is_final: false,
        };
        assert!(matches!(
            c.invoke(&add, Duration::from_secs(1)).await,
            Outcome::Fail {
                kind: FailKind::Unavailable,
                ..
            }
        ));
        let role = Invocation {
            f: OpFn::Role,
            key: None,
            value: Value::Null,
            is_final: false,
        };
        assert!(matches!(
            c.invoke(&role, Duration::from_secs(1)).await,
            Outcome::Fail {
                kind: FailKind::Unavailable,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_write_sent_but_unanswered_is_info() {
        // A server that accepts and reads but never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            use tokio::io::AsyncReadExt;
            let _ = s.read(&mut buf).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
        let mut c = EtcdClient::new(
            "n1",
            Ok(addr),
            Duration::from_secs(1),
            SharedMembers::default(),
        );
        let w = Invocation {
            f: OpFn::Write,
            key: Some("r1".into()),
            value: json!(3),
            is_final: false,
        };
        match c.invoke(&w, Duration::from_millis(300)).await {
            Outcome::Info { error } => assert!(error.contains("timed out"), "{error}"),
            o => panic!("expected info, got {o:?}"),
        }
        server.abort();
    }

    #[tokio::test]
    async fn gateway_rejections_split_on_the_message() {
        // A server answering two gateway errors in turn on one connection.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
            let (s, _) = l.accept().await.unwrap();
            let mut s = BufReader::new(s);
            for msg in ["raft proposal dropped", "etcdserver: request timed out"] {
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    s.read_line(&mut line).await.unwrap();
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                s.read_exact(&mut body).await.unwrap();
                let b = format!(r#"{{"error":"{msg}","message":"{msg}","code":14}}"#);
                let r = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
                s.get_mut().write_all(r.as_bytes()).await.unwrap();
            }
        });
        let mut c = EtcdClient::new(
            "n1",
            Ok(addr),
            Duration::from_secs(1),
            SharedMembers::default(),
        );
        let w = Invocation {
            f: OpFn::Write,
            key: Some("r1".into()),
            value: json!(3),
            is_final: false,
        };
        assert!(matches!(
            c.invoke(&w, Duration::from_secs(2)).await,
            Outcome::Fail {
                kind: FailKind::Unavailable,
                ..
            }
        ));
        match c.invoke(&w, Duration::from_secs(2)).await {
            Outcome::Info { error } => assert!(error.contains("request timed out"), "{error}"),
            o => panic!("expected info, got {o:?}"),
        }
        server.await.unwrap();
    }
}
