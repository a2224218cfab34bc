//! Raw serde structs that mirror the two file formats key for key. They carry no meaning
//! beyond the shape of the file: [`super::validate`] turns them into the typed scenario the
//! engine runs. Every struct denies unknown keys, so a typo is an error, not a silent default.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::values::{DurationValue, PercentValue, RateValue, ShareValue, SizeValue};
use crate::model::PayloadFormat;

/// A scenario file (`scenarios/*.toml`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Name, seed, duration and time scale of the run.
    pub scenario: ScenarioSection,
    /// The backend the fleet drives; the embedded reference backend when omitted.
    #[serde(default)]
    pub backend: Option<BackendSection>,
    /// How many devices, which models, and how they arrive.
    pub fleet: FleetSection,
    /// The operator's timeline: config pushes, OTA campaigns, outages, decommissioning.
    #[serde(default)]
    pub phase: Vec<PhaseSection>,
    /// Pass/fail gates: metric (with a statistic for histograms) to a comparison, e.g.
    /// `"publish.latency.p99" = "<= 50ms"`.
    #[serde(default)]
    pub gates: BTreeMap<String, String>,
}

/// `[scenario]`: what the run is called and how long it lasts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    /// Scenario name; report folders are named after it.
    pub name: String,
    /// What the scenario exercises, for people reading the report.
    #[serde(default)]
    pub description: Option<String>,
    /// The seed every device's random draws derive from.
    pub seed: u64,
    /// Wall-clock length of the run; phase times count from its start.
    pub duration: DurationValue,
    /// Simulated seconds per real second for device models (battery, link, telemetry).
    #[serde(default)]
    pub time_scale: Option<f64>,
    /// The real-time grid devices' wake-ups and arrivals fall on (rounded down to it), so that those due
    /// together wake in one turn of their shard's thread: `4ms` when omitted, `0s` for none,
    /// at most `100ms`. Latencies run from the instants on the grid.
    #[serde(default)]
    pub wake_grid: Option<DurationValue>,
    /// Folder of device models, relative to this file; `../device-models` when omitted.
    #[serde(default)]
    pub models: Option<String>,
}

/// `[backend]`: which dialect to speak and where. Besides `kind`, `url`, `api` and
/// `token_env`, its keys belong to dialects: each dialect checks its own (`dialect::Keys`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// The dialect: `embedded`, `mqtt`, `hawkbit`, `lwm2m`, `thingsboard` or `aws-iot`.
    pub kind: BackendKind,
    /// Device-side endpoint, e.g. `mqtt://127.0.0.1:1883`.
    #[serde(default)]
    pub url: Option<String>,
    /// For the `mqtt` dialect: more endpoints of the same broker cluster. Devices spread over
    /// `url` and these by a stable hash of their serial, as they would over a cluster's nodes.
    #[serde(default)]
    pub cluster: Option<Vec<String>>,
    /// Operator-side API base URL, e.g. `http://127.0.0.1:8080`.
    #[serde(default)]
    pub api: Option<String>,
    /// Name of the environment variable holding the operator or device credential; secrets
    /// never live in scenario files or reports.
    #[serde(default)]
    pub token_env: Option<String>,
    /// For `kind = "mqtt"`: the topic devices publish telemetry to, with placeholders
    /// `{serial}`, `{index}`, `{model}` and `{group}`; `fleetsim/{group}/{serial}/telemetry`
    /// when omitted.
    #[serde(default)]
    pub telemetry_topic: Option<String>,
    /// For the `mqtt` dialect: the topic each device subscribes to (QoS 1) for messages sent
    /// to it, with the same placeholders; `fleetsim/{group}/{serial}/commands` when omitted.
    #[serde(default)]
    pub command_topic: Option<String>,
    /// For the `hawkbit` dialect: the DDI tenant in every device path; `DEFAULT` when omitted.
    #[serde(default)]
    pub tenant: Option<String>,
    /// For the `hawkbit` dialect: how devices authenticate. `target-token` (the default): each
    /// device its own token, derived from the secret in `token_env`; `gateway-token`: one
    /// token for all, the value of `token_env`; `none`.
    #[serde(default)]
    pub device_auth: Option<DeviceAuth>,
    /// For the `hawkbit` dialect: the environment variable holding the management API's user.
    #[serde(default)]
    pub user_env: Option<String>,
    /// For the `hawkbit` dialect: the environment variable holding that user's password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// For an `mqtts://` url: how devices speak TLS.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// For the `lwm2m` dialect: devices register over DTLS with pre-shared keys.
    #[serde(default)]
    pub psk: Option<PskSection>,
    /// For the `lwm2m` dialect: devices bootstrap first (LwM2M's client-initiated bootstrap):
    /// the server at `url`, or the reference backend's LwM2M front, tells each device where
    /// to register and with what key, and it registers there.
    #[serde(default)]
    pub bootstrap: Option<bool>,
}

