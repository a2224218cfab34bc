//! The objects an LwM2M device exposes, and what a path names in them: object 1 (Server: its
//! lifetime and binding), object 3 (Device: maker, model, serial, firmware, battery, error
//! codes, Reboot), object 4 (Connectivity Monitoring: the radio signal strength, for a model
//! whose link gives one), object 5 (Firmware Update, for a model that takes updates: pull by
//! an HTTP Package URI) and object 3303 (Temperature: the telemetry model's reading).

/// A path the server names: `/object`, `/object/instance` or `/object/instance/resource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// The object id.
    pub object: u16,
    /// The instance, if named.
    pub instance: Option<u16>,
    /// The resource, if named (only with an instance).
    pub resource: Option<u16>,
}

impl Path {
    /// The path of Uri-Path segments (`["3", "0", "9"]`); `None` for anything else (a
    /// segment that is not a number, more than three).
    pub fn parse<'a>(segments: impl IntoIterator<Item = &'a [u8]>) -> Option<Self> {
        let mut ids = [None; 3];
        for (k, segment) in segments.into_iter().enumerate() {
            let id = std::str::from_utf8(segment).ok()?.parse::<u16>().ok()?;
            *ids.get_mut(k)? = Some(id);
        }
        Some(Self {
            object: ids[0]?,
            instance: ids[1],
            resource: ids[2],
        })
    }

    /// Whether resource `resource` of `object`/`instance` is at or under this path.
    fn covers(&self, object: u16, instance: u16, resource: u16) -> bool {
        self.object == object
            && self.instance.is_none_or(|i| i == instance)
            && self.resource.is_none_or(|r| r == resource)
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.object)?;
        if let Some(instance) = self.instance {
            write!(f, "/{instance}")?;
        }
        if let Some(resource) = self.resource {
            write!(f, "/{resource}")?;
        }
        Ok(())
    }
}

/// A resource's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
    /// A boolean.
    Boolean(bool),
    /// A multiple-instance resource of integers: (instance, value).
    Integers(Vec<(u16, i64)>),
}

impl Value {
    /// The value as plain text (a single-instance resource read as text/plain).
    pub fn text(&self) -> Option<String> {
        Some(match self {
            Self::Integer(v) => v.to_string(),
            Self::Float(v) => v.to_string(),
            Self::String(v) => v.clone(),
            Self::Boolean(v) => u8::from(*v).to_string(),
            Self::Integers(_) => return None,
        })
    }
}

/// What a device's objects read at one moment.
#[derive(Debug, Clone)]
pub struct State<'a> {
    /// The device's serial (also its endpoint name).
    pub serial: &'a str,
    /// Its model's name (the Device object's model number).
    pub model: &'a str,
    /// The firmware it runs.
    pub firmware: &'a str,
    /// Battery level in percent, for a device with a battery.
    pub battery: Option<u8>,
    /// The sensor's last reading.
    pub reading: f64,
    /// The radio's signal strength at the last report, dBm, for a model that gives one.
    pub rssi: Option<i16>,
    /// The registration lifetime, real seconds.
    pub lifetime_s: u32,
    /// The binding: `U`, or `UQ` for a device in queue mode.
    pub binding: &'a str,
    /// The error codes it reports now (an error burst); none: "no error".
    pub errors: &'a [u16],
    /// Object 5, for a device whose model takes updates.
    pub firmware_update: Option<FirmwareUpdate<'a>>,
    /// What it applied, `{"version", "settings"}` as JSON, for a device that keeps a diary
    /// (the reference backend's always-connected ones).
    pub reported: Option<String>,
}

/// Object 5 as it reads: where an update is, how the last one ended, and its package.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirmwareUpdate<'a> {
    /// State ([`fw`]: idle, downloading, downloaded, updating).
    pub state: u8,
    /// Update Result ([`fw`]).
    pub result: u8,
    /// The Package URI written last (empty: none).
    pub uri: &'a str,
    /// The version of the package taken (empty: none).
    pub version: &'a str,
    /// The delivery method: 0 pull, 1 push, 2 both.
    pub delivery: i64,
}

