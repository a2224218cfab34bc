//! `report.html`: one self-contained page (inline CSS and SVG charts drawn with plotters; no
//! script, no network at view time) that a person reads after a run: the gates at the top,
//! green or red, then devices per state over time, the rates, latency percentiles over time,
//! each operation's latency distribution, the OTA campaigns as the backend counted them, and
//! the reconnect storm's recovery.
//!
//! It is drawn from what the report folder holds (`summary.json`, `timeseries.csv` and the
//! histograms), so a merged report renders the same way as a single run's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::escape;
use serde_json::Value;

/// The chart size, pixels.
const SIZE: (u32, u32) = (880, 300);
/// Line colours, in order.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A named series of (x, y) points.
type Series = (String, Vec<(f64, f64)>);

/// The page for a run's `summary`, its `timeseries` CSV and its whole-run latency histograms
/// (microseconds, by metric name).
pub fn render(summary: &Value, timeseries: &str, histograms: &BTreeMap<String, Histogram<u64>>) -> String {
    let table = Table::parse(timeseries);
    let name = escape(summary["scenario"].as_str().unwrap_or("run"));
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fleetsim: {name}</title>\n<style>{CSS}</style></head><body>\n<h1>fleetsim report: {name}</h1>\n"
    );
    let _ = writeln!(
        page,
        "<p class=\"facts\">seed {} &middot; {} devices &middot; {} s{} &middot; fleetsim {}</p>",
        summary["seed"],
        summary["devices"],
        summary["duration_s"],
        match (&summary["completed"], summary["stopped"]["reason"].as_str()) {
            (Value::Bool(false), Some(reason)) => format!(" &middot; <b>stopped early</b>: {}", escape(reason)),
            (Value::Bool(false), None) => " &middot; <b>stopped early</b>".to_owned(),
            _ => String::new(),
        },
        escape(summary["version"].as_str().unwrap_or("?")),
    );
    page.push_str(&gate_table(summary));
    let mut sections: Vec<(&str, String)> = vec![
        ("Devices per state", devices_chart(&table)),
        ("Rates", rates_chart(&table)),
        ("Latency over time (p99 of each second)", latency_over_time(&table)),
        ("Latency distribution of each operation", distributions(histograms)),
    ];
    if let Some(table) = tls_table(summary) {
        sections.push(("TLS handshakes and refusals", table));
    }
    if let Some(table) = certificates_table(summary) {
        sections.push(("Device certificates: issued, rotated, renewed, revoked", table));
    }
    if let Some(table) = lwm2m_table(summary) {
        sections.push(("LwM2M: registrations and the server's requests", table));
    }
    sections.push(("OTA campaigns, as the backend counted them", campaigns(summary)));
    sections.push(("Reconnect storm recovery", recovery(summary, histograms)));
    for (title, body) in sections {
        let _ = writeln!(page, "<section><h2>{title}</h2>\n{body}\n</section>");
    }
    page.push_str("</body></html>\n");
    page
}

