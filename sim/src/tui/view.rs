//! Drawing the dashboard: the layout, the header with time and phases, the key line, the key
//! help, and the note for a terminal too small. The panels themselves are in [`super::panels`].
//!
//! Layout, top to bottom: two header lines; devices per state beside the rates; latency
//! percentiles; the detail view `tab` switches (events, campaigns, recovery and harness);
//! one line of keys.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::model::{Model, PhaseOutline};
use super::panels;
use crate::scenario::units::DisplayDuration;

/// The smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 80;
/// The smallest terminal the dashboard draws in.
pub const MIN_HEIGHT: u16 = 24;
/// Rows of the devices and rates panels, borders included.
const TOP_ROWS: u16 = 9;
/// Rows the detail view keeps at least, borders included.
const DETAIL_MIN_ROWS: u16 = 5;

/// Red: a failing gate, a halt, an error.
pub fn alarm() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}

/// Draws `model` over the whole frame.
pub fn draw(frame: &mut Frame<'_>, model: &Model) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(frame, area);
        return;
    }
    let latency_rows = panels::latency_height(model);
    let [header, top, latency, detail, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(TOP_ROWS),
        Constraint::Max(latency_rows),
        Constraint::Min(DETAIL_MIN_ROWS),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, model);
    let [devices, rates] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
    panels::devices(frame, devices, model);
    panels::rates(frame, rates, model);
    panels::latency(frame, latency, model);
    panels::detail(frame, detail, model);
    let footer = Line::from(vec![
        Span::styled(
            format!(" {}", panels::harness_line(model)),
            Style::new().fg(Color::Gray),
        ),
        Span::styled(
            " │ q stop · p pause · tab view · ? keys",
            Style::new().fg(Color::DarkGray),
        ),
    ]);
    frame.render_widget(Paragraph::new(footer), keys);
    if model.help {
        help(frame, area);
    }
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let outline = &model.outline;
    let f = &model.frame;
    let elapsed = Duration::from_secs(f.elapsed_s);
    let left = outline.duration.saturating_sub(elapsed);
    let state = if model.stopping {
        Span::styled(" STOPPING: writing the report ", alarm())
    } else if model.paused {
        Span::styled(" ARRIVALS PAUSED ", Style::new().fg(Color::Black).bg(Color::Yellow))
    } else {
        Span::styled(" running ", Style::new().fg(Color::Black).bg(Color::Green))
    };
    let failing = f.gates.iter().filter(|g| g.failing == Some(true)).count();
    let holding = f.gates.iter().filter(|g| g.failing == Some(false)).count();
    let pending = f.gates.len() - failing - holding;
    let gates = match (failing, f.gates.len()) {
        (_, 0) => Span::raw(""),
        (0, _) => Span::styled(
            format!("  gates: {holding} holding, {pending} judged at the end"),
            Style::new().fg(Color::Green),
        ),
        (k, n) => Span::styled(format!("  gates: {k} of {n} failing"), alarm()),
    };
    // Most important first: a narrow terminal cuts the end of the line.
    let first = Line::from(vec![
        state,
        Span::styled(
            format!(" {} ", outline.scenario),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "{} of {} ({} left)",
            DisplayDuration(elapsed),
            DisplayDuration(outline.duration),
            DisplayDuration(left)
        )),
        gates,
        Span::styled(
            format!("  seed {} · {} devices · {}", outline.seed, f.devices, outline.backend),
            Style::new().fg(Color::DarkGray),
        ),
    ]);
    let (now, next) = model.phases();
    let phase = |p: &PhaseOutline| match &p.group {
        Some(group) => format!("{} {group} at {}", p.action, DisplayDuration(p.at)),
        None => format!("{} at {}", p.action, DisplayDuration(p.at)),
    };
    let mut second = vec![Span::raw(" phase: ")];
    second.push(Span::styled(
        now.map_or("none yet".to_owned(), phase),
        Style::new().add_modifier(Modifier::BOLD),
    ));
    second.push(Span::raw(match next {
        Some(p) => format!(
            " · next: {} (in {})",
            phase(p),
            DisplayDuration(p.at.saturating_sub(elapsed))
        ),
        None => " · no phase left".to_owned(),
    }));
    frame.render_widget(Paragraph::new(vec![first, Line::from(second)]), area);
}

fn too_small(frame: &mut Frame<'_>, area: Rect) {
    let text = format!(
        "terminal too small: {}x{}; the dashboard needs {MIN_WIDTH}x{MIN_HEIGHT} (q stops the run)",
        area.width, area.height
    );
    frame.render_widget(
        Paragraph::new(text)
            .style(alarm())
            .wrap(ratatui::widgets::Wrap { trim: true }),
        area,
    );
}

