//! Doctor's checks of one node over SSH: TCP reachability, the host key and login
//! (classified from the control layer's errors), the probe script, sudo with a
//! password, and the clock offset; every check after a failure is marked skipped.

use super::{probe, row, Check, Row, Status, NODE_CHECKS};
use crate::control::known_hosts::KnownHosts;
use crate::control::{
    ControlError, Credentials, Remote, Session, SshOptions, StrictHostKeyChecking,
};
use crate::nodes::NodeSpec;
use probe::Place;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on the probe script on one node.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows for the checks after `from` (exclusive), all skipped for `why`.
pub(super) fn skipped_after(node: &str, from: Check, why: &str) -> Vec<Row> {
    NODE_CHECKS
        .iter()
        .skip_while(|c| **c != from)
        .skip(1)
        .map(|c| {
            row(
                node,
                *c,
                Status::Skipped,
                format!("not checked: {why}"),
                None,
            )
        })
        .collect()
}

pub(super) async fn diagnose_node(
    node: &NodeSpec,
    place: Place,
    ssh: &SshOptions,
    creds: Option<Arc<Credentials>>,
) -> Vec<Row> {
    let name = node.name.as_str();
    let addr = format!("{}:{}", node.host, node.port);
    let mut rows = Vec::new();
    let t = Instant::now();
    let tcp = tokio::time::timeout(
        ssh.connect_timeout,
        tokio::net::TcpStream::connect((node.host.as_str(), node.port)),
    )
    .await;
    let reach_fix = format!(
        "start the node and its sshd (`systemctl enable --now ssh` on {name}); check {addr} in the nodes file and the firewall"
    );
    match tcp {
        Ok(Ok(_)) => rows.push(row(
            name,
            Check::Reachable,
            Status::Ok,
            format!("TCP {addr} open in {} ms", t.elapsed().as_millis()),
            None,
        )),
        Ok(Err(e)) => {
            rows.push(row(
                name,
                Check::Reachable,
                Status::Fail,
                format!("TCP {addr}: {e}"),
                Some(reach_fix),
            ));
            rows.extend(skipped_after(name, Check::Reachable, "unreachable"));
            return rows;
        }
        Err(_) => {
            rows.push(row(
                name,
                Check::Reachable,
                Status::Fail,
                format!(
                    "TCP {addr}: no answer within {}s",
                    ssh.connect_timeout.as_secs_f64()
                ),
                Some(reach_fix),
            ));
            rows.extend(skipped_after(name, Check::Reachable, "unreachable"));
            return rows;
        }
    }
    let Some(creds) = creds else {
        rows.extend(skipped_after(
            name,
            Check::Reachable,
            "no credentials (see controller)",
        ));
        return rows;
    };
    let recorded_before = KnownHosts::load(&ssh.known_hosts)
        .map(|kh| !kh.recorded_algorithms(&node.host, node.port).is_empty())
        .unwrap_or(false);
    let session = match Session::connect_with(node, ssh, creds).await {
        Ok(s) => s,
        Err(e) => {
            rows.extend(login_failure(node, ssh, e));
            return rows;
        }
    };
    rows.push(host_key_ok(name, ssh, recorded_before));
    let user = node.user.clone().unwrap_or_else(|| ssh.username.clone());
    rows.push(row(
        name,
        Check::Auth,
        Status::Ok,
        format!("logged in as {user}"),
        None,
    ));
    let facts = match session
        .exec(&probe::script(&node.workdir), PROBE_TIMEOUT)
        .await
    {
        Ok(out) => probe::parse(&out.stdout_str()),
        Err(e) => {
            rows.push(row(
                name,
                Check::Sudo,
                Status::Fail,
                format!("probe failed: {e}"),
                None,
            ));
            rows.extend(skipped_after(name, Check::Sudo, "the probe failed"));
            session.close().await;
            return rows;
        }
    };
    let mut judged = probe::judge(name, place, ssh.password.is_some(), &facts);
    if facts.sudo == Some(probe::Sudo::NeedsPassword) {
        if let Some(pw) = &ssh.password {
            if let Err(reason) = sudo_with_password(&session, pw).await {
                judged[0] = row(
                    name,
                    Check::Sudo,
                    Status::Fail,
                    format!("{user} is not root and sudo refused the password: {reason}"),
                    Some(format!(
                        "on {name}: `echo '{user} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/splitbrain`, or log in as root"
                    )),
                );
            }
        }
    }
    rows.extend(judged);
    rows.push(clock_offset(&session, node, place, &facts.os).await);
    session.close().await;
    rows
}

fn host_key_ok(name: &str, ssh: &SshOptions, recorded_before: bool) -> Row {
    let kh = ssh.known_hosts.display();
    match ssh.strict_host_key_checking {
        StrictHostKeyChecking::No => row(
            name,
            Check::HostKey,
            Status::Warn,
            "not checked (--strict-host-key-checking no): any server key is accepted".into(),
            Some("drop --strict-host-key-checking no once the keys are in known_hosts".into()),
        ),
        StrictHostKeyChecking::AcceptNew if !recorded_before => row(
            name,
            Check::HostKey,
            Status::Ok,
            format!("first use: key added to {kh} (accept-new)"),
            None,
        ),
        _ => row(
            name,
            Check::HostKey,
            Status::Ok,
            format!("matches {kh}"),
            None,
        ),
    }
}

