//! The page's charts: SVG drawn with plotters, each with an HTML legend beside it (never over
//! the data). A metric has one colour wherever it is drawn ([`colour`]), counts are labelled
//! as whole numbers ([`count_tick`]) and measures with the digits they need ([`measure_tick`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde_json::Value;

use super::super::escape;
use super::count;

/// The plot's size, pixels; its legend sits to its right, outside it.
const SIZE: (u32, u32) = (800, 300);

/// Each metric's colour, keyed by its name (a latency, a `timeseries.csv` rate column, a
/// `devices.<state>` gauge), the same in every chart that draws it. A rate shares its
/// operation's colour with that operation's latency (provisions and `provision.latency` are
/// both blue); red is kept for errors. Within each kind (latencies, rates, states) the
/// colours differ, so no chart draws two series alike.
const COLOURS: &[(&str, RGBColor)] = &[
    ("provision.latency", RGBColor(31, 119, 180)),
    ("connect.latency", RGBColor(255, 127, 14)),
    ("publish.latency", RGBColor(44, 160, 44)),
    ("command.latency", RGBColor(148, 103, 189)),
    ("config.latency", RGBColor(140, 86, 75)),
    ("ota.duration", RGBColor(227, 119, 194)),
    ("reconnect.recovery", RGBColor(23, 190, 207)),
    ("poll.latency", RGBColor(188, 189, 34)),
    ("feedback.latency", RGBColor(127, 127, 127)),
    ("ota.take.latency", RGBColor(57, 59, 121)),
    ("tls.handshake.latency", RGBColor(255, 187, 120)),
    ("rotate.latency", RGBColor(152, 223, 138)),
    ("register.latency", RGBColor(197, 176, 213)),
    ("bootstrap.latency", RGBColor(196, 156, 148)),
    ("update.latency", RGBColor(247, 182, 210)),
    ("deregister.latency", RGBColor(158, 218, 229)),
    ("alert.latency", RGBColor(140, 109, 49)),
    ("read.latency", RGBColor(99, 121, 57)),
    ("provisions_per_s", RGBColor(31, 119, 180)),
    ("connects_per_s", RGBColor(255, 127, 14)),
    ("published_per_s", RGBColor(44, 160, 44)),
    ("errors_per_s", RGBColor(214, 39, 40)),
    ("devices.unprovisioned", RGBColor(127, 127, 127)),
    ("devices.provisioning", RGBColor(31, 119, 180)),
    ("devices.offline", RGBColor(255, 127, 14)),
    ("devices.connecting", RGBColor(188, 189, 34)),
    ("devices.online", RGBColor(44, 160, 44)),
    ("devices.sleeping", RGBColor(23, 190, 207)),
    ("devices.updating", RGBColor(148, 103, 189)),
    ("devices.rolled_back", RGBColor(227, 119, 194)),
    ("devices.bricked", RGBColor(0, 0, 0)),
    ("devices.decommissioned", RGBColor(140, 86, 75)),
    ("devices.dead", RGBColor(214, 39, 40)),
];

/// Colours for a metric missing from [`COLOURS`] (one a newer fleetsim added), picked by a
/// hash of its name so that it too keeps its colour from chart to chart and run to run.
const SPARE: [RGBColor; 6] = [
    RGBColor(57, 59, 121),
    RGBColor(99, 121, 57),
    RGBColor(140, 109, 49),
    RGBColor(132, 60, 57),
    RGBColor(123, 65, 115),
    RGBColor(82, 84, 163),
];

/// The colour `metric` is drawn in, in every chart.
pub fn colour(metric: &str) -> RGBColor {
    if let Some((_, c)) = COLOURS.iter().find(|(name, _)| *name == metric) {
        return *c;
    }
    // FNV-1a: stable across runs and builds, unlike std's randomly seeded hasher.
    let hash = metric.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    SPARE[(hash % SPARE.len() as u64) as usize]
}

/// `#rrggbb`, for the HTML legend.
fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// A tick label for a count: a whole number, thousands separated (`2,000`, never `2000.0`).
pub fn count_tick(value: f64) -> String {
    count(value.round().max(0.0) as u64)
}

