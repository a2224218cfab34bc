//! What a run leaves behind in its report folder, one file per format: the gate verdicts
//! ([`gates`]), `junit.xml` ([`junit`]) and `timeseries.csv` ([`timeseries`]). `summary.json`
//! is written by the run (`engine::figures`); the HTML report and histogram logs follow.

pub mod compare;
pub mod gates;
pub mod hlog;
pub mod junit;
pub mod merge;
pub mod timeseries;
