//! Login and host-key checking against a real sshd: key types, passphrases, agent,
//! unknown / changed / hashed host keys under each policy, unreachable and silent
//! servers — each failure as one line naming the node and the fix.

mod control_fixture;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use control_fixture::{keygen, rt, run, Sshd, SshdConfig};
use harness::control::{ControlError, Remote, Session, SshOptions, StrictHostKeyChecking};

fn connect_err(sshd: &Sshd, opts: &SshOptions) -> ControlError {
    match rt().block_on(Session::connect(&sshd.node("n1"), opts)) {
        Ok(_) => panic!("connected though it should not"),
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            e
        }
    }
}

fn connect_ok(sshd: &Sshd, opts: &SshOptions) {
    rt().block_on(async {
        let s = Session::connect(&sshd.node("n1"), opts)
            .await
            .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
        assert_eq!(
            s.exec("echo hi", Duration::from_secs(10))
                .await
                .unwrap()
                .stdout_str(),
            "hi\n"
        );
    });
}

#[test]
fn rsa_and_passphrase_keys_log_in() {
    let sshd = Sshd::start();
    let rsa = keygen(sshd.dir.path(), "client_rsa", "rsa", "");
    let locked = keygen(sshd.dir.path(), "client_locked", "ed25519", "s3cret pass");
    sshd.authorize(&rsa);
    sshd.authorize(&locked);
    let mut opts = sshd.options();
    opts.private_key = Some(rsa);
    connect_ok(&sshd, &opts);

    opts.private_key = Some(locked.clone());
    opts.key_passphrase = Some("s3cret pass".into());
    connect_ok(&sshd, &opts);

    opts.key_passphrase = Some("wrong".into());
    let e = connect_err(&sshd, &opts).to_string();
    assert!(
        e.starts_with(&format!(
            "SSH private key {}: cannot decrypt the key: wrong passphrase?",
            locked.display()
        )),
        "{e}"
    );

    opts.key_passphrase = None;
    let e = connect_err(&sshd, &opts).to_string();
    assert!(
        e.ends_with("the key is encrypted; put its passphrase in SPLITBRAIN_SSH_KEY_PASSPHRASE (or load the key into ssh-agent)"),
        "{e}"
    );
}

#[test]
fn bad_key_paths_are_one_line_errors() {
    let sshd = Sshd::start();
    let mut opts = sshd.options();
    opts.private_key = Some(PathBuf::from("/nonexistent/id_ed25519"));
    assert_eq!(
        connect_err(&sshd, &opts).to_string(),
        "SSH private key /nonexistent/id_ed25519: no such file; pass an existing key with --ssh-private-key"
    );
    opts.private_key = Some(sshd.client_key.with_extension("pub"));
    let e = connect_err(&sshd, &opts).to_string();
    assert!(e.contains("not a private key this tool can read"), "{e}");
}