/// The keys, over the middle of the screen.
fn help(frame: &mut Frame<'_>, area: Rect) {
    let lines = [
        (
            "q, Ctrl-C",
            "stop the run: devices disconnect, the report is written (marked incomplete)",
        ),
        (
            "p",
            "pause new arrivals (devices already running go on); p again resumes",
        ),
        (
            "tab, shift-tab",
            "switch the detail view: events, OTA campaigns, recovery & harness",
        ),
        ("↑ ↓ PgUp PgDn", "scroll the event log"),
        ("?", "this help; any key closes it"),
    ];
    let text: Vec<Line> = lines
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!("{key:>15}  "), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(*what),
            ])
        })
        .collect();
    let width = area.width.min(96);
    let height = lines.len() as u16 + 2;
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" Keys ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::style::Color;

    use super::*;
    use crate::engine::live::{Frame as LiveFrame, GateLight, LatencyRow, Update};
    use crate::report::figures::CampaignView;
    use crate::tui::model::{Key, Outline, PhaseOutline, View};

    fn outline() -> Outline {
        let phase = |at, action, group: Option<&str>, waves| PhaseOutline {
            at: Duration::from_secs(at),
            action,
            group: group.map(str::to_owned),
            waves,
        };
        Outline {
            scenario: "quickstart".into(),
            seed: 42,
            duration: Duration::from_secs(100),
            backend: "embedded backend in process".into(),
            phases: vec![
                phase(30, "config", Some("meters"), 0),
                phase(40, "ota", Some("sensors"), 4),
                phase(70, "outage", None, 0),
            ],
        }
    }

    fn latency(name: &'static str, count: u64, ms: [u64; 4]) -> LatencyRow {
        let d = |v| Some(Duration::from_millis(v));
        LatencyRow {
            name,
            count,
            p50: d(ms[0]),
            p99: d(ms[1]),
            p99_9: d(ms[2]),
            max: d(ms[3]),
        }
    }

    /// Second 45 of a quickstart run: a campaign halted, the provision p99 gate failing.
    fn model() -> Model {
        let mut model = Model::new(outline());
        use crate::device::{State, StateCounts};
        let mut states = StateCounts::default();
        states.add(State::Provisioning, 12);
        states.add(State::Online, 1834);
        states.add(State::RolledBack, 2);
        for s in 1..=45u64 {
            model.apply(Update::Second(Box::new(LiveFrame {
                elapsed_s: s,
                devices: 2000,
                states,
                provisions: 100 + s,
                connects: 90,
                published: 600,
                latencies: vec![
                    latency("provision.latency", 1846, [5, 310, 420, 480]),
                    latency("connect.latency", 1900, [1, 4, 6, 10]),
                    latency("publish.latency", 0, [0; 4]),
                ],
                gates: vec![
                    GateLight {
                        metric: "provision.latency.p99".into(),
                        verdict: "FAIL".into(),
                        failing: Some(true),
                    },
                    GateLight {
                        metric: "connect.latency.p99".into(),
                        verdict: "pass".into(),
                        failing: Some(false),
                    },
                ],
                rss_bytes: 40 << 20,
                rss_before_bytes: 10 << 20,
                cpu: Duration::from_millis(300 * s),
                events: if s == 40 {
                    vec!["[40s] phase ota sensors: started".into()]
                } else {
                    vec![]
                },
                ..LiveFrame::default()
            })));
        }
        model
    }

    fn render(model: &Model, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
        terminal.draw(|frame| draw(frame, model)).expect("drawn");
        terminal.backend().buffer().clone()
    }

    fn rows(buffer: &Buffer) -> Vec<String> {
        let area = buffer.area;
        (0..area.height)
            .map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol()).collect())
            .collect()
    }

    /// Where `text` first shows, as (column, row).
    fn find(buffer: &Buffer, text: &str) -> Option<(u16, u16)> {
        rows(buffer).iter().enumerate().find_map(|(y, row)| {
            let at = row.find(text)?;
            Some((row[..at].chars().count() as u16, y as u16))
        })
    }

    fn shows(buffer: &Buffer, text: &str) -> bool {
        find(buffer, text).is_some()
    }

    fn color_at(buffer: &Buffer, text: &str) -> Option<Color> {
        let (x, y) = find(buffer, text)?;
        buffer[(x, y)].fg.into()
    }

    #[test]
    fn the_dashboard_shows_the_run_at_a_glance_at_80x24() {
        let buffer = render(&model(), 80, 24);
        let all = rows(&buffer).join("\n");
        for expected in [
            "quickstart",
            "45s of 1m40s (55s left)",
            "gates: 1 of 2 failing",
            "phase: ota sensors at 40s",
            "next: outage at 1m10s (in 25s)",
            "online",
            "1834",
            "provisioning",
            "rolled_back",
            "provisions",
            "145/s",
            "provision",
            "310.0ms",
            "[40s] phase ota sensors: started",
            "harness cpu 30%",
        ] {
            assert!(all.contains(expected), "{expected:?} missing from\n{all}");
        }
        assert!(
            !all.contains("publish "),
            "an operation without samples is left out:\n{all}"
        );
        assert!(!all.contains("unprovisioned"), "a state no device is in is left out");
    }

    #[test]
    fn a_figure_a_failing_gate_reads_is_red_and_the_others_are_not() {
        let buffer = render(&model(), 80, 24);
        assert_eq!(color_at(&buffer, "310.0ms"), Some(Color::Red), "provision p99");
        assert_ne!(
            color_at(&buffer, "420.0ms"),
            Some(Color::Red),
            "provision p99.9 has no gate"
        );
        assert_ne!(color_at(&buffer, "4.0ms"), Some(Color::Red), "connect p99 holds");
        assert_eq!(color_at(&buffer, "gates: 1 of 2 failing"), Some(Color::Red));
    }

    #[test]
    fn late_sends_show_in_yellow_over_the_latencies_and_only_when_there_are_some() {
        let on_time = render(&model(), 80, 24);
        assert!(!shows(&on_time, "late sends"), "{}", rows(&on_time).join("\n"));
        // A second of a run behind its schedule: its late sends, and how many woke late.
        let behind = |late_sends, late_sends_woken_late| {
            Update::Second(Box::new(LiveFrame {
                elapsed_s: 46,
                devices: 2000,
                latencies: vec![latency("publish.latency", 9000, [1, 7, 9, 12])],
                late_sends,
                late_sends_woken_late,
                ..LiveFrame::default()
            }))
        };
        let mut model = model();
        model.apply(behind(35, 0));
        let late = render(&model, 80, 24);
        let text = "late sends: 35 reports over 5 ms behind schedule";
        assert!(shows(&late, text), "{}", rows(&late).join("\n"));
        assert_eq!(color_at(&late, text), Some(Color::Yellow));
        let (_, title_row) = find(&late, text).expect("shown");
        assert_eq!(find(&late, "Latency, run so far").map(|(_, y)| y), Some(title_row));
        model.apply(behind(123_456, 123_000));
        let split = render(&model, 80, 24);
        let text = "late sends: 123456 over 5 ms behind, 123000 woke late";
        assert!(shows(&split, text), "whole at 80 columns: {}", rows(&split).join("\n"));
        assert_eq!(color_at(&split, text), Some(Color::Yellow));
    }

    #[test]
    fn below_80x24_the_dashboard_says_the_terminal_is_too_small() {
        for (width, height) in [(79, 24), (80, 23), (40, 10)] {
            let buffer = render(&model(), width, height);
            assert!(shows(&buffer, "terminal too small"), "{width}x{height}");
            assert!(!shows(&buffer, "Latency"), "{width}x{height}");
        }
        let buffer = render(&model(), 80, 24);
        assert!(!shows(&buffer, "terminal too small"));
    }

    #[test]
    fn a_resized_terminal_is_redrawn_whole() {
        let model = model();
        let mut terminal = Terminal::new(TestBackend::new(160, 50)).expect("test backend");
        terminal.draw(|frame| draw(frame, &model)).expect("drawn");
        assert!(terminal.backend().buffer().area.width == 160 && shows(terminal.backend().buffer(), "Latency"));
        terminal.backend_mut().resize(80, 24);
        terminal.autoresize().expect("resized");
        terminal.draw(|frame| draw(frame, &model)).expect("drawn");
        let buffer = terminal.backend().buffer();
        assert_eq!((buffer.area.width, buffer.area.height), (80, 24));
        let last = rows(buffer).pop().unwrap_or_default();
        assert!(
            last.contains("harness cpu"),
            "the footer sits on the last row: {last:?}"
        );
    }

    #[test]
    fn the_campaign_view_shows_waves_as_gauges_and_the_halt_point() {
        let mut model = model();
        model.apply(Update::Campaigns(vec![CampaignView {
            id: 1,
            group: "sensors".into(),
            targeted: 1211,
            state: "halted".into(),
            end_reason: Some("wave 1 of 4: 8.0% failed or rolled back".into()),
            waves_started: 1,
            waves: vec![serde_json::json!({"targeted": 25, "succeeded": 23, "failed": 0, "rolled_back": 2})],
            ..CampaignView::default()
        }]));
        model.key(Key::Tab);
        assert_eq!(model.view, Some(View::Campaigns));
        let buffer = render(&model, 80, 24);
        assert!(shows(&buffer, "HALTED: wave 1 of 4"), "{}", rows(&buffer).join("\n"));
        assert_eq!(color_at(&buffer, "HALTED"), Some(Color::Red));
        assert!(shows(&buffer, "wave 1: 25/25 done · 23 ok · 0 failed · 2 rolled back"));
        assert!(shows(&buffer, "wave 2: ■ halted here, never started"));
        assert_eq!(color_at(&buffer, "wave 2: ■"), Some(Color::Red));
        // The gauge is full: its bar reaches the row's last column.
        let (_, y) = find(&buffer, "wave 1: 25/25").unwrap_or_default();
        assert_eq!(buffer[(78, y)].fg, Color::Red, "a wave with rollbacks is drawn red");
        assert!(
            model
                .log
                .iter()
                .any(|l| l.contains("campaign 1 (sensors) halted after wave 1 of 4")),
            "the halt is in the event log"
        );
    }

    #[test]
    fn the_tls_view_shows_handshakes_certificates_and_refusals() {
        use crate::engine::live::Identities;
        let mut model = model();
        model.key(Key::BackTab);
        model.key(Key::BackTab);
        assert_eq!(model.view, Some(View::Identities));
        let buffer = render(&model, 80, 24);
        assert!(shows(&buffer, "no TLS handshake or certificate yet"));
        model.apply(Update::Second(Box::new(LiveFrame {
            elapsed_s: 46,
            devices: 2000,
            latencies: vec![latency("tls.handshake.latency", 3000, [1, 3, 5, 9])],
            identities: Identities {
                full: 2500,
                resumed: 500,
                issued: 1500,
                rotated: 500,
                renewed: 20,
                revoked: 500,
                revoked_tried: 50,
                revoked_refused: 49,
                errors: vec![("errors.tls_expired", 3), ("errors.csr", 1)],
            },
            ..LiveFrame::default()
        })));
        let buffer = render(&model, 80, 24);
        let all = rows(&buffer).join("\n");
        for expected in [
            "handshakes 3000 · 2500 full · 500 resumed (17%) · p99 3.0ms",
            "certificates 1500 issued · 500 rotated · 20 renewed · 500 revoked",
            "decommissioned devices refused 49 of 50 tries (98.0%)",
            "refused: errors.tls_expired 3 · errors.csr 1",
        ] {
            assert!(all.contains(expected), "{expected:?} missing from\n{all}");
        }
        assert_eq!(
            color_at(&buffer, "decommissioned devices"),
            Some(Color::Red),
            "one got in"
        );
        assert_eq!(color_at(&buffer, "refused: errors"), Some(Color::Red));
    }

    #[test]
    fn the_health_view_shows_faults_and_the_alerts_raised_against_those_due() {
        use crate::engine::live::AlertFigures;
        let mut model = model();
        model.key(Key::BackTab);
        assert_eq!(model.view, Some(View::Health));
        let buffer = render(&model, 100, 24);
        assert!(shows(&buffer, "no device fault yet") && shows(&buffer, "no alert rule set"));
        model.apply(Update::Second(Box::new(LiveFrame {
            elapsed_s: 80,
            devices: 2000,
            faults: (4639, 86),
            ..LiveFrame::default()
        })));
        let good = AlertFigures {
            due: 2755,
            raised: 2755,
            overdue: 0,
            unexpected: 0,
            p50: Some(Duration::from_millis(2)),
            p99: Some(Duration::from_millis(247)),
        };
        model.apply(Update::Alerts(good));
        let buffer = render(&model, 100, 24);
        let all = rows(&buffer).join("\n");
        for expected in [
            "faults: 4639 reports made in a fault · 86 watchdog resets",
            "alerts: 2755 raised of 2755 due · 0 overdue · 0 unexpected · latency p50 2.0ms p99 247.0ms",
        ] {
            assert!(all.contains(expected), "{expected:?} missing from\n{all}");
        }
        assert_eq!(color_at(&buffer, "alerts: 2755"), Some(Color::Green));
        model.apply(Update::Alerts(AlertFigures { overdue: 3, ..good }));
        let buffer = render(&model, 100, 24);
        assert_eq!(color_at(&buffer, "alerts: 2755"), Some(Color::Red), "some are overdue");
    }

    #[test]
    fn pause_stop_and_help_show_in_the_header_and_over_the_panels() {
        let mut model = model();
        model.key(Key::Char('p'));
        let buffer = render(&model, 80, 24);
        assert!(shows(&buffer, "ARRIVALS PAUSED"));
        model.key(Key::Char('?'));
        let buffer = render(&model, 80, 24);
        assert!(shows(&buffer, "q, Ctrl-C  stop the run"));
        model.key(Key::Char('q'));
        let buffer = render(&model, 80, 24);
        assert!(shows(&buffer, "STOPPING: writing the report"));
        assert_eq!(color_at(&buffer, "STOPPING"), Some(Color::Red));
    }
}
