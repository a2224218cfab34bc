//! The image a campaign uploads to a hawkBit server, as a real SWUpdate bundle: goosebit
//! refuses anything else. Its `sw-description` names the version and the boards (the scenario's
//! models, as devices describe themselves in `configData`) it is compatible with.

use super::ddi::HW_REVISION;

/// A SWUpdate bundle: a cpio "newc" archive whose first member is `sw-description` (the
/// version, and the boards and revision it is compatible with), then the image, then the
/// trailer.
pub fn swu(version: &str, boards: &[&str], image: &[u8]) -> Vec<u8> {
    let compatible: Vec<String> = boards
        .iter()
        .map(|board| format!("  {board} = {{ hardware-compatibility = [ \"{HW_REVISION}\" ]; }};\n"))
        .collect();
    let description = format!(
        "software =\n{{\n  version = \"{version}\";\n{}  images: ( {{ filename = \"image.bin\"; type = \"raw\"; device = \"/dev/null\"; }} );\n}};\n",
        compatible.concat()
    );
    let mut archive = Vec::with_capacity(image.len() + 1024);
    cpio_member(&mut archive, 1, "sw-description", description.as_bytes());
    cpio_member(&mut archive, 2, "image.bin", image);
    cpio_member(&mut archive, 0, "TRAILER!!!", &[]);
    archive
}

/// One member of a cpio "newc" archive: the 110-byte header, the name and its NUL, the data,
/// each padded to four bytes.
fn cpio_member(out: &mut Vec<u8>, inode: u32, name: &str, data: &[u8]) {
    let mode = if data.is_empty() && inode == 0 { 0 } else { 0o100_644 };
    let fields = [
        inode,
        mode,
        0,
        0,
        1,
        0,
        u32::try_from(data.len()).unwrap_or(u32::MAX),
        0,
        0,
        0,
        0,
        u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
        0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_a_cpio_archive_led_by_its_description() {
        let bundle = swu("2.0.0", &["temp-sensor", "gateway"], &[7u8; 1000]);
        assert_eq!(&bundle[..6], b"070701", "newc magic");
        // The header's name size field, then the name: sw-description comes first.
        let name_size = usize::from_str_radix(std::str::from_utf8(&bundle[94..102]).expect("hex"), 16).expect("hex");
        assert_eq!(&bundle[110..110 + name_size - 1], b"sw-description");
        let data_size = usize::from_str_radix(std::str::from_utf8(&bundle[54..62]).expect("hex"), 16).expect("hex");
        let start = (110 + name_size).next_multiple_of(4);
        let description = std::str::from_utf8(&bundle[start..start + data_size]).expect("text");
        assert!(description.contains("version = \"2.0.0\""));
        assert!(description.contains("temp-sensor = { hardware-compatibility = [ \"1.0\" ]; };"));
        assert!(bundle.len().is_multiple_of(4) && bundle.len() > 1000);
        assert!(bundle.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