/// A tick label for a measure (milliseconds, seconds, a share): whole numbers as counts are,
/// fractions with the digits they need (`0.01`, `2.5`).
pub fn measure_tick(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        return count_tick(value);
    }
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A tick on the "nines" axis as the percentile it stands for: 1 is `90%`, 3 is `99.9%`.
fn nines_tick(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    if (nines - nines.round()).abs() < 1e-9 {
        let decimals = (nines.round() as usize).saturating_sub(2);
        return format!("{percent:.decimals$}%");
    }
    format!("{}%", measure_tick(percent))
}

/// Tick marks for a count axis reaching `top`: no more than there are whole numbers below
/// it, so that plotters never steps by a fraction.
fn count_labels(top: f64) -> usize {
    (top.floor() as usize + 1).clamp(2, 10)
}

/// A named series of (x, y) points; `metric` names its colour.
pub struct Series {
    /// The name its colour is keyed by.
    pub metric: String,
    /// What the legend calls it.
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    fn new(metric: &str, label: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            metric: metric.to_owned(),
            label: label.to_owned(),
            points,
        }
    }
}

/// How an axis is scaled and labelled.
#[derive(Clone, Copy)]
enum Scale {
    /// Devices, messages: linear from zero, whole-number ticks.
    Count,
    /// Seconds, shares: linear, ticks as measures.
    Measure,
    /// Latencies spanning orders of magnitude, milliseconds.
    Log,
    /// The percentile on the "nines" axis.
    Nines,
}

/// `timeseries.csv`, by column.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Option<f64>>>,
}