const CSS: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:960px}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}.facts{color:#555}\
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}\
tr.pass td.verdict,tr.held td.verdict{color:#fff;background:#2c9c2c}\
tr.fail td.verdict,tr.breached td.verdict{color:#fff;background:#d62728}\
.none{color:#777;font-style:italic}svg{display:block}";

/// The gates, green or red, at the top.
fn gate_table(summary: &Value) -> String {
    let gates = summary["gates"].as_array().map_or(&[][..], Vec::as_slice);
    if gates.is_empty() {
        return "<p class=\"none\">This scenario has no gates.</p>\n".to_owned();
    }
    let mut out = String::from("<table class=\"gates\"><tr><th>gate</th><th>measured</th><th>verdict</th></tr>\n");
    for gate in gates {
        let passed = gate["passed"] == true;
        // The verdict line says it in the gate's unit: "... measured 3.4ms (12% off ...)".
        let measured = gate["verdict"]
            .as_str()
            .and_then(|v| v.split_once(": ").map(|(_, m)| m.to_owned()))
            .or_else(|| gate["measured"].as_f64().map(|v| format!("{v}")))
            .unwrap_or_else(|| "not measured".to_owned());
        let measured = escape(&measured);
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{measured}</td><td class=\"verdict\">{}</td></tr>",
            if passed { "pass" } else { "fail" },
            escape(gate["gate"].as_str().unwrap_or("?")),
            if passed { "pass" } else { "FAIL" },
        );
    }
    out.push_str("</table>\n");
    out
}

/// `timeseries.csv`, by column.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Option<f64>>>,
}

impl Table {
    fn parse(csv: &str) -> Self {
        let mut lines = csv.lines();
        let header = lines
            .next()
            .map(|h| h.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let rows = lines.map(|l| l.split(',').map(|c| c.parse().ok()).collect()).collect();
        Self { header, rows }
    }

    /// Column `name` against elapsed seconds, leaving out empty cells.
    fn series(&self, name: &str) -> Vec<(f64, f64)> {
        let Some(column) = self.header.iter().position(|h| h == name) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(k, row)| Some(((k + 1) as f64, (*row.get(column)?)?)))
            .collect()
    }
}

fn devices_chart(table: &Table) -> String {
    let series: Vec<Series> = table
        .header
        .iter()
        .filter_map(|h| h.strip_prefix("devices."))
        .map(|state| (state.to_owned(), table.series(&format!("devices.{state}"))))
        .filter(|(_, points)| points.iter().any(|(_, y)| *y > 0.0))
        .collect();
    lines(&series, "seconds", "devices")
}

fn rates_chart(table: &Table) -> String {
    let series: Vec<Series> = ["provisions_per_s", "connects_per_s", "published_per_s", "errors_per_s"]
        .iter()
        .map(|c| (c.trim_end_matches("_per_s").to_owned(), table.series(c)))
        .filter(|(_, points)| points.iter().any(|(_, y)| *y > 0.0))
        .collect();
    lines(&series, "seconds", "per second")
}

fn latency_over_time(table: &Table) -> String {
    let series: Vec<Series> = table
        .header
        .iter()
        .filter_map(|h| h.strip_suffix(".p99_ms"))
        .map(|metric| (metric.to_owned(), table.series(&format!("{metric}.p99_ms"))))
        .filter(|(_, points)| !points.is_empty())
        .collect();
    log_lines(&series, "seconds", "p99, ms (log scale)")
}

/// Each operation's latency against the percentile, on the usual "nines" axis: x is
/// -log10(1 - q), so 90%, 99% and 99.9% are evenly spaced.
fn distributions(histograms: &BTreeMap<String, Histogram<u64>>) -> String {
    const QUANTILES: [f64; 13] = [
        0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999,
    ];
    let series: Vec<Series> = histograms
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| {
            let points = QUANTILES
                .iter()
                .map(|q| (-(1.0 - q).log10(), h.value_at_quantile(*q) as f64 / 1e3))
                .collect();
            (name.clone(), points)
        })
        .collect();
    log_lines(
        &series,
        "nines of the percentile (1 = 90%, 2 = 99%, 3 = 99.9%)",
        "latency, ms (log scale)",
    )
}

