//! The campaign engine: one task per running campaign.
//!
//! Design: the targets are the group's active devices in id order, fixed when the campaign
//! starts. Wave k sends an OTA job to the devices between the previous wave's cumulative share
//! and its own, records them, and soaks; while it soaks the engine checks, every tick, the
//! share of the wave that failed or rolled back, and halts the campaign the moment it passes
//! the threshold (recording when and why). A wave that soaks clean lets the next one start;
//! after the last, the campaign completes. Everything it decides is recorded in the registry
//! first, so a restarted backend resumes running campaigns from their current wave.

use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::firmware::{Firmware, FirmwareStore};
use crate::gateway::{Gateway, topics};
use crate::registry::{CampaignRecord, Registry, RegistryError};

/// How often a soaking wave's failure rate is checked: the halt latency is at most this
/// plus a registry read.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Starts and tracks campaign tasks.
#[derive(Debug, Clone)]
pub struct CampaignRunner {
    registry: Registry,
    gateway: Gateway,
    firmware: FirmwareStore,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl CampaignRunner {
    /// A runner whose tasks stop at `shutdown`.
    pub fn new(registry: Registry, gateway: Gateway, firmware: FirmwareStore, shutdown: CancellationToken) -> Self {
        Self {
            registry,
            gateway,
            firmware,
            tracker: TaskTracker::new(),
            shutdown,
        }
    }

    /// Runs `campaign` in the background; devices download from `{download_base}/{version}`.
    pub fn spawn(&self, campaign: CampaignRecord, download_base: &str) {
        let Some(image) = self.firmware.get(&campaign.version) else {
            // Checked when the campaign was created; an image cannot disappear afterwards.
            return;
        };
        let url = format!("{download_base}/{}", image.version);
        let engine = Engine {
            runner: self.clone(),
            campaign,
            image,
            url,
        };
        self.tracker.spawn(async move {
            // A registry failure stops the task; the campaign stays `running` and resumes when
            // the backend restarts.
            let _ = engine.run().await;
        });
    }

    /// Waits for every campaign task to stop (after shutdown).
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

struct Engine {
    runner: CampaignRunner,
    campaign: CampaignRecord,
    image: Firmware,
    url: String,
}

impl Engine {
    async fn run(self) -> Result<(), RegistryError> {
        let registry = &self.runner.registry;
        let id = self.campaign.id;
        let group = self.campaign.group.clone();
        let reader = registry.clone();
        let targets = tokio::task::spawn_blocking(move || reader.campaign_targets(&group))
            .await
            .map_err(|_| RegistryError::Closed)??;
        let resume_from = usize::try_from(self.campaign.current_wave.max(0)).unwrap_or(0);
        let mut start = wave_end(&self.campaign.waves, resume_from.checked_sub(1), targets.len());
        for (wave, _) in self.campaign.waves.iter().enumerate().skip(resume_from) {
            let end = wave_end(&self.campaign.waves, Some(wave), targets.len()).max(start);
            let devices = targets[start..end].to_vec();
            if !registry.start_wave(id, wave as u64, devices.clone()).await? {
                // Halted by an operator between two waves.
                return Ok(());
            }
            for device in &devices {
                self.send_job(device);
            }
            if !self.soak(wave).await? {
                return Ok(());
            }
            start = end;
        }
        registry
            .end_campaign(id, false, "every wave soaked below the halt threshold", false)
            .await?;
        Ok(())
    }

    /// Hands a device its job (live, or queued in its persistent session).
    fn send_job(&self, device: &str) {
        let job = serde_json::json!({
            "campaign": self.campaign.id,
            "version": self.image.version,
            "size": self.image.size,
            "sha256": self.image.sha256,
            "url": self.url,
        });
        let publish = Publish::new(topics::ota_job(device), QoS::AtLeastOnce, job.to_string().into_bytes());
        let _ = self.runner.gateway.sessions().deliver(device, publish);
    }

    /// Soaks wave `wave`; false when the campaign ended meanwhile (halted, or shutdown).
    async fn soak(&self, wave: usize) -> Result<bool, RegistryError> {
        let registry = &self.runner.registry;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.campaign.soak_ms);
        loop {
            tokio::select! {
                () = tokio::time::sleep(CHECK_EVERY) => {}
                () = self.runner.shutdown.cancelled() => return Ok(false),
            }
            let reader = registry.clone();
            let id = self.campaign.id;
            let (record, counts) = tokio::task::spawn_blocking(move || {
                Ok::<_, RegistryError>((reader.campaign(id)?, reader.wave_counts(id)?))
            })
            .await
            .map_err(|_| RegistryError::Closed)??;
            if record.is_none_or(|c| c.state != "running") {
                // An operator halted it.
                return Ok(false);
            }
            let rate = counts
                .iter()
                .find(|c| c.wave == wave as u64)
                .map_or(0.0, |c| c.failure_rate());
            if rate > self.campaign.halt_above {
                let reason = format!(
                    "wave {} of {}: {:.1}% failed or rolled back, above the {:.1}% threshold",
                    wave + 1,
                    self.campaign.waves.len(),
                    rate * 100.0,
                    self.campaign.halt_above * 100.0
                );
                registry.end_campaign(id, true, &reason, false).await?;
                return Ok(false);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(true);
            }
        }
    }
}

/// Index one past the last target of wave `wave` (`None`: before the first wave). Waves are
/// cumulative shares; rounding up means a tiny first wave still reaches one device.
fn wave_end(waves: &[f64], wave: Option<usize>, targets: usize) -> usize {
    let Some(share) = wave.and_then(|w| waves.get(w)) else {
        return 0;
    };
    ((share * targets as f64).ceil() as usize).min(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_cover_every_target_once_and_start_small() {
        let waves = [0.01, 0.1, 0.5, 1.0];
        let ends: Vec<usize> = (0..4).map(|w| wave_end(&waves, Some(w), 1000)).collect();
        assert_eq!(ends, vec![10, 100, 500, 1000]);
        assert_eq!(
            wave_end(&waves, Some(0), 7),
            1,
            "a 1% wave of 7 devices still reaches one"
        );
        assert_eq!(wave_end(&waves, None, 1000), 0);
        assert_eq!(wave_end(&[0.5], Some(0), 0), 0);
    }
}
