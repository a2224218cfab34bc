//! What a run leaves behind in its report folder, one file per format: the gate verdicts
//! ([`gates`]), `histograms.hlog` ([`hlog`]), `report.html` ([`html`]), `junit.xml`
//! ([`junit`]) and `timeseries.csv` ([`timeseries`]); comparing two runs ([`compare`]) and
//! merging several ([`merge`]); a hawkBit run's check of the server against its devices
//! ([`hawkbit`]). `summary.json` is written by the run (`engine::figures`).

pub mod compare;
pub mod gates;
pub mod hawkbit;
pub mod hlog;
pub mod html;
pub mod junit;
pub mod merge;
pub mod timeseries;

/// Escapes text for an XML or HTML attribute or element: markup characters become entities,
/// control characters other than newline and tab (not allowed in XML 1.0) are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}
