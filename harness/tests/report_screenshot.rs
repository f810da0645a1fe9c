//! Looks at report.html and the `serve` index as a reader would: headless Chromium
//! loads them from a local axum server on 127.0.0.1 and takes screenshots. Asserts the
//! key elements are on the page, that the page asks the server for nothing but itself
//! (no stylesheet, script, image or font requests) and names no outside address, and
//! that external host names cannot even resolve while it loads. With
//! SPLITBRAIN_UPDATE_DOCS=1 the PNGs are copied to docs/ (that is how they were made).

mod report_support;

use axum::extract::Request;
use axum::middleware::{self, Next};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn chromium(args: &[String], profile: &Path) -> std::process::Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", "90", "chromium"]);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        // Any host name but the loopback address fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd.args(args);
    cmd.output().expect(
        "chromium is needed for this test: apt-get install chromium (scripts/setup.sh --deps)",
    )
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

/// Every http(s) URL in the page must be an XML namespace name, never something fetched.
fn assert_no_outside_urls(html: &str) {
    for (i, _) in html.match_indices("http") {
        let before = &html[i.saturating_sub(7)..i];
        assert!(
            before == "xmlns=\"" || html[i..].starts_with("http://www.w3.org/"),
            "outside URL in page: {}",
            &html[i..(i + 60).min(html.len())]
        );
    }
    for banned in [
        "<script", "<link", "<iframe", "<img", "@import", "url(", "src=",
    ] {
        assert!(!html.contains(banned), "page contains {banned}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_report_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("results");
    let run = root
        .join("zoo-async-failover-set-partition")
        .join("20261122T124646");
    // A real run folder can stand in for the synthetic one (that is how docs/ was made).
    match std::env::var("SPLITBRAIN_SCREENSHOT_RUN") {
        Ok(real) if !real.is_empty() => {
            std::fs::create_dir_all(&run).unwrap();
            for f in ["test.json", "history.jsonl", "results.json"] {
                std::fs::copy(Path::new(&real).join(f), run.join(f)).unwrap();
            }
        }
        _ => {
            report_support::write_run(&run, "zoo-async-failover-set-partition", 3_000);
        }
    }
    let (loaded, _) = harness::report::rebuild(&run).unwrap();
    let lost = loaded.results.checkers[0].details["lost_count"]
        .as_u64()
        .unwrap();
    let fault = format!("F1 {}", loaded.analysis.faults[0].label);
    let seed = format!("--seed {}", loaded.results.test.seed);
    let older = root
        .join("zoo-async-failover-set-none")
        .join("20261122T120000");
    report_support::write_run(&older, "zoo-async-failover-set-none", 200);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_no_outside_urls(&html);

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let app = harness::serve::router(root.clone()).layer(middleware::from_fn(
        move |req: Request, next: Next| {
            log.lock().unwrap().push(req.uri().path().to_string());
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let page = "/runs/zoo-async-failover-set-partition/20261122T124646/report.html".to_string();
    let out_dir = tmp.path().join("shots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shots: Vec<(String, PathBuf, (u32, u32))> = vec![
        (page.clone(), out_dir.join("report-html.png"), (1440, 4200)),
        (
            "/".to_string(),
            out_dir.join("serve-index.png"),
            (1100, 360),
        ),
    ];
    for (path, png, (w, h)) in &shots {
        let url = format!("http://{addr}{path}");
        let (url2, png2, profile) = (url.clone(), png.clone(), tmp.path().join("profile"));
        let (w, h) = (*w, *h);
        let out = tokio::task::spawn_blocking(move || {
            chromium(
                &[
                    format!("--screenshot={}", png2.display()),
                    format!("--window-size={w},{h}"),
                    url2,
                ],
                &profile,
            )
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(png_size(png), (w, h));
        assert!(
            std::fs::metadata(png).unwrap().len() > 20_000,
            "{} looks blank",
            png.display()
        );
    }
    // The DOM Chromium built from the page: the key elements are there.
    let profile = tmp.path().join("profile");
    let url = format!("http://{addr}{page}");
    let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom".into(), url], &profile))
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    for want in [
        "id=\"verdict\"",
        "INVALID: zoo-async-failover-set-partition",
        "<table class=\"lost\">",
        "id=\"masters\"",
        "Two masters at once",
        fault.as_str(),
        "svg class=\"timeline\"",
        "id=\"latency\"",
        "id=\"throughput\"",
        seed.as_str(),
    ] {
        assert!(dom.contains(want), "rendered report lacks {want}");
    }
    assert!(lost > 0 && dom.contains(&format!("{lost} lost")));
    // What the browser asked for: each page once, nothing else (a favicon probe aside).
    let seen = seen.lock().unwrap().clone();
    let extra: Vec<&String> = seen
        .iter()
        .filter(|p| **p != page && p.as_str() != "/" && p.as_str() != "/favicon.ico")
        .collect();
    assert!(extra.is_empty(), "the pages made requests: {extra:?}");
    assert!(seen.iter().filter(|p| **p == page).count() >= 2);

    if std::env::var("SPLITBRAIN_UPDATE_DOCS").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).unwrap();
        for (_, png, _) in &shots {
            std::fs::copy(png, docs.join(png.file_name().unwrap())).unwrap();
        }
    }
}