/// The host key and auth rows (and the skipped rest) for a failed SSH login.
fn login_failure(node: &NodeSpec, ssh: &SshOptions, e: ControlError) -> Vec<Row> {
    let name = node.name.as_str();
    let mut rows = Vec::new();
    let fail =
        |check, detail: String, fix: String| row(name, check, Status::Fail, detail, Some(fix));
    match &e {
        ControlError::UnknownHostKey(p) => {
            rows.push(fail(
                Check::HostKey,
                format!("{} {} for {} is not in {}", p.key_type, p.fingerprint, p.entry, p.known_hosts.display()),
                format!(
                    "after checking the fingerprint: `ssh-keyscan -p {} {} >> {}` (or --strict-host-key-checking accept-new)",
                    p.port, p.host, p.known_hosts.display()
                ),
            ));
            rows.extend(skipped_after(name, Check::HostKey, "host key not trusted"));
        }
        ControlError::ChangedHostKey(p) => {
            rows.push(fail(
                Check::HostKey,
                format!("CHANGED: server offers {} {} but {}:{} holds another key (reinstalled node or man-in-the-middle)", p.key_type, p.fingerprint, p.known_hosts.display(), p.line),
                format!(
                    "if the node was reinstalled: `ssh-keygen -R '{}' -f {} && ssh-keyscan -p {} {} >> {}`",
                    p.entry, p.known_hosts.display(), p.port, p.host, p.known_hosts.display()
                ),
            ));
            rows.extend(skipped_after(name, Check::HostKey, "host key not trusted"));
        }
        ControlError::AuthRejected { user, tried, .. } => {
            rows.push(host_key_ok(name, ssh, true));
            let key = ssh
                .private_key
                .clone()
                .unwrap_or_else(|| crate::control::home_dir().join(".ssh/id_ed25519"));
            rows.push(fail(
                Check::Auth,
                format!("login as {user:?} rejected (tried: {tried})"),
                format!(
                    "`ssh-copy-id -i {}.pub -p {} {user}@{}` (or append the .pub to ~{user}/.ssh/authorized_keys on {name})",
                    key.display(),
                    node.port,
                    node.host
                ),
            ));
            rows.extend(skipped_after(name, Check::Auth, "not logged in"));
        }
        other => {
            rows.push(fail(
                Check::HostKey,
                other.to_string(),
                format!(
                    "check that {}:{} is an SSH server and the node is healthy",
                    node.host, node.port
                ),
            ));
            rows.extend(skipped_after(name, Check::HostKey, "no SSH session"));
        }
    }
    rows
}

/// Checks the password with `sudo -S`, reading it from a 0600 file uploaded for the
/// purpose (never from the command line, which `ps` and error messages would show).
async fn sudo_with_password(session: &Session, password: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let local =
        std::env::temp_dir().join(format!(".splitbrain-sudo-{}-{stamp}", std::process::id()));
    let write = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&local)
        .and_then(|mut f| writeln!(f, "{password}"));
    if let Err(e) = write {
        let _ = std::fs::remove_file(&local);
        return Err(format!("cannot write a temporary file: {e}"));
    }
    let remote = format!("/tmp/.splitbrain-sudo-{stamp}");
    let uploaded = session.upload(&local, &remote, 0o600).await;
    let _ = std::fs::remove_file(&local);
    uploaded.map_err(|e| e.to_string())?;
    let q = crate::control::sh_quote(&remote);
    let cmd = format!("sudo -S -p '' true < {q} >/dev/null 2>&1; rc=$?; rm -f {q}; exit $rc");
    match session.exec(&cmd, Duration::from_secs(30)).await {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(format!("sudo -S ended with {}", out.status)),
        Err(e) => Err(e.to_string()),
    }
}

async fn clock_offset(session: &Session, node: &NodeSpec, place: Place, os: &[String]) -> Row {
    use nemesis::clock;
    let target = match place {
        Place::Lab => clock::ClockTarget::Lab {
            offset_file: clock::lab_offset_file(&node.workdir),
        },
        Place::Remote => clock::ClockTarget::Real,
    };
    let epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let sent = epoch();
    let out = session
        .exec(&clock::read_clock_script(&target), Duration::from_secs(15))
        .await;
    let received = epoch();
    let reading = out.map_err(|e| e.to_string()).and_then(|o| {
        o.stdout_str()
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("unexpected clock reading {:?}", o.stdout_str().trim()))
    });
    match reading {
        Ok(node_epoch) => {
            let (offset, uncertainty) = clock::offset_from(node_epoch, sent, received);
            probe::judge_offset(&node.name, place, os, offset, uncertainty)
        }
        Err(e) => row(&node.name, Check::ClockOffset, Status::Fail, e, None),
    }
}
