//! The cluster-selection flags every command that reaches nodes shares (`test`,
//! `test-all`, `doctor`, `fault`): which nodes (`--nodes`, `--nodes-file`, else the
//! local lab) and how to log in to them. [`ClusterArgs::resolve`] is the one place
//! they become a node list and [`SshOptions`]; a flag added here reaches every command.

use crate::config;
use crate::control::{SshOptions, StrictHostKeyChecking};
use crate::lab::{self, LabConfig};
use crate::nodes::{self, NodeSpec};
use crate::runner::stop::Stop;
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which nodes, and how to log in. Every flag is `global` so that `fault`'s
/// subcommands take it after their own name too; on commands without subcommands
/// that changes nothing.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Comma-separated nodes (`host[:port]`); default: the local lab.
    #[arg(long, global = true, conflicts_with = "nodes_file")]
    pub nodes: Option<String>,
    /// File with one node a line: `NAME HOST[:PORT] [workdir=DIR] [user=USER]`.
    #[arg(long, global = true)]
    pub nodes_file: Option<PathBuf>,
    /// SSH login user (a node's own `user=` wins).
    #[arg(long, global = true, default_value = "root")]
    pub username: String,
    /// SSH private key; default: the lab's key, or ~/.ssh/id_* and the ssh-agent.
    #[arg(long, global = true)]
    pub ssh_private_key: Option<PathBuf>,
    /// known_hosts to check node keys against; default: the lab's, or ~/.ssh/known_hosts.
    #[arg(long, global = true)]
    pub known_hosts: Option<PathBuf>,
    /// yes (default), accept-new (trust on first use) or no.
    #[arg(long, global = true, default_value = "yes", value_parser = |s: &str| s.parse::<StrictHostKeyChecking>())]
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// Bound on connecting and logging in to one node.
    #[arg(long, global = true, default_value = "10s", value_parser = config::parse_duration)]
    pub ssh_connect_timeout: Duration,
}

