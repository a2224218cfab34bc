//! A polling device against a hawkBit DDI server: each report is a poll, whose answer sets
//! the pace, asks the device to describe itself, or offers an update; the update's progress
//! goes back as feedback. What each exchange measures is recorded here: `poll.latency` from
//! the intended poll time, `feedback.latency`, `ota.take.latency` from the operator's rollout,
//! HTTP errors by status, and retries.
//!
//! Design: the device core knows nothing of HTTP. A poll's answer becomes the events the core
//! acts on (`ReportEvery` with the server's interval in simulated time, `OtaJob` for a new
//! action), and a lost exchange becomes `ConnectionLost`, so the core backs off and polls
//! again as it reconnects a dropped link. Feedback that closes an action is the server's only
//! record of the outcome, so a closing feedback that fails for a network or server error is
//! kept and sent again before the next poll; a device never gives up on telling the server.

use std::net::SocketAddr;

use serde_json::json;

use super::Hawkbit;
use super::ddi::{DdiAuth, DdiError, Feedback, Requester};
use crate::device::{Event, OtaReport};
use crate::dialect::firmware::{Attempt, ImageHash, Job, Update};
use crate::dialect::{Answer, Arrival, DeviceCx, Devices, Fault, Inbox, Link, Provisioned, Report, Session};
use crate::metrics::recorder::{Counter, Latency};
use crate::transport::http::{HttpError, Method};

/// What a polling device holds between exchanges. Its token is derived again for each
/// request, so it keeps none.
#[derive(Debug, Default)]
pub struct Device {
    /// Closing feedback the server has not taken yet: the action and the outcome.
    pending: Option<(u64, Feedback)>,
    /// The last exchange failed: the next one is a retry.
    failed: bool,
    /// The server has answered a poll of this device: a refusal now means it was retired.
    known: bool,
    /// The polling interval the core was last told, simulated milliseconds (0: none yet).
    told_ms: u32,
    /// The update in progress, or the last one (its action is not taken twice).
    update: Option<Box<Update>>,
}

impl Devices for Hawkbit {
    type Kept = ();
    type Device = Device;

    fn device_addr(&self) -> SocketAddr {
        self.addr
    }

    fn wake(&self, _kept: Option<()>) -> Device {
        Device::default()
    }

    fn keep(&self, _device: Device) -> Option<()> {
        Some(())
    }

    /// A device's credentials are its controller id (the serial) and target token. With a
    /// management API the target is registered there first, with its token and its group as
    /// its feed, as a factory or installer would; without one the server must know it already.
    async fn provision(&self, cx: &DeviceCx<'_>, _device: &mut Device) -> Result<Provisioned, Fault> {
        let Some(management) = &self.management else {
            return Ok(Provisioned::Given);
        };
        let serial = cx.serial();
        let mut body = json!({ "devices": [serial], "feed": cx.group });
        if let DdiAuth::TargetToken(secret) = &self.auth {
            body["auth_token"] = json!(Hawkbit::target_token(secret, &serial));
        }
        let answer = management
            .request(cx.source, Method::PUT, "/api/v1/devices", Some(&body))
            .await;
        match answer {
            Ok((200..=299, _)) => Ok(Provisioned::Exchanged),
            Ok((401 | 403, _)) => Err(Fault::Auth),
            Ok(_) | Err(HttpError::Status(_) | HttpError::Protocol(_)) => Err(Fault::Protocol),
            Err(error) => Err(error.into()),
        }
    }

    /// A polling device holds no connection: its polls find out whether the server is there.
    async fn connect(&self, _cx: &DeviceCx<'_>, _device: &mut Device, _session: Session) -> Result<Link, Fault> {
        Ok(Link::None)
    }

    /// A polling device's report is a poll, whose answer may mean several events.
    fn report<'a>(
        &'a self,
        cx: &DeviceCx<'a>,
        device: &'a mut Device,
        _link: &'a mut Link,
        report: Report<'_>,
        inbox: &'a mut Inbox,
    ) -> impl Future<Output = ()> + use<'a> {
        let (cx, intended) = (*cx, report.intended);
        async move {
            Box::pin(self.poll(&cx, device, intended, inbox)).await;
        }
    }

    /// DDI has no config push and no commands: only an update's progress is answered.
    async fn answer(
        &self,
        cx: &DeviceCx<'_>,
        device: &mut Device,
        _link: &mut Link,
        answer: Answer,
        inbox: &mut Inbox,
    ) {
        let Answer::Ota(report) = answer else { return };
        if let Err(event) = Box::pin(self.report_progress(cx, device, report)).await {
            inbox.push(event);
        }
    }

    async fn download(&self, cx: &DeviceCx<'_>, device: &mut Device, from: u64, to: u64) -> Attempt {
        let Some(update) = device.update.as_mut() else {
            return Attempt::Held(from);
        };
        let authorization = self.authorization(&cx.serial());
        update.download(cx, authorization.as_deref(), from, to).await
    }

    /// A polling device holds no link for anything to arrive on: a poll's answer is read by
    /// the poll.
    fn read(&self, cx: &DeviceCx<'_>, _device: &mut Device, _link: &Link, _arrival: Arrival<'_>) -> Option<Event> {
        cx.count(Counter::ErrorsProtocol);
        None
    }
}