/// When devices spoke TLS: handshakes full and resumed with their latency, and refusals by
/// reason. `None` for a run without TLS.
fn tls_table(summary: &Value) -> Option<String> {
    let metrics = &summary["metrics"];
    let counters = metrics["counters"].as_object()?;
    let count = |name: &str| counters.get(name).and_then(Value::as_u64).unwrap_or(0);
    let refused: Vec<(&str, u64)> = counters
        .iter()
        .filter_map(|(name, n)| Some((name.strip_prefix("errors.tls_")?, n.as_u64()?)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let (full, resumed) = (count("tls.handshakes.full"), count("tls.handshakes.resumed"));
    if full + resumed == 0 && refused.is_empty() {
        return None;
    }
    let mut out = String::from("<table class=\"tls\"><tr><th>handshakes</th><th>count</th></tr>\n");
    let _ = writeln!(out, "<tr><td>full</td><td>{full}</td></tr>");
    let _ = writeln!(out, "<tr><td>resumed</td><td>{resumed}</td></tr>");
    let _ = writeln!(
        out,
        "<tr><td>latency p50 / p99 / max</td><td>{}</td></tr>",
        percentiles(&metrics["histograms"]["tls.handshake.latency"])
    );
    for (reason, n) in refused {
        let _ = writeln!(out, "<tr><td>refused: {}</td><td>{n}</td></tr>", escape(reason));
    }
    out.push_str("</table>");
    Some(out)
}

/// `2.3 ms / 4.0 ms / 4.1 ms`: a histogram's p50, p99 and max from summary.json (`-` for one
/// not measured).
fn percentiles(histogram: &Value) -> String {
    let ms = |key: &str| {
        histogram[key]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"))
    };
    format!("{} / {} / {}", ms("p50_ms"), ms("p99_ms"), ms("max_ms"))
}

/// When the backend issued devices certificates: what was issued, rotated (with
/// `rotate.latency`), renewed and revoked, and decommissioned devices refused of those that
/// tried (green when all were, red otherwise). `None` for a run without certificates.
fn certificates_table(summary: &Value) -> Option<String> {
    let metrics = &summary["metrics"];
    let counters = metrics["counters"].as_object()?;
    let count = |name: &str| counters.get(name).and_then(Value::as_u64).unwrap_or(0);
    let (issued, tried, csr) = (count("certs.issued"), count("revoked.tried"), count("errors.csr"));
    if issued + csr == 0 {
        return None;
    }
    let mut out = String::from("<table class=\"certs\"><tr><th>certificates</th><th>count</th></tr>\n");
    for (label, name) in [
        ("issued by the backend's CA", "certs.issued"),
        ("rotated (device connected on its new one)", "certs.rotated"),
        ("renewed by the device before expiry", "certs.renewed"),
        ("revoked after a rotation's grace", "certs.revoked"),
        ("requests refused", "errors.csr"),
    ] {
        let _ = writeln!(out, "<tr><td>{label}</td><td>{}</td></tr>", count(name));
    }
    let _ = writeln!(
        out,
        "<tr><td>rotation latency p50 / p99 / max</td><td>{}</td></tr>",
        percentiles(&metrics["histograms"]["rotate.latency"])
    );
    if tried > 0 {
        let refused = count("revoked.refused");
        let class = if refused < tried { "breached" } else { "held" };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>decommissioned devices refused</td><td class=\"verdict\">{refused} of {tried} tries ({:.1}%)</td></tr>",
            refused as f64 / tried as f64 * 100.0
        );
    }
    out.push_str("</table>");
    Some(out)
}

/// When devices spoke LwM2M: their registrations and updates (with their latencies), the
/// server's requests they served and refused, the notifications they sent, and CoAP's
/// retransmissions. `None` for a run without LwM2M.
fn lwm2m_table(summary: &Value) -> Option<String> {
    let metrics = &summary["metrics"];
    let counters = metrics["counters"].as_object()?;
    let count = |name: &str| counters.get(name).and_then(Value::as_u64).unwrap_or(0);
    if count("lwm2m.registrations") + count("lwm2m.updates") == 0 {
        return None;
    }
    // Bootstrap rows only for a fleet that bootstrapped.
    let bootstrapped = count("lwm2m.bootstraps") > 0;
    let mut out = String::from("<table class=\"lwm2m\"><tr><th>LwM2M</th><th>count</th></tr>\n");
    if bootstrapped {
        let _ = writeln!(
            out,
            "<tr><td>bootstraps finished</td><td>{}</td></tr>",
            count("lwm2m.bootstraps")
        );
    }
    for (label, name) in [
        ("registrations the server accepted", "lwm2m.registrations"),
        ("registration updates the server accepted", "lwm2m.updates"),
        ("reads (observes and discovers among them) answered", "lwm2m.reads"),
        ("writes and write-attributes applied", "lwm2m.writes"),
        ("executes carried out", "lwm2m.executes"),
        ("observations started", "lwm2m.observes"),
        ("notifications sent", "lwm2m.notifications"),
        ("requests refused", "lwm2m.refused"),
        ("CoAP retransmissions", "coap.retransmissions"),
    ] {
        let _ = writeln!(out, "<tr><td>{label}</td><td>{}</td></tr>", count(name));
    }
    let latencies = [
        ("bootstrap latency p50 / p99 / max", "bootstrap.latency"),
        ("register latency p50 / p99 / max", "register.latency"),
        ("update latency p50 / p99 / max", "update.latency"),
    ];
    for (label, name) in latencies.into_iter().skip(usize::from(!bootstrapped)) {
        let _ = writeln!(
            out,
            "<tr><td>{label}</td><td>{}</td></tr>",
            percentiles(&metrics["histograms"][name])
        );
    }
    out.push_str("</table>");
    Some(out)
}

/// Each campaign wave by wave: its jobs by outcome, as the backend counted them, as bars.
fn campaigns(summary: &Value) -> String {
    let campaigns = summary["campaigns"].as_array().map_or(&[][..], Vec::as_slice);
    if campaigns.is_empty() {
        return "<p class=\"none\">No OTA campaign in this run.</p>".to_owned();
    }
    // A device that bricked never reports again: its job stays in progress.
    const OUTCOMES: [(&str, &str); 4] = [
        ("succeeded", "succeeded"),
        ("failed", "failed (corrupt)"),
        ("rolled_back", "rolled back"),
        ("in_progress", "no final report (bricked, or still updating)"),
    ];
    let groups: Vec<(String, &Value)> = campaigns
        .iter()
        .flat_map(|c| {
            let waves = c["waves"].as_array().map_or(&[][..], Vec::as_slice);
            waves
                .iter()
                .enumerate()
                .map(move |(w, wave)| (format!("#{} wave {}", c["id"], w + 1), wave))
        })
        .collect();
    let width = OUTCOMES.len() + 1;
    let top = groups
        .iter()
        .flat_map(|(_, wave)| OUTCOMES.iter().map(move |(key, _)| wave[*key].as_f64().unwrap_or(0.0)))
        .fold(1.0, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let built = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(10)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..(groups.len().max(1) * width) as f64, 0.0..top * 1.38);
        if let Ok(mut chart) = built {
            let _ = chart
                .configure_mesh()
                .disable_x_mesh()
                .disable_x_axis()
                .y_desc("devices")
                .draw();
            for (g, (label, wave)) in groups.iter().enumerate() {
                let base = (g * width) as f64;
                for (i, (key, _)) in OUTCOMES.iter().enumerate() {
                    let value = wave[*key].as_f64().unwrap_or(0.0);
                    let x = base + i as f64;
                    let _ = chart.draw_series(std::iter::once(Rectangle::new(
                        [(x + 0.1, 0.0), (x + 0.9, value)],
                        PALETTE[i].filled(),
                    )));
                }
                let _ = chart.draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (base + 0.1, top * 1.06),
                    ("sans-serif", 12).into_font(),
                )));
            }
            let _ = chart.draw_series(OUTCOMES.iter().enumerate().map(|(i, (_, name))| {
                Text::new(
                    (*name).to_owned(),
                    // The legend's four lines sit above the wave labels.
                    (0.1, top * (1.32 - 0.05 * i as f64)),
                    ("sans-serif", 11).into_font().color(&PALETTE[i]),
                )
            }));
        }
        let _ = root.present();
    }
    let mut text = String::new();
    for campaign in campaigns {
        let _ = writeln!(
            text,
            "<p>campaign {} on group {}: {} targeted, {} wave(s) started, {} ({})</p>",
            campaign["id"],
            escape(campaign["group"].as_str().unwrap_or("?")),
            campaign["targeted"],
            campaign["waves_started"],
            escape(campaign["state"].as_str().unwrap_or("?")),
            escape(campaign["end_reason"].as_str().unwrap_or("still running")),
        );
    }
    format!("{svg}\n{text}")
}

