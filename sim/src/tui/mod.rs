//! The live dashboard `fleetsim run` shows when stdout is a terminal: a thread that takes the
//! terminal over ([`terminal`]), reads the run's one-second frames and campaign views from a
//! bounded channel into its [`model`], draws it ([`view`], [`panels`]) at least twice a second
//! and on every update, key or resize, and turns keys into run control: `q`/Ctrl-C cancel the
//! run's stop token, `p` flips the arrival pause flag.
//!
//! Design: the dashboard only reads what the aggregator offers (the same one-second aggregates
//! the report is built from); it shares nothing with the shards but the pause flag. It
//! measures itself: the time spent in draw calls and its thread's CPU time, shown in the
//! footer and returned as [`DrawCost`] when it closes.

pub mod model;
pub mod panels;
pub mod terminal;
pub mod view;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio_util::sync::CancellationToken;

use crate::engine::live::Update;
use model::{Command, Key, Model, Outline};
use terminal::Screen;

/// The longest the screen goes without a redraw (it also redraws on every update and key).
const REDRAW: Duration = Duration::from_millis(500);
/// How long the dashboard waits for a key before it looks for updates again.
const POLL: Duration = Duration::from_millis(100);

/// What drawing cost, measured by the dashboard's thread.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DrawCost {
    /// Frames drawn.
    pub frames: u64,
    /// Time spent inside draw calls (building the frame and writing it to the terminal).
    pub drawing: Duration,
    /// CPU time of the dashboard's thread, everything included (`CLOCK_THREAD_CPUTIME_ID`).
    pub cpu: Duration,
    /// How long the dashboard was up.
    pub wall: Duration,
}

impl DrawCost {
    /// The share of one core the dashboard's thread used.
    pub fn share(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for DrawCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dashboard: {} frames in {:.1}s, {:.3}s inside draw calls; its thread used {:.3}s of CPU ({:.2}% of one core)",
            self.frames,
            self.wall.as_secs_f64(),
            self.drawing.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.share() * 100.0
        )
    }
}

/// A running dashboard; [`Dashboard::finish`] (or dropping it) closes it and gives the
/// terminal back.
pub struct Dashboard {
    thread: Option<JoinHandle<io::Result<DrawCost>>>,
    closing: Arc<AtomicBool>,
}

impl Dashboard {
    /// Takes the terminal over and starts drawing `outline` and the `updates` of a run that
    /// `stop` stops and `paused` pauses. Fails (with the terminal as it was) when the terminal
    /// cannot be taken over.
    pub fn start(
        outline: Outline,
        updates: Receiver<Update>,
        stop: CancellationToken,
        paused: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        let screen = Screen::enter()?;
        let closing = Arc::new(AtomicBool::new(false));
        let control = Control {
            stop,
            paused,
            closing: Arc::clone(&closing),
        };
        let thread = std::thread::Builder::new()
            .name("dashboard".to_owned())
            .spawn(move || show(screen, Model::new(outline), &updates, &control))?;
        Ok(Self {
            thread: Some(thread),
            closing,
        })
    }

    /// Closes the dashboard, restores the terminal, and says what drawing cost.
    pub fn finish(mut self) -> io::Result<DrawCost> {
        self.close()
    }

    fn close(&mut self) -> io::Result<DrawCost> {
        self.closing.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(cost)) => cost,
            Some(Err(_)) => Err(io::Error::other("the dashboard's thread panicked")),
            None => Ok(DrawCost::default()),
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// What the dashboard's keys act on.
struct Control {
    stop: CancellationToken,
    paused: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
}

/// The dashboard's thread: takes updates, draws, reads keys, until closed or the run's
/// updates end. The screen is restored when `screen` drops, on every way out.
fn show(mut screen: Screen, mut model: Model, updates: &Receiver<Update>, control: &Control) -> io::Result<DrawCost> {
    let started = Instant::now();
    let cpu_at_start = thread_cpu();
    let mut cost = DrawCost::default();
    let mut dirty = true;
    let mut last_draw = started;
    loop {
        let mut ended = false;
        loop {
            match updates.try_recv() {
                Ok(update) => {
                    model.apply(update);
                    dirty = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    ended = true;
                    break;
                }
            }
        }
        if ended || control.closing.load(Ordering::Relaxed) {
            break;
        }
        if dirty || last_draw.elapsed() >= REDRAW {
            cost.cpu = thread_cpu().saturating_sub(cpu_at_start);
            cost.wall = started.elapsed();
            model.dashboard_cpu = cost.share();
            let before = Instant::now();
            screen.terminal.draw(|frame| view::draw(frame, &model))?;
            cost.drawing += before.elapsed();
            cost.frames += 1;
            last_draw = before;
            dirty = false;
        }
        if event::poll(POLL)? {
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => {
                    if let Some(key) = key_of(key) {
                        match model.key(key) {
                            Command::Stop => control.stop.cancel(),
                            Command::Pause(paused) => control.paused.store(paused, Ordering::Relaxed),
                            Command::None => {}
                        }
                    }
                    dirty = true;
                }
                Event::Resize(..) => {
                    screen.terminal.autoresize()?;
                    dirty = true;
                }
                _ => {}
            }
        }
    }
    cost.cpu = thread_cpu().saturating_sub(cpu_at_start);
    cost.wall = started.elapsed();
    Ok(cost)
}

/// The dashboard's name for a terminal key.
fn key_of(key: KeyEvent) -> Option<Key> {
    Some(match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Esc => Key::Escape,
        _ => return None,
    })
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(spent.tv_sec).unwrap_or(0),
        u32::try_from(spent.tv_nsec).unwrap_or(0),
    )
}
