//! Shared pieces of uploads and downloads: the remote shell script that receives a
//! file on stdin and installs it atomically, local temp-file naming, and
//! [`upload_unless_identical`], which skips an upload the node already holds.
//!
//! Files travel over an exec channel (`cat`), not SFTP: it needs no sftp subsystem on
//! the node, and the script can replace a running binary by rename (writing into it in
//! place fails with "Text file busy") and verify the byte count before installing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::quote::sh_quote;
use super::{ControlError, Remote};

/// The script an upload runs: stdin goes to a temp file next to `remote_path`; only
/// when exactly `size` bytes arrived is it chmod'ed and renamed over the target.
pub(crate) fn upload_script(remote_path: &str, size: u64, mode: u32) -> String {
    let dst = sh_quote(remote_path);
    let mode = mode & 0o7777;
    // The parent is cut here, not by `$(dirname ...)`: command substitution drops
    // trailing newlines, which a directory name may end with.
    let mkdir = match remote_path.rsplit_once('/') {
        Some(("", _)) | None => String::new(),
        Some((parent, _)) => format!("mkdir -p -- {}; ", sh_quote(parent)),
    };
    format!(
        "set -e; dst={dst}; tmp=\"$dst.splitbrain-upload.$$\"; \
         {mkdir}\
         trap 'rm -f -- \"$tmp\"' EXIT; \
         cat > \"$tmp\"; \
         n=$(wc -c < \"$tmp\" | tr -d ' '); \
         if [ \"$n\" != {size} ]; then echo \"upload incomplete: $n of {size} bytes arrived\" >&2; exit 1; fi; \
         chmod {mode:o} \"$tmp\"; mv -f -- \"$tmp\" \"$dst\"; trap - EXIT"
    )
}

/// Wraps a command so that the node kills it (and its process group) by itself a
/// little after the controller's deadline. OpenSSH refuses the channel `signal`
/// request in common setups ("session signalling requires privilege separation"), and
/// closing a channel does not stop the command, so without this a timed-out command
/// would keep running on the node. Nodes without `timeout(1)` run the command as is.
pub(crate) fn with_remote_deadline(cmd: &str, deadline: std::time::Duration) -> String {
    let secs = deadline.as_secs() + 2;
    let inner = sh_quote(cmd);
    format!(
        "if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL {secs} sh -c {inner}; else exec sh -c {inner}; fi"
    )
}

/// The command a download runs.
pub(crate) fn download_command(remote_path: &str) -> String {
    format!("cat -- {}", sh_quote(remote_path))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temp path in the same directory as `path` (so rename is atomic).
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    path.with_file_name(format!(".{name}.partial.{}.{n}", std::process::id()))
}

/// What [`upload_unless_identical`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// The file was sent.
    Sent,
    /// The node already held a byte-identical copy (same sha256); nothing was sent.
    AlreadyThere,
}

/// Uploads `local` to `remote_path` (as [`Remote::upload`]) unless the node already
/// holds a byte-identical file there: the node hashes its copy with `sha256sum` and
/// the digest is compared with the local file's. A node without `sha256sum`, or
/// without the file, or with a different file, gets the upload. The kept copy is
/// given `mode` again, so it is left exactly as an upload would leave it.
pub async fn upload_unless_identical<R: Remote>(
    remote: &R,
    local: &Path,
    remote_path: &str,
    mode: u32,
) -> Result<Upload, ControlError> {
    let node = remote.node().name.clone();
    let path = local.to_path_buf();
    let digest = tokio::task::spawn_blocking(move || local_sha256(&path))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|reason| ControlError::Transfer {
            node: node.clone(),
            what: format!("hashing {}", local.display()),
            reason,
        })?;
    let out = remote
        .exec(
            &remote_sha256_script(remote_path, mode),
            remote.command_timeout(),
        )
        .await?;
    if out.success() && parse_sha256(&out.stdout).as_deref() == Some(digest.as_str()) {
        return Ok(Upload::AlreadyThere);
    }
    remote.upload(local, remote_path, mode).await?;
    Ok(Upload::Sent)
}