/// `[backend.psk]`: LwM2M devices register over DTLS 1.2 with a pre-shared key, their
/// endpoint name (serial) as the PSK identity. The keys' secrets come from environment
/// variables: secrets never live in scenario files or reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PskSection {
    /// The environment variable holding the fleet's secret: each device's key is the first 16
    /// bytes of HMAC-SHA256(secret, serial) as 32 lowercase hex characters (the characters
    /// are the key's bytes), as `fleetsim backend --lwm2m-psk-secret` makes them. For the
    /// reference backend in this process it may be left out (the run makes one from the seed).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The environment variable holding one key for every device (its text is the key's
    /// bytes), for a server that gives a whole fleet one key.
    #[serde(default)]
    pub key_env: Option<String>,
}

/// `[backend.tls]`: how devices speak TLS to an `mqtts://` backend: the CA the server's
/// certificate must chain to, and the fleet CA their own certificates come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of the CA certificates the server's certificate must chain to, relative to the
    /// scenario file (`fleetsim ca` writes `ca.pem`). Needed for every backend but the
    /// reference backend run in process, whose CA the run makes.
    #[serde(default)]
    pub ca: Option<String>,
    /// The name the server's certificate must carry, also sent as SNI; the url's host when
    /// omitted.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Folder of the fleet CA (`ca.pem` and `ca.key`, as `fleetsim ca` writes them) that
    /// issues each device its own certificate, relative to the scenario file. Without it
    /// devices present no certificate.
    #[serde(default)]
    pub fleet_ca: Option<String>,
    /// Each device's key: `ecdsa-p256` (the default; derived from the seed and the serial)
    /// or `rsa-2048` (generated at the device's first connect).
    #[serde(default)]
    pub device_key: Option<DeviceKeyType>,
    /// `on` (the default): a device resumes its own last session when it connects again;
    /// `off`: every connect is a full handshake.
    #[serde(default)]
    pub resumption: Option<Switch>,
    /// The TLS versions devices offer: `["1.2", "1.3"]` when omitted.
    #[serde(default)]
    pub versions: Option<Vec<TlsVersion>>,
    /// The last day device certificates are valid, `YYYY-MM-DD` (a day in the past makes
    /// expired certificates, to check that the server refuses them); a year from when each
    /// is made when omitted.
    #[serde(default)]
    pub device_cert_not_after: Option<String>,
    /// How devices of the reference backend log in over TLS: `token` (the default; the id and
    /// token issued at provisioning) or `certificate` (each device sends a certificate signing
    /// request with its provisioning request, the backend's CA signs it, and the device logs
    /// in with that certificate; its key never leaves it). Only for `kind = "embedded"`.
    #[serde(default)]
    pub credentials: Option<CredentialKind>,
}

/// What a device logs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// The id and token issued at provisioning.
    Token,
    /// A certificate the backend's CA signed from the device's own request.
    Certificate,
}

/// A device key's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum DeviceKeyType {
    /// ECDSA on P-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA, 2048 bits.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

/// A setting that is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// A TLS version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    Tls13,
}

impl BackendSection {
    /// The section with only `kind` set: the reference backend in process, when a scenario
    /// has no `[backend]`.
    pub fn of(kind: BackendKind) -> Self {
        Self {
            kind,
            url: None,
            cluster: None,
            api: None,
            token_env: None,
            telemetry_topic: None,
            command_topic: None,
            tenant: None,
            device_auth: None,
            user_env: None,
            password_env: None,
            tls: None,
            psk: None,
            bootstrap: None,
        }
    }

