//! Topic templates (`fleetsim/{group}/{serial}/telemetry`), split at their placeholders once,
//! when the run starts, so a report's topic is written piece by piece, the device's serial
//! straight into it, with no search of the template at each message.

use crate::dialect::DeviceCx;

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
    /// Writes device `cx`'s topic to `out`, its serial computed again where the template has
    /// it (devices keep no serial).
    pub fn write(&self, cx: &DeviceCx<'_>, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Serial => cx.write_serial(out),
                Piece::Index => out.push_str(itoa::Buffer::new().format(cx.index)),
                Piece::Model => out.push_str(&cx.model.name),
                Piece::Group => out.push_str(cx.group),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Shared;
    use crate::scenario::DeviceModel;

    fn model() -> DeviceModel {
        crate::scenario::parse_model(
            std::path::Path::new("temp-sensor.toml"),
            "name = \"temp-sensor\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\nserial_prefix = \"TS\"\n[telemetry]\ninterval = \"1s\"\npayload_bytes = 64\n",
        )
        .expect("valid model")
    }

    /// `template` written for device `index` of group `sensors`, after what `out` held; and
    /// the device's serial.
    fn written_for(index: u64, template: &str) -> (String, String) {
        let (shared, model) = (Shared::default(), model());
        let cx = DeviceCx {
            shared: &shared,
            index,
            model: &model,
            group: "sensors",
            source: None,
        };
        let mut out = String::from("kept:");
        Topic::from(template).write(&cx, &mut out);
        (out, cx.serial())
    }

    fn written(template: &str) -> (String, String) {
        written_for(7, template)
    }

    #[test]
    fn every_placeholder_is_filled_and_stray_braces_stay() {
        let (out, serial) = written("t/{group}/{model}/{index}/{serial}");
        assert_eq!(out, format!("kept:t/sensors/temp-sensor/7/{serial}"));
        assert!(serial.starts_with("TS-"), "{serial}");
        let (out, serial) = written("{serial}{serial}");
        assert_eq!(out, format!("kept:{serial}{serial}"));
        let (out, serial) = written("{a}/{serial}{{index}}/{");
        assert_eq!(
            out,
            format!("kept:{{a}}/{serial}{{7}}/{{"),
            "braces that open no placeholder"
        );
        let (out, _) = written("{seria/{serial");
        assert_eq!(out, "kept:{seria/{serial", "a placeholder cut short is text");
        assert_eq!(written("plain/topic").0, "kept:plain/topic");
        assert_eq!(written("").0, "kept:");
        assert_eq!(written("ü/{group}/✓").0, "kept:ü/sensors/✓");
        assert_eq!(written_for(u64::MAX, "d/{index}").0, format!("kept:d/{}", u64::MAX));
    }
}
