//! What a run leaves behind in its report folder, one file per format: the gate verdicts
//! ([`gates`]), `histograms.hlog` ([`hlog`]), `report.html` ([`html`]), `junit.xml`
//! ([`junit`]) and `timeseries.csv` ([`timeseries`]); comparing two runs ([`compare`]) and
//! merging several ([`merge`]). What they report is a run's [`figures`], which the engine
//! fills in; `summary.json` carries them, with each backend's own section (its dialect's).

pub mod compare;
pub mod figures;
pub mod gates;
pub mod hlog;
pub mod html;
pub mod junit;
pub mod merge;
pub mod prometheus;
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
