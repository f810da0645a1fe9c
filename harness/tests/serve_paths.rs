//! `splitbrain serve` over real HTTP on 127.0.0.1: the index lists runs newest first
//! with verdict and anomaly counts and filters by test and verdict; run files are
//! served; everything outside the store is refused (`..` raw and percent-encoded,
//! absolute paths, symlinks leading out), while a symlink inside the store works.

mod report_support;

use std::net::SocketAddr;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn store(root: &Path) {
    let a = root.join("alpha").join("20261122T090000");
    report_support::write_run(&a, "alpha", 300);
    harness::report::rebuild(&a).unwrap(); // invalid, with lost writes
    let b = root.join("beta").join("20261122T100000");
    report_support::write_run(&b, "beta", 100); // killed: no results.json
    let c = root.join("alpha").join("20261122T110000");
    report_support::write_run(&c, "alpha", 100);
    let mut r: serde_json::Value =
        serde_json::to_value(harness::report::rebuild(&c).unwrap().0.results).unwrap();
    r["valid"] = serde_json::json!("valid");
    r["checkers"] = serde_json::json!([]);
    std::fs::write(c.join("results.json"), r.to_string()).unwrap();
    std::os::unix::fs::symlink("alpha/20261122T110000", root.join("latest")).unwrap();
    // A folder copied in by hand, with characters that need encoding in a URL.
    let odd = root.join("odd name#1").join("20261122T080000");
    report_support::write_run(&odd, "odd", 50);
    harness::report::rebuild(&odd).unwrap();
}

#[tokio::test]
async fn index_files_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("results");
    store(&root);
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "outside the store").unwrap();
    std::os::unix::fs::symlink(&secret, root.join("alpha/20261122T090000/escape.txt")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), root.join("alpha/updir")).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = harness::serve::router(root.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (code, page) = get(addr, "/").await;
    assert_eq!(code, 200);
    let order: Vec<usize> = [
        "2026-11-22 11:00:00",
        "2026-11-22 10:00:00",
        "2026-11-22 09:00:00",
    ]
    .iter()
    .map(|t| page.find(t).unwrap_or_else(|| panic!("{t} not listed")))
    .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "newest first");
    assert!(page.contains("4 of 4 runs"));
    let odd = "/runs/odd%20name%231/20261122T080000/report.html";
    assert!(page.contains(&format!("href=\"{odd}\"")), "{page}");
    let (code, _) = get(addr, odd).await;
    assert_eq!(code, 200);
    assert!(page.contains("class=\"incomplete\">incomplete"));
    assert!(page.contains("lost"));
    assert!(page.contains("href=\"/runs/alpha/20261122T090000/report.html\""));

    let (_, only_invalid) = get(addr, "/?verdict=invalid").await;
    assert!(only_invalid.contains("2 of 4 runs") && only_invalid.contains("20261122T090000"));
    assert!(!only_invalid.contains("/runs/beta/"));
    let (_, only_beta) = get(addr, "/?test=beta&verdict=").await;
    assert!(only_beta.contains("1 of 4 runs") && only_beta.contains("/runs/beta/20261122T100000/"));

    let (code, html) = get(addr, "/runs/alpha/20261122T090000/report.html").await;
    assert_eq!(code, 200);
    assert!(html.contains("text/html") && html.contains("b-invalid"));
    let (code, raw) = get(addr, "/runs/beta/20261122T100000/history.jsonl").await;
    assert_eq!(code, 200);
    assert!(raw.contains("\"f\":\"start-partition\""));
    let (code, listing) = get(addr, "/runs/alpha/20261122T090000/").await;
    assert_eq!(code, 200);
    assert!(listing.contains("junit.xml"));
    // a symlink that stays inside the store is fine
    let (code, _) = get(addr, "/runs/latest/test.json").await;
    assert_eq!(code, 200);

    for bad in [
        "/runs/../secret.txt",
        "/runs/alpha/../../secret.txt",
        "/runs/%2e%2e/secret.txt",
        "/runs/alpha/%2E%2E/%2e%2e/secret.txt",
        "/runs//etc/passwd",
        "/runs/%2fetc%2fpasswd",
        "/runs/alpha/20261122T090000/escape.txt",
        "/runs/alpha/updir/secret.txt",
        "/runs/./alpha",
        "/runs/alpha/..%5c..%5csecret.txt",
    ] {
        let (code, body) = get(addr, bad).await;
        assert!(code == 403 || code == 404 || code == 400, "{bad}: {code}");
        assert!(
            !body.contains("outside the store") && !body.contains("root:"),
            "{bad} leaked"
        );
    }
    let (code, _) = get(addr, "/runs/../secret.txt").await;
    assert_eq!(code, 403);
    let (code, _) = get(addr, "/runs/alpha/20261122T090000/escape.txt").await;
    assert_eq!(code, 403);
}

#[test]
fn resolve_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("t/r")).unwrap();
    std::fs::write(root.join("t/r/a.json"), "{}").unwrap();
    let ok = harness::serve::resolve(root, "t/r/a.json").unwrap();
    assert!(ok.ends_with("t/r/a.json"));
    for bad in [
        "",
        "..",
        "t/../..",
        "/etc/passwd",
        "t//r",
        "t/./r",
        "t/r/missing",
        "t\\..\\x",
        "a\0b",
    ] {
        assert!(harness::serve::resolve(root, bad).is_none(), "{bad:?}");
    }
}