    /// The dialects' keys this section sets, by name.
    pub fn dialect_keys(&self) -> impl Iterator<Item = &'static str> {
        [
            ("cluster", self.cluster.is_some()),
            ("telemetry_topic", self.telemetry_topic.is_some()),
            ("command_topic", self.command_topic.is_some()),
            ("tenant", self.tenant.is_some()),
            ("device_auth", self.device_auth.is_some()),
            ("user_env", self.user_env.is_some()),
            ("password_env", self.password_env.is_some()),
            ("tls", self.tls.is_some()),
            ("psk", self.psk.is_some()),
            ("bootstrap", self.bootstrap.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
    }
}

/// How hawkBit DDI devices authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceAuth {
    /// `Authorization: TargetToken ...`, one token per device.
    TargetToken,
    /// `Authorization: GatewayToken ...`, one token for the fleet.
    GatewayToken,
    /// No `Authorization` header.
    None,
}

/// The backend dialects a scenario may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// fleetsim's own reference backend: in-process, or standalone when `url` is given.
    Embedded,
    /// Any MQTT 3.1.1/5 broker (device side only).
    Mqtt,
    /// A hawkBit DDI server.
    Hawkbit,
    /// An LwM2M server over CoAP.
    Lwm2m,
    /// ThingsBoard's MQTT device API.
    Thingsboard,
    /// AWS IoT Core (fleet provisioning, shadow, jobs).
    AwsIot,
}

impl BackendKind {
    /// The `kind` as files write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Mqtt => "mqtt",
            Self::Hawkbit => "hawkbit",
            Self::Lwm2m => "lwm2m",
            Self::Thingsboard => "thingsboard",
            Self::AwsIot => "aws-iot",
        }
    }

    /// The protocol this dialect's devices speak.
    pub fn device_protocol(self) -> ProtocolKind {
        match self {
            Self::Embedded | Self::Mqtt | Self::Thingsboard | Self::AwsIot => ProtocolKind::Mqtt,
            Self::Hawkbit => ProtocolKind::Http,
            Self::Lwm2m => ProtocolKind::Coap,
        }
    }
}

/// `[fleet]`: the devices.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// How many devices the run plans.
    pub devices: u64,
    /// How devices arrive: `{ ramp = "30s" }` or `{ rate = "2000/s", poisson = true }`.
    pub arrival: ArrivalSection,
    /// Local source addresses to spread connections over, as a CIDR block (`127.0.0.0/24`).
    #[serde(default)]
    pub source_addrs: Option<String>,
    /// Which device models make up the fleet, with shares that sum to 1.
    pub mix: Vec<MixSection>,
    /// What a `--workers` run does when a worker process dies: `"continue"` (the default: its
    /// devices count as lost, the others finish) or `"stop"` (the others are stopped, each
    /// writing its report, and the run ends incomplete).
    #[serde(default)]
    pub on_worker_loss: Option<WorkerLoss>,
}

/// `fleet.on_worker_loss`: the run's rule when a worker process dies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerLoss {
    /// The other workers finish the run; the dead one's devices count as lost.
    #[default]
    Continue,
    /// Stop the other workers cleanly and end the run, marked incomplete, with the reason.
    Stop,
}

impl WorkerLoss {
    /// The rule as files write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Continue => "continue",
            Self::Stop => "stop",
        }
    }
}

/// `fleet.arrival`: exactly one of `ramp` or `rate`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArrivalSection {
    /// All devices arrive spread over this long.
    #[serde(default)]
    pub ramp: Option<DurationValue>,
    /// Devices arrive at this rate.
    #[serde(default)]
    pub rate: Option<RateValue>,
    /// Random (Poisson) arrival times instead of evenly spaced ones.
    #[serde(default)]
    pub poisson: bool,
}

/// One entry of `fleet.mix`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixSection {
    /// A device model name (a file `<name>.toml` in the models folder).
    pub model: String,
    /// Share of the fleet, `0.8` or `"80%"`.
    pub share: ShareValue,
    /// Group the devices join; phases target groups. Defaults to the model name.
    #[serde(default)]
    pub group: Option<String>,
}

