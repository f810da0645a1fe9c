//! The lab's state directory: its layout, the safety marker that lets `down` remove it,
//! key generation, and the text of every file the lab writes (sshd configs, the client
//! `ssh_config`, `known_hosts`, the nodes file). Files are rewritten only when changed.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::sys::{io_err, run};
use super::LabError;
use crate::nodes::{render_nodes, NodeSpec};

/// The file whose presence marks a directory as a lab state directory.
pub(crate) const MARKER: &str = ".splitbrain-lab";

/// Paths inside a state directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn marker(&self) -> PathBuf {
        self.root.join(MARKER)
    }
    pub fn private_key(&self) -> PathBuf {
        self.root.join("id_ed25519")
    }
    pub fn authorized_keys(&self) -> PathBuf {
        self.root.join("authorized_keys")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }
    pub fn nodes_file(&self) -> PathBuf {
        self.root.join("nodes")
    }
    pub fn ssh_config(&self) -> PathBuf {
        self.root.join("ssh_config")
    }
    /// sshd's own files for node `name`.
    pub fn node_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn host_key(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("ssh_host_ed25519_key")
    }
    pub fn sshd_config(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("sshd_config")
    }
    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("sshd.pid")
    }
    /// Where systems under test keep their files on node `name`.
    pub fn workdir(&self, name: &str) -> PathBuf {
        self.root.join("work").join(name)
    }
}

/// Rejects state directories whose path the ssh configuration files could not carry
/// verbatim (whitespace, quotes, `%` and `~` tokens, `#`, control characters).
pub(crate) fn check_state_path(path: &Path) -> Result<(), LabError> {
    let bad = |why: &str| LabError::Config(format!("state directory {}: {why}", path.display()));
    let text = path.to_str().ok_or_else(|| bad("is not valid UTF-8"))?;
    if !path.is_absolute() {
        return Err(bad("must be an absolute path"));
    }
    if text == "/" {
        return Err(bad("must not be the root directory"));
    }
    if let Some(c) = text.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '%' | '~' | '#')
    }) {
        return Err(bad(&format!(
            "contains {c:?}, which ssh configuration files cannot carry; choose a plain path"
        )));
    }
    Ok(())
}

/// Whether `dir` may be used and later removed as a lab state directory: missing, empty,
/// or carrying the marker. Anything else is somebody else's directory.
pub(crate) fn check_ownership(layout: &Layout) -> Result<bool, LabError> {
    let root = &layout.root;
    match fs::read_dir(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(root, e)),
        Ok(mut entries) => {
            if layout.marker().exists() || entries.next().is_none() {
                Ok(true)
            } else {
                Err(LabError::NotLabDir(root.clone()))
            }
        }
    }
}

/// Creates a directory (and parents) with the given mode on the leaf.
pub(crate) fn make_dir(path: &Path, mode: u32) -> Result<(), LabError> {
    fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
}

/// Writes `text` to `path` unless it already holds exactly that; returns whether it wrote.
pub(crate) fn write_if_changed(path: &Path, text: &str, mode: u32) -> Result<bool, LabError> {
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp-write");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    Ok(true)
}

/// Makes an ed25519 key pair at `key` unless a complete pair is there; returns the public
/// key line and whether it made a new pair. A half pair is replaced.
pub(crate) fn ensure_key(key: &Path, comment: &str) -> Result<(String, bool), LabError> {
    let public = PathBuf::from(format!("{}.pub", key.display()));
    if let (Ok(_), Ok(text)) = (fs::metadata(key), fs::read_to_string(&public)) {
        if text.starts_with("ssh-ed25519 ") {
            return Ok((text.trim().to_string(), false));
        }
    }
    for p in [key, public.as_path()] {
        if p.exists() {
            fs::remove_file(p).map_err(|e| io_err(p, e))?;
        }
    }
    let key_text = key
        .to_str()
        .ok_or_else(|| LabError::Config(format!("key path {} is not UTF-8", key.display())))?;
    run(
        "ssh-keygen",
        &[
            "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key_text,
        ],
    )?;
    let text = fs::read_to_string(&public).map_err(|e| io_err(&public, e))?;
    Ok((text.trim().to_string(), true))
}

/// The lean sshd configuration of node `name` at `addr`. `use_pam` is only set when the
/// root account is locked (`!` in /etc/shadow): without PAM, sshd refuses locked accounts.
pub(crate) fn sshd_config(layout: &Layout, name: &str, addr: Ipv4Addr, use_pam: bool) -> String {
    let pam_note = if use_pam {
        "# UsePAM yes: root's password is locked, and sshd without PAM refuses locked accounts.\n"
    } else {
        ""
    };
    format!(
        "# splitbrain lab node {name}: written by `splitbrain lab up`, replaced on every run.\n\
         {pam_note}ListenAddress {addr}:22\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {auth}\n\
         UsePAM {pam}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         StrictModes no\n\
         MaxSessions 64\n\
         MaxStartups 100:30:200\n\
         UseDNS no\n\
         PrintMotd no\n\
         X11Forwarding no\n\
         # bash sources ~/.bashrc for sshd commands only while SHLVL < 2: a lab node runs\n\
         # commands without the controller user's interactive set-up (which can cost\n\
         # ~100 ms a command), as a lean server would.\n\
         SetEnv SHLVL=1\n\
         Subsystem sftp internal-sftp\n",
        host_key = layout.host_key(name).display(),
        pid = layout.pid_file(name).display(),
        auth = layout.authorized_keys().display(),
        pam = if use_pam { "yes" } else { "no" },
    )
}

