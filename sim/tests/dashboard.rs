//! The live dashboard end to end, in a real terminal: tmux runs `fleetsim run` in a pane, the
//! test reads the pane as a person would see it, presses keys, and checks that the dashboard
//! shows live counts, that `p` pauses arrivals, that `q` stops the run with its report
//! written, and that the terminal is given back (no alternate screen, the closing lines shown).
//!
//! Needs tmux (scripts/test installs Debian's); fails, never skips, without it.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "support/binary.rs"]
mod binary;
use binary::{repo, scratch, summary};

/// A tmux server of this test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server named after `tag` (tests run in parallel), with one session running `command`.
    fn start(tag: &str, width: u16, height: u16, command: &str) -> Self {
        let tmux = Self {
            socket: format!("fleetsim-{tag}-{}", std::process::id()),
        };
        let width = width.to_string();
        let height = height.to_string();
        let started = tmux.run(&["new-session", "-d", "-s", "run", "-x", &width, "-y", &height, command]);
        assert!(started.status.success(), "tmux new-session: {started:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .current_dir(repo())
            .output()
            .expect("tmux runs (scripts/test installs it)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-J", "-t", "run"]).stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        assert!(self.run(&["send-keys", "-t", "run", keys]).status.success());
    }

    /// Waits until the screen passes `test`, returning it; fails with the last screen.
    fn wait_for(&self, what: &str, patience: Duration, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let screen = self.screen();
            if test(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {patience:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The count on the dashboard's `online` row, if it shows one.
fn online(screen: &str) -> Option<u64> {
    screen
        .lines()
        .find_map(|l| l.trim_start_matches('│').strip_prefix("online"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_dashboard_shows_live_counts_and_q_stops_the_run_with_its_report() {
    let out = scratch("dashboard");
    let command = format!(
        "{} run sim/tests/fixtures/run/dashboard.toml --out {}; echo \"fleetsim exited $?\"; sleep 120",
        env!("CARGO_BIN_EXE_fleetsim"),
        out.display()
    );
    let tmux = Tmux::start("dashboard", 100, 30, &command);
    let patience = Duration::from_secs(60);

    let live = tmux.wait_for("devices online", patience, |s| online(s).is_some_and(|n| n > 0));
    assert!(live.contains(" running ") && live.contains(" dashboard "), "{live}");
    assert!(live.contains("Devices (60)") && live.contains("provisions"), "{live}");
    assert!(
        live.contains("provision ") && live.contains("samples"),
        "latency rows: {live}"
    );
    assert!(live.contains("harness cpu"), "{live}");

    tmux.keys("p");
    tmux.wait_for("the pause", patience, |s| s.contains("ARRIVALS PAUSED"));
    tmux.keys("p");
    tmux.wait_for("the resume", patience, |s| s.contains(" running "));

    tmux.keys("q");
    let after = tmux.wait_for("the end of the run", patience, |s| s.contains("fleetsim exited"));
    assert!(after.contains("fleetsim exited 1"), "a stopped run exits 1:\n{after}");
    assert!(
        after.contains("stopped early: the summary is marked incomplete"),
        "{after}"
    );
    assert!(
        after.contains("dashboard: ") && after.contains("% of one core)"),
        "{after}"
    );
    assert!(
        after.contains("fleetsim run: scenario dashboard (seed 11)"),
        "the terminal is back on the normal screen, with what was written before the dashboard:\n{after}"
    );
    let alternate = tmux.run(&["display-message", "-p", "-t", "run", "#{alternate_on}"]);
    assert_eq!(
        String::from_utf8_lossy(&alternate.stdout).trim(),
        "0",
        "left the alternate screen"
    );

    let written = summary(&out);
    assert_eq!(written["completed"], false, "{written}");
    assert!(
        written["elapsed_s"].as_f64().is_some_and(|s| s < 50.0),
        "q stopped the 60 s run early: {written}"
    );
    assert!(
        written["metrics"]["counters"]["provisioned"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{written}"
    );
    for file in ["report.html", "junit.xml", "timeseries.csv"] {
        assert!(Path::new(&out).join(file).is_file(), "{file} written");
    }
    // Kept only when the test fails, for a look.
}

#[test]
fn a_backend_that_cannot_be_reached_leaves_the_terminal_as_it_was_with_the_error_shown() {
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = scratch("dashboard-no-backend");
    let command = format!(
        "{} run sim/tests/fixtures/run/dashboard.toml --backend http://127.0.0.1:{port} --out {}; echo \"fleetsim exited $?\"; sleep 120",
        env!("CARGO_BIN_EXE_fleetsim"),
        out.display()
    );
    let tmux = Tmux::start("no-backend", 100, 30, &command);
    let after = tmux.wait_for("the end of the run", Duration::from_secs(60), |s| {
        s.contains("fleetsim exited")
    });
    assert!(after.contains("error: embedded backend:"), "{after}");
    assert!(after.contains("connection refused"), "{after}");
    assert!(after.contains("fleetsim exited 1"), "{after}");
    let alternate = tmux.run(&["display-message", "-p", "-t", "run", "#{alternate_on}"]);
    assert_eq!(String::from_utf8_lossy(&alternate.stdout).trim(), "0");
}
