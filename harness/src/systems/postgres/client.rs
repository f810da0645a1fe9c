//! The workload client for PostgreSQL. Writes and main-phase reads go to a read-write
//! node found the way libpq's `target_session_attrs=read-write` finds one: try the
//! nodes in order (starting with the client's own node), keep the first that is not in
//! recovery. Final reads and role observations ask the client's own node directly.
//! Every answer is classified: nothing sent → `fail`; the server refused with a
//! definite error (read-only, constraint, serialization) → `fail`; anything else after
//! sending, timeouts included → `info`. Timeouts are client-side only: a server-side
//! `statement_timeout` cancelling a commit that waits for synchronous replication makes
//! PostgreSQL report the commit as done (with a warning), which would turn an
//! unreplicated write into an acknowledged one.

use super::sql::{self, first_row, STATUS_SQL};
use crate::systems::{FailKind, Outcome, SystemClient};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};
use workloads::{Invocation, OpFn};

/// Tables the workloads use (created on the primary at setup).
pub const SCHEMA_SQL: &str =
    "CREATE TABLE IF NOT EXISTS sb_set (key text NOT NULL, element bigint NOT NULL); \
     CREATE TABLE IF NOT EXISTS sb_register (key text PRIMARY KEY, value bigint)";

/// A connection to a read-write node, and who it is.
struct Session {
    client: Client,
    /// The node's `cluster_name`.
    node: String,
    /// Its timeline when we connected (a primary's timeline does not change).
    timeline: u64,
    /// Statements prepared on this connection, by their text: one round trip per op.
    stmts: HashMap<&'static str, Statement>,
}

impl Session {
    /// The statement for `text`, prepared once per connection. Preparing runs nothing:
    /// an error here means the op was not sent.
    async fn prepared(
        &mut self,
        text: &'static str,
        deadline: Instant,
    ) -> Result<Statement, String> {
        if let Some(st) = self.stmts.get(text) {
            return Ok(st.clone());
        }
        let st = bounded(deadline, self.client.prepare(text))
            .await?
            .map_err(|e| format!("preparing: {e}"))?;
        self.stmts.insert(text, st.clone());
        Ok(st)
    }
}

const INSERT_SET: &str = "INSERT INTO sb_set (key, element) VALUES ($1, $2)";
const CAS: &str = "UPDATE sb_register SET value = $3 WHERE key = $1 AND value = $2";
const UPSERT: &str = "INSERT INTO sb_register (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const READ_SET: &str = "SELECT element FROM sb_set WHERE key = $1 ORDER BY element";
const READ_REGISTER: &str = "SELECT value FROM sb_register WHERE key = $1";

pub struct PgClient {
    /// This client's node.
    node: String,
    host: String,
    /// (name, host) of every node, this client's own first, then the others in order.
    order: Vec<(String, String)>,
    connect_timeout: Duration,
    session: Option<Session>,
    direct: Option<Client>,
    /// [`STATUS_SQL`] prepared on `direct`, for role observations.
    status: Option<Statement>,
}

impl PgClient {
    pub fn new(
        node: String,
        host: String,
        order: Vec<(String, String)>,
        connect_timeout: Duration,
    ) -> PgClient {
        PgClient {
            node,
            host,
            order,
            connect_timeout,
            session: None,
            direct: None,
            status: None,
        }
    }

    /// A read-write session; `Err` (nothing sent) when no node is read-write.
    async fn primary(&mut self, deadline: Instant) -> Result<&mut Session, String> {
        if self.session.as_ref().is_some_and(|s| s.client.is_closed()) {
            self.session = None;
        }
        if self.session.is_none() {
            let mut tried = Vec::new();
            for (name, host) in &self.order {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tried.push(format!("{name}: no time left"));
                    break;
                }
                let t = left.min(self.connect_timeout);
                let c = match sql::connect(host, &format!("splitbrain-{}", self.node), t).await {
                    Ok(c) => c,
                    Err(e) => {
                        tried.push(format!("{name}: {e}"));
                        continue;
                    }
                };
                match first_row(&c, STATUS_SQL, t)
                    .await
                    .and_then(|r| sql::parse_status(&r))
                {
                    Ok(s) if !s.in_recovery => {
                        self.session = Some(Session {
                            client: c,
                            node: s.name,
                            timeline: s.timeline,
                            stmts: HashMap::new(),
                        });
                        break;
                    }
                    Ok(_) => tried.push(format!("{name}: in recovery (read-only)")),
                    Err(e) => tried.push(format!("{name}: {e}")),
                }
            }
            if self.session.is_none() {
                return Err(format!("no read-write node: {}", tried.join("; ")));
            }
        }
        self.session
            .as_mut()
            .ok_or_else(|| "no read-write node".to_string())
    }

    /// A connection to this client's own node, whatever its role.
    async fn own(&mut self, deadline: Instant) -> Result<&Client, String> {
        if self.direct.as_ref().is_some_and(Client::is_closed) {
            self.direct = None;
        }
        if self.direct.is_none() {
            self.status = None;
            let t = deadline
                .saturating_duration_since(Instant::now())
                .min(self.connect_timeout);
            let c = sql::connect(&self.host, &format!("splitbrain-{}", self.node), t).await?;
            self.direct = Some(c);
        }
        self.direct
            .as_ref()
            .ok_or_else(|| "no connection".to_string())
    }
}