/// The OpenSSH client configuration: `ssh -F <state>/ssh_config n2`.
pub(crate) fn ssh_config(layout: &Layout, nodes: &[NodeSpec]) -> String {
    let mut out = format!(
        "# splitbrain lab: use with `ssh -F {} NODE`. Written by `splitbrain lab up`.\n",
        layout.ssh_config().display()
    );
    for n in nodes {
        out.push_str(&format!(
            "\nHost {name}\n    HostName {host}\n    Port {port}\n    User root\n    \
             IdentityFile {key}\n    IdentitiesOnly yes\n    UserKnownHostsFile {kh}\n    \
             GlobalKnownHostsFile /dev/null\n    StrictHostKeyChecking yes\n    BatchMode yes\n",
            name = n.name,
            host = n.host,
            port = n.port,
            key = layout.private_key().display(),
            kh = layout.known_hosts().display(),
        ));
    }
    out
}

/// `known_hosts` lines: each node's host key by address (`KEYTYPE BASE64`, comment dropped).
pub(crate) fn known_hosts(entries: &[(Ipv4Addr, String)]) -> Result<String, LabError> {
    let mut out = String::new();
    for (addr, pubkey) in entries {
        let mut words = pubkey.split_whitespace();
        match (words.next(), words.next()) {
            (Some(kind), Some(blob)) => out.push_str(&format!("{addr} {kind} {blob}\n")),
            _ => {
                return Err(LabError::Parse {
                    what: format!("host public key for {addr}"),
                    message: format!("expected 'TYPE BASE64', got {pubkey:?}"),
                })
            }
        }
    }
    Ok(out)
}

/// The nodes file (header comment plus [`render_nodes`]).
pub(crate) fn nodes_file(nodes: &[NodeSpec]) -> String {
    format!(
        "# splitbrain lab nodes: written by `splitbrain lab up`.\n{}",
        render_nodes(nodes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::parse_nodes;

    fn layout() -> Layout {
        Layout {
            root: PathBuf::from("/var/lib/splitbrain/lab"),
        }
    }

    #[test]
    fn sshd_config_is_lean_and_complete() {
        let text = sshd_config(&layout(), "n2", Ipv4Addr::new(10, 77, 77, 12), false);
        for want in [
            "ListenAddress 10.77.77.12:22\n",
            "HostKey /var/lib/splitbrain/lab/n2/ssh_host_ed25519_key\n",
            "PidFile /var/lib/splitbrain/lab/n2/sshd.pid\n",
            "AuthorizedKeysFile /var/lib/splitbrain/lab/authorized_keys\n",
            "UsePAM no\n",
            "PermitRootLogin prohibit-password\n",
            "PasswordAuthentication no\n",
            "StrictModes no\n",
            "MaxSessions 64\n",
            "MaxStartups 100:30:200\n",
            "UseDNS no\n",
            "PrintMotd no\n",
            "X11Forwarding no\n",
            "SetEnv SHLVL=1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let pam = sshd_config(&layout(), "n2", Ipv4Addr::new(10, 77, 77, 12), true);
        assert!(pam.contains("UsePAM yes\n") && !pam.contains("UsePAM no"));
    }

    #[test]
    fn client_files_render() {
        let nodes = parse_nodes("n1 10.77.77.11:22 workdir=/w/n1 user=root\n", "t").unwrap();
        let cfg = ssh_config(&layout(), &nodes);
        assert!(cfg.contains("Host n1\n    HostName 10.77.77.11\n    Port 22\n    User root\n"));
        assert!(cfg.contains("IdentityFile /var/lib/splitbrain/lab/id_ed25519\n"));
        assert!(cfg.contains("UserKnownHostsFile /var/lib/splitbrain/lab/known_hosts\n"));
        assert!(cfg.contains("StrictHostKeyChecking yes\n") && cfg.contains("BatchMode yes\n"));
        let kh = known_hosts(&[(
            Ipv4Addr::new(10, 77, 77, 11),
            "ssh-ed25519 AAAAC3 root@x".into(),
        )])
        .unwrap();
        assert_eq!(kh, "10.77.77.11 ssh-ed25519 AAAAC3\n");
        assert!(known_hosts(&[(Ipv4Addr::new(10, 77, 77, 11), "garbage".into())]).is_err());
        assert_eq!(parse_nodes(&nodes_file(&nodes), "t").unwrap(), nodes);
    }

    #[test]
    fn state_paths_are_checked() {
        check_state_path(Path::new("/var/lib/splitbrain/lab")).unwrap();
        for (p, want) in [
            ("rel/dir", "absolute"),
            ("/", "root directory"),
            ("/tmp/a b", "' '"),
            ("/tmp/%h", "'%'"),
        ] {
            let err = check_state_path(Path::new(p)).unwrap_err().to_string();
            assert!(err.contains(want), "{p}: {err}");
        }
    }

    #[test]
    fn ownership_and_idempotent_writes() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout {
            root: dir.path().join("lab"),
        };
        assert!(!check_ownership(&l).unwrap());
        make_dir(&l.root, 0o700).unwrap();
        assert!(check_ownership(&l).unwrap());
        fs::write(l.root.join("precious"), "x").unwrap();
        let err = check_ownership(&l).unwrap_err().to_string();
        assert!(err.contains("has no .splitbrain-lab marker"), "{err}");
        fs::write(l.marker(), "").unwrap();
        assert!(check_ownership(&l).unwrap());
        let f = l.root.join("f");
        assert!(write_if_changed(&f, "a", 0o600).unwrap());
        assert!(!write_if_changed(&f, "a", 0o600).unwrap());
        assert!(write_if_changed(&f, "b", 0o600).unwrap());
        assert_eq!(fs::read_to_string(&f).unwrap(), "b");
    }
}
