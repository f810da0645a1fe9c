//! Shared pieces of uploads and downloads: the remote shell script that receives a
//! file on stdin and installs it atomically, and local temp-file naming.
//!
//! Files travel over an exec channel (`cat`), not SFTP: it needs no sftp subsystem on
//! the node, and the script can replace a running binary by rename (writing into it in
//! place fails with "Text file busy") and verify the byte count before installing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::quote::sh_quote;

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
}
