//! `--config FILE.toml`: a node's flags from a TOML file. Each key is a flag's name
//! (`data_dir` or `data-dir`), each value its value: strings and integers as given,
//! `true` for a switch (`daemon = true`), `peers` also as an array of `NAME=ADDR:PORT`
//! strings (in order: the first is the default initial master). The file's flags go
//! before the command line's, and a flag given twice takes its last value, so flags
//! on the command line override the file.

use std::ffi::OsString;
use std::path::Path;

use clap::CommandFactory;

use crate::config::Args;

/// Flags the file may not set.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

/// `argv` with `--config FILE` (or `--config=FILE`) replaced by the file's flags,
/// placed right after the program name. Without `--config`, `argv` unchanged.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let mut rest = Vec::with_capacity(argv.len());
    let mut file: Option<OsString> = None;
    let mut it = argv.into_iter();
    let program = it.next();
    while let Some(a) = it.next() {
        let given = if a == "--config" {
            Some(
                it.next()
                    .ok_or("--config needs a file: --config FILE.toml")?,
            )
        } else {
            a.to_str()
                .and_then(|s| s.strip_prefix("--config="))
                .map(OsString::from)
        };
        match given {
            Some(f) if file.is_some() => {
                return Err(format!(
                    "--config given twice ({} and {})",
                    Path::new(file.as_deref().unwrap_or_default()).display(),
                    Path::new(&f).display()
                ))
            }
            Some(f) => file = Some(f),
            None => rest.push(a),
        }
    }
    let mut out: Vec<OsString> = program.into_iter().collect();
    if let Some(f) = file {
        let path = Path::new(&f);
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        let flags = flags(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        out.extend(flags.into_iter().map(OsString::from));
    }
    out.extend(rest);
    Ok(out)
}

/// The flags a TOML text stands for.
fn flags(text: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    let cmd = Args::command();
    let mut out = Vec::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()))
            .filter(|_| !NOT_IN_FILE.contains(&name.as_str()))
            .ok_or_else(|| {
                format!("unknown key `{key}` (keys are the flags' names, e.g. heartbeat_ms)")
            })?;
        let takes_value = arg.get_action().takes_values();
        let text = match value {
            toml::Value::Boolean(b) if !takes_value => {
                if *b {
                    out.push(format!("--{name}"));
                }
                continue;
            }
            toml::Value::String(s) if takes_value => s.clone(),
            toml::Value::Integer(i) if takes_value => i.to_string(),
            toml::Value::Array(items) if takes_value && name == "peers" => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        format!("`peers` entries are strings like \"n1=10.0.0.1:7070\", got {v}")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other if takes_value => {
                return Err(format!(
                    "`{key}` takes a string or an integer, got {}",
                    other.type_str()
                ))
            }
            other => {
                return Err(format!(
                    "`{key}` is a switch: true or false, got {}",
                    other.type_str()
                ))
            }
        };
        out.push(format!("--{name}"));
        out.push(text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    fn parse(argv: &[&str]) -> Result<Config, String> {
        let argv = expand(argv.iter().map(OsString::from).collect())?;
        let a = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::try_from(a)
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("zoo.toml");
        std::fs::write(&p, text).unwrap();
        let s = p.to_str().unwrap().to_string();
        (d, s)
    }

    const BASE: &str = r#"
mode = "raft"
node = "n2"
listen = "127.0.0.1:7001"
peers = ["n2=127.0.0.1:7001", "n1=127.0.0.1:7000"]
data_dir = "/tmp/zoo-n2"
heartbeat-ms = 100
fsync = "never"
"#;

    #[test]
    fn the_file_sets_flags_and_the_command_line_overrides_them() {
        let (_d, f) = file(BASE);
        let c = parse(&["zoo", "--config", &f]).unwrap();
        assert_eq!(c.node, "n2");
        assert_eq!(c.initial_master, "n2", "peers keep the file's order");
        assert_eq!(c.heartbeat, std::time::Duration::from_millis(100));
        assert_eq!(c.fsync, crate::store::FsyncPolicy::Never);
        let c = parse(&["zoo", "--heartbeat-ms", "50", &format!("--config={f}")]).unwrap();
        assert_eq!(
            c.heartbeat,
            std::time::Duration::from_millis(50),
            "flag wins"
        );
        assert_eq!(c.peers().count(), 1);
        // No --config: argv unchanged.
        let argv: Vec<OsString> = ["zoo", "--node", "n1"].iter().map(OsString::from).collect();
        assert_eq!(expand(argv.clone()).unwrap(), argv);
    }

    #[test]
    fn switches_and_bad_files_give_one_clear_error() {
        let (_d, f) = file(&format!(
            "{BASE}daemon = true\ndebug_fault_injection = false\n"
        ));
        let argv = expand(vec!["zoo".into(), "--config".into(), f.clone().into()]).unwrap();
        assert!(argv.iter().any(|a| a == "--daemon"));
        assert!(!argv.iter().any(|a| a == "--debug-fault-injection"));
        for (text, want) in [
            ("heartbeat = 5\n", "unknown key `heartbeat`"),
            ("config = \"x.toml\"\n", "unknown key `config`"),
            ("daemon = \"yes\"\n", "`daemon` is a switch"),
            (
                "heartbeat_ms = 1.5\n",
                "`heartbeat_ms` takes a string or an integer, got float",
            ),
            ("peers = [1]\n", "`peers` entries are strings"),
            ("mode = \n", "config file"),
        ] {
            let (_d, f) = file(text);
            let e = parse(&["zoo", "--config", &f]).unwrap_err();
            assert!(e.contains(want) && e.contains("zoo.toml"), "{text}: {e}");
        }
        let e = parse(&["zoo", "--config", "/nonexistent/zoo.toml"]).unwrap_err();
        assert!(e.starts_with("config file /nonexistent/zoo.toml:"), "{e}");
        assert!(parse(&["zoo", "--config"])
            .unwrap_err()
            .contains("needs a file"));
        let e = parse(&["zoo", "--config", &f, "--config", &f]).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
    }
}