/// The share of cut-off devices back online against the time since the outage ended.
fn recovery(summary: &Value, histograms: &BTreeMap<String, Histogram<u64>>) -> String {
    let Some(h) = histograms.get("reconnect.recovery").filter(|h| !h.is_empty()) else {
        return "<p class=\"none\">No outage cut devices off in this run.</p>".to_owned();
    };
    let counters = &summary["metrics"]["counters"];
    let count = |name: &str| counters[name].as_f64().unwrap_or(0.0);
    let affected = (count("outage.affected") - count("outage.excused")).max(h.len() as f64);
    let points: Vec<(f64, f64)> = (0..=100)
        .map(|i| {
            let q = f64::from(i) / 100.0;
            (
                h.value_at_quantile(q) as f64 / 1e6,
                q * h.len() as f64 / affected * 100.0,
            )
        })
        .collect();
    let chart = lines(
        &[("devices back online".to_owned(), points)],
        "seconds after the outage ended",
        "% of cut-off devices",
    );
    let recovered = summary["metrics"]["reconnect.recovery_ms"]
        .as_f64()
        .map_or("99% of them never came back during the run".to_owned(), |ms| {
            format!("99% were back {:.1} s after the outage ended", ms / 1e3)
        });
    format!("{chart}\n<p>{} devices cut off; {recovered}.</p>", affected as u64)
}

