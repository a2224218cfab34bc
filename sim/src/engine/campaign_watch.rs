//! Following the run's campaigns for the dashboard: once a second, the backend's view of each
//! campaign the operator started (waves, jobs per state, halted or not), offered on the live
//! channel. Runs only when a dashboard watches; the report reads the campaigns once, at the end.

use std::sync::mpsc::SyncSender;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::figures::CampaignView;
use super::live::Update;
use super::operator::Operator;

/// How often the campaigns are asked for.
const PERIOD: Duration = Duration::from_secs(1);
/// An answer slower than this is skipped until the next turn.
const PATIENCE: Duration = Duration::from_secs(1);

/// Offers the started campaigns on `live` every [`PERIOD`] until `stop`; returns at once
/// without a dashboard.
pub async fn watch_campaigns(operator: &Operator, stop: &CancellationToken, live: Option<&SyncSender<Update>>) {
    let Some(live) = live else { return };
    let mut next = Instant::now() + PERIOD;
    loop {
        tokio::select! {
            () = sleep_until(next) => {}
            () = stop.cancelled() => return,
        }
        next += PERIOD;
        let started = operator.log.campaigns();
        if started.is_empty() {
            continue;
        }
        let mut views = Vec::with_capacity(started.len());
        for (id, group, targeted) in started {
            if let Ok(Ok(answer)) = timeout(PATIENCE, operator.campaign(id)).await {
                views.push(CampaignView::from_answer(id, &group, targeted, &answer));
            }
        }
        // Bounded queue; an update that finds it full is dropped, the next one says more.
        let _ = live.try_send(Update::Campaigns(views));
    }
}