/// `fail` when the server definitely rejected the statement, else `info`. A read-only
/// node (a standby, or a primary that was just demoted) cannot take the write now
/// (`unavailable`); a conflict, a constraint, a bad value or bad SQL declined this
/// statement (`rejected`).
pub fn classify_write_error(e: &tokio_postgres::Error) -> Outcome {
    let error = e.to_string();
    let kind = e.code().and_then(|c| {
        let s = c.code();
        if *c == SqlState::READ_ONLY_SQL_TRANSACTION {
            Some(FailKind::Unavailable)
        } else if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || s.starts_with("23")
            || s.starts_with("22")
            || s.starts_with("42")
        {
            Some(FailKind::Rejected)
        } else {
            None
        }
    });
    match kind {
        Some(kind) => Outcome::Fail { error, kind },
        None => Outcome::Info { error },
    }
}

/// Attribution of an acknowledged write: the primary that committed it and its
/// timeline (the epoch).
fn attribution(s: &Session) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("acked_by".into(), json!(s.node));
    m.insert("epoch".into(), json!(s.timeline));
    m
}

fn served(node: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("served_by".into(), json!(node));
    m
}

async fn bounded<T>(
    deadline: Instant,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<Result<T, tokio_postgres::Error>, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, fut)
        .await
        .map_err(|_| "timed out waiting for the server's answer".to_string())
}

impl SystemClient for PgClient {
    async fn invoke(&mut self, inv: &Invocation, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let key = inv.key.clone().unwrap_or_default();
        match inv.f {
            OpFn::Add | OpFn::Write | OpFn::Cas => self.write(inv, &key, deadline).await,
            OpFn::Read | OpFn::ReadRegister => self.read(inv, &key, deadline).await,
            OpFn::Role => self.role(deadline).await,
            OpFn::Append | OpFn::ReadList => {
                Outcome::rejected("postgres does not support list-append")
            }
        }
    }
}

impl PgClient {
    async fn write(&mut self, inv: &Invocation, key: &str, deadline: Instant) -> Outcome {
        let (value, from) = match inv.f {
            OpFn::Cas => match inv.value.as_array().map(Vec::as_slice) {
                Some([a, b]) => match (a.as_i64(), b.as_i64()) {
                    (Some(a), Some(b)) => (b, Some(a)),
                    _ => return bad_value(inv),
                },
                _ => return bad_value(inv),
            },
            _ => match inv.value.as_i64() {
                Some(v) => (v, None),
                None => return bad_value(inv),
            },
        };
        let s = match self.primary(deadline).await {
            Ok(s) => s,
            Err(error) => return Outcome::unavailable(error),
        };
        let text = match (inv.f, from) {
            (OpFn::Add, _) => INSERT_SET,
            (OpFn::Cas, Some(_)) => CAS,
            _ => UPSERT,
        };
        let st = match s.prepared(text, deadline).await {
            Ok(st) => st,
            Err(error) => {
                self.session = None;
                return Outcome::unavailable(error);
            }
        };
        let r = match from {
            Some(from) => bounded(deadline, s.client.execute(&st, &[&key, &from, &value])).await,
            None => bounded(deadline, s.client.execute(&st, &[&key, &value])).await,
        };
        let outcome = match r {
            Err(error) => Outcome::Info { error },
            Ok(Err(e)) => classify_write_error(&e),
            Ok(Ok(0)) if inv.f == OpFn::Cas => {
                Outcome::rejected("cas: the value was not the expected one")
            }
            Ok(Ok(_)) => Outcome::Ok {
                value: inv.value.clone(),
                extra: attribution(s),
            },
        };
        if matches!(outcome, Outcome::Info { .. }) {
            self.session = None;
        }
        outcome
    }