/// One `[[phase]]`: an operator action at a time, chosen by `action`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PhaseSection {
    /// Push desired configuration to a group.
    Config(ConfigPhase),
    /// Send a command to devices.
    Command(CommandPhase),
    /// Start an OTA campaign.
    Ota(OtaPhase),
    /// Cut a share of the fleet off the backend for a while.
    Outage(OutagePhase),
    /// Decommission a share of the fleet.
    Decommission(DecommissionPhase),
    /// Make a share of the fleet rotate its certificates.
    Rotate(RotatePhase),
    /// Set an alert rule on the backend, whose alerts the run then measures.
    Alert(AlertPhase),
    /// Put a share of the fleet in a fault for a while.
    Fault(FaultPhase),
}

impl PhaseSection {
    /// When the phase fires.
    pub fn at(&self) -> std::time::Duration {
        match self {
            Self::Config(p) => p.at.0,
            Self::Command(p) => p.at.0,
            Self::Ota(p) => p.at.0,
            Self::Outage(p) => p.at.0,
            Self::Decommission(p) => p.at.0,
            Self::Rotate(p) => p.at.0,
            Self::Alert(p) => p.at.0,
            Self::Fault(p) => p.at.0,
        }
    }
}

/// `action = "config"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigPhase {
    /// When the phase fires, from the start of the run.
    pub at: DurationValue,
    /// Target group; the whole fleet when omitted.
    #[serde(default)]
    pub group: Option<String>,
    /// Desired configuration keys and values.
    pub set: BTreeMap<String, serde_json::Value>,
}

/// `action = "command"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandPhase {
    /// When the phase fires.
    pub at: DurationValue,
    /// Target group; the whole fleet when omitted.
    #[serde(default)]
    pub group: Option<String>,
    /// Command name: `reboot`, `set` (with `args`: the device applies them and reports them
    /// back), `logs` (the device answers with its event log) or `diagnose` (with a health
    /// snapshot), as the reference backend's devices understand them.
    pub command: String,
    /// Arguments, e.g. `{ led = "on" }` for `set`.
    #[serde(default)]
    pub args: BTreeMap<String, serde_json::Value>,
    /// Share of the target that receives it; all when omitted.
    #[serde(default)]
    pub share: Option<PercentValue>,
}

/// `action = "ota"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtaPhase {
    /// When the campaign starts.
    pub at: DurationValue,
    /// Target group; the whole fleet when omitted.
    #[serde(default)]
    pub group: Option<String>,
    /// The image the campaign installs.
    pub firmware: FirmwareSection,
    /// How the campaign rolls out.
    pub rollout: RolloutSection,
}

/// `firmware` of an OTA phase.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirmwareSection {
    /// Version string the image carries.
    pub version: String,
    /// Image size.
    pub size: SizeValue,
    /// Chance the image fails to boot (a bad image has a high one), on top of the model's own.
    #[serde(default)]
    pub boot_fail: Option<PercentValue>,
    /// Chance the image arrives corrupt, on top of the model's own.
    #[serde(default)]
    pub corrupt: Option<PercentValue>,
}

/// `rollout` of an OTA phase.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSection {
    /// Cumulative shares of the target reached by each wave, increasing, e.g.
    /// `["1%", "10%", "50%", "100%"]`.
    pub waves: Vec<PercentValue>,
    /// Halt the campaign when a wave's failure rate passes this.
    #[serde(default)]
    pub halt_above: Option<PercentValue>,
    /// How long each wave soaks before the next starts.
    #[serde(default)]
    pub soak: Option<DurationValue>,
}

/// `action = "outage"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutagePhase {
    /// When the outage starts.
    pub at: DurationValue,
    /// Target group; the whole fleet when omitted.
    #[serde(default)]
    pub group: Option<String>,
    /// Share of the target that loses its connection.
    pub share: PercentValue,
    /// How long the outage lasts.
    pub duration: DurationValue,
}

/// `action = "fault"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultPhase {
    /// When the fault starts.
    pub at: DurationValue,
    /// Target group; the whole fleet when omitted.
    #[serde(default)]
    pub group: Option<String>,
    /// Share of the target put in the fault.
    pub share: PercentValue,
    /// Which fault: `stuck_sensor`, `out_of_range`, `error_burst` or `watchdog_reset`.
    pub fault: String,
    /// How long it lasts; not for `watchdog_reset`, which is instant.
    #[serde(default)]
    pub duration: Option<DurationValue>,
}