/// Shell text printing the sha256 of `remote_path` (after setting its mode), or
/// nothing when the file or `sha256sum` is missing.
fn remote_sha256_script(remote_path: &str, mode: u32) -> String {
    let f = sh_quote(remote_path);
    format!(
        "if [ -f {f} ] && [ ! -L {f} ] && command -v sha256sum >/dev/null 2>&1; then \
         chmod {:o} {f} && sha256sum < {f}; fi",
        mode & 0o7777
    )
}

/// The digest in `sha256sum`'s output: 64 lowercase hex digits before the first space.
fn parse_sha256(stdout: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(stdout).ok()?;
    let word = text.split_whitespace().next()?;
    (word.len() == 64 && word.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| word.to_string())
}

/// Digests already computed: (path, size, modification time) -> sha256 hex. A file
/// rebuilt in place gets a new size or time, hence a new entry.
type DigestCache = Vec<((PathBuf, u64, SystemTime), String)>;
static DIGESTS: Mutex<DigestCache> = Mutex::new(Vec::new());

/// The sha256 of a local file, lowercase hex; each file version is read only once
/// per process (a debug zoo binary is ~75 MB and is uploaded before every run).
pub(crate) fn local_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    let key = (path.to_path_buf(), meta.len(), meta.modified()?);
    let cached = DIGESTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, d)| d.clone());
    if let Some(d) = cached {
        return Ok(d);
    }
    let mut file = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let hex: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut cache = DIGESTS.lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|(k, _)| k.0 != key.0);
    cache.push((key, hex.clone()));
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_deadline_keeps_status_and_kills_late_commands() {
        let sh = |cmd: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .output()
                .unwrap()
        };
        let d = std::time::Duration::from_secs(5);
        let out = sh(&with_remote_deadline("printf \"%s\" \"it's\"; exit 3", d));
        assert_eq!(
            (out.stdout.as_slice(), out.status.code()),
            (&b"it's"[..], Some(3))
        );
        // 0 s deadline + 2 s grace: a 30 s sleep is killed after ~2 s.
        let t0 = std::time::Instant::now();
        let out = sh(&with_remote_deadline("sleep 30", std::time::Duration::ZERO));
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
        assert!(!out.status.success());
    }

    #[test]
    fn upload_script_installs_only_complete_files() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("sub dir/it's");
        let dst_s = dst.to_str().unwrap();
        let run = |data: &[u8], size: u64| {
            use std::io::Write;
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(upload_script(dst_s, size, 0o750))
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(data).unwrap();
            child.wait_with_output().unwrap()
        };
        let out = run(b"hello", 5);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&dst).unwrap(), b"hello");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dst).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        // A short stream must leave the old file and no temp file behind.
        let out = run(b"hel", 5);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("upload incomplete: 3 of 5"));
        assert_eq!(std::fs::read(&dst).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(dst.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn local_and_remote_digests_agree_and_only_identical_files_match() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bin it's");
        std::fs::write(&f, b"abc").unwrap();
        // The published SHA-256 of "abc".
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(local_sha256(&f).unwrap(), abc);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(remote_sha256_script(f.to_str().unwrap(), 0o751))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(parse_sha256(&out.stdout).as_deref(), Some(abc));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
            0o751
        );
        // A rebuilt file (other size) is hashed again, not served from the cache.
        std::fs::write(&f, b"abcd").unwrap();
        assert_ne!(local_sha256(&f).unwrap(), abc);
        // A missing file prints nothing: the caller uploads.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(remote_sha256_script(
                dir.path().join("absent").to_str().unwrap(),
                0o755,
            ))
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.is_empty());
        assert_eq!(parse_sha256(b""), None);
        assert_eq!(parse_sha256(b"xyz  -\n"), None);
        assert_eq!(parse_sha256(abc.to_uppercase().as_bytes()), None);
    }
}
