//! Exec over a real sshd: output and status, quoting through the remote shell, the
//! per-session channel bound against OpenSSH's MaxSessions, timeouts, reconnects, and
//! the cluster API.

mod control_fixture;

use std::sync::Arc;
use std::time::Duration;

use control_fixture::{rt, Sshd, SshdConfig};
use harness::control::{sh_quote, Cluster, Cmd, ControlError, ExitStatus, Remote, Session};

const T: Duration = Duration::from_secs(20);

#[test]
fn exec_returns_stdout_stderr_and_status() {
    let sshd = Sshd::start();
    rt().block_on(async {
        let s = Session::connect(&sshd.node("n1"), &sshd.options())
            .await
            .unwrap();
        let out = s
            .exec("printf out; printf err >&2; exit 7", T)
            .await
            .unwrap();
        assert_eq!(out.stdout, b"out");
        assert_eq!(out.stderr, b"err");
        assert_eq!(out.status, ExitStatus::Code(7));
        assert!(!out.success());
        let e = out.check(s.node(), "the command").unwrap_err().to_string();
        assert!(
            e.starts_with("n1 (127.0.0.1:") && e.contains("exit 7") && e.ends_with(": err"),
            "{e}"
        );

        // stdin is closed at once, so a command reading it does not hang.
        let out = s.exec("cat; echo done", T).await.unwrap();
        assert_eq!(out.stdout_str(), "done\n");

        let out = s.exec("kill -KILL $$", T).await.unwrap();
        assert_eq!(out.status, ExitStatus::Signal("KILL".into()));

        let big = s.exec("head -c 3000000 /dev/zero", T).await.unwrap();
        assert_eq!(big.stdout.len(), 3_000_000);

        let e = s.exec("echo a\0b", T).await.unwrap_err();
        assert!(matches!(e, ControlError::NulInCommand { .. }), "{e}");
    });
}

#[test]
fn hostile_arguments_arrive_verbatim_through_ssh() {
    let sshd = Sshd::start();
    rt().block_on(async {
        let s = Session::connect(&sshd.node("n1"), &sshd.options())
            .await
            .unwrap();
        for word in [
            "it's",
            "a\"b",
            "$(touch /tmp/pwned)",
            "`id`",
            "a;b|c&d",
            "line\nbreak",
            "tab\there",
            "ünïcødé ✓",
            "\\",
            "-n",
            "",
            "*",
            "~",
            "$HOME",
            "'\\''",
            "A=b",
        ] {
            let cmd = Cmd::new("printf").arg("%s").arg(word).to_string();
            let out = s.exec(&cmd, T).await.unwrap();
            assert_eq!(out.stdout_str(), word, "{cmd}");
            assert!(out.success());
        }
        assert_eq!(sh_quote("x y"), "'x y'");
    });
}

#[test]
fn fifty_concurrent_execs_fit_through_maxsessions_10_with_the_bound() {
    // OpenSSH's default MaxSessions is 10; the bound (8) keeps us under it.
    let sshd = Sshd::start_with(SshdConfig {
        max_sessions: None,
        ..SshdConfig::default()
    });
    rt().block_on(async {
        let opts = sshd.options();
        assert_eq!(opts.max_channels, 8);
        let s = Arc::new(Session::connect(&sshd.node("n1"), &opts).await.unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.exec(&format!("sleep 0.2; echo {i}"), T).await })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let out = t.await.unwrap().unwrap();
            assert_eq!(out.stdout_str(), format!("{i}\n"));
        }
        assert_eq!(s.free_channels(), 8);
    });
}

#[test]
fn without_the_bound_maxsessions_refuses_channels() {
    // The oracle for the test above: the same load with the bound lifted fails.
    let sshd = Sshd::start_with(SshdConfig {
        max_sessions: None,
        ..SshdConfig::default()
    });
    rt().block_on(async {
        let mut opts = sshd.options();
        opts.max_channels = 50;
        let s = Arc::new(Session::connect(&sshd.node("n1"), &opts).await.unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.exec("sleep 1", T).await })
            })
            .collect();
        let mut refused = 0;
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                let line = e.to_string();
                assert!(line.contains("server refused a new channel"), "{line}");
                assert!(line.contains("MaxSessions"), "{line}");
                refused += 1;
            }
        }
        assert!(refused >= 30, "only {refused} of 50 refused");
    });
}

