//! `docs/metrics.md` is what `fleetsim::metrics::reference::markdown()` renders from the metric
//! tables, byte for byte, so the reference cannot drift from the code. Run with
//! `FLEETSIM_BLESS=1` to write the file again after changing the tables.

use std::path::{Path, PathBuf};

use fleetsim::metrics::recorder::Snapshot;
use fleetsim::metrics::reference;
use fleetsim::report::figures::Second;
use fleetsim::report::prometheus;

const BLESS: &str = "FLEETSIM_BLESS=1 cargo test -p fleetsim --test metrics_reference";

fn page() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md")
}

#[test]
fn the_page_is_what_the_tables_render() {
    let rendered = reference::markdown();
    let path = page();
    if std::env::var_os("FLEETSIM_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}; write it with {BLESS}", path.display()));
    if on_disk != rendered {
        let (line, (want, got)) = rendered
            .lines()
            .chain(std::iter::repeat(""))
            .zip(on_disk.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (want, got))| want != got)
            .unwrap_or((0, ("", "")));
        panic!(
            "{} differs from the metric tables in sim/src/metrics/ at line {}:\n  rendered: {want}\n  on disk:  {got}\n\
             Change the tables, not the page, then write it again with {BLESS}",
            path.display(),
            line + 1,
        );
    }
}

#[test]
fn every_prometheus_series_named_is_served() {
    let served = prometheus::exposition(&Snapshot::default(), &Second::default(), 0, 0);
    let typed: Vec<&str> = served
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let page = reference::markdown();
    let named: Vec<&str> = page
        .split('`')
        .filter(|s| s.starts_with("fleetsim_"))
        .map(|s| s.split('{').next().unwrap_or(s))
        .collect();
    assert!(named.len() > 50, "the page names the series: {named:?}");
    for series in named {
        assert!(typed.contains(&series), "{series} is named but not served");
    }
}