    async fn read(&mut self, inv: &Invocation, key: &str, deadline: Instant) -> Outcome {
        let text = if inv.f == OpFn::Read {
            READ_SET
        } else {
            READ_REGISTER
        };
        // Final reads show what this node holds; others ask the read-write node (with
        // its prepared statement).
        let (client, st, node) = if inv.is_final {
            let own_name = self.node.clone();
            match self.own(deadline).await {
                Ok(c) => (c, None, own_name),
                Err(error) => return Outcome::unavailable(error),
            }
        } else {
            let prepared = match self.primary(deadline).await {
                Ok(s) => s.prepared(text, deadline).await,
                Err(error) => return Outcome::unavailable(error),
            };
            match (prepared, self.session.as_ref()) {
                (Ok(st), Some(s)) => (&s.client, Some(st), s.node.clone()),
                (Err(error), _) => {
                    self.session = None;
                    return Outcome::unavailable(error);
                }
                (Ok(_), None) => return Outcome::unavailable("no read-write node"),
            }
        };
        let rows = match &st {
            Some(st) => bounded(deadline, client.query(st, &[&key])).await,
            None => bounded(deadline, client.query(text, &[&key])).await,
        };
        let r = rows.map(|r| {
            r.and_then(|rows| {
                if inv.f == OpFn::Read {
                    rows.iter()
                        .map(|row| row.try_get::<_, i64>(0))
                        .collect::<Result<Vec<i64>, _>>()
                        .map(|v| json!(v))
                } else {
                    match rows.first() {
                        None => Ok(Value::Null),
                        Some(row) => row.try_get::<_, Option<i64>>(0).map(|v| json!(v)),
                    }
                }
            })
        });
        match r {
            Ok(Ok(value)) => Outcome::Ok {
                value,
                extra: served(&node),
            },
            // A read changes nothing: whatever went wrong, it did not take effect.
            Ok(Err(e)) => {
                self.drop_connection(inv.is_final);
                Outcome::unavailable(e.to_string())
            }
            Err(error) => {
                self.drop_connection(inv.is_final);
                Outcome::unavailable(error)
            }
        }
    }

    fn drop_connection(&mut self, direct: bool) {
        if direct {
            self.direct = None;
        } else {
            self.session = None;
        }
    }

    async fn role(&mut self, deadline: Instant) -> Outcome {
        let r = match self.own(deadline).await {
            Ok(_) => self.status_row(deadline).await,
            Err(e) => Err(e),
        };
        match r.and_then(|row| sql::parse_status(&row)) {
            Ok(s) => Outcome::Ok {
                value: json!({
                    "role": if s.in_recovery { "replica" } else { "master" },
                    "epoch": s.timeline,
                    "master": if s.in_recovery { s.sender_host.and_then(|h| self.name_of(&h)) } else { Some(s.name) },
                }),
                extra: Map::new(),
            },
            Err(error) => {
                self.direct = None;
                Outcome::unavailable(error)
            }
        }
    }

    /// [`STATUS_SQL`] on the own connection, prepared once per connection.
    async fn status_row(&mut self, deadline: Instant) -> Result<Vec<Option<String>>, String> {
        let Some(c) = self.direct.as_ref() else {
            return Err("no connection".into());
        };
        let st = match &self.status {
            Some(st) => st.clone(),
            None => {
                let st = bounded(deadline, c.prepare(STATUS_SQL))
                    .await?
                    .map_err(|e| format!("preparing the status probe: {e}"))?;
                self.status = Some(st.clone());
                st
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        sql::first_row_prepared(c, &st, left).await
    }

    /// The node name of an address.
    pub fn name_of(&self, host: &str) -> Option<String> {
        self.order
            .iter()
            .find(|(_, h)| h == host)
            .map(|(n, _)| n.clone())
    }
}

fn bad_value(inv: &Invocation) -> Outcome {
    Outcome::rejected(format!(
        "{} needs integer values ([from, to] for cas), got {}",
        inv.f.as_str(),
        inv.value
    ))
}
