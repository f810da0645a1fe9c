//! vagrant/Vagrantfile: `ruby -c` accepts it, and run under a recording stand-in for
//! Vagrant's configuration API (no VM, no Vagrant) it defines five nodes on fixed
//! addresses with both providers and the packages the harness needs, and writes a
//! `nodes` file and `known_hosts` that the harness's own parsers accept, the latter
//! holding exactly the host keys it provisions.
//!
//! Ruby missing: skipped with a message, unless `CI=true` (then a failure).

use harness::control::known_hosts::{HostKeyStatus, KnownHosts};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn vagrantfile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vagrant/Vagrantfile")
}

/// Whether ruby runs; panics under CI when it does not.
fn have_ruby(test: &str) -> bool {
    if Command::new("ruby")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "CI=true but ruby is missing: install ruby (apt-get install -y ruby)"
    );
    eprintln!("{test}: skipped: ruby is not installed (apt-get install -y ruby)");
    false
}

#[test]
fn vagrantfile_syntax_is_ok() {
    if !have_ruby("vagrantfile_syntax_is_ok") {
        return;
    }
    let out = Command::new("ruby")
        .arg("-c")
        .arg(vagrantfile())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ruby -c: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "Syntax OK");
}

/// Records every call on Vagrant's config objects as a tree and prints it as JSON.
const STAND_IN: &str = r#"
require "json"
class Rec
  attr_reader :calls
  def initialize; @calls = []; end
  def method_missing(name, *args, **kw, &blk)
    child = Rec.new
    @calls << { "m" => name.to_s, "args" => args.map(&:to_s),
                "kw" => kw.to_h { |k, v| [k.to_s, v.to_s] }, "calls" => child.calls }
    blk.call(child) if blk
    child
  end
  def respond_to_missing?(*) = true
end
module Vagrant
  def self.configure(version)
    raise "config version #{version}" unless version == "2"
    $root = Rec.new
    yield $root
  end
end
load ARGV[0]
puts JSON.generate($root.calls)
"#;

/// Every call in the tree, depth first, with the path of method names above it.
fn flatten<'a>(calls: &'a Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>) {
    for c in calls.as_array().into_iter().flatten() {
        out.push((path.clone(), c));
        path.push(format!(
            "{}({})",
            c["m"].as_str().unwrap_or(""),
            c["args"][0].as_str().unwrap_or("")
        ));
        flatten(&c["calls"], path, out);
        path.pop();
    }
}

#[test]
fn vagrantfile_defines_five_nodes_and_writes_files_the_harness_reads() {
    if !have_ruby("vagrantfile_defines_five_nodes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("Vagrantfile");
    std::fs::copy(vagrantfile(), &copy).unwrap();
    let stand_in = dir.path().join("stand_in.rb");
    std::fs::write(&stand_in, STAND_IN).unwrap();
    let out = Command::new("ruby")
        .arg(&stand_in)
        .arg(&copy)
        .env_remove("SPLITBRAIN_SUBNET")
        .env_remove("SPLITBRAIN_NODES")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree: Value = serde_json::from_slice(&out.stdout).expect("JSON from the stand-in");
    let mut calls = Vec::new();
    flatten(&tree, &mut Vec::new(), &mut calls);

    let box_name: Vec<&str> = calls
        .iter()
        .filter(|(_, c)| c["m"] == "box=")
        .filter_map(|(_, c)| c["args"][0].as_str())
        .collect();
    assert_eq!(box_name, ["debian/bookworm64"]);
    let providers: Vec<&str> = calls
        .iter()
        .filter(|(p, c)| p.len() == 1 && c["m"] == "provider")
        .filter_map(|(_, c)| c["args"][0].as_str())
        .collect();
    assert_eq!(providers, ["virtualbox", "libvirt"]);
    let ips: Vec<(String, String)> = calls
        .iter()
        .filter(|(_, c)| c["m"] == "network" && c["args"][0] == "private_network")
        .map(|(p, c)| {
            let define = p.iter().find(|s| s.starts_with("define(")).cloned();
            (
                define.unwrap_or_default(),
                c["kw"]["ip"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("define(n{i})"), format!("192.168.56.{}", 10 + i)))
        .collect();
    assert_eq!(ips, want);
    let shell: Vec<&str> = calls
        .iter()
        .filter(|(_, c)| c["m"] == "provision" && c["args"][0] == "shell")
        .filter_map(|(_, c)| c["kw"]["inline"].as_str())
        .collect();
    assert_eq!(shell.len(), 5);
    assert!(shell[0].contains("apt-get install -y -q iptables iproute2 faketime chrony"));

    let nodes = harness::nodes::read_nodes_file(&dir.path().join("nodes")).expect("nodes file");
    let got: Vec<(String, String, u16, String)> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.host.clone(), n.port, n.workdir.clone()))
        .collect();
    let want: Vec<(String, String, u16, String)> = (1..=5)
        .map(|i| {
            (
                format!("n{i}"),
                format!("192.168.56.{}", 10 + i),
                22,
                "/opt/splitbrain".into(),
            )
        })
        .collect();
    assert_eq!(got, want);

    let kh_path = dir.path().join("known_hosts");
    let kh = KnownHosts::parse(&std::fs::read_to_string(&kh_path).unwrap(), &kh_path);
    assert!(kh.skipped_lines().is_empty(), "unparsed known_hosts lines");
    for n in &nodes {
        let pub_text = std::fs::read_to_string(
            dir.path()
                .join(format!(".keys/{}_host_ed25519_key.pub", n.name)),
        )
        .unwrap();
        let key = russh::keys::PublicKey::from_openssh(pub_text.trim()).unwrap();
        assert!(
            matches!(kh.check(&n.host, 22, &key), HostKeyStatus::Known { .. }),
            "{}",
            n.name
        );
        let other = &nodes[(nodes.iter().position(|m| m == n).unwrap() + 1) % nodes.len()];
        assert!(!matches!(
            kh.check(&other.host, 22, &key),
            HostKeyStatus::Known { .. }
        ));
    }
    let login = dir.path().join(".keys/id_ed25519");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&login).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "login key readable by others: {mode:o}");

    // Running it again keeps the keys (a second `vagrant up` must not rotate them).
    let before = std::fs::read_to_string(&kh_path).unwrap();
    let again = Command::new("ruby")
        .arg(&stand_in)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(&kh_path).unwrap(), before);
}
