//! The terminal while the dashboard owns it: raw mode, the alternate screen, no cursor; and
//! the way back. [`Screen`] restores the terminal when dropped, and a panic hook restores it
//! before the panic message is printed, so neither a panic nor an early error leaves a shell
//! in raw mode on a blank screen.
//!
//! The dashboard writes to its own copy of the stdout file descriptor: the CLI holds Rust's
//! stdout lock for the whole command, and a second writer through it would wait forever.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};

/// The terminal, taken over; restored on drop.
pub struct Screen {
    /// Where the dashboard draws.
    pub terminal: Terminal<CrosstermBackend<File>>,
    /// Dropped after the terminal: gives the terminal back.
    _restore: Restore,
}

impl Screen {
    /// Takes the terminal over: raw mode, alternate screen, cursor hidden; installs the panic
    /// hook that gives it back.
    pub fn enter() -> io::Result<Self> {
        let out = File::from(rustix::io::dup(io::stdout())?);
        let taken = Arc::new(AtomicBool::new(true));
        enable_raw_mode()?;
        // From here on, a failure drops `restore`, which undoes what was done.
        let restore = Restore {
            taken: Arc::clone(&taken),
            out: out.try_clone()?,
        };
        let mut screen = out.try_clone()?;
        execute!(screen, EnterAlternateScreen, Hide)?;
        let terminal = Terminal::new(CrosstermBackend::new(screen))?;
        restore_on_panic(taken, out);
        Ok(Self {
            terminal,
            _restore: restore,
        })
    }
}

/// Gives the terminal back when dropped (once, whoever comes first: this or the panic hook).
struct Restore {
    taken: Arc<AtomicBool>,
    out: File,
}

impl Drop for Restore {
    fn drop(&mut self) {
        restore(&self.taken, &self.out);
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode, once.
fn restore(taken: &AtomicBool, out: &File) {
    if taken.swap(false, Ordering::SeqCst) {
        let mut out = out;
        let _ = execute!(out, LeaveAlternateScreen, Show);
        let _ = disable_raw_mode();
        let _ = out.flush();
    }
}

/// Restores the terminal before any panic message is printed, then panics as before. The hook
/// stays installed after the dashboard closes; by then `taken` is false and it does nothing.
fn restore_on_panic(taken: Arc<AtomicBool>, out: File) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore(&taken, &out);
        previous(info);
    }));
}
