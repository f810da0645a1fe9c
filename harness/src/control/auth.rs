//! Credentials and login: loading private keys (with passphrase), the default
//! identities, ssh-agent and password, and trying them in that order on a handle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use super::error::one_line;
use super::options::home_dir;
use super::{ControlError, SshOptions};

/// What the controller can log in with, loaded once and shared by all sessions
/// (decrypting a key is slow, so a cluster does it once).
#[derive(Clone)]
pub struct Credentials {
    keys: Vec<(PathBuf, Arc<PrivateKey>)>,
    agent_socket: Option<PathBuf>,
    password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "keys",
                &self.keys.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("agent_socket", &self.agent_socket)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Environment variable holding the passphrase of an encrypted private key (used when
/// [`SshOptions::key_passphrase`] is not set; never logged or stored).
pub const KEY_PASSPHRASE_ENV: &str = "SPLITBRAIN_SSH_KEY_PASSPHRASE";

fn load_key(path: &Path, passphrase: Option<&str>) -> Result<PrivateKey, ControlError> {
    let err = |reason: String| ControlError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            err("no such file; pass an existing key with --ssh-private-key".into())
        }
        std::io::ErrorKind::InvalidData => err("not a text key file".into()),
        _ => err(format!("cannot read: {e}")),
    })?;
    match russh::keys::decode_secret_key(&text, passphrase) {
        Ok(k) => Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(err(
            format!("the key is encrypted; put its passphrase in {KEY_PASSPHRASE_ENV} (or load the key into ssh-agent)"),
        )),
        Err(e) if passphrase.is_some() && is_encrypted(&text) => Err(err(format!(
            "cannot decrypt the key: wrong passphrase? ({})",
            one_line(&e.to_string(), 120)
        ))),
        Err(e) => Err(err(format!(
            "not a private key this tool can read ({}); use an OpenSSH or PEM ed25519, ECDSA or RSA key",
            one_line(&e.to_string(), 120)
        ))),
    }
}

/// OpenSSH-format keys say so in their header; legacy PEM keys carry `ENCRYPTED`.
fn is_encrypted(text: &str) -> bool {
    text.contains("ENCRYPTED")
        || PrivateKey::from_openssh(text.trim()).is_ok_and(|k| k.is_encrypted())
}

impl Credentials {
    /// Loads what `opts` names. An explicit key that cannot be loaded is an error;
    /// default identities (`~/.ssh/id_*`) that cannot be loaded are skipped.
    pub fn load(opts: &SshOptions) -> Result<Credentials, ControlError> {
        let env_passphrase = std::env::var(KEY_PASSPHRASE_ENV)
            .ok()
            .filter(|p| !p.is_empty());
        let passphrase = opts.key_passphrase.as_deref().or(env_passphrase.as_deref());
        let mut keys = Vec::new();
        match &opts.private_key {
            Some(path) => {
                let key = load_key(path, passphrase)?;
                keys.push((path.clone(), Arc::new(key)));
            }
            None => {
                let ssh = home_dir().join(".ssh");
                for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                    let path = ssh.join(name);
                    if !path.exists() {
                        continue;
                    }
                    match load_key(&path, passphrase) {
                        Ok(key) => keys.push((path, Arc::new(key))),
                        Err(e) => tracing::debug!("skipping default identity: {e}"),
                    }
                }
            }
        }
        let agent_socket = if opts.use_agent {
            std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        } else {
            None
        };
        if keys.is_empty() && agent_socket.is_none() && opts.password.is_none() {
            return Err(ControlError::NoCredentials);
        }
        Ok(Credentials {
            keys,
            agent_socket,
            password: opts.password.clone(),
        })
    }
}

/// The hash to sign with a key of algorithm `alg`: for RSA the best one the server
/// offers (`None`, its default, when it names none); other algorithms take none.
async fn sign_hash<H: russh::client::Handler>(
    handle: &Handle<H>,
    alg: &Algorithm,
) -> Result<Option<HashAlg>, russh::Error> {
    if !matches!(alg, Algorithm::Rsa { .. }) {
        return Ok(None);
    }
    Ok(handle.best_supported_rsa_hash().await?.flatten())
}

/// Tries every credential in turn; the error names everything that was tried.
pub(crate) async fn login<H: russh::client::Handler>(
    handle: &mut Handle<H>,
    node: &str,
    user: &str,
    creds: &Credentials,
) -> Result<(), ControlError> {
    let lost = |e: russh::Error| ControlError::Handshake {
        node: node.to_string(),
        reason: format!("during login: {e}"),
    };
    let mut tried: Vec<String> = Vec::new();
    for (path, key) in &creds.keys {
        let hash = sign_hash(handle, &key.algorithm()).await.map_err(lost)?;
        let res = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
            .await
            .map_err(lost)?;
        if res.success() {
            return Ok(());
        }
        tried.push(format!("key {}", path.display()));
    }
    if let Some(sock) = &creds.agent_socket {
        match AgentClient::connect_uds(sock).await {
            Err(e) => tried.push(format!("ssh-agent at {} unusable: {e}", sock.display())),
            Ok(mut agent) => match agent.request_identities().await {
                Err(e) => tried.push(format!("ssh-agent listing failed: {e}")),
                Ok(ids) => {
                    for id in &ids {
                        let key = id.public_key().into_owned();
                        let hash = sign_hash(handle, &key.algorithm()).await.map_err(lost)?;
                        match handle
                            .authenticate_publickey_with(user, key, hash, &mut agent)
                            .await
                        {
                            Ok(r) if r.success() => return Ok(()),
                            Ok(_) => {}
                            Err(e) => tracing::debug!("{node}: agent signing failed: {e}"),
                        }
                    }
                    tried.push(format!("ssh-agent ({} keys)", ids.len()));
                }
            },
        }
    }
    if let Some(pw) = &creds.password {
        let res = handle
            .authenticate_password(user, pw.clone())
            .await
            .map_err(lost)?;
        if res.success() {
            return Ok(());
        }
        tried.push("password".into());
    }
    Err(ControlError::AuthRejected {
        node: node.to_string(),
        user: user.to_string(),
        tried: tried.join(", "),
    })
}
