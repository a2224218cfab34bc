//! Running a fleet: for now the process limits a run needs ([`open_files`]); the shards,
//! clock, arrivals and operator land here with `fleetsim run`.

pub mod open_files;