/// Object 5's states and update results (OMA LwM2M 1.0, appendix E.6).
pub mod fw {
    /// State: no update under way.
    pub const IDLE: u8 = 0;
    /// State: the package is coming.
    pub const DOWNLOADING: u8 = 1;
    /// State: the package is held, verified, until the server executes Update.
    pub const DOWNLOADED: u8 = 2;
    /// State: installing and rebooting.
    pub const UPDATING: u8 = 3;
    /// Result: none yet (or the object was reset).
    pub const INITIAL: u8 = 0;
    /// Result: the new firmware runs.
    pub const SUCCESS: u8 = 1;
    /// Result: the package failed its integrity check.
    pub const INTEGRITY_FAILURE: u8 = 5;
    /// Result: the package is of a type the device does not take.
    pub const UNSUPPORTED_PACKAGE: u8 = 6;
    /// Result: the URI does not say what the device needs.
    pub const INVALID_URI: u8 = 7;
    /// Result: the update failed; the old firmware runs.
    pub const UPDATE_FAILED: u8 = 8;
    /// Result: the URI's protocol is not one the device speaks.
    pub const UNSUPPORTED_PROTOCOL: u8 = 9;
}

/// Resource ids of the objects a device exposes, and which can be written or executed.
pub mod ids {
    /// Server object.
    pub const SERVER: u16 = 1;
    /// Server: short server id.
    pub const SHORT_ID: u16 = 0;
    /// Server: lifetime (writable).
    pub const LIFETIME: u16 = 1;
    /// Server: notification storing when offline.
    pub const STORING: u16 = 6;
    /// Server: binding.
    pub const BINDING: u16 = 7;
    /// Server: registration update trigger (executable).
    pub const UPDATE_TRIGGER: u16 = 8;
    /// Device object.
    pub const DEVICE: u16 = 3;
    /// Device: reboot (executable).
    pub const REBOOT: u16 = 4;
    /// Connectivity Monitoring object.
    pub const CONNECTIVITY: u16 = 4;
    /// Connectivity Monitoring: radio signal strength, dBm.
    pub const SIGNAL: u16 = 2;
    /// Firmware Update object.
    pub const FIRMWARE: u16 = 5;
    /// Firmware Update: the package itself, pushed (not spoken: the device pulls).
    pub const PACKAGE: u16 = 0;
    /// Firmware Update: the package's URI (writing one starts the download).
    pub const PACKAGE_URI: u16 = 1;
    /// Firmware Update: install the package held (executable).
    pub const UPDATE: u16 = 2;
    /// Firmware Update: the state.
    pub const FW_STATE: u16 = 3;
    /// Firmware Update: the last update's result.
    pub const FW_RESULT: u16 = 5;
    /// Temperature object (IPSO).
    pub const TEMPERATURE: u16 = 3303;
    /// Temperature: the sensor value.
    pub const SENSOR_VALUE: u16 = 5700;
    /// fleetsim's device-management object (a private object id), served to the reference
    /// backend only.
    pub const FLEETSIM: u16 = 32769;
    /// fleetsim: the desired config document, JSON text with its `version` (write-only).
    pub const CONFIG: u16 = 0;
    /// fleetsim: a command to carry out (executable, `{"id", "command", "args"}` as JSON),
    /// answered by a separate response with its result.
    pub const COMMAND: u16 = 1;
    /// fleetsim: what the device applied, `{"version", "settings"}` as JSON text (read-only):
    /// what an MQTT device publishes on `config/reported`, settings a `set` applied among it.
    pub const REPORTED: u16 = 2;
}

/// The object instances a device registers (its registration's link payload): object 4 for a
/// device whose model gives a signal strength, object 5 for one whose model takes updates,
/// fleetsim's object for the reference backend.
pub fn links(connectivity: bool, firmware: bool, fleetsim: bool) -> String {
    let mut links = vec!["</1/0>", "</3/0>"];
    if connectivity {
        links.push("</4/0>");
    }
    if firmware {
        links.push("</5/0>");
    }
    links.push("</3303/0>");
    if fleetsim {
        links.push("</32769/0>");
    }
    links.join(",")
}

