//! What a run leaves behind in its report folder, one file per format: the gate verdicts
//! ([`gates`]), `histograms.hlog` ([`hlog`]), `report.html` ([`html`]), `junit.xml`
//! ([`junit`]) and `timeseries.csv` ([`timeseries`]); comparing two runs ([`compare`]) and
//! merging several ([`merge`]). `summary.json` is written by the run (`engine::figures`).

pub mod compare;
pub mod gates;
pub mod hlog;
pub mod html;
pub mod junit;
pub mod merge;
pub mod timeseries;
