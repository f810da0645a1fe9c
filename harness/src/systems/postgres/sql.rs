//! Talking SQL to one node: a connection opened with our own connect timeout
//! (tokio-postgres without its runtime feature, over a plain TCP stream), and the
//! status probe that roles, readiness and the failover supervisor read: recovery
//! state, timeline, WAL receiver state and positions.

use super::conf::{parse_lsn, walfile_timeline, PORT};
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage, Statement};

/// Opens a connection to `host` as `postgres`, bounded by `timeout` for the TCP
/// connect and the startup exchange together. An error here means nothing of any
/// operation was sent.
pub async fn connect(host: &str, app: &str, timeout: Duration) -> Result<Client, String> {
    let addr = format!("{host}:{PORT}");
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr.as_str())
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut cfg = Config::new();
        cfg.user("postgres")
            .dbname("postgres")
            .application_name(app);
        let (client, connection) = cfg
            .connect_raw(stream, NoTls)
            .await
            .map_err(|e| format!("startup with {addr}: {e}"))?;
        // The connection drives the socket; it ends when the client is dropped or the
        // server goes away, which the client then sees as closed.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok::<Client, String>(client)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("connect to {addr}: timed out after {timeout:?}")),
    }
}

/// Runs `sql` with the simple protocol and returns its first row's columns as text.
pub async fn first_row(
    client: &Client,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<Option<String>>, String> {
    let msgs = tokio::time::timeout(timeout, client.simple_query(sql))
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    for m in msgs {
        if let SimpleQueryMessage::Row(row) = m {
            return Ok((0..row.len())
                .map(|i| row.get(i).map(str::to_string))
                .collect());
        }
    }
    Err("the query returned no row".into())
}

/// Runs the prepared `st` and returns its first row's columns as text, in the simple
/// protocol's spelling (`t`/`f` for booleans, decimal integers), so one parser reads
/// both. A prepared probe is planned once per connection: on PostgreSQL 15 the simple
/// protocol's [`STATUS_SQL`] costs ~0.7 ms of server time each, the prepared one ~0.09
/// ms, and leader observation sends one per node every 20 ms.
pub async fn first_row_prepared(
    client: &Client,
    st: &Statement,
    timeout: Duration,
) -> Result<Vec<Option<String>>, String> {
    let rows = tokio::time::timeout(timeout, client.query(st, &[]))
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let row = rows.first().ok_or("the query returned no row")?;
    let text = |i: usize| -> Result<Option<String>, String> {
        let ty = row.columns()[i].type_();
        let bad = |e: tokio_postgres::Error| format!("column {i} ({ty}): {e}");
        Ok(match *ty {
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map_err(bad)?
                .map(|b| if b { "t" } else { "f" }.to_string()),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map_err(bad)?
                .map(|v| v.to_string()),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map_err(bad)?
                .map(|v| v.to_string()),
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)
                .map_err(bad)?
                .map(|v| v.to_string()),
            Type::OID => row
                .try_get::<_, Option<u32>>(i)
                .map_err(bad)?
                .map(|v| v.to_string()),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                row.try_get::<_, Option<String>>(i).map_err(bad)?
            }
            _ => {
                return Err(format!(
                    "column {i} has type {ty}, which the probe does not read"
                ))
            }
        })
    };
    (0..row.len()).map(text).collect()
}

/// One node's replication state as it reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// `cluster_name`: the node's own name.
    pub name: String,
    pub in_recovery: bool,
    /// The timeline it writes on (primary) or receives / replays (standby).
    pub timeline: u64,
    /// A standby's WAL receiver is streaming from a primary right now.
    pub streaming: bool,
    /// Where that receiver streams from (an address), when streaming.
    pub sender_host: Option<String>,
    /// Highest WAL position known here: written (primary) or received / replayed.
    pub lsn: u64,
    /// The node's `primary_conninfo` setting.
    pub primary_conninfo: String,
    /// Standbys streaming from it (meaningful on a primary).
    pub streaming_standbys: u64,
}

