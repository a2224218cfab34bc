//! `report.html`: one self-contained page (inline CSS and SVG charts drawn with plotters; no
//! script, no network at view time) that a person reads after a run. Top to bottom: the run
//! at a glance (devices, provisions a second, errors, gates passed and failed), the gate
//! table, green or red, then devices per state over time, the rates, latency percentiles over
//! time, each operation's latency distribution, what only some runs have (TLS, certificates,
//! LwM2M), the OTA campaigns as a table of waves and outcomes, and the reconnect storm's
//! recovery. The charts are drawn in [`charts`], the optional tables in [`tables`].
//!
//! It is drawn from what the report folder holds (`summary.json`, `timeseries.csv` and the
//! histograms), so a merged report renders the same way as a single run's.

mod charts;
mod tables;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::Value;

use super::escape;
use super::figures::error_sum_family;
use charts::Table;

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
        "<p class=\"facts\">seed {} &middot; {} s{} &middot; fleetsim {}</p>",
        summary["seed"],
        summary["duration_s"],
        match (&summary["completed"], summary["stopped"]["reason"].as_str()) {
            (Value::Bool(false), Some(reason)) => format!(" &middot; <b>stopped early</b>: {}", escape(reason)),
            (Value::Bool(false), None) => " &middot; <b>stopped early</b>".to_owned(),
            _ => String::new(),
        },
        escape(summary["version"].as_str().unwrap_or("?")),
    );
    page.push_str(&headline(summary, &table));
    page.push_str(&gate_table(summary));
    let mut sections: Vec<(&str, String)> = vec![
        ("Devices per state", charts::devices(&table)),
        ("Rates", charts::rates(&table)),
        (
            "Latency over time (p99 of each second)",
            late_note(summary) + &charts::latency_over_time(&table),
        ),
        (
            "Latency distribution of each operation",
            charts::distributions(histograms),
        ),
    ];
    if let Some(table) = tables::tls_table(summary) {
        sections.push(("TLS handshakes and refusals", table));
    }
    if let Some(table) = tables::certificates_table(summary) {
        sections.push(("Device certificates: issued, rotated, renewed, revoked", table));
    }
    if let Some(table) = tables::lwm2m_table(summary) {
        sections.push(("LwM2M: registrations and the server's requests", table));
    }
    sections.push(("OTA campaigns, as the backend counted them", campaigns(summary)));
    sections.push(("Reconnect storm recovery", charts::recovery(summary, histograms)));
    for (title, body) in sections {
        let _ = writeln!(page, "<section><h2>{title}</h2>\n{body}\n</section>");
    }
    page.push_str("</body></html>\n");
    page
}

