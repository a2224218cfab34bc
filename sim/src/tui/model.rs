//! What the dashboard knows: the scenario's outline, the latest frame, a minute of rates, the
//! campaigns, the event log, and what the person at the keyboard chose (view, help, pause).
//! Pure state: it reads no clock and draws nothing, so tests feed it fixed updates.

use std::collections::VecDeque;
use std::time::Duration;

use crate::engine::live::{AlertFigures, Frame, Update};
use crate::report::figures::CampaignView;
use crate::scenario::Scenario;
use crate::scenario::typed::Action;

/// Seconds of rates the sparklines show.
pub const HISTORY_S: usize = 60;
/// Event lines kept; older ones scroll away for good.
pub const LOG_LINES: usize = 500;

/// The scenario as the header and the campaign view need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outline {
    /// Scenario name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// The run's length.
    pub duration: Duration,
    /// Where the devices go, e.g. `embedded backend in process`.
    pub backend: String,
    /// The phases, in time order.
    pub phases: Vec<PhaseOutline>,
}

/// One phase of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseOutline {
    /// When it fires.
    pub at: Duration,
    /// Its action, e.g. `ota`.
    pub action: &'static str,
    /// Its group, if it targets one.
    pub group: Option<String>,
    /// Waves of an OTA campaign (0 for other actions).
    pub waves: usize,
}

impl Outline {
    /// The outline of `scenario`, run against `backend`.
    pub fn of(scenario: &Scenario, backend: &str) -> Self {
        Self {
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            duration: scenario.duration,
            backend: backend.to_owned(),
            phases: scenario
                .phases
                .iter()
                .map(|p| PhaseOutline {
                    at: p.at,
                    action: p.action.name(),
                    group: p.group.clone(),
                    waves: match &p.action {
                        Action::Ota(campaign) => campaign.waves.len(),
                        _ => 0,
                    },
                })
                .collect(),
        }
    }

    /// The waves planned for a campaign on `group` (the first OTA phase that reaches it).
    pub fn waves_for(&self, group: &str) -> Option<usize> {
        self.phases
            .iter()
            .find(|p| p.waves > 0 && p.group.as_deref().is_none_or(|g| g == group))
            .map(|p| p.waves)
    }
}

/// The detail views `tab` goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The scrolling event log.
    Events,
    /// OTA campaigns wave by wave.
    Campaigns,
    /// The reconnect storm and the harness's cost.
    Recovery,
    /// TLS handshakes, certificates issued, rotated, renewed and revoked.
    Identities,
    /// Device faults, and the alerts the backend raised against those called for.
    Health,
}

impl View {
    /// Every view, in `tab` order.
    pub const ALL: [View; 5] = [
        View::Events,
        View::Campaigns,
        View::Recovery,
        View::Identities,
        View::Health,
    ];

    /// Its tab title.
    pub fn title(self) -> &'static str {
        match self {
            View::Events => "Events",
            View::Campaigns => "OTA campaigns",
            View::Recovery => "Recovery & harness",
            View::Identities => "TLS & certificates",
            View::Health => "Faults & alerts",
        }
    }
}

/// A key the dashboard acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A plain character.
    Char(char),
    /// Ctrl-C.
    Interrupt,
    /// Tab: the next view.
    Tab,
    /// Shift-Tab: the previous view.
    BackTab,
    /// Scroll the event log back a line.
    Up,
    /// Scroll it forward a line.
    Down,
    /// Back a page.
    PageUp,
    /// Forward a page.
    PageDown,
    /// Escape: closes the help.
    Escape,
}

/// What a key asks of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Nothing beyond the dashboard itself.
    None,
    /// Stop the run (it still writes its report).
    Stop,
    /// Hold new arrivals (`true`) or let them go on (`false`).
    Pause(bool),
}