/// The probe behind [`NodeStatus`]; one statement, every branch safe on both roles.
pub const STATUS_SQL: &str = "SELECT current_setting('cluster_name'), pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
     (SELECT timeline_id FROM pg_control_checkpoint()), \
     (SELECT status FROM pg_stat_wal_receiver), \
     (SELECT sender_host FROM pg_stat_wal_receiver), \
     (SELECT received_tli FROM pg_stat_wal_receiver), \
     pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
     current_setting('primary_conninfo'), \
     (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming')";

/// Parses the row of [`STATUS_SQL`].
pub fn parse_status(row: &[Option<String>]) -> Result<NodeStatus, String> {
    let col = |i: usize| row.get(i).and_then(|v| v.as_deref());
    if row.len() != 12 {
        return Err(format!("status row has {} columns, expected 12", row.len()));
    }
    let name = col(0).unwrap_or_default().to_string();
    let in_recovery = match col(1) {
        Some("t") => true,
        Some("f") => false,
        other => return Err(format!("pg_is_in_recovery() gave {other:?}")),
    };
    let num = |i: usize| col(i).and_then(|v| v.parse::<u64>().ok());
    let lsn = |i: usize| col(i).and_then(parse_lsn);
    let checkpoint_tli = num(4).unwrap_or(0);
    let (timeline, pos) = if in_recovery {
        let tli = num(7).unwrap_or(0).max(checkpoint_tli);
        (tli, lsn(8).max(lsn(9)).unwrap_or(0))
    } else {
        let tli = col(2).and_then(walfile_timeline).unwrap_or(checkpoint_tli);
        (tli, lsn(3).unwrap_or(0))
    };
    let streaming = col(5) == Some("streaming");
    Ok(NodeStatus {
        name,
        in_recovery,
        timeline,
        streaming,
        sender_host: if streaming {
            col(6).map(str::to_string)
        } else {
            None
        },
        lsn: pos,
        primary_conninfo: col(10).unwrap_or_default().to_string(),
        streaming_standbys: num(11).unwrap_or(0),
    })
}

/// Connects to `host` and reads its status, all within `timeout`.
pub async fn probe(host: &str, timeout: Duration) -> Result<NodeStatus, String> {
    let c = connect(host, "splitbrain-probe", timeout).await?;
    let row = first_row(&c, STATUS_SQL, timeout).await?;
    parse_status(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|c| c.map(str::to_string)).collect()
    }

    #[test]
    fn parses_primary_and_standby_rows() {
        let p = parse_status(&row(&[
            Some("n2"),
            Some("f"),
            Some("000000020000000000000003"),
            Some("0/3016030"),
            Some("1"),
            None,
            None,
            None,
            None,
            None,
            Some(""),
            Some("3"),
        ]))
        .unwrap();
        assert_eq!(
            (p.in_recovery, p.timeline, p.lsn, p.streaming_standbys),
            (false, 2, 0x3016030, 3)
        );
        let s = parse_status(&row(&[
            Some("n3"),
            Some("t"),
            None,
            None,
            Some("1"),
            Some("streaming"),
            Some("10.77.77.12"),
            Some("2"),
            Some("0/3016100"),
            Some("0/3016030"),
            Some("host=10.77.77.12"),
            Some("0"),
        ]))
        .unwrap();
        assert!(s.in_recovery && s.streaming);
        assert_eq!((s.timeline, s.lsn), (2, 0x3016100));
        assert_eq!(s.sender_host.as_deref(), Some("10.77.77.12"));
        // A standby whose receiver is gone: not streaming, no sender.
        let lost = parse_status(&row(&[
            Some("n4"),
            Some("t"),
            None,
            None,
            Some("1"),
            None,
            None,
            None,
            Some("0/3000000"),
            Some("0/3000000"),
            Some(""),
            Some("0"),
        ]))
        .unwrap();
        assert!(!lost.streaming && lost.sender_host.is_none());
        assert_eq!(lost.timeline, 1);
        assert!(parse_status(&row(&[Some("n1")])).is_err());
        let mut bad = row(&[Some("x"); 12]);
        bad[1] = Some("maybe".into());
        assert!(parse_status(&bad).is_err());
    }
}
