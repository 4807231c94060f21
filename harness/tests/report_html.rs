//! The HTML report renders in headless Chromium with its SVG charts in the DOM.
//!
//! Needs the Debian package `chromium`; without it the test fails saying so, unless
//! `GAUNTLET_SKIP_BROWSER=1` is set, in which case it skips and says why.

mod report_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gauntlet::report::html::{self, CHART_IDS};
use gauntlet::report::write_all;

const BROWSERS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

fn browser() -> Option<&'static str> {
    BROWSERS.into_iter().find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Runs the browser on `page` with `args`, killed after a minute at most.
fn chromium(browser: &str, page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("chromium wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish rendering {} within a minute", page.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<svg id="...">...</svg>` element of the rendered DOM.
fn svg_element<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("<svg id=\"{id}\"")).unwrap_or_else(|| panic!("no <svg id=\"{id}\"> in the DOM"));
    let end = dom[start..].find("</svg>").expect("svg closed") + start;
    &dom[start..end]
}

/// Numbers of a polyline's `points` attribute.
fn polyline_points(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.match_indices("<polyline")
        .map(|(at, _)| {
            let rest = &svg[at..];
            let points = rest.find("points=\"").map(|p| &rest[p + 8..]).expect("points attribute");
            let points = &points[..points.find('"').unwrap()];
            points
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').expect("x,y");
                    (x.parse().expect("x is a number"), y.parse().expect("y is a number"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_html_report_renders_in_headless_chromium_with_its_charts() {
    let Some(browser) = browser() else {
        if std::env::var_os("GAUNTLET_SKIP_BROWSER").is_some_and(|v| v == "1") {
            eprintln!("skipped: no chromium on PATH and GAUNTLET_SKIP_BROWSER=1");
            return;
        }
        panic!("headless Chromium is needed to check the HTML report: `apt-get install chromium` (or set GAUNTLET_SKIP_BROWSER=1 to skip)");
    };
    let dir = tempfile::tempdir().unwrap();
    let report = report_common::report();
    write_all(dir.path(), &report).unwrap();
    let page = dir.path().join("report.html");
    let dom = chromium(browser, &page, &["--dump-dom", "--virtual-time-budget=2000"]);

    assert!(dom.contains("Gauntlet report: shop checkout | &lt;smoke&gt; &amp; \"friends\""), "title missing");
    assert!(dom.contains("id=\"verdict\"") && dom.contains("FAILED"));
    for id in CHART_IDS {
        let svg = svg_element(&dom, id);
        let lines = polyline_points(svg);
        let expected = if id == "chart-distribution" { 2 } else { 3 };
        assert_eq!(lines.len(), expected, "{id}: {svg}");
        for line in &lines {
            assert!(line.len() >= 10, "{id}: a line of {} points", line.len());
            assert!(line.iter().all(|(x, y)| (0.0..=960.0).contains(x) && (0.0..=300.0).contains(y)), "{id}: {line:?}");
        }
    }
    // The fault windows are shaded on both charts over time, where they happened.
    for id in &CHART_IDS[..2] {
        let svg = svg_element(&dom, id);
        assert_eq!(svg.matches("class=\"fault-window\"").count(), report.faults.len(), "{id}");
    }
    // The stall shows in the p99 line: its highest point (lowest y) lies in the fault window.
    let latency = polyline_points(svg_element(&dom, "chart-latency"));
    let p99 = &latency[2];
    let (peak_x, _) = p99.iter().copied().fold((0.0, f64::MAX), |best, p| if p.1 < best.1 { p } else { best });
    let x_of = |s: f64| 72.0 + s / 30.0 * (960.0 - 72.0 - 24.0);
    assert!((x_of(10.0)..=x_of(15.0)).contains(&peak_x), "p99 peaks at x={peak_x}");
    assert!(html::render(&report).len() < 200_000, "the page stays small");
}

#[test]
fn the_page_is_self_contained() {
    let page = html::render(&report_common::report());
    for needle in ["<script", "http://", "https://", "<link", "@import", "url("] {
        let found = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!found.contains(needle), "the page refers to `{needle}`");
    }
}
