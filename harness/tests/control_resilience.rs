//! The control layer surviving its own faults, over a real sshd on loopback: a
//! connection the server drops is re-established and counted; a command it cut fails
//! at once as `Disconnected` (its op is indeterminate); a node whose sshd is down for a
//! while is reconnected with backoff once it is back (connections refused meanwhile);
//! reconnecting gives up within its budget, commands queued behind it fail with it
//! instead of each waiting again, and one right after makes a single attempt; a
//! rejected login is not retried; hanging commands time out without blocking the
//! session.

mod control_fixture;

use std::sync::Arc;
use std::time::{Duration, Instant};

use control_fixture::{rt, Sshd};
use harness::control::{ControlError, ReconnectStats, Remote, Session};

const T: Duration = Duration::from_secs(20);

#[test]
fn a_connection_dropped_by_the_server_is_reestablished_and_counted() {
    let sshd = Sshd::start();
    let rt = rt();
    let s = Arc::new(
        rt.block_on(Session::connect(&sshd.node("n1"), &sshd.options()))
            .unwrap(),
    );
    let first = rt.block_on(s.exec("echo $$", T)).unwrap();
    assert!(first.success());
    assert_eq!(s.reconnect_stats(), ReconnectStats::default());

    // A command in flight when the connection dies fails at once, as lost (it may or
    // may not have run), not after its 20 s deadline.
    let cut = {
        let s = s.clone();
        rt.spawn(async move { s.exec("sleep 30; echo never", T).await })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(sshd.kill_sessions() >= 1, "no session process to kill");
    let started = Instant::now();
    let e = rt.block_on(cut).unwrap().unwrap_err();
    assert!(matches!(e, ControlError::Disconnected { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");

    // The next command reconnects and runs.
    let out = rt.block_on(s.exec("echo back", T)).unwrap();
    assert_eq!(out.stdout_str(), "back\n");
    let stats = s.reconnect_stats();
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    assert!(stats.attempts >= 1, "{stats:?}");
    // And the session keeps working on the new connection.
    assert!(rt.block_on(s.exec("true", T)).unwrap().success());
    assert_eq!(s.reconnect_stats().reconnects, 1);
}

#[test]
fn a_node_down_for_a_while_is_reconnected_with_backoff_when_it_is_back() {
    let mut sshd = Sshd::start();
    let rt = rt();
    let s = Arc::new(
        rt.block_on(Session::connect(&sshd.node("n1"), &sshd.options()))
            .unwrap(),
    );
    assert!(rt.block_on(s.exec("true", T)).unwrap().success());
    // The node "reboots": its sshd and sessions die; connections are refused.
    sshd.stop();
    let started = Instant::now();
    let pending = {
        let s = s.clone();
        rt.spawn(async move { s.exec("echo up", T).await })
    };
    std::thread::sleep(Duration::from_millis(1500));
    sshd.start_again();
    let out = rt.block_on(pending).unwrap().unwrap();
    assert_eq!(out.stdout_str(), "up\n");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < T, "{took:?}");
    let stats = s.reconnect_stats();
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    // Refused while down, so more than one attempt; backoff keeps them few.
    assert!(
        stats.attempts >= 2 && stats.attempts <= 12,
        "{stats:?} over {took:?}"
    );
}

#[test]
fn reconnecting_gives_up_within_its_budget_and_queued_commands_share_the_outcome() {
    let mut sshd = Sshd::start();
    let rt = rt();
    let mut opts = sshd.options();
    opts.reconnect_budget = Some(Duration::from_secs(1));
    let s = Arc::new(
        rt.block_on(Session::connect(&sshd.node("n1"), &opts))
            .unwrap(),
    );
    sshd.stop();
    let started = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            rt.spawn(async move { s.exec("true", T).await })
        })
        .collect();
    let errors: Vec<ControlError> = tasks
        .into_iter()
        .map(|t| rt.block_on(t).unwrap().unwrap_err())
        .collect();
    let took = started.elapsed();
    // Budget 1 s (refusals are immediate): well before the commands' 20 s deadline,
    // and the queued commands did not each wait out a budget of their own.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}: {errors:?}");
    for e in &errors {
        assert!(matches!(e, ControlError::Disconnected { .. }), "{e}");
    }
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("gave up reconnecting after") && t.contains("attempts in")),
        "{text:?}"
    );
    let stats = s.reconnect_stats();
    assert_eq!(stats.reconnects, 0);
    assert!(stats.attempts >= 2, "{stats:?}");
    // Right after a give-up the node counts as still down: a new command makes one
    // attempt, without a new round of backoff.
    let started = Instant::now();
    let e = rt.block_on(s.exec("true", T)).unwrap_err();
    assert!(e.to_string().contains("still unreachable"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3), "{e}");
    assert_eq!(s.reconnect_stats().attempts, stats.attempts + 1);
    // Once the node is back, the next command reconnects and succeeds.
    sshd.start_again();
    let out = rt.block_on(s.exec("echo again", T)).unwrap();
    assert_eq!(out.stdout_str(), "again\n");
    assert_eq!(s.reconnect_stats().reconnects, 1);
}

#[test]
fn a_rejected_login_is_not_retried() {
    let sshd = Sshd::start();
    let rt = rt();
    let s = rt
        .block_on(Session::connect(&sshd.node("n1"), &sshd.options()))
        .unwrap();
    // The key is withdrawn, then the connection dropped: waiting will not help.
    std::fs::write(sshd.dir.path().join("authorized_keys"), "").unwrap();
    assert!(sshd.kill_sessions() >= 1);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let e = rt.block_on(s.exec("true", T)).unwrap_err();
    assert!(matches!(e, ControlError::AuthRejected { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(s.reconnect_stats().attempts, 1);
}

#[test]
fn hanging_commands_time_out_and_the_session_stays_usable() {
    let sshd = Sshd::start();
    let rt = rt();
    let s = Arc::new(
        rt.block_on(Session::connect(&sshd.node("n1"), &sshd.options()))
            .unwrap(),
    );
    let free = s.free_channels();
    // As many commands that never return as there are channels, each with a 1 s
    // deadline, and one more normal command queued behind them.
    let started = Instant::now();
    let hung: Vec<_> = (0..free)
        .map(|_| {
            let s = s.clone();
            rt.spawn(async move {
                let r = s.exec("sleep 1000", Duration::from_secs(1)).await;
                (r, Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let queued = {
        let s = s.clone();
        rt.spawn(async move { s.exec("echo after", T).await })
    };
    for h in hung {
        let (r, ended) = rt.block_on(h).unwrap();
        let e = r.unwrap_err();
        assert!(matches!(e, ControlError::CommandTimeout { .. }), "{e}");
        assert!(e.to_string().contains("sleep 1000"), "{e}");
        assert!(
            ended - started < Duration::from_secs(8),
            "{:?}",
            ended - started
        );
    }
    let out = rt.block_on(queued).unwrap().unwrap();
    assert_eq!(out.stdout_str(), "after\n");
    // The node kills the timed-out commands itself shortly after their deadline.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let left = rt
            .block_on(s.exec("pgrep -f -x 'sleep 1000' | wc -l", T))
            .unwrap()
            .stdout_str();
        if left.trim() == "0" {
            break;
        }
        assert!(
            Instant::now() < until,
            "{} hung commands still run",
            left.trim()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(s.free_channels(), free);
    assert_eq!(s.reconnect_stats().reconnects, 0);
}
