//! What a dialect's operator side is given to play a phase and what it answers, and what the
//! operators share: the seeded pick of devices a command or a decommission reaches, and the
//! image a campaign uploads. Which devices a phase picks depends on the seed, the phase and
//! the serials only, so a run picks the same devices whatever its timing or shard count.

use serde_json::Value;

use super::operator_log::{OperatorLog, StartedCampaign};
use crate::model::{Rng, StreamId, device_rng};
use crate::scenario::{Phase, Scenario};

/// One phase to play, and what the operator needs to play it.
#[derive(Debug, Clone, Copy)]
pub struct PhaseCx<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The phase's place in the scenario: it seeds the phase's picks and its image.
    pub index: usize,
    /// The phase.
    pub phase: &'a Phase,
    /// The groups it targets.
    pub groups: &'a [String],
    /// Where the operator notes what it does, before it calls the backend, so devices
    /// answering measure from that moment.
    pub log: &'a OperatorLog,
}

/// What a phase did, for the summary and the progress line.
#[derive(Debug, Default)]
pub struct Played {
    /// What the backend answered, in short.
    pub detail: Value,
    /// Calls that failed, with why.
    pub errors: Vec<String>,
    /// Campaigns it started.
    pub campaigns: Vec<StartedCampaign>,
    /// Devices it decommissioned.
    pub decommissioned: u64,
}

/// Picks `share` of `candidates` (id, serial) for phase `k`: ranked by a keyed hash of the
/// serial, the first taken; returns their ids.
pub fn pick(mut candidates: Vec<(String, String)>, seed: u64, k: usize, share: f64) -> Vec<String> {
    let key = seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    candidates.sort_by_key(|(_, serial)| rank(key, serial));
    let take = (share * candidates.len() as f64).ceil() as usize;
    candidates.into_iter().take(take).map(|(id, _)| id).collect()
}

/// A keyed hash of a serial (FNV-1a, then a splitmix finish), to rank devices.
fn rank(key: u64, serial: &str) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325 ^ key;
    for byte in serial.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// The image a campaign uploads: `size` bytes, the first line naming its `version`
/// (`fleetsim-image VERSION`, as an LwM2M device that takes it pushed reads it), the rest
/// drawn from the seed and the phase, so the same scenario uploads the same image (and a
/// second run finds it already stored). An image shorter than its first line is cut.
pub fn firmware_image(seed: u64, k: usize, version: &str, size: u64) -> Vec<u8> {
    let mut image = vec![0u8; usize::try_from(size).unwrap_or(0)];
    let mut rng = device_rng(seed, u64::MAX, StreamId::phase(u32::try_from(k).unwrap_or(u32::MAX)));
    rng.fill_bytes(&mut image);
    let header = format!("fleetsim-image {version}\n");
    let room = header.len().min(image.len());
    image[..room].copy_from_slice(&header.as_bytes()[..room]);
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_depend_on_the_key_and_serial_only() {
        assert_eq!(rank(1, "SN-1"), rank(1, "SN-1"));
        assert_ne!(rank(1, "SN-1"), rank(2, "SN-1"));
        assert_ne!(rank(1, "SN-1"), rank(1, "SN-2"));
    }

    #[test]
    fn a_pick_is_the_same_share_of_the_same_serials_in_any_order() {
        let devices: Vec<(String, String)> = (0..100).map(|i| (format!("d-{i}"), format!("SN-{i}"))).collect();
        let mut reversed = devices.clone();
        reversed.reverse();
        let picked = pick(devices.clone(), 7, 3, 0.1);
        assert_eq!(picked.len(), 10);
        assert_eq!(picked, pick(reversed, 7, 3, 0.1), "order of listing does not matter");
        assert_ne!(picked, pick(devices, 7, 4, 0.1), "another phase picks others");
    }

    #[test]
    fn the_same_phase_uploads_the_same_image() {
        assert_eq!(firmware_image(7, 2, "2.0", 1000), firmware_image(7, 2, "2.0", 1000));
        assert_ne!(firmware_image(7, 2, "2.0", 1000), firmware_image(7, 3, "2.0", 1000));
        assert_eq!(firmware_image(7, 2, "2.0", 1000).len(), 1000);
        assert!(firmware_image(7, 2, "2.0", 1000).starts_with(b"fleetsim-image 2.0\n"));
        assert_eq!(firmware_image(7, 2, "2.0", 4), b"flee");
    }
}