/// The dashboard's state.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The scenario.
    pub outline: Outline,
    /// The latest second of the run (default until the first arrives).
    pub frame: Frame,
    /// Provisions, connects, messages and errors a second, oldest first, at most a minute.
    pub rates: VecDeque<[u64; 4]>,
    /// Devices connected at each second's end, oldest first, at most a minute.
    pub connected: VecDeque<u64>,
    /// The campaigns as the backend last reported them.
    pub campaigns: Vec<CampaignView>,
    /// The alerts the operator's watch matched so far (`None` before its first look).
    pub alerts: Option<AlertFigures>,
    /// Event lines, oldest first.
    pub log: VecDeque<String>,
    /// Lines the event log is scrolled back from its end (0 follows new lines).
    pub scroll: usize,
    /// The detail view shown.
    pub view: Option<View>,
    /// Whether the key help is shown.
    pub help: bool,
    /// Whether new arrivals are held.
    pub paused: bool,
    /// Whether a stop was asked for (the run is draining and writing its report).
    pub stopping: bool,
    /// Share of a core the harness used over the last second.
    pub harness_cpu: f64,
    /// Share of a core the dashboard's thread has used so far.
    pub dashboard_cpu: f64,
}

impl Model {
    /// A dashboard for `outline`, before the first second.
    pub fn new(outline: Outline) -> Self {
        Self {
            outline,
            view: Some(View::Events),
            ..Self::default()
        }
    }

