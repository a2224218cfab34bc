//! `fleetsim merge`: two real runs of one scenario merge into one report whose histograms are
//! exactly those of both runs' latencies recorded together, whose counts add up, whose time
//! series lines up by second, and whose gates are checked again.

use std::path::Path;

#[path = "support/binary.rs"]
mod binary;
use binary::{fleetsim, scratch, summary};

#[test]
fn two_runs_merge_exactly() {
    let root = scratch("merge");
    let (a, b, merged) = (root.join("a"), root.join("b"), root.join("merged"));
    for (dir, seed) in [(&a, "5"), (&b, "6")] {
        let ran = fleetsim(&[
            "run",
            "sim/tests/fixtures/run/small.toml",
            "--seed",
            seed,
            "--out",
            dir.to_str().expect("utf-8"),
        ]);
        assert_eq!(ran.status.code(), Some(0), "{}", String::from_utf8_lossy(&ran.stdout));
    }
    let ran = fleetsim(&[
        "merge",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
        "--out",
        merged.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(stdout.contains("merged 2 report folders"), "{stdout}");
    assert!(stdout.contains("pass  devices.lost == 0: measured 0"), "{stdout}");

    let (sa, sb, sm) = (summary(&a), summary(&b), summary(&merged));
    assert_eq!(sm["devices"], 80);
    for counter in ["provisioned", "published", "connected"] {
        let added = sa["metrics"]["counters"][counter].as_u64().unwrap_or(0)
            + sb["metrics"]["counters"][counter].as_u64().unwrap_or(0);
        assert_eq!(sm["metrics"]["counters"][counter].as_u64(), Some(added), "{counter}");
    }
    assert_eq!(sm["metrics"]["gauges"]["devices.online"], 80);

    // Both runs' latencies recorded together, from their own logs: the merged figures match.
    let mut together = fleetsim::report::hlog::read_totals(&a.join("histograms.hlog")).expect("a");
    for (name, histogram) in fleetsim::report::hlog::read_totals(&b.join("histograms.hlog")).expect("b") {
        fleetsim::report::hlog::add(&mut together, name, &histogram).expect("adds");
    }
    for (name, histogram) in &together {
        let figures = &sm["metrics"]["histograms"][name.as_str()];
        assert_eq!(figures["count"].as_u64(), Some(histogram.len()), "{name}");
        for (key, q) in [("p50_ms", 0.5), ("p99_ms", 0.99), ("p99_9_ms", 0.999)] {
            assert_eq!(
                figures[key].as_f64(),
                Some(histogram.value_at_quantile(q) as f64 / 1e3),
                "{name} {key}"
            );
        }
    }
    let merged_log = fleetsim::report::hlog::read_totals(&merged.join("histograms.hlog")).expect("merged log");
    assert_eq!(merged_log.len(), together.len());

    // The series adds up second by second.
    let rows = |dir: &Path| std::fs::read_to_string(dir.join("timeseries.csv")).expect("csv");
    let (ra, rb, rm) = (rows(&a), rows(&b), rows(&merged));
    let cell = |csv: &str, row: usize, name: &str| -> f64 {
        let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
        let column = header.iter().position(|h| *h == name).expect(name);
        csv.lines()
            .nth(row)
            .and_then(|l| l.split(',').nth(column)?.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        cell(&rm, 1, "published_per_s"),
        cell(&ra, 1, "published_per_s") + cell(&rb, 1, "published_per_s")
    );
    assert_eq!(
        cell(&rm, 2, "devices.online"),
        cell(&ra, 2, "devices.online") + cell(&rb, 2, "devices.online")
    );
    assert!(
        std::fs::read_to_string(merged.join("junit.xml"))
            .expect("junit")
            .contains("tests=\"3\" failures=\"0\"")
    );
    let html = std::fs::read_to_string(merged.join("report.html")).expect("report.html");
    assert!(html.contains("<table class=\"gates\">") && html.contains("<svg "));

    let other = fleetsim(&[
        "merge",
        a.to_str().expect("utf-8"),
        "sim/tests/fixtures",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(other.status.code(), Some(2));
}