/// Every executable resource: (object, resource).
const EXECUTABLE: [(u16, u16); 3] = [
    (ids::SERVER, ids::UPDATE_TRIGGER),
    (ids::DEVICE, ids::REBOOT),
    (ids::FIRMWARE, ids::UPDATE),
];

/// Why a path cannot be read, written or executed: the CoAP code the answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 4.04: nothing there.
    NotFound,
    /// 4.05: there, but not for this operation.
    NotAllowed,
    /// 4.00: a value that does not parse.
    BadRequest,
}

impl State<'_> {
    /// Every readable resource, in order: (object, instance, resource, value).
    fn resources(&self) -> Vec<(u16, u16, u16, Value)> {
        let mut all = vec![
            (ids::SERVER, 0, ids::SHORT_ID, Value::Integer(1)),
            (
                ids::SERVER,
                0,
                ids::LIFETIME,
                Value::Integer(i64::from(self.lifetime_s)),
            ),
            (ids::SERVER, 0, ids::STORING, Value::Boolean(false)),
            (ids::SERVER, 0, ids::BINDING, Value::String(self.binding.to_owned())),
            (ids::DEVICE, 0, 0, Value::String("fleetsim".to_owned())),
            (ids::DEVICE, 0, 1, Value::String(self.model.to_owned())),
            (ids::DEVICE, 0, 2, Value::String(self.serial.to_owned())),
            (ids::DEVICE, 0, 3, Value::String(self.firmware.to_owned())),
        ];
        if let Some(battery) = self.battery {
            all.push((ids::DEVICE, 0, 9, Value::Integer(i64::from(battery))));
        }
        // Error code: its codes, one instance each; 0, no error, when it has none (one
        // instance, as the specification asks of every device).
        let codes: Vec<(u16, i64)> = if self.errors.is_empty() {
            vec![(0, 0)]
        } else {
            (0..).zip(self.errors.iter().map(|&code| i64::from(code))).collect()
        };
        all.push((ids::DEVICE, 0, 11, Value::Integers(codes)));
        all.push((ids::DEVICE, 0, 16, Value::String("U".to_owned())));
        if let Some(rssi) = self.rssi {
            all.push((ids::CONNECTIVITY, 0, ids::SIGNAL, Value::Integer(i64::from(rssi))));
        }
        if let Some(update) = &self.firmware_update {
            let at = |resource, value| (ids::FIRMWARE, 0, resource, value);
            all.extend([
                at(ids::PACKAGE_URI, Value::String(update.uri.to_owned())),
                at(ids::FW_STATE, Value::Integer(i64::from(update.state))),
                at(ids::FW_RESULT, Value::Integer(i64::from(update.result))),
                at(
                    6,
                    Value::String(if update.version.is_empty() { "" } else { "fleetsim" }.to_owned()),
                ),
                at(7, Value::String(update.version.to_owned())),
                // Protocols: CoAP and HTTP/1.1.
                at(8, Value::Integers(vec![(0, 0), (1, 2)])),
                at(9, Value::Integer(update.delivery)),
            ]);
        }
        // Before its first reading the sensor has no value: the resource reads as absent.
        if self.reading.is_finite() {
            all.push((ids::TEMPERATURE, 0, ids::SENSOR_VALUE, Value::Float(self.reading)));
        }
        all.push((ids::TEMPERATURE, 0, 5701, Value::String("Cel".to_owned())));
        if let Some(reported) = &self.reported {
            all.push((ids::FLEETSIM, 0, ids::REPORTED, Value::String(reported.clone())));
        }
        all
    }

    /// What `path` reads: its resources as (instance, resource, value).
    pub fn read(&self, path: Path) -> Result<Vec<(u16, u16, Value)>, Refusal> {
        let found: Vec<(u16, u16, Value)> = self
            .resources()
            .into_iter()
            .filter(|(o, i, r, _)| path.covers(*o, *i, *r))
            .map(|(_, i, r, v)| (i, r, v))
            .collect();
        if found.is_empty() {
            return Err(if (is_executable(path) && self.holds(path.object)) || is_config(path) {
                Refusal::NotAllowed
            } else {
                Refusal::NotFound
            });
        }
        Ok(found)
    }

    /// Whether the device exposes `object` (object 5 only for a model that takes updates).
    fn holds(&self, object: u16) -> bool {
        object != ids::FIRMWARE || self.firmware_update.is_some()
    }

    /// The CoRE link format of what `path` holds, for a Discover.
    pub fn discover(&self, path: Path) -> Result<String, Refusal> {
        let mut links = vec![path.to_string()];
        let mut resources: Vec<(u16, u16, u16)> = self
            .resources()
            .into_iter()
            .map(|(o, i, r, _)| (o, i, r))
            .chain(
                EXECUTABLE
                    .iter()
                    .filter(|(o, _)| self.holds(*o))
                    .map(|&(o, r)| (o, 0, r)),
            )
            .filter(|&(o, i, r)| path.covers(o, i, r))
            .collect();
        if resources.is_empty() {
            return Err(Refusal::NotFound);
        }
        resources.sort_unstable();
        links.extend(resources.iter().map(|(o, i, r)| format!("/{o}/{i}/{r}")));
        Ok(links.iter().map(|l| format!("<{l}>")).collect::<Vec<_>>().join(","))
    }
}