/// `action = "decommission"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecommissionPhase {
    /// When the phase fires.
    pub at: DurationValue,
    /// Target group; the whole fleet when omitted.
    #[serde(default)]
    pub group: Option<String>,
    /// Share of the target to decommission.
    pub share: PercentValue,
}

/// `action = "rotate"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotatePhase {
    /// When the phase fires.
    pub at: DurationValue,
    /// Target group; the whole fleet when omitted.
    #[serde(default)]
    pub group: Option<String>,
    /// Share of the target asked to rotate; all when omitted.
    #[serde(default)]
    pub share: Option<PercentValue>,
    /// How long a device's old certificate is still accepted after its new one is issued;
    /// 60 s when omitted.
    #[serde(default)]
    pub grace: Option<DurationValue>,
}

/// `action = "alert"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertPhase {
    /// When the rule is set.
    pub at: DurationValue,
    /// The group it watches; the whole fleet when omitted.
    #[serde(default)]
    pub group: Option<String>,
    /// What it watches: `battery_below` (with `below`), `offline_for` (with `after`),
    /// `error_codes` (with `at_least` and `within`) or `sensor_stuck` (with `reports`).
    pub rule: String,
    /// `battery_below`: the battery level under which a device is alerted, e.g. `"20%"`.
    #[serde(default)]
    pub below: Option<PercentValue>,
    /// `offline_for`: how long a device may be disconnected before it is alerted (real time,
    /// like every phase's times).
    #[serde(default)]
    pub after: Option<DurationValue>,
    /// `error_codes`: how many reports carrying error codes ...
    #[serde(default)]
    pub at_least: Option<u32>,
    /// `error_codes`: ... within this time (real time) alert a device.
    #[serde(default)]
    pub within: Option<DurationValue>,
    /// `sensor_stuck`: how many reports in a row with the same reading alert a device.
    #[serde(default)]
    pub reports: Option<u32>,
}

/// A device model file (`device-models/*.toml`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceModelFile {
    /// Model name; must equal the file name without `.toml`.
    pub name: String,
    /// What kind of device this is.
    #[serde(default)]
    pub description: Option<String>,
    /// Protocol the device speaks: `mqtt`, `coap` or `http`.
    pub protocol: ProtocolKind,
    /// Firmware version the device ships with.
    pub firmware: String,
    /// Prefix of the device serials; derived from the name when omitted.
    #[serde(default)]
    pub serial_prefix: Option<String>,
    /// How the device reports.
    pub telemetry: TelemetrySection,
    /// Battery; omit for mains-powered devices.
    #[serde(default)]
    pub battery: Option<BatterySection>,
    /// Connectivity; a link that never drops when omitted.
    #[serde(default)]
    pub link: Option<LinkSection>,
    /// Over-the-air updates; a device without it takes no OTA campaign.
    #[serde(default)]
    pub ota: Option<OtaSection>,
    /// The certificates it is issued, for devices that log in with one the backend's CA signs
    /// (`credentials = "certificate"`): how long each lasts and when the device renews it.
    /// Without it a device asks for the CA's longest validity and never renews.
    #[serde(default)]
    pub certificate: Option<CertificateSection>,
    /// How an LwM2M device (`protocol = "coap"`) registers with its server.
    #[serde(default)]
    pub lwm2m: Option<Lwm2mSection>,
    /// Which MQTT an MQTT device (`protocol = "mqtt"`) speaks, and MQTT 5's session and
    /// properties.
    #[serde(default)]
    pub mqtt: Option<MqttSection>,
    /// What goes wrong inside the device on its own, and how fast its clock drifts.
    #[serde(default)]
    pub faults: Option<FaultsSection>,
}

