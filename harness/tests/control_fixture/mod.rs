//! Test fixture: a real OpenSSH server on 127.0.0.1 with its own host keys, client
//! keys, authorized_keys, known_hosts and sshd_config in a temp dir, killed on drop.
//!
//! When `/usr/sbin/sshd` or `ssh-keygen` is missing the fixture panics with the fix
//! (install openssh-server); it never lets a test pass without a server.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::control::{SshOptions, StrictHostKeyChecking};
use harness::nodes::NodeSpec;

pub const SSHD: &str = "/usr/sbin/sshd";

/// Settings of one fixture server.
#[derive(Clone, Debug)]
pub struct SshdConfig {
    /// `None` leaves OpenSSH's default (10).
    pub max_sessions: Option<u32>,
    /// Host key types to generate (`ed25519`, `rsa`).
    pub host_key_types: Vec<&'static str>,
}

impl Default for SshdConfig {
    fn default() -> Self {
        SshdConfig {
            max_sessions: Some(64),
            host_key_types: vec!["ed25519"],
        }
    }
}

pub struct Sshd {
    pub dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub user: String,
    /// Authorized ed25519 client key.
    pub client_key: PathBuf,
    /// known_hosts holding this server's host keys as `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    pub config_path: PathBuf,
}

fn require(path: &str) {
    if !Path::new(path).exists() {
        panic!(
            "{path} is missing: these tests need OpenSSH (`apt-get install openssh-server openssh-client`)"
        );
    }
}

pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Generates a key pair; returns the private key path.
pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    require("/usr/bin/ssh-keygen");
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    run(&mut cmd);
    path
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn current_user() -> String {
    String::from_utf8(run(Command::new("id").arg("-un")))
        .expect("utf8 user name")
        .trim()
        .to_string()
}

/// Starts sshd in the foreground in its own process group, logging to `dir/sshd.log`.
fn spawn_sshd(config_path: &Path, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sshd.log"))
        .expect("sshd log");
    use std::os::unix::process::CommandExt;
    Command::new(SSHD)
        .process_group(0)
        .args(["-D", "-e", "-f"])
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"))
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with(SshdConfig::default())
    }

    pub fn start_with(cfg: SshdConfig) -> Sshd {
        require(SSHD);
        let dir = tempfile::Builder::new()
            .prefix("splitbrain-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        if unsafe { libc::geteuid() } == 0 {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let mut host_keys = Vec::new();
        for kind in &cfg.host_key_types {
            host_keys.push(keygen(d, &format!("ssh_host_{kind}_key"), kind, ""));
        }
        let client_key = keygen(d, "client_ed25519", "ed25519", "");
        let authorized = d.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        let port = free_port();
        let mut conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nPidFile {pid}\nAuthorizedKeysFile {auth}\n\
             StrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nMaxStartups 200\nMaxAuthTries 10\nLogLevel VERBOSE\n",
            pid = d.join("sshd.pid").display(),
            auth = authorized.display(),
        );
        for k in &host_keys {
            conf.push_str(&format!("HostKey {}\n", k.display()));
        }
        if let Some(n) = cfg.max_sessions {
            conf.push_str(&format!("MaxSessions {n}\n"));
        }
        let config_path = d.join("sshd_config");
        std::fs::write(&config_path, conf).expect("write sshd_config");
        let known_hosts = d.join("known_hosts");
        let mut kh = String::new();
        for k in &host_keys {
            let public = std::fs::read_to_string(k.with_extension("pub")).expect("host pub");
            let mut w = public.split_whitespace();
            let (t, b) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            kh.push_str(&format!("[127.0.0.1]:{port} {t} {b}\n"));
        }
        std::fs::write(&known_hosts, kh).expect("write known_hosts");
        let child = spawn_sshd(&config_path, d);
        let mut sshd = Sshd {
            dir,
            child,
            port,
            user: current_user(),
            client_key,
            known_hosts,
            config_path,
        };
        sshd.wait_ready();
        sshd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited ({status}) at start: {}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 8];
                if s.read_exact(&mut buf).is_ok() && &buf[..4] == b"SSH-" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd not ready in 10 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the processes serving this server's open connections (sshd's
    /// per-connection children), leaving the listener: the connections drop at once,
    /// as when a node's sshd session dies. Returns how many were killed.
    pub fn kill_sessions(&self) -> usize {
        let children = |parent: i32| -> Vec<i32> {
            let out = Command::new("pgrep")
                .args(["-P", &parent.to_string()])
                .output()
                .expect("run pgrep");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        };
        // Every descendant (monitor, session process, the commands they run).
        let mut pids = children(self.child.id() as i32);
        let mut i = 0;
        while i < pids.len() {
            let more = children(pids[i]);
            pids.extend(more);
            i += 1;
        }
        for pid in &pids {
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        pids.len()
    }

    /// Stops the server and everything it serves, as a node going down does; new
    /// connections are refused until [`Sshd::start_again`].
    pub fn stop(&mut self) {
        // Session processes call setsid(), so the group kill below misses them.
        self.kill_sessions();
        if let Ok(pid) = i32::try_from(self.child.id()) {
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port with the same keys (the node is back).
    pub fn start_again(&mut self) {
        self.child = spawn_sshd(&self.config_path, self.dir.path());
        self.wait_ready();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn node(&self, name: &str) -> NodeSpec {
        NodeSpec {
            name: name.to_string(),
            host: "127.0.0.1".to_string(),
            port: self.port,
            user: Some(self.user.clone()),
            workdir: self.dir.path().display().to_string(),
        }
    }

    /// Options that log in with the fixture's client key and check its known_hosts.
    pub fn options(&self) -> SshOptions {
        SshOptions {
            username: self.user.clone(),
            private_key: Some(self.client_key.clone()),
            use_agent: false,
            known_hosts: self.known_hosts.clone(),
            strict_host_key_checking: StrictHostKeyChecking::Yes,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            ..SshOptions::default()
        }
    }

    /// Authorizes another public key.
    pub fn authorize(&self, private_key: &Path) {
        let public = std::fs::read_to_string(private_key.with_extension("pub")).expect("pub key");
        let path = self.dir.path().join("authorized_keys");
        let mut all = std::fs::read_to_string(&path).unwrap_or_default();
        all.push_str(&public);
        std::fs::write(path, all).expect("authorized_keys");
    }

    /// An OpenSSH client config naming this server `name`, for `ssh -F`.
    pub fn write_ssh_config(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("ssh_config");
        let text = format!(
            "Host {name}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            self.port,
            self.user,
            self.client_key.display(),
            self.known_hosts.display()
        );
        std::fs::write(&path, text).expect("ssh_config");
        path
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_sessions();
        // The whole group: the listener and its per-connection children.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tokio runtime for tests that drive the async API from a plain `#[test]`.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
