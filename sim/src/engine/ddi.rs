//! A polling device's I/O against a hawkBit DDI server: each report is a poll, whose answer
//! sets the pace, asks the device to describe itself, or offers an update; the update's
//! progress goes back as feedback. What each exchange measures is recorded here:
//! `poll.latency` from the intended poll time, `feedback.latency`, `ota.take.latency` from
//! the operator's rollout, HTTP errors by status, and retries.
//!
//! Design: the device core knows nothing of HTTP. A poll becomes the events the core acts on
//! (`ReportEvery` with the server's interval in simulated time, `OtaJob` for a new action),
//! and a lost exchange becomes `ConnectionLost`, so the core backs off and polls again as it
//! reconnects a dropped link. Feedback that closes an action is the server's only record of
//! the outcome, so a closing feedback that fails for a network or server error is kept and
//! sent again before the next poll; a device never gives up on telling the server.

use std::collections::VecDeque;
use std::rc::Rc;

use tokio::time::Instant;

use super::driver::ShardCtx;
use super::link::{ImageHash, Job};
use super::perform::DeviceTask;
use crate::device::{Event, OtaReport};
use crate::dialect::embedded::Credentials;
use crate::dialect::hawkbit::{DdiError, Feedback, Hawkbit};
use crate::metrics::recorder::{Counter, Latency};

/// What a polling device remembers between exchanges (boxed in its link: only DDI devices
/// hold one).
#[derive(Debug, Default)]
pub struct DdiState {
    /// Closing feedback the server has not taken yet: the action and the outcome.
    pending: Option<(u64, Feedback)>,
    /// The last exchange failed: the next one is a retry.
    failed: bool,
    /// The server has answered a poll of this device: a refusal now means it was retired.
    known: bool,
    /// The polling interval the core was last told, simulated milliseconds (0: none yet).
    told_ms: u32,
}

impl DeviceTask {
    /// Polls, sends any feedback still owed first, and queues what the answer means.
    pub(super) async fn poll(&mut self, ddi: &Hawkbit, intended: Instant, events: &mut VecDeque<(Event, Instant)>) {
        let shard = Rc::clone(&self.shard);
        let Some(credentials) = self.link.credentials.clone() else {
            return;
        };
        let state = self.link.ddi.get_or_insert_with(Box::default);
        if state.failed {
            shard.count(Counter::Retries);
        }
        if let Some((action, feedback)) = state.pending {
            shard.count(Counter::Retries);
            if let Err(event) = self.send_feedback(ddi, &credentials, action, feedback).await {
                // A lost exchange, or a server that retired the device meanwhile.
                events.push_back((event, Instant::now()));
                return;
            }
        }
        let polled = Box::pin(ddi.poll(&credentials, self.source)).await;
        let polled = match polled {
            Ok(polled) => polled,
            Err(error) => {
                events.push_back((self.failed(&shard, error), Instant::now()));
                return;
            }
        };
        shard.record(Latency::Poll, intended);
        shard.count(Counter::Polls);
        ddi.imposed.saw(polled.sleep);
        let sim = shard.clock.sim_span(polled.sleep);
        let ms = u32::try_from(sim.as_millis()).unwrap_or(u32::MAX).max(1);
        let state = self.link.ddi.get_or_insert_with(Box::default);
        state.failed = false;
        state.known = true;
        if state.told_ms != ms {
            // The core keeps the pace it was told: only a new one is news.
            state.told_ms = ms;
            events.push_back((Event::ReportEvery { ms }, Instant::now()));
        }
        if polled.config_data {
            let model = &self.member.model;
            if let Err(error) = ddi
                .config_data(&credentials, self.source, &model.name, &model.firmware)
                .await
            {
                events.push_back((self.failed(&shard, error), Instant::now()));
                return;
            }
        }
        let Some((path, action)) = polled.deployment else {
            return;
        };
        if self.link.job.as_ref().is_some_and(|job| job.campaign == action) {
            // The action taken already (running, or closed and offered until the server
            // hears so): not taken twice.
            return;
        }
        let deployment = match ddi.deployment(&credentials, self.source, &path).await {
            Ok(deployment) => deployment,
            Err(error) => {
                events.push_back((self.failed(&shard, error), Instant::now()));
                return;
            }
        };
        if let Some(started) = shard.operator.rollout_started_at(&self.member.group) {
            shard.record(Latency::OtaTake, started);
        }
        let job = Job {
            campaign: action,
            url: deployment.url,
            hash: ImageHash::Sha1(deployment.sha1),
            size: deployment.size,
            version: deployment.version,
        };
        let image = shard.image_for(&job);
        self.link.job = Some(Box::new(job));
        shard.count(Counter::OtaJobs);
        events.push_back((Event::OtaJob(image), Instant::now()));
    }

    /// Tells the server how the running update goes. A closing feedback that does not get
    /// through is kept for the next poll; `Some` is the event a lost server means.
    pub(super) async fn report_progress(&mut self, ddi: &Hawkbit, report: OtaReport) -> Option<Event> {
        let credentials = self.link.credentials.clone()?;
        let action = self.link.job.as_ref()?.campaign;
        let feedback = match report {
            // Proceeding when the download starts and when the installation does, then closed:
            // each is a request the server must answer, so the steps between go unreported.
            OtaReport::Downloading => Feedback::Proceeding("downloading"),
            OtaReport::Installing => Feedback::Proceeding("installing"),
            OtaReport::Verifying | OtaReport::Rebooting => return None,
            OtaReport::Succeeded => Feedback::Success,
            OtaReport::Failed => Feedback::Failure("image rejected: verification failed"),
            OtaReport::RolledBack => Feedback::Failure("new image failed to boot: rolled back to the previous slot"),
        };
        self.send_feedback(ddi, &credentials, action, feedback).await.err()
    }

    /// Sends feedback and records its latency; a closing one that fails is kept as owed.
    async fn send_feedback(
        &mut self,
        ddi: &Hawkbit,
        credentials: &Credentials,
        action: u64,
        feedback: Feedback,
    ) -> Result<(), Event> {
        let shard = Rc::clone(&self.shard);
        let started = Instant::now();
        let sent = Box::pin(ddi.feedback(credentials, self.source, action, feedback)).await;
        let state = self.link.ddi.get_or_insert_with(Box::default);
        match sent {
            Ok(()) => {
                shard.record(Latency::Feedback, started);
                state.pending = None;
                Ok(())
            }
            Err(error) => {
                // A client error will not change by asking again; anything else might.
                let retry = !matches!(error, DdiError::Status(400..=499));
                state.pending = (retry && feedback.closes()).then_some((action, feedback));
                Err(self.failed(&shard, error))
            }
        }
    }

    /// Counts a failed exchange and says what it means to the device: a server that refuses a
    /// device it knew retired it; anything else is a lost exchange, retried after a backoff.
    fn failed(&mut self, shard: &ShardCtx, error: DdiError) -> Event {
        let state = self.link.ddi.get_or_insert_with(Box::default);
        state.failed = true;
        match error {
            DdiError::Status(401 | 403) if state.known => {
                // Not an error of the server's: the operator retired the device, as the
                // reference backend's refused credentials say.
                shard.count(Counter::Decommissioned);
                return Event::Decommissioned;
            }
            DdiError::Http(error) => shard.count(super::download::http_error_counter(error)),
            DdiError::Status(status) => shard.count(Counter::for_http_status(status)),
            DdiError::Malformed => shard.count(Counter::ErrorsProtocol),
        }
        Event::ConnectionLost
    }
}
