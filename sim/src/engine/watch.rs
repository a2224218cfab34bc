//! Watching the backend: a run against a backend with an operator API asks its `/healthz`
//! twice a second, so a backend that vanishes mid-run (a crash, a restart, a network cut) is
//! recorded as an event with its times, and the run can say how long the fleet took to come
//! back once the backend did.

use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::scenario::units::DisplayDuration;
use crate::transport::http::{Method, request_json};

/// How often the backend is asked.
const PERIOD: Duration = Duration::from_millis(500);
/// An answer slower than this counts as none.
const PATIENCE: Duration = Duration::from_secs(1);

/// A stretch of time the backend did not answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOutage {
    /// When the first unanswered check was sent, from the start of the run.
    pub down_at: Duration,
    /// When it answered again (`None`: not before the run ended).
    pub up_at: Option<Duration>,
    /// Why the first check failed.
    pub why: String,
}

/// Checks `api` from `start` until `stop`, saying when it goes away and comes back.
pub async fn watch(
    api: SocketAddr,
    start: Instant,
    stop: &CancellationToken,
    events: Option<&SyncSender<String>>,
) -> Vec<BackendOutage> {
    let mut outages: Vec<BackendOutage> = Vec::new();
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = sleep_until(next) => {}
            () = stop.cancelled() => return outages,
        }
        let asked = Instant::now();
        next = asked + PERIOD;
        let since_start = asked.saturating_duration_since(start);
        let answer = match timeout(PATIENCE, request_json(api, Method::GET, "/healthz", None)).await {
            Ok(Ok((200, _))) => Ok(()),
            Ok(Ok((status, _))) => Err(format!("/healthz answered {status}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}", DisplayDuration(PATIENCE))),
        };
        let down = outages.last().is_some_and(|o| o.up_at.is_none());
        let line = match (answer, down) {
            (Err(why), false) => {
                let line = format!("[{}] backend unreachable: {why}", DisplayDuration(round(since_start)));
                outages.push(BackendOutage {
                    down_at: since_start,
                    up_at: None,
                    why,
                });
                line
            }
            (Ok(()), true) => {
                let Some(outage) = outages.last_mut() else { continue };
                outage.up_at = Some(since_start);
                format!(
                    "[{}] backend back after {}",
                    DisplayDuration(round(since_start)),
                    DisplayDuration(round(since_start.saturating_sub(outage.down_at)))
                )
            }
            _ => continue,
        };
        if let Some(events) = events {
            // Bounded queue; a line that finds it full is dropped, never waited for.
            let _ = events.try_send(line);
        }
    }
}

/// To the millisecond, for messages.
fn round(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
