//! OpenSSH `known_hosts` files: parsing (plain, `[host]:port`, wildcard and negated
//! patterns, hashed `|1|salt|hash` names, `@revoked` lines), checking a server's key
//! against them, and appending a newly accepted key.
//!
//! Semantics follow OpenSSH: a key is known when any line whose host pattern matches
//! holds exactly that key; it has *changed* when no line holds it but a matching line
//! holds a different key of the same type; otherwise it is unknown.

use std::io::Write;
use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{Algorithm, HashAlg};

/// One usable line of a known_hosts file.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    revoked: bool,
    patterns: Vec<String>,
    key: PublicKey,
}

/// What a known_hosts file says about a server key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// A matching line holds exactly this key.
    Known { line: usize },
    /// No matching line holds it, but line `line` holds another key of the same type.
    Changed { line: usize },
    /// The key is listed on an `@revoked` line.
    Revoked { line: usize },
    /// Nothing about this key; `other_types` are the key types recorded for the host.
    Unknown { other_types: Vec<String> },
}

/// A parsed known_hosts file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<Entry>,
    skipped: Vec<usize>,
}

/// The name OpenSSH records for a host: `host` on port 22, `[host]:port` otherwise.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `*` and `?` glob match, as OpenSSH uses for host patterns (ASCII case-insensitive).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p].eq_ignore_ascii_case(&text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn hashed_match(entry: &str, name: &str) -> bool {
    let mut parts = entry.split('|').skip(2);
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

/// Whether a comma-separated pattern list matches `name` (negations win).
fn patterns_match(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pat in patterns {
        if pat.starts_with("|1|") {
            matched |= hashed_match(pat, name);
        } else if let Some(neg) = pat.strip_prefix('!') {
            if glob(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(pat.as_bytes(), name.as_bytes()) {
            matched = true;
        }
    }
    matched
}

fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. })) || a == b
}

fn type_name(a: &Algorithm) -> String {
    match a {
        Algorithm::Rsa { .. } => "ssh-rsa".to_string(),
        other => other.as_str().to_string(),
    }
}

impl KnownHosts {
    /// Parses known_hosts text. Lines that cannot be parsed (or carry markers we do not
    /// act on, such as `@cert-authority`) are skipped, as OpenSSH does; their numbers
    /// are kept in [`KnownHosts::skipped_lines`].
    pub fn parse(text: &str, path: &Path) -> KnownHosts {
        let mut out = KnownHosts {
            path: path.to_path_buf(),
            ..KnownHosts::default()
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let mut words = content.split_whitespace();
            let mut first = words.next().unwrap_or_default();
            let mut revoked = false;
            if first.starts_with('@') {
                if first != "@revoked" {
                    out.skipped.push(line);
                    continue;
                }
                revoked = true;
                first = words.next().unwrap_or_default();
            }
            let (Some(kind), Some(data)) = (words.next(), words.next()) else {
                out.skipped.push(line);
                continue;
            };
            match PublicKey::from_openssh(&format!("{kind} {data}")) {
                Ok(key) => out.entries.push(Entry {
                    line,
                    revoked,
                    patterns: first.split(',').map(str::to_string).collect(),
                    key,
                }),
                Err(_) => out.skipped.push(line),
            }
        }
        out
    }

    /// Reads and parses `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> std::io::Result<KnownHosts> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(KnownHosts::parse(&text, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KnownHosts {
                path: path.to_path_buf(),
                ..KnownHosts::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Line numbers that were not understood.
    pub fn skipped_lines(&self) -> &[usize] {
        &self.skipped
    }

    fn matching<'a>(&'a self, host: &str, port: u16) -> impl Iterator<Item = &'a Entry> + 'a {
        let name = host_entry_name(host, port);
        self.entries
            .iter()
            .filter(move |e| patterns_match(&e.patterns, &name))
    }

    /// Checks `key` offered by `host:port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let matching: Vec<&Entry> = self.matching(host, port).collect();
        let same_key = |e: &&&Entry| e.key.key_data() == key.key_data();
        if let Some(e) = matching.iter().filter(|e| e.revoked).find(same_key) {
            return HostKeyStatus::Revoked { line: e.line };
        }
        let plain: Vec<&&Entry> = matching.iter().filter(|e| !e.revoked).collect();
        if let Some(e) = plain.iter().find(|e| e.key.key_data() == key.key_data()) {
            return HostKeyStatus::Known { line: e.line };
        }
        if let Some(e) = plain
            .iter()
            .find(|e| same_type(&e.key.algorithm(), &key.algorithm()))
        {
            return HostKeyStatus::Changed { line: e.line };
        }
        let mut other_types: Vec<String> = plain
            .iter()
            .map(|e| type_name(&e.key.algorithm()))
            .collect();
        other_types.dedup();
        HostKeyStatus::Unknown { other_types }
    }

    /// Key algorithms recorded for `host:port`, to be preferred in negotiation so the
    /// server presents a key we can check (as OpenSSH's client does).
    pub fn recorded_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self.matching(host, port).filter(|e| !e.revoked) {
            let a = e.key.algorithm();
            if !out.iter().any(|o| same_type(o, &a)) {
                out.push(a);
            }
        }
        out
    }
}