#[test]
fn wrong_key_is_rejected_with_the_fix() {
    let sshd = Sshd::start();
    let stranger = keygen(sshd.dir.path(), "stranger", "ed25519", "");
    let mut opts = sshd.options();
    opts.private_key = Some(stranger.clone());
    let e = connect_err(&sshd, &opts);
    assert!(matches!(e, ControlError::AuthRejected { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "n1 (127.0.0.1:{}): login as {:?} rejected (tried: key {}); install the matching public key in ~{}/.ssh/authorized_keys on the node, or pass the right --ssh-private-key / --username",
            sshd.port, sshd.user, stranger.display(), sshd.user
        )
    );
}

#[test]
fn agent_keys_log_in() {
    let sshd = Sshd::start();
    let sock = sshd.dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent (openssh-client) is needed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "ssh-agent did not create its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent_key = keygen(sshd.dir.path(), "agent_only", "ed25519", "");
    sshd.authorize(&agent_key);
    run(Command::new("ssh-add")
        .env("SSH_AUTH_SOCK", &sock)
        .arg(&agent_key));
    std::fs::remove_file(&agent_key).unwrap();
    // Only this test sets SSH_AUTH_SOCK; the others turn the agent off.
    std::env::set_var("SSH_AUTH_SOCK", &sock);
    let mut opts = sshd.options();
    opts.private_key = Some(keygen(sshd.dir.path(), "not_authorized", "ed25519", ""));
    opts.use_agent = true;
    connect_ok(&sshd, &opts);
    std::env::remove_var("SSH_AUTH_SOCK");
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn unknown_host_key_under_strict_names_the_fix() {
    let sshd = Sshd::start();
    let mut opts = sshd.options();
    opts.known_hosts = sshd.dir.path().join("empty_known_hosts");
    let e = connect_err(&sshd, &opts);
    let line = e.to_string();
    assert!(matches!(e, ControlError::UnknownHostKey(_)), "{line}");
    let kh = opts.known_hosts.display();
    assert!(
        line.starts_with(&format!(
            "n1 (127.0.0.1:{p}): host key ssh-ed25519 SHA256:",
            p = sshd.port
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!("for [127.0.0.1]:{} is not in {kh}", sshd.port)),
        "{line}"
    );
    assert!(
        line.contains(&format!("`ssh-keyscan -p {} 127.0.0.1 >> {kh}`", sshd.port)),
        "{line}"
    );
    assert!(
        line.ends_with("or pass --strict-host-key-checking accept-new"),
        "{line}"
    );
    assert!(
        !opts.known_hosts.exists(),
        "strict mode must not write known_hosts"
    );
}

#[test]
fn accept_new_records_the_key_then_strict_accepts_it() {
    let sshd = Sshd::start();
    let mut opts = sshd.options();
    opts.known_hosts = sshd.dir.path().join("new/known_hosts");
    opts.strict_host_key_checking = StrictHostKeyChecking::AcceptNew;
    connect_ok(&sshd, &opts);
    let written = std::fs::read_to_string(&opts.known_hosts).unwrap();
    let expected = std::fs::read_to_string(&sshd.known_hosts).unwrap();
    assert_eq!(
        written, expected,
        "accept-new must write what ssh-keyscan would"
    );
    opts.strict_host_key_checking = StrictHostKeyChecking::Yes;
    connect_ok(&sshd, &opts);
    // And OpenSSH itself agrees with the file we wrote.
    run(Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[127.0.0.1]:{}", sshd.port))
        .arg("-f")
        .arg(&opts.known_hosts));
}

#[test]
fn changed_host_key_is_refused_under_yes_and_accept_new() {
    let sshd = Sshd::start();
    let other = keygen(sshd.dir.path(), "other_host", "ed25519", "");
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut w = public.split_whitespace();
    let kh = sshd.dir.path().join("stale_known_hosts");
    std::fs::write(
        &kh,
        format!(
            "# old\n[127.0.0.1]:{} {} {}\n",
            sshd.port,
            w.next().unwrap(),
            w.next().unwrap()
        ),
    )
    .unwrap();
    let mut opts = sshd.options();
    opts.known_hosts = kh.clone();
    for policy in [StrictHostKeyChecking::Yes, StrictHostKeyChecking::AcceptNew] {
        opts.strict_host_key_checking = policy;
        let e = connect_err(&sshd, &opts);
        let line = e.to_string();
        assert!(matches!(e, ControlError::ChangedHostKey(_)), "{line}");
        assert!(line.contains("HOST KEY CHANGED"), "{line}");
        assert!(
            line.contains(&format!("{}:2 holds another key", kh.display())),
            "{line}"
        );
        assert!(
            line.contains(&format!(
                "ssh-keygen -R '[127.0.0.1]:{}' -f {}",
                sshd.port,
                kh.display()
            )),
            "{line}"
        );
    }
    opts.strict_host_key_checking = StrictHostKeyChecking::No;
    connect_ok(&sshd, &opts);
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap().lines().count(),
        2,
        "`no` must not write"
    );
}

#[test]
fn hashed_known_hosts_from_ssh_keygen_are_understood() {
    let sshd = Sshd::start_with(SshdConfig {
        host_key_types: vec!["rsa", "ed25519"],
        ..SshdConfig::default()
    });
    run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&sshd.known_hosts));
    let text = std::fs::read_to_string(&sshd.known_hosts).unwrap();
    assert!(text.lines().all(|l| l.starts_with("|1|")), "{text}");
    // The file lists the RSA key first; either key the server offers must check out.
    connect_ok(&sshd, &sshd.options());
    // Only the RSA key recorded: negotiation must prefer RSA so the key can be checked.
    let rsa_only: String = text
        .lines()
        .filter(|l| l.contains("ssh-rsa"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&sshd.known_hosts, rsa_only).unwrap();
    connect_ok(&sshd, &sshd.options());
}

#[test]
fn unreachable_port_fails_fast_with_the_node_named() {
    let sshd = Sshd::start();
    let mut node = sshd.node("n4");
    node.port = control_fixture::free_port();
    let started = Instant::now();
    let e = rt()
        .block_on(Session::connect(&node, &sshd.options()))
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        e,
        format!("n4 (127.0.0.1:{}): cannot connect: Connection refused (os error 111); check that sshd runs there and that the address and port in the nodes file are right", node.port)
    );
}

#[test]
fn a_silent_server_hits_the_connect_timeout() {
    let sshd = Sshd::start();
    // Accepts TCP but never speaks SSH.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut node = sshd.node("n5");
    node.port = listener.local_addr().unwrap().port();
    let mut opts = sshd.options();
    opts.connect_timeout = Duration::from_millis(700);
    let started = Instant::now();
    let e = rt().block_on(Session::connect(&node, &opts)).unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(matches!(e, ControlError::ConnectTimeout { .. }));
    assert!(
        e.to_string().starts_with(&format!(
            "n5 (127.0.0.1:{}): no SSH connection within 0.7s",
            node.port
        )),
        "{e}"
    );
    drop(listener);
}