    /// Takes in an update from the run.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Second(frame) => {
                let previous = std::mem::replace(&mut self.frame, *frame);
                let frame = &self.frame;
                if frame.elapsed_s > previous.elapsed_s && previous.elapsed_s > 0 {
                    let spent = frame.cpu.saturating_sub(previous.cpu).as_secs_f64();
                    self.harness_cpu = spent / (frame.elapsed_s - previous.elapsed_s) as f64;
                }
                push_bounded(
                    &mut self.rates,
                    [frame.provisions, frame.connects, frame.published, frame.errors],
                    HISTORY_S,
                );
                let connected = frame.states.connected();
                push_bounded(&mut self.connected, connected, HISTORY_S);
                let events = std::mem::take(&mut self.frame.events);
                for line in events {
                    self.note(line);
                }
            }
            Update::Campaigns(campaigns) => {
                for campaign in &campaigns {
                    let was_halted = self
                        .campaigns
                        .iter()
                        .any(|c| c.id == campaign.id && c.state == "halted");
                    if campaign.state == "halted" && !was_halted {
                        let line = format!(
                            "[{}s] campaign {} ({}) halted after wave {} of {}: {}",
                            self.frame.elapsed_s,
                            campaign.id,
                            campaign.group,
                            campaign.waves_started,
                            self.outline.waves_for(&campaign.group).unwrap_or(0),
                            campaign.end_reason.as_deref().unwrap_or("no reason given")
                        );
                        self.note(line);
                    }
                }
                self.campaigns = campaigns;
            }
            Update::Alerts(figures) => self.alerts = Some(figures),
        }
    }

    /// Adds a line to the event log; a log scrolled back stays on the lines it shows.
    pub fn note(&mut self, line: String) {
        if self.scroll > 0 {
            self.scroll += 1;
        }
        push_bounded(&mut self.log, line, LOG_LINES);
        self.scroll = self.scroll.min(self.log.len().saturating_sub(1));
    }

    /// Acts on a key; says what it asks of the run.
    pub fn key(&mut self, key: Key) -> Command {
        if self.help && key != Key::Interrupt && key != Key::Char('q') {
            // Any key closes the help; it does nothing else.
            self.help = false;
            return Command::None;
        }
        match key {
            Key::Char('q') | Key::Interrupt => {
                self.stopping = true;
                return Command::Stop;
            }
            Key::Char('p') => {
                self.paused = !self.paused;
                return Command::Pause(self.paused);
            }
            Key::Char('?') => self.help = true,
            Key::Tab | Key::BackTab => {
                let views = View::ALL;
                let at = self.view.and_then(|v| views.iter().position(|x| *x == v)).unwrap_or(0);
                let step = if key == Key::Tab { 1 } else { views.len() - 1 };
                self.view = Some(views[(at + step) % views.len()]);
            }
            Key::Up => self.scroll_by(1),
            Key::Down => self.scroll = self.scroll.saturating_sub(1),
            Key::PageUp => self.scroll_by(10),
            Key::PageDown => self.scroll = self.scroll.saturating_sub(10),
            Key::Char(_) | Key::Escape => {}
        }
        Command::None
    }

    fn scroll_by(&mut self, lines: usize) {
        self.scroll = (self.scroll + lines).min(self.log.len().saturating_sub(1));
    }

    /// The phase running now (the last one fired) and the next one, by the latest second.
    pub fn phases(&self) -> (Option<&PhaseOutline>, Option<&PhaseOutline>) {
        let now = Duration::from_secs(self.frame.elapsed_s);
        let fired = self.outline.phases.iter().take_while(|p| p.at <= now).count();
        (
            fired.checked_sub(1).and_then(|k| self.outline.phases.get(k)),
            self.outline.phases.get(fired),
        )
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, bound: usize) {
    if queue.len() >= bound {
        queue.pop_front();
    }
    queue.push_back(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(elapsed_s: u64, events: &[&str]) -> Update {
        Update::Second(Box::new(Frame {
            elapsed_s,
            provisions: elapsed_s,
            cpu: Duration::from_millis(250 * elapsed_s),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            ..Frame::default()
        }))
    }

    #[test]
    fn seconds_keep_a_minute_of_rates_and_every_event_line() {
        let mut model = Model::new(Outline::default());
        for s in 1..=70 {
            model.apply(second(s, &[&format!("[{s}s] line")]));
        }
        assert_eq!(model.rates.len(), HISTORY_S);
        assert_eq!(model.rates.front().map(|r| r[0]), Some(11));
        assert_eq!(model.log.len(), 70);
        assert!((model.harness_cpu - 0.25).abs() < 1e-9, "{}", model.harness_cpu);
    }

    #[test]
    fn keys_stop_pause_switch_views_and_scroll() {
        let mut model = Model::new(Outline::default());
        for s in 1..=30 {
            model.note(format!("line {s}"));
        }
        assert_eq!(model.key(Key::Char('p')), Command::Pause(true));
        assert_eq!(model.key(Key::Char('p')), Command::Pause(false));
        assert_eq!(model.key(Key::Tab), Command::None);
        assert_eq!(model.view, Some(View::Campaigns));
        model.key(Key::BackTab);
        model.key(Key::BackTab);
        assert_eq!(model.view, Some(View::Health), "back round past the first");
        model.key(Key::BackTab);
        assert_eq!(model.view, Some(View::Identities));
        model.key(Key::PageUp);
        assert_eq!(model.scroll, 10);
        model.note("line 31".to_owned());
        assert_eq!(model.scroll, 11, "a log scrolled back stays where it is");
        model.key(Key::Char('?'));
        assert!(model.help);
        assert_eq!(model.key(Key::Char('p')), Command::None, "a key closes the help only");
        assert!(!model.help && !model.paused);
        assert_eq!(model.key(Key::Interrupt), Command::Stop);
        assert!(model.stopping);
    }

    #[test]
    fn a_campaign_that_halts_is_logged_once() {
        let mut model = Model::new(Outline {
            phases: vec![PhaseOutline {
                at: Duration::from_secs(60),
                action: "ota",
                group: Some("sensors".into()),
                waves: 4,
            }],
            ..Outline::default()
        });
        let halted = CampaignView {
            id: 7,
            group: "sensors".into(),
            state: "halted".into(),
            end_reason: Some("wave 2 failure rate 21% above 5%".into()),
            waves_started: 2,
            ..CampaignView::default()
        };
        model.apply(second(75, &[]));
        model.apply(Update::Campaigns(vec![halted.clone()]));
        model.apply(Update::Campaigns(vec![halted]));
        assert_eq!(
            Vec::from(model.log.clone()),
            ["[75s] campaign 7 (sensors) halted after wave 2 of 4: wave 2 failure rate 21% above 5%"]
        );
        let (now, next) = model.phases();
        assert_eq!((now.map(|p| p.action), next), (Some("ota"), None));
    }
}