/// Orders `defaults` so that algorithms of the types in `recorded` come first.
pub fn prefer_recorded(defaults: &[Algorithm], recorded: &[Algorithm]) -> Vec<Algorithm> {
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = defaults
        .iter()
        .cloned()
        .partition(|d| recorded.iter().any(|r| same_type(r, d)));
    first.extend(rest);
    first
}

/// The `SHA256:...` fingerprint OpenSSH prints for a key.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Appends `host:port key` to the file at `path` (creating it and its directory),
/// in one write so concurrent appends from several connections do not interleave.
pub fn append(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let encoded = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // to_openssh() ends with the key's comment, if any; known_hosts needs type + data.
    let mut words = encoded.split_whitespace();
    let (kind, data) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut line = String::new();
    let len = file.metadata()?.len();
    if len > 0 {
        // Guard against a file whose last line lacks its newline.
        let text = std::fs::read(path)?;
        if text.last() != Some(&b'\n') {
            line.push('\n');
        }
    }
    line.push_str(&format!("{} {kind} {data}\n", host_entry_name(host, port)));
    file.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILXF8N1ngflZv45gQC/kSAvww7kJ3JEqhYeti1K3swe";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINIrAxqrY8eVvhTXGmwClhVJL0uBDdsY/xkn/ulwhKju";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn glob_matches_like_openssh() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"10.77.77.*", b"10.77.77.3"));
        assert!(!glob(b"10.77.77.?", b"10.77.77.33"));
        assert!(glob(b"[10.77.77.?]:22?2", b"[10.77.77.3]:2202"));
        assert!(glob(b"Host", b"host"));
        assert!(!glob(b"a*b", b"a-c"));
    }

    #[test]
    fn classifies_known_changed_unknown_revoked() {
        let text = format!(
            "# comment\n\nnode1,10.0.0.1 {ED}\n[127.0.0.1]:2222 {ED2}\n*.lab,!bad.lab {ED}\n@revoked * {ED2}\n@cert-authority * {ED}\ngarbage\n"
        );
        let kh = KnownHosts::parse(&text, Path::new("kh"));
        assert_eq!(kh.skipped_lines(), &[7, 8]);
        assert_eq!(
            kh.check("node1", 22, &key(ED)),
            HostKeyStatus::Known { line: 3 }
        );
        assert_eq!(
            kh.check("10.0.0.1", 22, &key(ED2)),
            HostKeyStatus::Revoked { line: 6 }
        );
        assert_eq!(
            kh.check("x.lab", 22, &key(ED)),
            HostKeyStatus::Known { line: 5 }
        );
        assert_eq!(
            kh.check("bad.lab", 22, &key(ED)),
            HostKeyStatus::Unknown {
                other_types: vec![]
            }
        );
        // Port matters: the [127.0.0.1]:2222 line does not cover port 22.
        assert_eq!(
            kh.check("127.0.0.1", 22, &key(ED)),
            HostKeyStatus::Unknown {
                other_types: vec![]
            }
        );
        let kh2 = KnownHosts::parse(&format!("[127.0.0.1]:2222 {ED}\n"), Path::new("kh"));
        assert_eq!(
            kh2.check("127.0.0.1", 2222, &key(ED2)),
            HostKeyStatus::Changed { line: 1 }
        );
    }

    #[test]
    fn hashed_names_known_answer() {
        // `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, the format in sshd(8); the
        // integration tests also check a file hashed by the real `ssh-keygen -H`.
        let salt = BASE64.encode(b"0123456789abcdef0123");
        let k = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            b"0123456789abcdef0123",
        );
        let tag = ring::hmac::sign(&k, b"[127.0.0.1]:2222");
        let line = format!("|1|{salt}|{} {ED}\n", BASE64.encode(tag.as_ref()));
        let kh = KnownHosts::parse(&line, Path::new("kh"));
        assert_eq!(
            kh.check("127.0.0.1", 2222, &key(ED)),
            HostKeyStatus::Known { line: 1 }
        );
        assert_eq!(
            kh.check("127.0.0.1", 2223, &key(ED)),
            HostKeyStatus::Unknown {
                other_types: vec![]
            }
        );
    }

    #[test]
    fn append_then_known() {
        let dir = std::env::temp_dir().join(format!("sb-kh-{}", std::process::id()));
        let path = dir.join("sub/known_hosts");
        let _ = std::fs::remove_dir_all(&dir);
        append(&path, "10.77.77.2", 22, &key(ED)).unwrap();
        append(&path, "10.77.77.3", 2200, &key(ED2)).unwrap();
        let kh = KnownHosts::load(&path).unwrap();
        assert_eq!(
            kh.check("10.77.77.2", 22, &key(ED)),
            HostKeyStatus::Known { line: 1 }
        );
        assert_eq!(
            kh.check("10.77.77.3", 2200, &key(ED2)),
            HostKeyStatus::Known { line: 2 }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
