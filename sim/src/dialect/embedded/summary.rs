//! What the reference backend holds at the end of a run: its view of the campaigns the
//! operator started (waves, jobs per state, halted or not), for `ota.exposed`,
//! `ota.halt.latency` and the report's campaign table, and its count of active devices, for
//! `devices.lost`. Both come from the operator API, read by the process that played the
//! operator.

use serde_json::Value;

use super::Embedded;
use crate::dialect::{BackendView, StartedCampaign, Summary, ViewCx};
use crate::report::figures::CampaignView;
use crate::transport::http::{Method, request_json};

impl Summary for Embedded {
    async fn view(&self, cx: ViewCx<'_>) -> BackendView {
        if !cx.operated {
            return BackendView::default();
        }
        let mut campaigns = Vec::new();
        for started in cx.campaigns {
            if let Ok(answer) = self.campaign(started.id).await {
                campaigns.push(campaign_view(started, &answer));
            }
        }
        let devices_active = match request_json(self.api, Method::GET, "/healthz", None).await {
            Ok((200, health)) => health["devices_active"].as_u64(),
            _ => None,
        };
        BackendView {
            campaigns,
            devices_active,
            ..BackendView::default()
        }
    }
}

/// A started campaign as the backend's `GET /api/v1/campaigns/{id}` answer describes it.
pub fn campaign_view(started: &StartedCampaign, answer: &Value) -> CampaignView {
    let campaign = &answer["campaign"];
    let mut jobs = [0; 6];
    let waves = answer["waves"].as_array().map_or(&[][..], Vec::as_slice);
    for wave in waves {
        for (slot, name) in jobs.iter_mut().zip(CampaignView::JOB_STATES) {
            *slot += wave[name].as_u64().unwrap_or(0);
        }
    }
    CampaignView {
        id: started.id,
        group: started.group.clone(),
        targeted: started.targeted,
        state: campaign["state"].as_str().unwrap_or("unknown").to_owned(),
        end_reason: campaign["end_reason"].as_str().map(str::to_owned),
        ended_at_ms: campaign["ended_at"].as_u64(),
        jobs,
        waves_started: waves.len() as u64,
        waves: waves.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_campaign_answer_sums_its_waves_jobs() {
        let started = StartedCampaign {
            id: 4,
            group: "sensors".into(),
            targeted: 200,
        };
        let answer = json!({
            "campaign": { "state": "halted", "end_reason": "wave 2 failed 30%", "ended_at": 1_700_000 },
            "waves": [
                { "targeted": 2, "succeeded": 2 },
                { "targeted": 20, "succeeded": 13, "rolled_back": 6, "failed": 1 },
            ],
        });
        let view = campaign_view(&started, &answer);
        assert_eq!((view.id, view.targeted, view.state.as_str()), (4, 200, "halted"));
        assert_eq!(view.jobs, [22, 0, 0, 15, 1, 6]);
        assert_eq!((view.waves_started, view.ended_at_ms), (2, Some(1_700_000)));
    }
}