/// Whether `path` names an executable resource.
pub fn is_executable(path: Path) -> bool {
    matches!((path.instance, path.resource), (Some(0), Some(r)) if EXECUTABLE.contains(&(path.object, r)))
}

/// Whether `path` names fleetsim's config document, written by the reference backend.
pub fn is_config(path: Path) -> bool {
    path.object == ids::FLEETSIM && path.instance == Some(0) && path.resource == Some(ids::CONFIG)
}

/// Whether `path` names fleetsim's command resource, executed by the reference backend.
pub fn is_command(path: Path) -> bool {
    path.object == ids::FLEETSIM && path.instance == Some(0) && path.resource == Some(ids::COMMAND)
}

/// Whether `path` names the Server object's lifetime, writable.
pub fn is_lifetime(path: Path) -> bool {
    path.object == ids::SERVER && path.instance == Some(0) && path.resource == Some(ids::LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State<'static> {
        State {
            serial: "SN-1",
            model: "soil-sensor",
            firmware: "1.0.3",
            battery: Some(87),
            reading: 21.5,
            rssi: Some(-93),
            lifetime_s: 300,
            binding: "U",
            errors: &[],
            firmware_update: None,
            reported: None,
        }
    }

    fn path(text: &str) -> Path {
        Path::parse(text.split('/').skip(1).map(str::as_bytes)).expect("a path")
    }

    #[test]
    fn object_5_is_there_only_for_a_model_that_takes_updates() {
        let without = state();
        assert_eq!(without.read(path("/5/0/3")), Err(Refusal::NotFound));
        assert_eq!(without.read(path("/5/0/2")), Err(Refusal::NotFound));
        assert_eq!(without.discover(path("/5")), Err(Refusal::NotFound));
        let with = State {
            firmware_update: Some(FirmwareUpdate {
                state: fw::DOWNLOADED,
                result: fw::INITIAL,
                uri: "http://127.0.0.1:1/2.0?size=9",
                version: "2.0",
                delivery: 1,
            }),
            ..state()
        };
        assert_eq!(with.read(path("/5/0/3")), Ok(vec![(0, 3, Value::Integer(2))]));
        assert_eq!(
            with.read(path("/5/0/9")),
            Ok(vec![(0, 9, Value::Integer(1))]),
            "push only"
        );
        assert_eq!(with.read(path("/5/0/2")), Err(Refusal::NotAllowed), "executable");
        assert_eq!(with.read(path("/5/0/7")), Ok(vec![(0, 7, Value::String("2.0".into()))]));
        let held = with.discover(path("/5/0")).expect("object 5");
        assert!(held.contains("</5/0/2>") && held.contains("</5/0/9>"), "{held}");
        assert_eq!(links(false, true, false), "</1/0>,</3/0>,</5/0>,</3303/0>");
        assert_eq!(links(true, false, true), "</1/0>,</3/0>,</4/0>,</3303/0>,</32769/0>");
    }

    #[test]
    fn paths_parse_from_segments_and_print_back() {
        assert_eq!(path("/3/0/9").to_string(), "/3/0/9");
        assert_eq!(path("/3303").to_string(), "/3303");
        assert_eq!(Path::parse([&b"3"[..], b"x"]), None);
        assert_eq!(Path::parse([&b"1"[..], b"2", b"3", b"4"]), None, "four segments");
        assert_eq!(Path::parse(Vec::<&[u8]>::new()), None, "no object");
        assert_eq!(Path::parse([&b"70000"[..]]), None, "past u16");
    }

    #[test]
    fn reads_find_what_a_path_covers_and_refuse_the_rest() {
        let state = state();
        assert_eq!(state.read(path("/3/0/9")), Ok(vec![(0, 9, Value::Integer(87))]));
        assert_eq!(
            state.read(path("/3303/0/5700")),
            Ok(vec![(0, 5700, Value::Float(21.5))])
        );
        let device = state.read(path("/3/0")).expect("the device object");
        assert!(device.contains(&(0, 2, Value::String("SN-1".into()))));
        assert!(device.contains(&(0, 3, Value::String("1.0.3".into()))));
        assert_eq!(
            state.read(path("/3/0/4")),
            Err(Refusal::NotAllowed),
            "reboot is executed"
        );
        assert_eq!(state.read(path("/5")), Err(Refusal::NotFound));
        assert_eq!(state.read(path("/3/1")), Err(Refusal::NotFound));
        assert_eq!(state.read(path("/4/0/2")), Ok(vec![(0, 2, Value::Integer(-93))]));
        assert_eq!(
            state.read(path("/3/0/11")),
            Ok(vec![(0, 11, Value::Integers(vec![(0, 0)]))]),
            "no error"
        );
        let erring = State {
            errors: &[17, 42],
            ..state.clone()
        };
        assert_eq!(
            erring.read(path("/3/0/11")),
            Ok(vec![(0, 11, Value::Integers(vec![(0, 17), (1, 42)]))]),
            "an error burst's codes, an instance each"
        );
        let unmeasured = State {
            reading: f64::NAN,
            ..state.clone()
        };
        assert_eq!(
            unmeasured.read(path("/3303/0/5700")),
            Err(Refusal::NotFound),
            "no reading yet"
        );
        let mains = State {
            battery: None,
            rssi: None,
            ..state
        };
        assert_eq!(mains.read(path("/3/0/9")), Err(Refusal::NotFound), "no battery");
        assert_eq!(mains.read(path("/4")), Err(Refusal::NotFound), "no radio modelled");
    }

    #[test]
    fn a_discover_lists_the_instance_and_its_resources_executables_included() {
        let links = state().discover(path("/1/0")).expect("server object");
        assert_eq!(links, "</1/0>,</1/0/0>,</1/0/1>,</1/0/6>,</1/0/7>,</1/0/8>");
        assert_eq!(state().discover(path("/4")).as_deref(), Ok("</4>,</4/0/2>"));
        assert_eq!(state().discover(path("/5")), Err(Refusal::NotFound));
        assert!(is_executable(path("/3/0/4")) && !is_executable(path("/3/0/9")));
        assert!(is_lifetime(path("/1/0/1")) && !is_lifetime(path("/1/0")));
        assert!(is_config(path("/32769/0/0")) && !is_config(path("/32769/0")));
        assert_eq!(state().read(path("/32769/0/0")), Err(Refusal::NotAllowed), "write-only");
        assert_eq!(
            state().read(path("/32769/0/2")),
            Err(Refusal::NotFound),
            "no diary, no report"
        );
        let reported = State {
            reported: Some(r#"{"settings":{"mode":"eco"},"version":3}"#.to_owned()),
            ..state()
        };
        assert_eq!(
            reported.read(path("/32769/0/2")),
            Ok(vec![(
                0,
                ids::REPORTED,
                Value::String(r#"{"settings":{"mode":"eco"},"version":3}"#.to_owned())
            )])
        );
    }
}