#[test]
fn command_timeout_is_an_error_and_frees_the_channel() {
    let sshd = Sshd::start();
    rt().block_on(async {
        let s = Session::connect(&sshd.node("n1"), &sshd.options())
            .await
            .unwrap();
        let started = std::time::Instant::now();
        // A duration no other test or process uses, so that the check below counts only
        // this command's process.
        let e = s
            .exec("sleep 30.417", Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, ControlError::CommandTimeout { .. }));
        assert_eq!(
            e.to_string(),
            format!(
                "n1 (127.0.0.1:{}): command timed out after 0.5s: sleep 30.417",
                sshd.port
            )
        );
        // The remote command does not outlive its deadline by much: the node kills it
        // 2 s after the deadline. Polled up to 15 s so that a loaded machine cannot
        // fail the check; a command that was never killed would still be there (it
        // sleeps 30 s).
        let poll_start = std::time::Instant::now();
        loop {
            let left = s
                .exec("pgrep -x sleep -a | grep -c 'sleep 30[.]417$' || true", T)
                .await
                .unwrap();
            if left.stdout_str().trim() == "0" {
                break;
            }
            assert!(
                poll_start.elapsed() < Duration::from_secs(15),
                "the timed-out command still runs 15 s after its deadline"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The slot comes back and the session still works.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.free_channels(), 8);
        assert_eq!(s.exec("echo ok", T).await.unwrap().stdout_str(), "ok\n");
    });
}

#[test]
fn a_killed_connection_is_reestablished_on_the_next_command() {
    let sshd = Sshd::start();
    rt().block_on(async {
        let mut opts = sshd.options();
        opts.keepalive_interval = Some(Duration::from_millis(300));
        let s = Session::connect(&sshd.node("n1"), &opts).await.unwrap();
        // The command's parent is timeout(1) (see with_remote_deadline); its parent is
        // this connection's sshd process.
        let sshd_pid = "ps -o ppid= -p $PPID";
        let first = s.exec(sshd_pid, T).await.unwrap().stdout_str();
        // Kill this connection's sshd process; the command dies with it.
        let _ = s.exec(&format!("kill -9 $({sshd_pid})"), T).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let out = s.exec(sshd_pid, T).await.unwrap();
        assert!(out.success());
        assert_ne!(
            out.stdout_str(),
            first,
            "expected a new sshd session process"
        );
    });
}

#[test]
fn cluster_runs_on_all_nodes_in_parallel() {
    let servers: Vec<Sshd> = (0..3).map(|_| Sshd::start()).collect();
    rt().block_on(async {
        let nodes: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| s.node(&format!("n{}", i + 1)))
            .collect();
        // One known_hosts and one key for all three.
        let mut opts = servers[0].options();
        let kh = servers[0].dir.path().join("all_known_hosts");
        let text: String = servers
            .iter()
            .map(|s| std::fs::read_to_string(&s.known_hosts).unwrap())
            .collect();
        std::fs::write(&kh, text).unwrap();
        opts.known_hosts = kh;
        for s in &servers[1..] {
            s.authorize(&servers[0].client_key);
        }
        let cluster = Cluster::connect(&nodes, &opts).await.unwrap();
        let started = std::time::Instant::now();
        let results = cluster.exec_all("sleep 1; echo $SSH_CONNECTION", T).await;
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "not parallel"
        );
        assert_eq!(results.len(), 3);
        for (r, s) in results.iter().zip(&servers) {
            let out = r.result.as_ref().unwrap();
            assert!(
                out.stdout_str().trim().ends_with(&format!(" {}", s.port)),
                "{}",
                out.stdout_str()
            );
        }
        let per = cluster
            .exec_each(|n| (n.name != "n2").then(|| format!("echo {}", n.name)), T)
            .await;
        let names: Vec<_> = per.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(names, ["n1", "n3"]);
        assert_eq!(per[1].result.as_ref().unwrap().stdout_str(), "n3\n");
        assert_eq!(cluster.get("n2").unwrap().node().port, servers[1].port);
        let e = cluster.get("n9").unwrap_err().to_string();
        assert_eq!(e, "no node named \"n9\" (known: n1, n2, n3)");
        cluster.close().await;
    });
}

#[test]
fn cluster_connect_reports_every_failing_node_on_one_line() {
    let sshd = Sshd::start();
    rt().block_on(async {
        let mut bad = sshd.node("n2");
        bad.port = control_fixture::free_port();
        let nodes = vec![sshd.node("n1"), bad];
        let e = match Cluster::connect(&nodes, &sshd.options()).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(e) => e.to_string(),
        };
        assert!(e.starts_with("1 of 2 nodes failed: n2 (127.0.0.1:"), "{e}");
        assert!(e.contains("cannot connect: Connection refused"), "{e}");
        assert!(!e.contains('\n'));
    });
}