/// `[faults]`: each fault at its own rate. A fault with `every` and `lasts` comes on average
/// once every `every` and lasts `lasts`; a watchdog reset is instant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultsSection {
    /// The sensor repeats its last reading.
    #[serde(default)]
    pub stuck_sensor: Option<SpellSection>,
    /// The sensor reads `out_of_range_value`.
    #[serde(default)]
    pub out_of_range: Option<SpellSection>,
    /// What an out-of-range sensor reads; -127 (a temperature probe with its wire cut) when
    /// omitted.
    #[serde(default)]
    pub out_of_range_value: Option<f64>,
    /// Reports carry `error_codes`.
    #[serde(default)]
    pub error_burst: Option<SpellSection>,
    /// The codes an error burst reports (also an injected one), 1 to 65535; `[1]` when
    /// omitted.
    #[serde(default)]
    pub error_codes: Option<Vec<i64>>,
    /// The device resets: its connection drops without a goodbye and it boots again.
    #[serde(default)]
    pub watchdog_reset: Option<WatchdogSection>,
    /// The largest drift of the device's clock, parts per million: each device's clock runs
    /// fast or slow by its own share of it, so its reports come that much early or late and
    /// the uptime it reports drifts.
    #[serde(default)]
    pub clock_drift_ppm: Option<f64>,
}

/// A recurring fault of `[faults]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpellSection {
    /// Mean time between its starts, in simulated time.
    pub every: DurationValue,
    /// How long it lasts, shorter than `every`.
    pub lasts: DurationValue,
}

/// `[faults] watchdog_reset`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSection {
    /// Mean time between resets, in simulated time.
    pub every: DurationValue,
}

/// `[lwm2m]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lwm2mSection {
    /// The registration lifetime the device asks for, in simulated time (sent to the server
    /// in real seconds); `"1d"`, the LwM2M default, when omitted. The device updates its
    /// registration when it reports after 90% of it has passed, so it must be at least twice
    /// the longest telemetry interval.
    #[serde(default)]
    pub lifetime: Option<DurationValue>,
}

/// `[mqtt]`: the MQTT a device speaks. Every key but `version` and `keep_alive` is MQTT 5's.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// 3 (MQTT 3.1.1, the default) or 5.
    #[serde(default)]
    pub version: Option<i64>,
    /// The keep-alive the device asks for in its CONNECT, whole seconds up to 65,535 (`"60s"`
    /// by default; `"0s"` turns it off): it pings when it has sent nothing for that long.
    #[serde(default)]
    pub keep_alive: Option<DurationValue>,
    /// How long the broker keeps the device's session after its connection ends (the session
    /// expiry interval), real time: `"0s"` (the default) ends it with the connection.
    #[serde(default)]
    pub session_expiry: Option<DurationValue>,
    /// Telemetry goes under a topic alias after its first message of each connection, when the
    /// broker allows aliases (its CONNACK's topic alias maximum).
    #[serde(default)]
    pub topic_alias: Option<bool>,
    /// How long the broker may hold a telemetry message for subscribers (the message expiry
    /// interval), real time; none when omitted.
    #[serde(default)]
    pub message_expiry: Option<DurationValue>,
    /// User properties sent with the CONNECT and every telemetry message, e.g.
    /// `{ site = "lab-3" }`.
    #[serde(default)]
    pub user_properties: Option<BTreeMap<String, String>>,
    /// The device connects with an empty client id and the broker assigns one (its CONNACK's
    /// assigned client identifier); a session it could not resume, so no `session_expiry`.
    #[serde(default)]
    pub assigned_client_id: Option<bool>,
}

/// The protocols a device model may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolKind {
    /// MQTT 3.1.1 or 5.
    Mqtt,
    /// CoAP (LwM2M).
    Coap,
    /// HTTP polling.
    Http,
}

impl ProtocolKind {
    /// The `protocol` as files write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtt",
            Self::Coap => "coap",
            Self::Http => "http",
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// Reporting interval, in simulated time.
    pub interval: DurationValue,
    /// Random spread of each interval, e.g. `"10%"`.
    #[serde(default)]
    pub jitter: Option<PercentValue>,
    /// Size of each telemetry message.
    pub payload_bytes: u32,
    /// MQTT QoS for telemetry, 0 or 1.
    #[serde(default)]
    pub qos: Option<u8>,
    /// Sleep between reports without a connection: wake, connect (clean session), report,
    /// disconnect. Such a device takes config, commands and updates only while `awake`.
    /// Default false.
    #[serde(default)]
    pub duty_cycle: bool,
    /// For a duty-cycled device: how long it stays connected after it reports, in simulated
    /// time, taking what its server held for it (LwM2M's queue mode) before it sleeps again.
    /// Default 0: it leaves once its report is acknowledged.
    #[serde(default)]
    pub awake: Option<DurationValue>,
    /// How a report is encoded: `"json"` (the default) or `"cbor"` (RFC 8949, the same keys).
    #[serde(default)]
    pub format: Option<PayloadFormat>,
}

