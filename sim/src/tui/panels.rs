//! The dashboard's panels, each drawn from the [`Model`] into its own area: devices per state,
//! rates over the last minute, latency percentiles with failing gates in red, and the detail
//! views (event log, OTA campaigns by wave, reconnect recovery and the harness's cost).

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Sparkline, Table};

use super::model::{Model, View};
use super::view::alarm;
use crate::device::State;
use crate::metrics::recorder::Latency;

/// Devices per lifecycle state, with a bar each, the states the fleet is in.
pub fn devices(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let f = &model.frame;
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" Devices ({}) ", f.devices));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let bar_width = inner.width.saturating_sub(21) as u64;
    let lines: Vec<Line> = State::ALL
        .iter()
        .filter(|s| **s == State::Online || f.states.get(**s) > 0)
        .take(inner.height as usize)
        .map(|state| {
            let n = f.states.get(*state);
            let bar = if n == 0 {
                0
            } else {
                (n * bar_width).div_ceil(f.devices.max(1))
            };
            let color = match state {
                State::Online => Color::Green,
                State::Bricked | State::Dead => Color::Red,
                State::RolledBack | State::Updating => Color::Yellow,
                _ => Color::Blue,
            };
            Line::from(vec![
                Span::raw(format!("{:<14}{n:>6} ", state.name())),
                Span::styled("█".repeat(bar.min(bar_width) as usize), Style::new().fg(color)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Provisions, connects and messages a second as sparklines over the last minute; errors.
pub fn rates(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Rates a second, last minute ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = Layout::vertical([Constraint::Length(1); 7]).split(inner);
    let names = ["provisions", "connects", "messages"];
    let colors = [Color::Cyan, Color::Green, Color::Magenta];
    let width = inner.width as usize;
    for (k, name) in names.iter().enumerate() {
        let series: Vec<u64> = model.rates.iter().map(|r| r[k]).collect();
        let shown = &series[series.len().saturating_sub(width)..];
        let now = series.last().copied().unwrap_or(0);
        let peak = series.iter().copied().max().unwrap_or(0);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::raw(format!("{name:<11}{now:>7}/s")),
                Span::styled(format!("   peak {peak}/s"), Style::new().fg(Color::DarkGray)),
            ])),
            rows[k * 2],
        );
        frame.render_widget(
            Sparkline::default().data(shown).style(Style::new().fg(colors[k])),
            rows[k * 2 + 1],
        );
    }
    let errors_now = model.rates.back().map_or(0, |r| r[3]);
    let errors_minute: u64 = model.rates.iter().map(|r| r[3]).sum();
    let style = if errors_minute > 0 { alarm() } else { Style::new() };
    frame.render_widget(
        Paragraph::new(format!(
            "errors {errors_now:>10}/s   {errors_minute} in the last minute"
        ))
        .style(style),
        rows[6],
    );
}

/// The operations the latency table shows: those with samples, never the recovery times.
fn measured(model: &Model) -> impl Iterator<Item = &crate::engine::live::LatencyRow> {
    model
        .frame
        .latencies
        .iter()
        .filter(|l| l.count > 0 && l.name != Latency::Recovery.name())
}

/// Rows the latency panel wants, borders included.
pub fn latency_height(model: &Model) -> u16 {
    3 + measured(model).count().max(1) as u16
}

/// Latency percentiles over the run so far; a figure a failing gate reads is red. Reports sent
/// late are counted in the title, in yellow: the harness's own delay, which the latencies hold.
pub fn latency(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let columns = ["p50", "p99", "p99.9", "max"];
    let rows: Vec<Row> = measured(model)
        .map(|l| {
            let failing = failing_stats(model, l.name);
            let op = l.name.trim_end_matches(".latency");
            let name_alarm = failing.iter().any(|s| !columns.contains(s));
            let mut cells = vec![Cell::from(op).style(if name_alarm { alarm() } else { Style::new() })];
            for (column, value) in columns.iter().zip([l.p50, l.p99, l.p99_9, l.max]) {
                let style = if failing.contains(column) {
                    alarm()
                } else {
                    Style::new()
                };
                cells.push(Cell::from(format!("{:>9}", ms(value))).style(style));
            }
            cells.push(Cell::from(format!("{:>10}", l.count)));
            Row::new(cells)
        })
        .collect();
    let header = Row::new([
        "operation",
        "      p50",
        "      p99",
        "    p99.9",
        "      max",
        "   samples",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(16),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(11),
    ];
    let mut title = vec![Span::raw(" Latency, run so far ")];
    if model.frame.late_sends > 0 {
        // How many the machine made late (the thread woke late), the rest the harness's load;
        // kept short to fit the title at 80 columns.
        let text = match model.frame.late_sends_woken_late {
            0 => format!(
                "· late sends: {} reports over 5 ms behind schedule ",
                model.frame.late_sends
            ),
            woken => format!(
                "· late sends: {} over 5 ms behind, {woken} woke late ",
                model.frame.late_sends
            ),
        };
        title.push(Span::styled(text, Style::new().fg(Color::Yellow)));
    }
    let block = Block::default().borders(Borders::ALL).title(Line::from(title));
    if rows.is_empty() {
        frame.render_widget(Paragraph::new("no samples yet").block(block), area);
        return;
    }
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// The statistics of `op` (e.g. `p99`) that a failing gate reads.
fn failing_stats<'a>(model: &'a Model, op: &str) -> Vec<&'a str> {
    model
        .frame
        .gates
        .iter()
        .filter(|g| g.failing == Some(true))
        .filter_map(|g| g.metric.strip_prefix(op)?.strip_prefix('.'))
        .collect()
}

/// `1.2ms`, `2.35s`, `-`.
fn ms(value: Option<Duration>) -> String {
    match value {
        None => "-".to_owned(),
        Some(d) if d >= Duration::from_secs(1) => format!("{:.2}s", d.as_secs_f64()),
        Some(d) => format!("{:.1}ms", d.as_secs_f64() * 1e3),
    }
}

/// The detail view `tab` chose, under a tab bar.
pub fn detail(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let view = model.view.unwrap_or(View::Events);
    let mut tabs = vec![Span::raw(" ")];
    for v in View::ALL {
        let style = if v == view {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        tabs.push(Span::styled(format!(" {} ", v.title()), style));
        tabs.push(Span::raw(" "));
    }
    let block = Block::default().borders(Borders::ALL).title(Line::from(tabs));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match view {
        View::Events => events(frame, inner, model),
        View::Campaigns => campaigns(frame, inner, model),
        View::Recovery => recovery(frame, inner, model),
        View::Identities => identities(frame, inner, model),
        View::Health => health(frame, inner, model),
    }
}

fn events(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let end = model.log.len().saturating_sub(model.scroll);
    let start = end.saturating_sub(area.height as usize);
    let lines: Vec<Line> = model
        .log
        .range(start..end)
        .map(|line| Line::styled(line.as_str(), event_style(line)))
        .collect();
    if lines.is_empty() {
        frame.render_widget(Paragraph::new("no event yet"), area);
    } else {
        frame.render_widget(Paragraph::new(lines), area);
    }
}

fn event_style(line: &str) -> Style {
    let bad = ["gate failing", "halted", "unreachable", "errors:", "warning"];
    if bad.iter().any(|b| line.contains(b)) {
        alarm()
    } else if line.contains("holds again") || line.contains("back after") {
        Style::new().fg(Color::Green)
    } else if line.contains("] phase ") {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    }
}

fn campaigns(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    if model.campaigns.is_empty() {
        let planned: Vec<String> = model
            .outline
            .phases
            .iter()
            .filter(|p| p.waves > 0)
            .map(|p| {
                format!(
                    "planned: ota {} at {}s, {} waves",
                    p.group.as_deref().unwrap_or("all"),
                    p.at.as_secs(),
                    p.waves
                )
            })
            .collect();
        let text = if planned.is_empty() {
            vec!["no OTA campaign in this scenario".to_owned()]
        } else {
            planned
        };
        frame.render_widget(Paragraph::new(text.join("\n")), area);
        return;
    }
    let mut rows = area.rows();
    for campaign in &model.campaigns {
        let planned = model
            .outline
            .waves_for(&campaign.group)
            .unwrap_or(0)
            .max(campaign.waves.len());
        let (state, style) = match campaign.state.as_str() {
            "halted" => (
                format!(
                    "HALTED: {}",
                    campaign.end_reason.as_deref().unwrap_or("no reason given")
                ),
                alarm(),
            ),
            "completed" => ("completed".to_owned(), Style::new().fg(Color::Green)),
            other => (other.to_owned(), Style::new().fg(Color::Yellow)),
        };
        let Some(row) = rows.next() else { return };
        let title = Line::from(vec![
            Span::raw(format!(
                "campaign {} · {} · {} targeted · ",
                campaign.id, campaign.group, campaign.targeted
            )),
            Span::styled(state, style),
        ]);
        frame.render_widget(Paragraph::new(title), row);
        for k in 0..planned {
            let Some(row) = rows.next() else { return };
            match campaign.waves.get(k) {
                Some(wave) => frame.render_widget(wave_gauge(k + 1, wave), row),
                None if campaign.state == "halted" && k == campaign.waves.len() => frame.render_widget(
                    Paragraph::new(format!("wave {}: ■ halted here, never started", k + 1)).style(alarm()),
                    row,
                ),
                None => frame.render_widget(
                    Paragraph::new(format!("wave {}: not started", k + 1)).style(Style::new().fg(Color::DarkGray)),
                    row,
                ),
            }
        }
    }
}

/// A wave's jobs as a gauge: finished (succeeded, failed, rolled back) of targeted.
fn wave_gauge(number: usize, wave: &serde_json::Value) -> Gauge<'static> {
    let n = |key: &str| wave[key].as_u64().unwrap_or(0);
    let (targeted, ok, failed, rolled) = (n("targeted"), n("succeeded"), n("failed"), n("rolled_back"));
    let done = ok + failed + rolled;
    let label = format!("wave {number}: {done}/{targeted} done · {ok} ok · {failed} failed · {rolled} rolled back");
    let color = if failed + rolled > 0 { Color::Red } else { Color::Green };
    Gauge::default()
        .ratio(if targeted == 0 {
            0.0
        } else {
            (done as f64 / targeted as f64).min(1.0)
        })
        .label(label)
        .gauge_style(Style::new().fg(color).bg(Color::Black))
}

fn recovery(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let f = &model.frame;
    let r = &f.recovery;
    let outages: Vec<String> = model
        .outline
        .phases
        .iter()
        .filter(|p| p.action == "outage")
        .map(|p| format!("{}s", p.at.as_secs()))
        .collect();
    let counted = r.affected.saturating_sub(r.excused);
    let storm = if r.affected == 0 {
        Line::raw(match outages.is_empty() {
            true => "no outage in this scenario".to_owned(),
            false => format!("outages at {}: no device cut off yet", outages.join(", ")),
        })
    } else {
        let share = r.recovered as f64 / counted.max(1) as f64 * 100.0;
        let (text, style) = match r.recovered_99 {
            Some(t) => (format!("99% back after {}", ms(Some(t))), Style::new().fg(Color::Green)),
            None => ("not 99% back yet".to_owned(), Style::new().fg(Color::Yellow)),
        };
        Line::from(vec![
            Span::raw(format!(
                "reconnect storm: {} cut off · {} back ({share:.1}%) · {} excused · ",
                r.affected, r.recovered, r.excused
            )),
            Span::styled(text, style),
        ])
    };
    let connected = model.connected.back().copied().unwrap_or(0);
    let [line1, label, spark, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(storm), line1);
    frame.render_widget(
        Paragraph::new(format!("connected now {connected}, last minute:")),
        label,
    );
    let series: Vec<u64> = model.connected.iter().copied().collect();
    let shown = &series[series.len().saturating_sub(area.width as usize)..];
    frame.render_widget(
        Sparkline::default().data(shown).style(Style::new().fg(Color::Green)),
        spark,
    );
    frame.render_widget(Paragraph::new(harness_line(model)), rest);
}

/// TLS handshakes (full, resumed, p99), certificates issued, rotated, renewed and revoked,
/// decommissioned devices refused of those that tried (red below all), and TLS and CSR errors
/// by reason.
fn identities(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let t = &model.frame.identities;
    if t.is_empty() {
        frame.render_widget(Paragraph::new("no TLS handshake or certificate yet"), area);
        return;
    }
    let p99 = model
        .frame
        .latencies
        .iter()
        .find(|l| l.name == Latency::TlsHandshake.name())
        .and_then(|l| l.p99);
    let handshakes = t.full + t.resumed;
    let mut lines = vec![
        Line::raw(format!(
            "handshakes {handshakes} · {} full · {} resumed ({:.0}%) · p99 {}",
            t.full,
            t.resumed,
            t.resumed as f64 / handshakes.max(1) as f64 * 100.0,
            ms(p99)
        )),
        Line::raw(format!(
            "certificates {} issued · {} rotated · {} renewed · {} revoked",
            t.issued, t.rotated, t.renewed, t.revoked
        )),
    ];
    if t.revoked_tried > 0 {
        let style = if t.revoked_refused < t.revoked_tried {
            alarm()
        } else {
            Style::new().fg(Color::Green)
        };
        lines.push(Line::styled(
            format!(
                "decommissioned devices refused {} of {} tries ({:.1}%)",
                t.revoked_refused,
                t.revoked_tried,
                t.revoked_refused as f64 / t.revoked_tried as f64 * 100.0
            ),
            style,
        ));
    }
    if t.errors.is_empty() {
        lines.push(Line::styled(
            "no TLS or certificate request refused",
            Style::new().fg(Color::Green),
        ));
    } else {
        let errors: Vec<String> = t.errors.iter().map(|(name, n)| format!("{name} {n}")).collect();
        lines.push(Line::styled(format!("refused: {}", errors.join(" · ")), alarm()));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// Device faults so far, and the monitoring path: alerts the backend raised of those the run's
/// rules called for, overdue (red), raised without cause (red), and how late.
fn health(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let (reports, resets) = model.frame.faults;
    let faults = if reports + resets == 0 {
        Line::raw("no device fault yet")
    } else {
        Line::raw(format!(
            "faults: {reports} reports made in a fault · {resets} watchdog resets"
        ))
    };
    let alerts = match model.alerts {
        None => Line::raw("no alert rule set"),
        Some(a) => {
            let style = if a.overdue > 0 || a.unexpected > 0 {
                alarm()
            } else {
                Style::new().fg(Color::Green)
            };
            Line::styled(
                format!(
                    "alerts: {} raised of {} due · {} overdue · {} unexpected · latency p50 {} p99 {}",
                    a.raised,
                    a.due,
                    a.overdue,
                    a.unexpected,
                    ms(a.p50),
                    ms(a.p99)
                ),
                style,
            )
        }
    };
    frame.render_widget(Paragraph::new(vec![faults, alerts]), area);
}

/// `harness cpu 45% · 1.6 KiB/device · rss 120 MiB · ui 0.3%`: the harness's share of a core
/// over the last second, its memory per connected device and in all, and the dashboard's own
/// share of a core.
pub fn harness_line(model: &Model) -> String {
    let f = &model.frame;
    let connected = f.states.connected();
    let per_device = match (f.rss_before_bytes, connected) {
        (0, _) | (_, 0) => "-".to_owned(),
        (before, n) => format!(
            "{:.1} KiB",
            f.rss_bytes.saturating_sub(before) as f64 / n as f64 / 1024.0
        ),
    };
    format!(
        "harness cpu {:.0}% · {per_device}/device · rss {:.0} MiB · ui {:.1}%",
        model.harness_cpu * 100.0,
        f.rss_bytes as f64 / (1u64 << 20) as f64,
        model.dashboard_cpu * 100.0
    )
}