impl Table {
    /// Reads the CSV; a cell that is not a number is empty.
    pub fn parse(csv: &str) -> Self {
        let mut lines = csv.lines();
        let header = lines
            .next()
            .map(|h| h.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let rows = lines.map(|l| l.split(',').map(|c| c.parse().ok()).collect()).collect();
        Self { header, rows }
    }

    /// Column `name` against elapsed seconds, leaving out empty cells.
    pub fn series(&self, name: &str) -> Vec<(f64, f64)> {
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

/// Devices per state over time, the states any device was ever in.
pub fn devices(table: &Table) -> String {
    let series: Vec<Series> = table
        .header
        .iter()
        .filter(|h| h.starts_with("devices."))
        .map(|column| {
            let state = column.trim_start_matches("devices.");
            Series::new(column, state, table.series(column))
        })
        .filter(|s| s.points.iter().any(|(_, y)| *y > 0.0))
        .collect();
    chart(&series, ("seconds", Scale::Measure), ("devices", Scale::Count))
}

/// Provisions, connects, publishes and errors a second.
pub fn rates(table: &Table) -> String {
    let series: Vec<Series> = ["provisions_per_s", "connects_per_s", "published_per_s", "errors_per_s"]
        .iter()
        .map(|c| Series::new(c, c.trim_end_matches("_per_s"), table.series(c)))
        .filter(|s| s.points.iter().any(|(_, y)| *y > 0.0))
        .collect();
    chart(&series, ("seconds", Scale::Measure), ("per second", Scale::Count))
}

/// Each latency's p99, second by second.
pub fn latency_over_time(table: &Table) -> String {
    let series: Vec<Series> = table
        .header
        .iter()
        .filter_map(|h| h.strip_suffix(".p99_ms"))
        .map(|metric| Series::new(metric, metric, table.series(&format!("{metric}.p99_ms"))))
        .filter(|s| !s.points.is_empty())
        .collect();
    chart(
        &series,
        ("seconds", Scale::Measure),
        ("p99, ms (log scale)", Scale::Log),
    )
}

/// Each operation's latency against the percentile, on the usual "nines" axis: x is
/// -log10(1 - q), so 90%, 99% and 99.9% are evenly spaced.
pub fn distributions(histograms: &BTreeMap<String, Histogram<u64>>) -> String {
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
            Series::new(name, name, points)
        })
        .collect();
    chart(
        &series,
        ("percentile", Scale::Nines),
        ("latency, ms (log scale)", Scale::Log),
    )
}

/// The share of cut-off devices back online against the time since the outage ended.
pub fn recovery(summary: &Value, histograms: &BTreeMap<String, Histogram<u64>>) -> String {
    let Some(h) = histograms.get("reconnect.recovery").filter(|h| !h.is_empty()) else {
        return "<p class=\"none\">No outage cut devices off in this run.</p>".to_owned();
    };
    let counters = &summary["metrics"]["counters"];
    let counter = |name: &str| counters[name].as_f64().unwrap_or(0.0);
    let affected = (counter("outage.affected") - counter("outage.excused")).max(h.len() as f64);
    let points: Vec<(f64, f64)> = (0..=100)
        .map(|i| {
            let q = f64::from(i) / 100.0;
            (
                h.value_at_quantile(q) as f64 / 1e6,
                q * h.len() as f64 / affected * 100.0,
            )
        })
        .collect();
    let drawn = chart(
        &[Series::new("reconnect.recovery", "devices back online", points)],
        ("seconds after the outage ended", Scale::Measure),
        ("% of cut-off devices", Scale::Measure),
    );
    let recovered = summary["metrics"]["reconnect.recovery_ms"]
        .as_f64()
        .map_or("99% of them never came back during the run".to_owned(), |ms| {
            format!("99% were back {:.1} s after the outage ended", ms / 1e3)
        });
    format!(
        "{drawn}\n<p>{} devices cut off; {recovered}.</p>",
        count(affected as u64)
    )
}

/// `series` drawn as lines with the legend beside them, or a note that nothing was recorded.
fn chart(series: &[Series], (x_desc, x_scale): (&str, Scale), (y_desc, y_scale): (&str, Scale)) -> String {
    if series.iter().all(|s| s.points.is_empty()) {
        return "<p class=\"none\">Nothing recorded.</p>".to_owned();
    }
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_min = points().map(|(x, _)| *x).fold(0.0, f64::min);
    let x_max = points().map(|(x, _)| *x).fold(1.0, f64::max);
    let y_max = points().map(|(_, y)| *y).fold(1.0, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let mut builder = ChartBuilder::on(&root);
        // The right margin leaves room for the last x label, centred on the plot's edge.
        builder
            .margin(12)
            .margin_right(32)
            .x_label_area_size(40)
            .y_label_area_size(70);
        let x_labels = match x_scale {
            Scale::Nines => (x_max.ceil() as usize + 1).clamp(2, 10),
            _ => 10,
        };
        let x_format = move |x: &f64| match x_scale {
            Scale::Nines => nines_tick(*x),
            Scale::Count => count_tick(*x),
            _ => measure_tick(*x),
        };
        if let Scale::Log = y_scale {
            // A microsecond is the histograms' resolution: nothing is drawn below it.
            let floor = 0.001;
            if let Ok(mut chart) = builder.build_cartesian_2d(x_min..x_max, (floor..y_max * 2.0).log_scale()) {
                let _ = chart
                    .configure_mesh()
                    .x_desc(x_desc)
                    .y_desc(y_desc)
                    .label_style(("sans-serif", 12))
                    .axis_desc_style(("sans-serif", 13))
                    .bold_line_style(BLACK.mix(0.15))
                    .light_line_style(BLACK.mix(0.04))
                    .x_labels(x_labels)
                    .x_label_formatter(&x_format)
                    .y_label_formatter(&|y| measure_tick(*y))
                    .draw();
                for s in series {
                    let clamped = s.points.iter().map(|(x, y)| (*x, y.max(floor)));
                    let _ = chart.draw_series(LineSeries::new(clamped, colour(&s.metric).stroke_width(2)));
                }
            }
        } else {
            let top = y_max * 1.05;
            let y_labels = match y_scale {
                Scale::Count => count_labels(top),
                _ => 10,
            };
            if let Ok(mut chart) = builder.build_cartesian_2d(x_min..x_max, 0.0..top) {
                let _ = chart
                    .configure_mesh()
                    .x_desc(x_desc)
                    .y_desc(y_desc)
                    .label_style(("sans-serif", 12))
                    .axis_desc_style(("sans-serif", 13))
                    .bold_line_style(BLACK.mix(0.15))
                    .light_line_style(BLACK.mix(0.04))
                    .x_labels(x_labels)
                    .y_labels(y_labels)
                    .x_label_formatter(&x_format)
                    .y_label_formatter(&|y| match y_scale {
                        Scale::Count => count_tick(*y),
                        _ => measure_tick(*y),
                    })
                    .draw();
                for s in series {
                    let line = LineSeries::new(s.points.iter().copied(), colour(&s.metric).stroke_width(2));
                    let _ = chart.draw_series(line);
                }
            }
        }
        let _ = root.present();
    }
    format!("<figure class=\"chart\">{svg}{}</figure>", legend(series))
}

/// The legend, an HTML list beside the plot: each series' colour and name.
fn legend(series: &[Series]) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let _ = write!(
            out,
            "<li><span class=\"key\" style=\"background:{}\"></span>{}</li>",
            hex(colour(&s.metric)),
            escape(&s.label)
        );
    }
    out.push_str("</ul>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::State;
    use crate::metrics::recorder::Latency;

    #[test]
    fn count_ticks_are_whole_numbers() {
        assert_eq!(count_tick(2000.0), "2,000");
        assert_eq!(count_tick(0.0), "0");
        assert_eq!(count_tick(999.9999), "1,000");
        assert_eq!(count_tick(1_234_567.0), "1,234,567");
        assert_eq!(measure_tick(10_000.0), "10,000");
        assert_eq!(measure_tick(0.01), "0.01");
        assert_eq!(measure_tick(2.5), "2.5");
        assert_eq!(nines_tick(0.0), "0%");
        assert_eq!(nines_tick(1.0), "90%");
        assert_eq!(nines_tick(3.0), "99.9%");
        assert_eq!(nines_tick(5.0), "99.999%");
    }

    #[test]
    fn a_count_axis_never_steps_by_a_fraction() {
        for top in [1.05, 2.1, 3.15, 7.0, 52.5, 2100.0] {
            let series = [Series::new("devices.online", "online", vec![(1.0, top / 1.05)])];
            let svg = chart(&series, ("seconds", Scale::Measure), ("devices", Scale::Count));
            // The y axis's labels are the right-aligned text.
            let ticks: Vec<&str> = svg
                .split("text-anchor=\"end\"")
                .skip(1)
                .filter_map(|t| t.split_once('>')?.1.split_once("</text>"))
                .map(|(tick, _)| tick.trim())
                .collect();
            assert!(!ticks.is_empty(), "{svg}");
            assert!(ticks.iter().all(|t| !t.contains('.')), "top {top}: ticks {ticks:?}");
            let mut unique = ticks.clone();
            unique.dedup();
            assert_eq!(unique, ticks, "top {top}: no tick written twice");
        }
    }

    #[test]
    fn every_metric_keeps_one_colour_and_no_chart_draws_two_alike() {
        let latencies: Vec<&str> = Latency::ALL.iter().map(|l| l.name()).collect();
        let states: Vec<String> = State::ALL.iter().map(|s| format!("devices.{}", s.name())).collect();
        let rates = ["provisions_per_s", "connects_per_s", "published_per_s", "errors_per_s"];
        let kinds: [Vec<&str>; 3] = [latencies, states.iter().map(String::as_str).collect(), rates.to_vec()];
        for names in kinds {
            for name in &names {
                assert!(
                    COLOURS.iter().any(|(n, _)| n == name),
                    "{name} has no colour of its own"
                );
            }
            let mut colours: Vec<String> = names.iter().map(|n| hex(colour(n))).collect();
            colours.sort();
            colours.dedup();
            assert_eq!(colours.len(), names.len(), "two of {names:?} share a colour");
        }
        assert_eq!(
            colour("provisions_per_s"),
            colour("provision.latency"),
            "an operation's rate and latency match"
        );
        assert_eq!(colour("some.new.latency"), colour("some.new.latency"));
    }
}