/// `[battery]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatterySection {
    /// Capacity in mAh.
    pub capacity_mah: f64,
    /// Sleep current in µA.
    pub sleep_ua: f64,
    /// Charge per transmission in mA·s.
    pub tx_mas: f64,
    /// Level below which the device reports low battery, e.g. `"15%"`.
    #[serde(default)]
    pub low_at: Option<PercentValue>,
    /// Factor the reporting interval stretches by when low (1 keeps it).
    #[serde(default)]
    pub low_interval_factor: Option<f64>,
    /// Terminal voltage full and empty, `{ full = 3.0, empty = 2.0 }` in volts (a coin cell);
    /// a lithium-ion cell's `{ full = 4.2, empty = 3.3 }` when omitted.
    #[serde(default)]
    pub volts: Option<VoltsSection>,
}

/// `[battery] volts`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VoltsSection {
    /// Volts at full charge.
    pub full: f64,
    /// Volts when empty.
    pub empty: f64,
}

/// `[link]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// Mean time the link stays up.
    pub mean_online: DurationValue,
    /// Mean time the link stays down.
    pub mean_offline: DurationValue,
    /// Reconnect backoff; `{ initial = "1s", max = "1m", multiplier = 2.0 }` when omitted.
    #[serde(default)]
    pub reconnect: Option<BackoffSection>,
    /// How long a connect (TCP, TLS, the protocol's hello and its answer) may take before it
    /// counts as timed out (`errors.timeout`) and the device backs off; wall-clock time, not
    /// scaled by `time_scale`. `30s` when omitted.
    #[serde(default)]
    pub connect_timeout: Option<DurationValue>,
    /// The radio's signal strength, in dBm: `{ mean = -90, spread = 12 }` places each device
    /// (once, from the seed) uniformly within `spread` of `mean`, and each report varies by up
    /// to 2 dB around that. Reported in telemetry (`"rssi"`) and in LwM2M's object 4. Omitted:
    /// the device reports no signal.
    #[serde(default)]
    pub signal: Option<SignalSection>,
}

/// `link.signal`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalSection {
    /// The fleet's mean signal strength, dBm (-140 to -20).
    pub mean: f64,
    /// How far a device's own strength lies from the mean at most, dB (0 to 60).
    pub spread: f64,
}

/// `link.reconnect`: exponential backoff with full jitter.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffSection {
    /// Ceiling of the first delay.
    pub initial: DurationValue,
    /// Largest ceiling.
    pub max: DurationValue,
    /// Growth of the ceiling per attempt.
    pub multiplier: f64,
}

/// `[certificate]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// How long each certificate the device asks for lasts, in simulated time (asked of the
    /// backend in real seconds: the reference backend gives at least 60 s).
    pub validity: DurationValue,
    /// The share of a certificate's validity after which the device asks for the next;
    /// `"67%"` when omitted.
    #[serde(default)]
    pub renew_at: Option<PercentValue>,
}

/// `[ota]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtaSection {
    /// Download speed in kbit/s.
    pub download_kbps: f64,
    /// Chance a download attempt is interrupted (resumed with HTTP Range).
    pub interrupt: PercentValue,
    /// Chance an image arrives corrupt.
    pub corrupt: PercentValue,
    /// Chance a new image fails to boot (A/B fallback).
    pub boot_fail: PercentValue,
    /// Chance the fallback also fails after a failed boot: the device is lost.
    pub brick: PercentValue,
    /// How an LwM2M device takes a package: `"pull"` (by the Package URI written), `"push"`
    /// (written to /5/0/0 block-wise) or `"both"` (the default); its server reads which.
    #[serde(default)]
    pub delivery: crate::model::ota::Delivery,
}
