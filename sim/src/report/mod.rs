//! What a run leaves behind: for now the gate verdicts ([`gates`]); summary.json, the HTML
//! report, JUnit and histogram logs land here with the reports.

pub mod gates;