/// A line chart of `series` with a logarithmic y axis (latencies span orders of magnitude).
fn log_lines(series: &[Series], x_desc: &str, y_desc: &str) -> String {
    if series.iter().all(|(_, p)| p.is_empty()) {
        return "<p class=\"none\">Nothing recorded.</p>".to_owned();
    }
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let x_max = points().map(|(x, _)| *x).fold(1.0, f64::max);
    let y_max = points().map(|(_, y)| *y).fold(1.0, f64::max);
    // A microsecond is the histograms' resolution: nothing is drawn below it.
    let floor = 0.001;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let built = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, (floor..y_max * 2.0).log_scale());
        if let Ok(mut chart) = built {
            let _ = chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw();
            for (k, (name, points)) in series.iter().enumerate() {
                let colour = PALETTE[k % PALETTE.len()];
                let clamped = points.iter().map(|(x, y)| (*x, y.max(floor)));
                if let Ok(drawn) = chart.draw_series(LineSeries::new(clamped, colour.stroke_width(2))) {
                    drawn
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
                }
            }
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperLeft)
                .draw();
        }
        let _ = root.present();
    }
    svg
}

/// A line chart of `series`, as an SVG element.
fn lines(series: &[Series], x_desc: &str, y_desc: &str) -> String {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max) = (1.0f64, 1.0f64);
    let mut x_min = f64::INFINITY;
    for (x, y) in points {
        x_max = x_max.max(*x);
        x_min = x_min.min(*x);
        y_max = y_max.max(*y);
    }
    if series.iter().all(|(_, p)| p.is_empty()) {
        return "<p class=\"none\">Nothing recorded.</p>".to_owned();
    }
    let x_min = if x_min.is_finite() { x_min.min(0.0) } else { 0.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let built = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(60)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max * 1.05);
        if let Ok(mut chart) = built {
            let _ = chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw();
            for (k, (name, points)) in series.iter().enumerate() {
                let colour = PALETTE[k % PALETTE.len()];
                if let Ok(drawn) = chart.draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2))) {
                    drawn
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
                }
            }
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperRight)
                .draw();
        }
        let _ = root.present();
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds");
        for v in values {
            h.saturating_record(*v);
        }
        h
    }

    #[test]
    fn the_page_holds_the_gates_and_every_chart() {
        let summary = json!({
            "scenario": "demo<1>", "seed": 7, "devices": 10, "duration_s": 3.0, "completed": true, "version": "0.1.0",
            "gates": [
                { "gate": "publish.latency.p99 <= 50ms", "measured": 0.002, "passed": true },
                { "gate": "devices.lost == 0", "measured": 1.0, "passed": false },
            ],
            "metrics": { "counters": { "outage.affected": 4, "outage.excused": 0 }, "reconnect.recovery_ms": 900.0 },
            "campaigns": [ { "id": 1, "group": "sensors", "targeted": 5, "waves_started": 1, "state": "halted",
                "end_reason": "wave 1 of 2 failed", "backend_jobs": { "succeeded": 3, "failed": 1, "rolled_back": 1, "in_progress": 0, "sent": 0 },
                "waves": [ { "wave": 0, "targeted": 5, "succeeded": 3, "failed": 1, "rolled_back": 1, "in_progress": 0, "sent": 0 } ] } ],
        });
        let csv = "elapsed_s,devices.online,devices.offline,provisions_per_s,published_per_s,publish.latency.p50_ms,publish.latency.p99_ms\n\
                   1,8,2,10,8,1.000,2.000\n2,10,0,0,10,1.100,2.500\n3,10,0,0,9,,\n";
        let mut histograms = BTreeMap::new();
        histograms.insert("publish.latency".to_owned(), histogram(&[900, 1000, 2000, 2500]));
        histograms.insert(
            "reconnect.recovery".to_owned(),
            histogram(&[200_000, 500_000, 800_000, 900_000]),
        );
        let page = render(&summary, csv, &histograms);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>fleetsim: demo&lt;1&gt;</title>"));
        assert!(
            page.contains("<tr class=\"pass\"><td>publish.latency.p99 &lt;= 50ms</td>"),
            "{page}"
        );
        assert!(page.contains("<tr class=\"fail\"><td>devices.lost == 0</td>"));
        assert_eq!(page.matches("<svg ").count(), 6, "six charts");
        assert!(page.contains("campaign 1 on group sensors: 5 targeted, 1 wave(s) started, halted"));
        assert!(page.contains("99% were back 0.9 s after the outage ended"));
        assert!(!page.contains("<script"), "no script");
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "nothing loaded at view time"
        );
    }

    #[test]
    fn a_run_without_campaigns_or_outages_says_so() {
        let summary = json!({ "scenario": "plain", "gates": [], "metrics": {} });
        let page = render(&summary, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(page.contains("This scenario has no gates."));
        assert!(page.contains("No OTA campaign in this run."));
        assert!(page.contains("No outage cut devices off in this run."));
        assert_eq!(page.matches("<svg ").count(), 1, "only the devices chart has data");
        assert!(!page.contains("TLS handshakes"), "no TLS section for a run without TLS");
    }

    #[test]
    fn a_tls_run_shows_its_handshakes_and_refusals_by_reason() {
        let summary = json!({ "scenario": "tls", "gates": [], "metrics": {
            "counters": { "tls.handshakes.full": 12, "tls.handshakes.resumed": 9,
                          "errors.tls_expired": 3, "errors.tls_unknown_ca": 0 },
            "histograms": { "tls.handshake.latency": { "p50_ms": 2.31, "p99_ms": 4.0, "max_ms": 4.06 } } } });
        let page = render(&summary, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(page.contains("<h2>TLS handshakes and refusals</h2>"), "{page}");
        assert!(page.contains("<tr><td>full</td><td>12</td></tr>"));
        assert!(page.contains("<tr><td>resumed</td><td>9</td></tr>"));
        assert!(page.contains("2.3 ms / 4.0 ms / 4.1 ms"), "{page}");
        assert!(page.contains("<tr><td>refused: expired</td><td>3</td></tr>"));
        assert!(
            !page.contains("refused: unknown_ca"),
            "a reason that never happened is left out"
        );
        assert!(!page.contains("Device certificates"), "none issued, none revoked");
    }

    #[test]
    fn a_run_with_lwm2m_devices_shows_their_registrations_and_requests() {
        let summary = json!({ "scenario": "lwm2m", "gates": [], "metrics": {
            "counters": { "lwm2m.registrations": 10, "lwm2m.updates": 31, "lwm2m.reads": 6,
                          "lwm2m.refused": 1, "coap.retransmissions": 2 },
            "histograms": { "register.latency": { "p50_ms": 0.8, "p99_ms": 2.04, "max_ms": 3.0 } } } });
        let page = render(&summary, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(
            page.contains("<h2>LwM2M: registrations and the server's requests</h2>"),
            "{page}"
        );
        for row in [
            "<tr><td>registrations the server accepted</td><td>10</td></tr>",
            "<tr><td>registration updates the server accepted</td><td>31</td></tr>",
            "<tr><td>requests refused</td><td>1</td></tr>",
            "<tr><td>CoAP retransmissions</td><td>2</td></tr>",
            "<tr><td>register latency p50 / p99 / max</td><td>0.8 ms / 2.0 ms / 3.0 ms</td></tr>",
            "<tr><td>update latency p50 / p99 / max</td><td>- / - / -</td></tr>",
        ] {
            assert!(page.contains(row), "{row} missing from {page}");
        }
        let mqtt = json!({ "scenario": "m", "gates": [], "metrics": { "counters": { "published": 5 } } });
        let page = render(&mqtt, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(!page.contains("LwM2M"), "no LwM2M section without LwM2M devices");
    }

    #[test]
    fn a_run_with_certificates_shows_them_and_a_revoked_device_let_in_is_red() {
        let summary = json!({ "scenario": "mtls", "gates": [], "metrics": {
            "counters": { "tls.handshakes.full": 30, "certs.issued": 150, "certs.rotated": 50,
                          "certs.renewed": 20, "certs.revoked": 50, "revoked.tried": 10, "revoked.refused": 9 },
            "histograms": { "rotate.latency": { "p50_ms": 3.0, "p99_ms": 9.96, "max_ms": 12.0 } } } });
        let page = render(&summary, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(
            page.contains("<h2>Device certificates: issued, rotated, renewed, revoked</h2>"),
            "{page}"
        );
        for row in [
            "<tr><td>issued by the backend's CA</td><td>150</td></tr>",
            "<tr><td>rotated (device connected on its new one)</td><td>50</td></tr>",
            "<tr><td>renewed by the device before expiry</td><td>20</td></tr>",
            "<tr><td>revoked after a rotation's grace</td><td>50</td></tr>",
            "<tr><td>rotation latency p50 / p99 / max</td><td>3.0 ms / 10.0 ms / 12.0 ms</td></tr>",
            "<tr class=\"breached\"><td>decommissioned devices refused</td><td class=\"verdict\">9 of 10 tries (90.0%)</td></tr>",
        ] {
            assert!(page.contains(row), "{row} missing from {page}");
        }
    }
}