const CSS: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em}.facts{color:#555;margin-top:0}\
.headline{display:flex;gap:12px;margin:1em 0 1.5em}\
.figure{flex:1;border:1px solid #ddd;border-left:6px solid #999;border-radius:4px;padding:8px 12px}\
.figure.good{border-left-color:#2c9c2c}.figure.bad{border-left-color:#d62728}\
.figure .label{color:#555;font-size:.8em;text-transform:uppercase;letter-spacing:.05em}\
.figure .value{font-size:1.9em;font-weight:bold;margin:2px 0}.figure .detail{color:#555;font-size:.85em}\
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.pass td.verdict,tr.held td.verdict{color:#fff;background:#2c9c2c}\
tr.fail td.verdict,tr.breached td.verdict{color:#fff;background:#d62728}\
tr.campaign td{background:#f4f4f4;font-weight:bold}\
td.halted{color:#fff;background:#d62728}td.completed{color:#fff;background:#2c9c2c}\
.chart{display:flex;align-items:flex-start;gap:12px;margin:0}\
.legend{list-style:none;margin:16px 0 0;padding:0;font-size:.85em;min-width:180px}\
.legend li{margin:3px 0;white-space:nowrap}\
.legend .key{display:inline-block;width:18px;height:4px;margin-right:6px;vertical-align:middle}\
.note{color:#555;font-size:.9em}.none{color:#777;font-style:italic}svg{display:block;flex:none}";

/// How many reports the harness sent late, above the latency chart, for a run that fell behind
/// its schedule (nothing for one that kept it).
fn late_note(summary: &Value) -> String {
    match super::figures::late_sends(summary) {
        Some(late) => format!(
            "<p class=\"note\" id=\"late-sends\">{} of {} reports went out more than 5 ms after their intended \
             instant (late_sends_per_s in timeseries.csv says when): {}. The latencies include that delay.</p>\n",
            count(late.late),
            count(late.published),
            escape(&late.why())
        ),
        None => String::new(),
    }
}

/// `n` with its thousands separated: `2,000`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One figure of the headline; `good` colours its edge (`None`: neither good nor bad).
fn figure(out: &mut String, id: &str, label: &str, value: &str, detail: &str, good: Option<bool>) {
    let tone = match good {
        Some(true) => " good",
        Some(false) => " bad",
        None => "",
    };
    let _ = writeln!(
        out,
        "<div class=\"figure{tone}\" id=\"{id}\"><div class=\"label\">{label}</div><div class=\"value\">{value}</div><div class=\"detail\">{detail}</div></div>"
    );
}

/// The run at a glance, before the gates and charts: its devices, provisions a second (mean
/// over the arrival window and the busiest second), errors of every kind and the gates,
/// naming those that failed.
fn headline(summary: &Value, table: &Table) -> String {
    let metrics = &summary["metrics"];
    let counters = metrics["counters"].as_object();
    let mut out = String::from("<div class=\"headline\">\n");

    let online = metrics["gauges"]["devices.online"].as_u64();
    let mut detail = online.map_or_else(String::new, |n| format!("{} online at the end", count(n)));
    if let Some(lost) = metrics["devices.lost"].as_u64() {
        let _ = write!(
            detail,
            "{}{} lost",
            if detail.is_empty() { "" } else { " &middot; " },
            count(lost)
        );
    }
    let devices = summary["devices"].as_u64().map_or("-".to_owned(), count);
    figure(&mut out, "figure-devices", "devices", &devices, &detail, None);

    let peak = table
        .series("provisions_per_s")
        .iter()
        .map(|(_, y)| *y)
        .fold(0.0, f64::max);
    let (value, detail) = match metrics["provision.rate"].as_f64().filter(|r| *r > 0.0) {
        Some(rate) => (
            format!("{}/s", charts::measure_tick((rate * 10.0).round() / 10.0)),
            format!("mean while arriving &middot; peak {} in one second", count(peak as u64)),
        ),
        None => ("-".to_owned(), "no device provisioned".to_owned()),
    };
    figure(
        &mut out,
        "figure-provisions",
        "provisions a second",
        &value,
        &detail,
        None,
    );

    let family = error_sum_family("errors.total").unwrap_or("errors.");
    let mut errors: Vec<(&str, u64)> = counters
        .into_iter()
        .flatten()
        .filter_map(|(name, n)| Some((name.strip_prefix(family)?, n.as_u64()?)))
        .filter(|(_, n)| *n > 0)
        .collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total: u64 = errors.iter().map(|(_, n)| n).sum();
    let detail = if errors.is_empty() {
        "none of any kind".to_owned()
    } else {
        let kinds: Vec<String> = errors
            .iter()
            .take(3)
            .map(|(kind, n)| format!("{} {}", escape(kind), count(*n)))
            .collect();
        kinds.join(" &middot; ")
    };
    figure(
        &mut out,
        "figure-errors",
        "errors",
        &count(total),
        &detail,
        Some(total == 0),
    );

    let gates = summary["gates"].as_array().map_or(&[][..], Vec::as_slice);
    let failed: Vec<String> = gates
        .iter()
        .filter(|g| g["passed"] != true)
        .map(|g| escape(g["gate"].as_str().unwrap_or("?")))
        .collect();
    if gates.is_empty() {
        figure(
            &mut out,
            "figure-gates",
            "gates",
            "none",
            "this scenario has no gates",
            None,
        );
    } else {
        let value = format!("{} of {} passed", gates.len() - failed.len(), gates.len());
        let detail = if failed.is_empty() {
            "none failed".to_owned()
        } else {
            format!("failed: {}", failed.join(", "))
        };
        figure(
            &mut out,
            "figure-gates",
            "gates",
            &value,
            &detail,
            Some(failed.is_empty()),
        );
    }
    out.push_str("</div>\n");
    out
}

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

/// The campaigns as one table: a row per campaign with its outcome and why, then a row per
/// wave it started with its jobs by outcome, as the backend counted them.
fn campaigns(summary: &Value) -> String {
    let campaigns = summary["campaigns"].as_array().map_or(&[][..], Vec::as_slice);
    if campaigns.is_empty() {
        return "<p class=\"none\">No OTA campaign in this run.</p>".to_owned();
    }
    let number = |v: &Value, key: &str| count(v[key].as_u64().unwrap_or(0));
    let mut out = String::from(
        "<table class=\"campaigns\"><tr><th>wave</th><th class=\"n\">devices</th><th class=\"n\">succeeded</th>\
         <th class=\"n\">failed</th><th class=\"n\">rolled back</th><th class=\"n\">bricked or no final report</th>\
         <th>outcome</th></tr>\n",
    );
    for campaign in campaigns {
        let state = campaign["state"].as_str().unwrap_or("running");
        let _ = writeln!(
            out,
            "<tr class=\"campaign\"><td colspan=\"7\">campaign {} on group {}: {} targeted, {} wave(s) started, {} ({})</td></tr>",
            campaign["id"],
            escape(campaign["group"].as_str().unwrap_or("?")),
            number(campaign, "targeted"),
            campaign["waves_started"],
            escape(state),
            escape(campaign["end_reason"].as_str().unwrap_or("still running")),
        );
        // A summary from before waves were recorded has only the campaign's totals.
        let totals = [campaign["backend_jobs"].clone()];
        let recorded = campaign["waves"].as_array().filter(|w| !w.is_empty());
        let waves = recorded.map_or(&totals[..], Vec::as_slice);
        for (k, wave) in waves.iter().enumerate() {
            let last = k + 1 == waves.len();
            let (class, outcome) = match (last, state) {
                (false, _) => ("", "soaked, next wave started"),
                (true, "halted") => (" class=\"halted\"", "halted here"),
                (true, "completed") => (" class=\"completed\"", "completed"),
                (true, _) => ("", "running when the run ended"),
            };
            let label = recorded.map_or("all".to_owned(), |_| (k + 1).to_string());
            // A device that bricked never reports again: its job stays in progress.
            let unreported = wave["in_progress"].as_u64().unwrap_or(0) + wave["sent"].as_u64().unwrap_or(0);
            let _ = writeln!(
                out,
                "<tr class=\"wave\"><td>{label}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td{class}>{outcome}</td></tr>",
                number(wave, "targeted"),
                number(wave, "succeeded"),
                number(wave, "failed"),
                number(wave, "rolled_back"),
                count(unreported),
            );
        }
    }
    out.push_str("</table>\n");
    let bricked = summary["metrics"]["counters"]["ota.bricked"].as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "<p class=\"note\">A device that bricks never reports again, so the backend holds its job \
         as unfinished; the devices counted {} bricked in all.</p>",
        count(bricked)
    );
    out
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

    /// A quickstart-shaped run: 2,000 devices, two gates passed and one failed, errors of two
    /// kinds, a campaign halted in its second wave.
    fn sample() -> Value {
        json!({
            "scenario": "sample", "seed": 42, "devices": 2000, "duration_s": 100.0, "completed": true, "version": "0.1.0",
            "gates": [
                { "gate": "publish.latency.p99 <= 100ms", "measured": 0.002, "passed": true },
                { "gate": "errors.total == 0", "measured": 4.0, "passed": false },
                { "gate": "devices.lost == 0", "measured": 0.0, "passed": true },
            ],
            "metrics": {
                "counters": { "errors.timeout": 3, "errors.refused": 1, "errors.auth": 0, "published": 900, "ota.bricked": 2 },
                "gauges": { "devices.online": 1971 },
                "provision.rate": 100.0, "devices.lost": 0,
            },
            "campaigns": [ { "id": 1, "group": "sensors", "targeted": 1211, "waves_started": 2, "state": "halted",
                "end_reason": "wave 2 of 4: 8.8% failed or rolled back, above the 5.0% threshold",
                "waves": [
                    { "wave": 0, "targeted": 25, "succeeded": 24, "failed": 0, "rolled_back": 1, "in_progress": 0, "sent": 0 },
                    { "wave": 1, "targeted": 97, "succeeded": 81, "failed": 1, "rolled_back": 13, "in_progress": 2, "sent": 0 },
                ] } ],
        })
    }

    const CSV: &str = "elapsed_s,devices.online,devices.offline,provisions_per_s,published_per_s,publish.latency.p50_ms,publish.latency.p99_ms\n\
                       1,100,1900,100,80,1.000,2.000\n2,1900,100,112,800,1.100,2.500\n3,2000,0,0,900,,\n";

    /// The page's `<div class="figure" id="{id}">`, up to its end.
    fn figure_of<'p>(page: &'p str, id: &str) -> &'p str {
        let start = page
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id} missing: {page}"));
        let end = page[start..].find("</div></div>").map_or(page.len(), |e| start + e);
        &page[start..end]
    }

    #[test]
    fn the_headline_shows_the_run_at_a_glance_before_the_gates() {
        let page = render(&sample(), CSV, &BTreeMap::new());
        let headline = page.find("<div class=\"headline\">").expect("a headline");
        assert!(headline < page.find("<table class=\"gates\">").expect("gates"), "first");
        let devices = figure_of(&page, "figure-devices");
        assert!(devices.contains("<div class=\"value\">2,000</div>"), "{devices}");
        assert!(devices.contains("1,971 online at the end &middot; 0 lost"), "{devices}");
        let provisions = figure_of(&page, "figure-provisions");
        assert!(provisions.contains("<div class=\"value\">100/s</div>"), "{provisions}");
        assert!(provisions.contains("peak 112 in one second"), "{provisions}");
        let errors = figure_of(&page, "figure-errors");
        assert!(errors.starts_with("id=\"figure-errors\""));
        assert!(page.contains("<div class=\"figure bad\" id=\"figure-errors\">"));
        assert!(errors.contains("<div class=\"value\">4</div>"), "{errors}");
        assert!(errors.contains("timeout 3 &middot; refused 1"), "{errors}");
        let gates = figure_of(&page, "figure-gates");
        assert!(gates.contains("<div class=\"value\">2 of 3 passed</div>"), "{gates}");
        assert!(gates.contains("failed: errors.total == 0"), "{gates}");

        let quiet =
            json!({ "scenario": "q", "devices": 5, "gates": [], "metrics": { "counters": { "errors.timeout": 0 } } });
        let page = render(&quiet, "elapsed_s\n", &BTreeMap::new());
        assert!(page.contains("<div class=\"figure good\" id=\"figure-errors\">"));
        assert!(figure_of(&page, "figure-errors").contains("none of any kind"));
        assert!(figure_of(&page, "figure-gates").contains("this scenario has no gates"));
        assert!(figure_of(&page, "figure-provisions").contains("no device provisioned"));
    }

    #[test]
    fn late_sends_are_told_above_the_latency_chart_only_when_there_are_some() {
        let page = render(&sample(), CSV, &BTreeMap::new());
        assert!(!page.contains("id=\"late-sends\""), "a run on schedule");
        let mut late = sample();
        late["metrics"]["counters"]["late_sends"] = json!(1234);
        late["metrics"]["counters"]["published"] = json!(425_500);
        late["metrics"]["counters"]["late_sends.woken_late"] = json!(1234);
        let page = render(&late, CSV, &BTreeMap::new());
        assert!(
            page.contains("(late_sends_per_s in timeseries.csv says when): for all of them the harness"),
            "and why: {page}"
        );
        let note = page.find("<p class=\"note\" id=\"late-sends\">1,234 of 425,500 reports went out more than 5 ms");
        let chart = page.find("<h2>Latency over time");
        assert!(note.is_some() && chart < note, "{page}");
        assert!(
            note < page.find("<h2>Latency distribution"),
            "in the latency-over-time section"
        );
    }

    #[test]
    fn the_campaigns_are_a_table_of_waves_and_outcomes() {
        let page = render(&sample(), CSV, &BTreeMap::new());
        assert!(page.contains(
            "<tr class=\"campaign\"><td colspan=\"7\">campaign 1 on group sensors: 1,211 targeted, 2 wave(s) started, halted (wave 2 of 4: 8.8% failed or rolled back, above the 5.0% threshold)</td></tr>"
        ), "{page}");
        assert_eq!(page.matches("<tr class=\"wave\">").count(), 2, "a row per wave started");
        for row in [
            "<tr class=\"wave\"><td>1</td><td class=\"n\">25</td><td class=\"n\">24</td><td class=\"n\">0</td><td class=\"n\">1</td><td class=\"n\">0</td><td>soaked, next wave started</td></tr>",
            "<tr class=\"wave\"><td>2</td><td class=\"n\">97</td><td class=\"n\">81</td><td class=\"n\">1</td><td class=\"n\">13</td><td class=\"n\">2</td><td class=\"halted\">halted here</td></tr>",
        ] {
            assert!(page.contains(row), "{row} missing from {page}");
        }
        assert!(page.contains("the devices counted 2 bricked in all"));

        // A summary from before waves were recorded: one row of the campaign's totals.
        let old = json!({ "scenario": "old", "campaigns": [ { "id": 1, "group": "sensors", "targeted": 503,
            "waves_started": 2, "state": "completed", "end_reason": "every wave soaked below the halt threshold",
            "backend_jobs": { "targeted": 503, "succeeded": 494, "failed": 4, "rolled_back": 5, "in_progress": 0, "sent": 0 } } ] });
        let page = render(&old, "elapsed_s\n", &BTreeMap::new());
        assert!(page.contains("<tr class=\"wave\"><td>all</td><td class=\"n\">503</td><td class=\"n\">494</td><td class=\"n\">4</td><td class=\"n\">5</td><td class=\"n\">0</td><td class=\"completed\">completed</td></tr>"), "{page}");
    }

    #[test]
    fn counts_are_labelled_as_whole_numbers() {
        let page = render(&sample(), CSV, &BTreeMap::new());
        assert!(
            page.contains(">\n2,000\n</text>"),
            "the devices axis reaches 2,000: {page}"
        );
        assert!(!page.contains(".0\n</text>"), "no tick like 2000.0");
    }

    #[test]
    fn a_metric_has_the_same_colour_in_every_chart() {
        let mut histograms = BTreeMap::new();
        histograms.insert("publish.latency".to_owned(), histogram(&[900, 1000, 2000, 2500]));
        histograms.insert("connect.latency".to_owned(), histogram(&[300, 400]));
        let page = render(&sample(), CSV, &histograms);
        let key = |section: &str| {
            let at = page.find(section).expect(section);
            let figure = &page[at..at + page[at..].find("</figure>").expect("a chart")];
            let entry = "\"></span>publish.latency</li>";
            let end = figure
                .find(entry)
                .unwrap_or_else(|| panic!("no legend entry in {figure}"));
            let colour = figure[..end].rsplit("background:").next().expect("a colour").to_owned();
            assert!(
                figure.to_lowercase().contains(&format!("stroke=\"{colour}\"")),
                "the line is drawn in its legend's colour {colour}: {figure}"
            );
            colour
        };
        let over_time = key("<h2>Latency over time");
        let distribution = key("<h2>Latency distribution");
        assert_eq!(over_time, distribution);
        assert_eq!(over_time, "#2ca02c");
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
        assert_eq!(page.matches("<svg ").count(), 5, "five charts");
        assert_eq!(
            page.matches("<ul class=\"legend\">").count(),
            5,
            "each with its legend beside it"
        );
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
}