/// What to do when neither `--nodes` nor `--nodes-file` is given.
#[derive(Clone, Copy)]
pub enum LabUse<'a> {
    /// Bring the default lab up (idempotent) and hold it for the run, so that no other
    /// run deploys on the same nodes meanwhile (`test`, `test-all`).
    BringUp(&'a Stop),
    /// Use the lab already up in this state directory, changing nothing; an error when
    /// there is none (`doctor`, `fault`).
    Existing(&'a Path),
}

/// The nodes the flags name and how to log in to them.
pub struct Resolved {
    pub nodes: Vec<NodeSpec>,
    pub ssh: SshOptions,
    /// The nodes are the local lab.
    pub lab: bool,
    /// With [`LabUse::BringUp`]: keeps other runs off the lab until dropped (`None`
    /// when a parent process holds it, see [`lab::LOCK_HELD_ENV`]).
    pub lab_lock: Option<lab::LabLock>,
}

impl ClusterArgs {
    /// The nodes and SSH options: `--nodes`, else `--nodes-file`, else the lab as
    /// `lab` says, whose key and known_hosts are used unless the flags name others.
    /// The password comes from `SPLITBRAIN_SSH_PASSWORD` when set and not empty.
    pub fn resolve(&self, lab: LabUse<'_>) -> anyhow::Result<Resolved> {
        let mut ssh = SshOptions {
            username: self.username.clone(),
            private_key: self.ssh_private_key.clone(),
            strict_host_key_checking: self.strict_host_key_checking,
            connect_timeout: self.ssh_connect_timeout,
            password: std::env::var("SPLITBRAIN_SSH_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty()),
            ..SshOptions::default()
        };
        if let Some(k) = &self.known_hosts {
            ssh.known_hosts = k.clone();
        }
        let given = match (&self.nodes, &self.nodes_file) {
            (Some(list), _) => Some(nodes::parse_nodes_flag(list)?),
            (None, Some(file)) => Some(nodes::read_nodes_file(file)?),
            (None, None) => None,
        };
        if let Some(nodes) = given {
            return Ok(Resolved {
                nodes,
                ssh,
                lab: false,
                lab_lock: None,
            });
        }
        let (nodes, key, known_hosts, lab_lock) = match lab {
            LabUse::BringUp(stop) => {
                eprintln!(
                    "splitbrain: no --nodes given: using the local lab ({})",
                    lab::DEFAULT_STATE_DIR
                );
                let lock = hold_lab(stop)?;
                let info = lab::up(&LabConfig::default()).context("bringing up the local lab")?;
                (info.nodes, info.private_key, info.known_hosts, lock)
            }
            LabUse::Existing(state_dir) => {
                let file = state_dir.join("nodes");
                if !file.is_file() {
                    bail!(
                        "no --nodes given and no lab at {} (no nodes file): run `splitbrain lab up`, or pass --nodes / --nodes-file",
                        state_dir.display()
                    );
                }
                let nodes = nodes::read_nodes_file(&file)?;
                let (key, known) = (state_dir.join("id_ed25519"), state_dir.join("known_hosts"));
                (nodes, key, known, None)
            }
        };
        if self.ssh_private_key.is_none() {
            ssh.private_key = Some(key);
            ssh.use_agent = false;
        }
        if self.known_hosts.is_none() {
            ssh.known_hosts = known_hosts;
        }
        Ok(Resolved {
            nodes,
            ssh,
            lab: true,
            lab_lock,
        })
    }
}

/// How long a lab run waits for another run on the lab to finish.
const LAB_WAIT: Duration = Duration::from_secs(1800);

/// Holds the lab for one run: two runs deploying on the same lab nodes would wipe each
/// other's system mid-run and report the damage as lost writes. Skipped when the
/// parent process already holds it (see [`lab::LOCK_HELD_ENV`]).
fn hold_lab(stop: &Stop) -> anyhow::Result<Option<lab::LabLock>> {
    if std::env::var(lab::LOCK_HELD_ENV).is_ok_and(|v| v == "1") {
        return Ok(None);
    }
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        if let Ok(lock) = lab::exclusive_use(Duration::from_millis(250)) {
            return Ok(Some(lock));
        }
        if stop.is_stopped() {
            bail!("interrupted while waiting for the local lab");
        }
        if start.elapsed() > LAB_WAIT {
            bail!(
                "the local lab stayed busy for {}s (another run or lab test holds it)",
                LAB_WAIT.as_secs()
            );
        }
        if !said {
            eprintln!("splitbrain: waiting for the lab: another run or lab test is using it");
            said = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    fn parse(argv: &[&str]) -> ClusterArgs {
        Cmd::try_parse_from(std::iter::once("x").chain(argv.iter().copied()))
            .expect("valid flags")
            .cluster
    }

    #[test]
    fn flags_reach_the_ssh_options() {
        let args = parse(&[
            "--nodes",
            "n1,n2:2222",
            "--username",
            "deploy",
            "--ssh-private-key",
            "/k/id",
            "--known-hosts",
            "/k/kh",
            "--strict-host-key-checking",
            "accept-new",
            "--ssh-connect-timeout",
            "3s",
        ]);
        let r = args
            .resolve(LabUse::Existing(Path::new("/nonexistent/lab")))
            .expect("resolves without touching the lab");
        assert!(!r.lab && r.lab_lock.is_none());
        let names: Vec<&str> = r.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(r.nodes[1].port, 2222);
        assert_eq!(r.ssh.username, "deploy");
        assert_eq!(r.ssh.private_key.as_deref(), Some(Path::new("/k/id")));
        assert_eq!(r.ssh.known_hosts, Path::new("/k/kh"));
        assert_eq!(
            r.ssh.strict_host_key_checking,
            StrictHostKeyChecking::AcceptNew
        );
        assert_eq!(r.ssh.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn an_existing_lab_supplies_nodes_key_and_known_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("nodes"),
            "n1 10.77.77.11:22\nn2 10.77.77.12:22\n",
        )
        .expect("write nodes");
        let r = parse(&[])
            .resolve(LabUse::Existing(dir.path()))
            .expect("lab nodes file");
        assert!(r.lab);
        assert_eq!(r.nodes.len(), 2);
        assert_eq!(r.ssh.private_key, Some(dir.path().join("id_ed25519")));
        assert!(!r.ssh.use_agent, "the lab key alone, not the agent");
        assert_eq!(r.ssh.known_hosts, dir.path().join("known_hosts"));

        // The user's own key and known_hosts win over the lab's.
        let r = parse(&["--ssh-private-key", "/k/id", "--known-hosts", "/k/kh"])
            .resolve(LabUse::Existing(dir.path()))
            .expect("lab nodes file");
        assert_eq!(r.ssh.private_key.as_deref(), Some(Path::new("/k/id")));
        assert_eq!(r.ssh.known_hosts, Path::new("/k/kh"));
    }

    #[test]
    fn no_nodes_and_no_lab_is_one_clear_error() {
        let e = parse(&[])
            .resolve(LabUse::Existing(Path::new("/nonexistent/lab")))
            .err()
            .expect("no lab there");
        let text = format!("{e:#}");
        assert!(
            text.contains("no lab at /nonexistent/lab") && text.contains("--nodes-file"),
            "{text}"
        );
    }

    #[test]
    fn nodes_and_nodes_file_conflict() {
        let e = Cmd::try_parse_from(["x", "--nodes", "a", "--nodes-file", "b"])
            .err()
            .expect("conflict");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
