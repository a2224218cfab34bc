//! The plan: what each device of a scenario is (serial, model, group) and when it first wakes.
//!
//! Design: nothing here is materialized per device. `Plan::device(i)` computes device `i`
//! from the scenario seed and `i` alone, with its own ChaCha8 streams, so a plan of ten
//! million devices costs nothing until a device is asked for, and any shard (`--shard K/N`)
//! computes exactly the devices the unsharded plan would, with the same values.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use crate::model::{StreamId, device_rng, draw};
use crate::scenario::{DeviceModel, Loaded, Phase, Scenario};

/// A slice of the fleet for one process: device `i` belongs to shard `i % count`.
///
/// Striping rather than contiguous ranges gives every shard the same arrival profile, so N
/// shards each see 1/N of the load at every moment of the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// How many shards the fleet is split into.
    pub count: u32,
}

impl Shard {
    /// The whole fleet as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether device `index` belongs to this shard.
    pub fn owns(self, device: u64) -> bool {
        device % u64::from(self.count) == u64::from(self.index)
    }

    /// The first device index at or after `start` that this shard owns.
    pub fn first_from(self, start: u64) -> u64 {
        let count = u64::from(self.count);
        let offset = (u64::from(self.index) + count - start % count) % count;
        start.saturating_add(offset)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("expected K/N with 0 <= K < N, like 0/4, found \"{text}\"");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A half-open range of device indices, written `A..B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRange(pub Range<u64>);

impl FromStr for DeviceRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("expected a device index range A..B with A <= B, like 0..100, found \"{text}\"");
        let (a, b) = text.split_once("..").ok_or_else(bad)?;
        let start: u64 = a.trim().parse().map_err(|_| bad())?;
        let end: u64 = b.trim().parse().map_err(|_| bad())?;
        if start > end {
            return Err(bad());
        }
        Ok(Self(start..end))
    }
}

/// One planned device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDevice {
    /// Index in the fleet, `0..devices`.
    pub index: u64,
    /// Serial number: the model's prefix and a 64-bit value unique within the run.
    pub serial: String,
    /// Position of its entry in the scenario's mix (model and group).
    pub mix: usize,
    /// When it first wakes, from the start of the run.
    pub first_wakeup: Duration,
}

/// A mix entry resolved to its model.
#[derive(Debug, Clone)]
struct PlannedMix<'a> {
    model: &'a DeviceModel,
    group: &'a str,
    /// Sum of shares up to and including this entry.
    cumulative: f64,
}

/// The deterministic plan of a scenario.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    scenario: &'a Scenario,
    mix: Vec<PlannedMix<'a>>,
    window: Duration,
    serial_key: u64,
}

impl<'a> Plan<'a> {
    /// Plans a loaded scenario (models were checked to exist when it loaded).
    pub fn new(loaded: &'a Loaded) -> Self {
        let scenario = &loaded.scenario;
        let mut cumulative = 0.0;
        let mix = scenario
            .fleet
            .mix
            .iter()
            .filter_map(|entry| {
                cumulative += entry.share;
                let model = loaded.models.get(&entry.model)?;
                Some(PlannedMix {
                    model,
                    group: &entry.group,
                    cumulative,
                })
            })
            .collect();
        Self {
            scenario,
            mix,
            window: scenario.fleet.arrival.window(scenario.fleet.devices),
            serial_key: splitmix64(scenario.seed ^ 0x5EED_5E71_A15E_ED00),
        }
    }

    /// The scenario being planned.
    pub fn scenario(&self) -> &'a Scenario {
        self.scenario
    }

    /// The operator's phases, in time order.
    pub fn phases(&self) -> &'a [Phase] {
        &self.scenario.phases
    }

    /// How many devices the fleet has.
    pub fn devices(&self) -> u64 {
        self.scenario.fleet.devices
    }

    /// The model of a planned device.
    pub fn model(&self, device: &PlannedDevice) -> &'a DeviceModel {
        self.mix[device.mix].model
    }

    /// The model of the scenario's mix named `name`.
    pub fn model_named(&self, name: &str) -> Option<&'a DeviceModel> {
        self.mix.iter().find(|m| m.model.name == name).map(|m| m.model)
    }

    /// The group of a planned device.
    pub fn group(&self, device: &PlannedDevice) -> &'a str {
        self.mix[device.mix].group
    }

    /// Device `index`, computed from the seed and the index alone.
    pub fn device(&self, index: u64) -> PlannedDevice {
        let mix = self.mix_of(index);
        let prefix = &self.mix[mix].model.serial_prefix;
        PlannedDevice {
            index,
            serial: serial(prefix, self.serial_key, index),
            mix,
            first_wakeup: self.first_wakeup(index),
        }
    }

    /// The position of device `index`'s entry in the mix.
    pub fn mix_of(&self, index: u64) -> usize {
        let pick = draw::unit(&mut device_rng(self.scenario.seed, index, StreamId::MODEL));
        // The last entry takes any rounding remainder of the shares.
        self.mix
            .iter()
            .position(|m| pick < m.cumulative)
            .unwrap_or(self.mix.len().saturating_sub(1))
    }

    /// When device `index` arrives, from the start of the run.
    pub fn first_wakeup(&self, index: u64) -> Duration {
        if self.scenario.fleet.arrival.poisson() {
            // Each device draws its own arrival uniformly over the window: together they form
            // a Poisson process conditioned on the fleet size, computed without knowing any
            // other device, so every shard agrees.
            self.window.mul_f64(draw::unit(&mut device_rng(
                self.scenario.seed,
                index,
                StreamId::ARRIVAL,
            )))
        } else {
            self.window.mul_f64(index as f64 / self.devices() as f64)
        }
    }

    /// The devices of `range` (clamped to the fleet) that `shard` owns, in index order.
    pub fn iter(&self, range: Range<u64>, shard: Shard) -> impl Iterator<Item = PlannedDevice> + '_ {
        let end = range.end.min(self.devices());
        let start = shard.first_from(range.start);
        (start..end)
            .step_by(shard.count as usize)
            .map(|index| self.device(index))
    }
}

/// The serial of device `index`: the model's prefix and a keyed bijection of the index, so
/// serials are unique by construction and anyone holding the key can compute one again.
pub fn serial(prefix: &str, key: u64, index: u64) -> String {
    let mut serial = String::with_capacity(prefix.len() + 17);
    write_serial(&mut serial, prefix, key, index);
    serial
}

/// Writes the serial of device `index` (see [`serial`]) to `out`: the prefix, a dash and 16
/// upper-case hex digits, as `{prefix}-{:016X}` formats them, without the formatting
/// machinery (a broker's device writes its serial into every report's topic).
pub fn write_serial(out: &mut String, prefix: &str, key: u64, index: u64) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let id = splitmix64(index ^ key);
    let mut hex = [0; 16];
    for (k, digit) in hex.iter_mut().enumerate() {
        // Each nibble is below 16: the index is in bounds.
        *digit = DIGITS[(id >> (60 - 4 * k) & 0xF) as usize];
    }
    out.push_str(prefix);
    out.push('-');
    // Hex digits are ASCII, so always UTF-8.
    out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
}

impl Plan<'_> {
    /// The key of the serial bijection (see [`serial`]).
    pub fn serial_key(&self) -> u64 {
        self.serial_key
    }
}

/// SplitMix64's finalizer: a bijection on u64, so distinct indices always get distinct
/// serials, while the values look random and change with the seed.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_stripe() {
        let shard: Shard = "1/4".parse().expect("valid");
        assert_eq!(shard, Shard { index: 1, count: 4 });
        assert!(shard.owns(5) && !shard.owns(4));
        assert_eq!(shard.first_from(0), 1);
        assert_eq!(shard.first_from(2), 5);
        assert_eq!(shard.first_from(5), 5);
        for bad in ["4/4", "1/0", "a/b", "3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_parse() {
        assert_eq!("10..20".parse::<DeviceRange>(), Ok(DeviceRange(10..20)));
        assert!("20..10".parse::<DeviceRange>().is_err());
        assert!("10-20".parse::<DeviceRange>().is_err());
    }

    #[test]
    fn serial_mixing_is_a_bijection_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u64 {
            assert!(seen.insert(splitmix64(i ^ 12345)), "collision at {i}");
        }
    }

    #[test]
    fn serials_are_the_prefix_and_sixteen_upper_hex_digits() {
        for (key, index) in [(0, 0), (12345, 7), (u64::MAX, 1), (0x0123_4567_89AB_CDEF, 1 << 40)] {
            let mut written = String::from("kept:");
            write_serial(&mut written, "PM", key, index);
            assert_eq!(written, format!("kept:PM-{:016X}", splitmix64(index ^ key)));
        }
        // A value whose leading digits are zeros keeps them.
        let zeros = (0..u64::MAX)
            .find(|i| splitmix64(*i) < 1 << 56)
            .expect("a small value within a few hundred tries");
        assert_eq!(serial("S", 0, zeros), format!("S-{:016X}", splitmix64(zeros)));
        assert!(serial("S", 0, zeros).starts_with("S-00"));
    }
}
