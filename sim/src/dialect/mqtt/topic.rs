//! Topic templates (`fleetsim/{group}/{serial}/telemetry`), split at their placeholders once,
//! when the run starts, so a report's topic is written piece by piece, the device's serial
//! straight into it, with no search of the template at each message.

/// What fills a topic template's placeholders for one device.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The device's serial.
    pub serial: &'a str,
    /// Its index in the fleet.
    pub index: u64,
    /// Its model's name.
    pub model: &'a str,
    /// Its group.
    pub group: &'a str,
}

/// A topic template, its placeholders found: `{serial}`, `{index}`, `{model}` and `{group}`;
/// a brace that opens no placeholder is text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pieces: Vec<Piece>,
}

/// A run of text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    Serial,
    Index,
    Model,
    Group,
}

/// The placeholders, as a template writes them.
const PLACEHOLDERS: [(&str, Piece); 4] = [
    ("{serial}", Piece::Serial),
    ("{index}", Piece::Index),
    ("{model}", Piece::Model),
    ("{group}", Piece::Group),
];

impl From<&str> for Topic {
    fn from(template: &str) -> Self {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let (before, from) = rest.split_at(open);
            text.push_str(before);
            let placeholder = PLACEHOLDERS
                .iter()
                .find_map(|(name, piece)| from.strip_prefix(name).map(|after| (piece, after)));
            rest = match placeholder {
                Some((piece, after)) => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text).into()));
                    }
                    pieces.push(piece.clone());
                    after
                }
                None => {
                    text.push('{');
                    // A brace is one byte.
                    &from[1..]
                }
            };
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text.into()));
        }
        Self { pieces }
    }
}

impl Topic {
    /// Writes `identity`'s topic to `out`.
    pub fn write(&self, identity: Identity<'_>, out: &mut String) {
        let serial = |out: &mut String| out.push_str(identity.serial);
        self.write_with(out, serial, identity.index, identity.model, identity.group);
    }

    /// Writes a device's topic to `out`, `serial` writing its serial where the template has
    /// it (a device's serial is computed again at each report, not kept).
    pub fn write_with(&self, out: &mut String, serial: impl Fn(&mut String), index: u64, model: &str, group: &str) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Serial => serial(out),
                Piece::Index => out.push_str(itoa::Buffer::new().format(index)),
                Piece::Model => out.push_str(model),
                Piece::Group => out.push_str(group),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: Identity<'static> = Identity {
        serial: "TS-1",
        index: 7,
        model: "temp-sensor",
        group: "sensors",
    };

    fn written(template: &str) -> String {
        let mut out = String::from("kept:");
        Topic::from(template).write(IDENTITY, &mut out);
        out
    }

    #[test]
    fn every_placeholder_is_filled_and_stray_braces_stay() {
        assert_eq!(
            written("t/{group}/{model}/{index}/{serial}"),
            "kept:t/sensors/temp-sensor/7/TS-1"
        );
        assert_eq!(written("{serial}{serial}"), "kept:TS-1TS-1");
        assert_eq!(
            written("{a}/{serial}{{index}}/{"),
            "kept:{a}/TS-1{7}/{",
            "braces that open no placeholder"
        );
        assert_eq!(
            written("{seria/{serial"),
            "kept:{seria/{serial",
            "a placeholder cut short is text"
        );
        assert_eq!(written("plain/topic"), "kept:plain/topic");
        assert_eq!(written(""), "kept:");
        assert_eq!(written("ü/{group}/✓"), "kept:ü/sensors/✓");
    }

    #[test]
    fn a_device_writes_its_serial_in_place() {
        let topic = Topic::from("d/{serial}/{index}");
        let mut out = String::new();
        topic.write_with(&mut out, |out| out.push_str("SN-9"), u64::MAX, "m", "g");
        assert_eq!(out, format!("d/SN-9/{}", u64::MAX));
    }
}
