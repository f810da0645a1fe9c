//! Uploads and downloads, over SSH and locally: byte-exact for a 10 MB random binary,
//! atomic replacement of a running executable, clear errors for missing files.

mod control_fixture;

use std::time::Duration;

use control_fixture::{rt, Sshd};
use harness::control::{ControlError, LocalExec, Remote, Session};
use rand::{RngCore, SeedableRng};

fn random_file(path: &std::path::Path, len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    std::fs::write(path, &data).unwrap();
    data
}

#[test]
fn ten_megabytes_round_trip_byte_exact() {
    let sshd = Sshd::start();
    let dir = sshd.dir.path();
    let data = random_file(&dir.join("blob"), 10 * 1024 * 1024 + 17, 1);
    rt().block_on(async {
        let s = Session::connect(&sshd.node("n1"), &sshd.options())
            .await
            .unwrap();
        let remote = dir.join("remote dir/it's a blob");
        let remote = remote.to_str().unwrap();
        s.upload(&dir.join("blob"), remote, 0o640).await.unwrap();
        assert_eq!(std::fs::read(remote).unwrap(), data, "upload changed bytes");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(remote).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // Checksums computed on the node agree too.
        let sum = s
            .exec(
                &format!("sha256sum < {}", harness::control::sh_quote(remote)),
                Duration::from_secs(20),
            )
            .await
            .unwrap()
            .stdout_str();
        let local_sum = String::from_utf8(control_fixture::run(
            std::process::Command::new("sha256sum").arg(dir.join("blob")),
        ))
        .unwrap();
        assert_eq!(
            sum.split_whitespace().next(),
            local_sum.split_whitespace().next()
        );

        let back = dir.join("back/blob.copy");
        s.download(remote, &back).await.unwrap();
        assert_eq!(
            std::fs::read(&back).unwrap(),
            data,
            "download changed bytes"
        );
        // No temp files left next to either end.
        for d in [
            back.parent().unwrap(),
            std::path::Path::new(remote).parent().unwrap(),
        ] {
            let names: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names.len(), 1, "{names:?}");
        }
    });
}

#[test]
fn upload_replaces_a_running_binary() {
    let sshd = Sshd::start();
    let dir = sshd.dir.path();
    let bin = dir.join("bin/sleeper");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy("/bin/sleep", &bin).unwrap();
    rt().block_on(async {
        let s = Session::connect(&sshd.node("n1"), &sshd.options())
            .await
            .unwrap();
        let t = Duration::from_secs(10);
        let bin_s = bin.to_str().unwrap();
        s.exec_ok(
            &format!(
                "{} 30 >/dev/null 2>&1 & echo $! > {}/pid",
                bin_s,
                dir.display()
            ),
            t,
        )
        .await
        .unwrap();
        // Writing into a running executable fails with ETXTBSY; a rename does not.
        let w = s.exec(&format!("echo x > {bin_s}"), t).await.unwrap();
        assert!(
            w.stderr_str().contains("Text file busy"),
            "{}",
            w.stderr_str()
        );
        let new = dir.join("new-binary");
        let data = random_file(&new, 4096, 2);
        s.upload(&new, bin_s, 0o755).await.unwrap();
        assert_eq!(std::fs::read(&bin).unwrap(), data);
        s.exec(
            "kill $(cat pid)"
                .replace("pid", &format!("{}/pid", dir.display()))
                .as_str(),
            t,
        )
        .await
        .unwrap();
    });
}

#[test]
fn missing_files_are_clear_errors_and_leave_nothing_behind() {
    let sshd = Sshd::start();
    let dir = sshd.dir.path();
    rt().block_on(async {
        let s = Session::connect(&sshd.node("n1"), &sshd.options()).await.unwrap();
        let local = dir.join("out/never");
        let e = s.download("/nonexistent/log", &local).await.unwrap_err();
        assert!(matches!(e, ControlError::Transfer { .. }));
        assert_eq!(
            e.to_string(),
            format!(
                "n1 (127.0.0.1:{}): download of /nonexistent/log to {}: exit 1: cat: /nonexistent/log: No such file or directory",
                sshd.port,
                local.display()
            )
        );
        assert_eq!(std::fs::read_dir(dir.join("out")).unwrap().count(), 0);
        let e = s
            .upload(&dir.join("no-such-local"), "/tmp/x", 0o644)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read local file: No such file or directory"), "{e}");
    });
}

#[test]
fn local_exec_runs_sh_and_copies_atomically() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let l = LocalExec::controller();
        let t = Duration::from_secs(10);
        let out = l.exec("printf a; printf b >&2; exit 3", t).await.unwrap();
        assert_eq!(
            (out.stdout_str().as_str(), out.stderr_str().as_str()),
            ("a", "b")
        );
        assert_eq!(out.status, harness::control::ExitStatus::Code(3));
        // Timeout kills the whole process group, background children included.
        let pidfile = dir.path().join("bg.pid");
        let cmd = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = std::time::Instant::now();
        let e = l.exec(&cmd, Duration::from_millis(300)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            e.to_string(),
            format!("local (localhost:0): command timed out after 0.3s: {cmd}")
        );
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Dead means gone, or a zombie waiting for a reaper (PID 1 in containers may
        // never reap it).
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z") | Some("X")),
            "background child {} survived the timeout: {stat}",
            pid.trim()
        );

        let src = dir.path().join("src");
        let data = random_file(&src, 1 << 20, 3);
        let dst = dir.path().join("a/b/dst");
        l.upload(&src, dst.to_str().unwrap(), 0o700).await.unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        let back = dir.path().join("back");
        l.download(dst.to_str().unwrap(), &back).await.unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), data);
    });
}
