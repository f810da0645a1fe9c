//! What the lab needs from the host before it changes anything: root, the tools it runs
//! (with the one apt-get line that installs them all), whether root's account is locked
//! (which decides sshd's `UsePAM`), and whether iptables works inside a namespace.

use super::sys::{euid, run, which};
use super::LabError;

/// The one command that installs everything the lab runs.
pub const INSTALL_HINT: &str =
    "apt-get install -y iproute2 iptables openssh-server openssh-client faketime";

/// Tools the lab runs, each with the Debian package that provides it. faketime is not run
/// by the lab itself but by clock faults on lab nodes, so its absence is caught here.
const TOOLS: [(&str, &str); 5] = [
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("ssh-keygen", "openssh-client"),
    ("faketime", "faketime"),
];

/// The error for a set of findings; `None` when all is well. Pure, for testing.
pub(crate) fn verdict(euid: u32, missing: &[(&str, &str)]) -> Option<LabError> {
    if euid != 0 {
        return Some(LabError::NotRoot { euid });
    }
    if missing.is_empty() {
        return None;
    }
    Some(LabError::MissingTools {
        tools: missing.iter().map(|(t, _)| t.to_string()).collect(),
        packages: missing.iter().map(|(_, p)| p.to_string()).collect(),
    })
}

/// Checks root and tools; one error line saying exactly what to do.
pub(crate) fn check_host() -> Result<(), LabError> {
    let missing: Vec<(&str, &str)> = TOOLS
        .iter()
        .filter(|(tool, _)| which(tool).is_none())
        .copied()
        .collect();
    match verdict(euid(), &missing) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// True when root's password field in `shadow` text starts with `!` (a locked account).
pub(crate) fn root_locked_in(shadow: &str) -> bool {
    shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .is_some_and(|rest| rest.starts_with('!'))
}

/// Whether root's account is locked on this host.
pub(crate) fn root_locked() -> bool {
    std::fs::read_to_string("/etc/shadow").is_ok_and(|s| root_locked_in(&s))
}

/// Checks that iptables can list rules inside the namespace `ns` (the nemesis needs it).
pub(crate) fn check_namespace_iptables(ns: &str) -> Result<(), LabError> {
    // The absolute path, so that the command run in the namespace is the one preflight found.
    let iptables = which("iptables").unwrap_or_else(|| "iptables".into());
    let iptables = iptables.to_str().unwrap_or("iptables");
    match run("ip", &["netns", "exec", ns, iptables, "-S"]) {
        Ok(_) => Ok(()),
        Err(LabError::Command { message, .. }) => Err(LabError::NamespaceIptables {
            ns: ns.to_string(),
            message,
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_says_what_to_do() {
        let err = verdict(1000, &[]).unwrap().to_string();
        assert!(err.contains("root") && err.contains("1000"), "{err}");
        assert!(!err.contains('\n'));
        let err = verdict(
            0,
            &[("ip", "iproute2"), ("/usr/sbin/sshd", "openssh-server")],
        )
        .unwrap()
        .to_string();
        assert!(err.contains("ip, /usr/sbin/sshd"), "{err}");
        assert!(err.contains(INSTALL_HINT), "{err}");
        assert!(!err.contains('\n'));
        assert!(verdict(0, &[]).is_none());
    }

    #[test]
    fn locked_root_is_detected() {
        assert!(root_locked_in("daemon:*:1::\nroot:!:19000:0:99999:7:::\n"));
        assert!(root_locked_in("root:!$6$abc:19000::::::\n"));
        assert!(!root_locked_in("root:*:19000:0:99999:7:::\n"));
        assert!(!root_locked_in("root:$6$abc:19000::::::\n"));
        assert!(!root_locked_in(""));
    }
}