impl Hawkbit {
    /// Polls, sends any feedback still owed first, and queues what the answer means.
    async fn poll(&self, cx: &DeviceCx<'_>, device: &mut Device, intended: tokio::time::Instant, inbox: &mut Inbox) {
        let serial = cx.serial();
        let who = Requester {
            id: &serial,
            source: cx.source,
        };
        if device.failed {
            cx.count(Counter::Retries);
        }
        if let Some((action, feedback)) = device.pending {
            cx.count(Counter::Retries);
            if let Err(event) = self.send_feedback(cx, device, who, action, feedback).await {
                // A lost exchange, or a server that retired the device meanwhile.
                inbox.push(event);
                return;
            }
        }
        let polled = match Box::pin(self.poll_base(who)).await {
            Ok(polled) => polled,
            Err(error) => {
                inbox.push(failed(cx, device, error));
                return;
            }
        };
        cx.record(Latency::Poll, intended);
        cx.count(Counter::Polls);
        self.imposed.saw(polled.sleep);
        let sim = cx.sim_span(polled.sleep);
        let ms = u32::try_from(sim.as_millis()).unwrap_or(u32::MAX).max(1);
        device.failed = false;
        device.known = true;
        if device.told_ms != ms {
            // The core keeps the pace it was told: only a new one is news.
            device.told_ms = ms;
            inbox.push(Event::ReportEvery { ms });
        }
        if polled.config_data
            && let Err(error) = self.config_data(who, &cx.model.name, &cx.model.firmware).await
        {
            inbox.push(failed(cx, device, error));
            return;
        }
        let Some((path, action)) = polled.deployment else {
            return;
        };
        if device
            .update
            .as_ref()
            .is_some_and(|update| update.job.campaign == action)
        {
            // The action taken already (running, or closed and offered until the server
            // hears so): not taken twice.
            return;
        }
        let deployment = match self.deployment(who, &path).await {
            Ok(deployment) => deployment,
            Err(error) => {
                inbox.push(failed(cx, device, error));
                return;
            }
        };
        if let Some(started) = cx.shared.marks.rollout_started_at(cx.group) {
            cx.record(Latency::OtaTake, started);
        }
        let job = Job {
            campaign: action,
            url: deployment.url,
            hash: ImageHash::Sha1(deployment.sha1),
            size: deployment.size,
            version: deployment.version,
        };
        let image = cx.image_for(&job.version, job.size);
        device.update = Some(Update::new(job));
        cx.count(Counter::OtaJobs);
        inbox.push(Event::OtaJob(image));
    }

    /// Tells the server how the running update goes. A closing feedback that does not get
    /// through is kept for the next poll; `Err` is the event a lost server means.
    async fn report_progress(&self, cx: &DeviceCx<'_>, device: &mut Device, report: OtaReport) -> Result<(), Event> {
        let Some(action) = device.update.as_ref().map(|update| update.job.campaign) else {
            return Ok(());
        };
        let feedback = match report {
            // Proceeding when the download starts and when the installation does, then closed:
            // each is a request the server must answer, so the steps between go unreported.
            OtaReport::Downloading => Feedback::Proceeding("downloading"),
            OtaReport::Installing => Feedback::Proceeding("installing"),
            // A hawkBit device installs at once: it holds no image (Downloaded) for an order.
            OtaReport::Verifying | OtaReport::Rebooting | OtaReport::Downloaded => return Ok(()),
            OtaReport::Succeeded => Feedback::Success,
            OtaReport::Failed => Feedback::Failure("image rejected: verification failed"),
            OtaReport::Unavailable => Feedback::Failure("image not found: the server answered 404"),
            OtaReport::RolledBack => Feedback::Failure("new image failed to boot: rolled back to the previous slot"),
        };
        let serial = cx.serial();
        let who = Requester {
            id: &serial,
            source: cx.source,
        };
        self.send_feedback(cx, device, who, action, feedback).await
    }

    /// Sends feedback and records its latency; a closing one that fails is kept as owed.
    async fn send_feedback(
        &self,
        cx: &DeviceCx<'_>,
        device: &mut Device,
        who: Requester<'_>,
        action: u64,
        feedback: Feedback,
    ) -> Result<(), Event> {
        let started = tokio::time::Instant::now();
        match Box::pin(self.feedback(who, action, feedback)).await {
            Ok(()) => {
                cx.record(Latency::Feedback, started);
                device.pending = None;
                Ok(())
            }
            Err(error) => {
                // A client error will not change by asking again; anything else might.
                let retry = !matches!(error, DdiError::Status(400..=499));
                device.pending = (retry && feedback.closes()).then_some((action, feedback));
                Err(failed(cx, device, error))
            }
        }
    }
}

/// Counts a failed exchange and says what it means to the device: a server that refuses a
/// device it knew retired it; anything else is a lost exchange, retried after a backoff.
fn failed(cx: &DeviceCx<'_>, device: &mut Device, error: DdiError) -> Event {
    device.failed = true;
    let fault = match error {
        // Not an error of the server's: the operator retired the device, as the reference
        // backend's refused credentials say.
        DdiError::Status(401 | 403) if device.known => Fault::Retired,
        DdiError::Http(error) => error.into(),
        DdiError::Status(status) => Fault::Status(status),
        DdiError::Malformed => Fault::Protocol,
    };
    cx.count(fault.counter());
    if fault == Fault::Retired {
        Event::Decommissioned
    } else {
        Event::ConnectionLost
    }
}
