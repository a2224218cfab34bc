//! Running a fleet, whichever backend it drives: the clock that maps simulated to real time
//! ([`clock`]), what a shard and its devices hold ([`context`]), the driver that runs each
//! device ([`driver`]) and performs what it decides through its dialect ([`perform`]), shards
//! of devices on their own threads ([`shard`]) with sleeping devices in a timer heap
//! ([`timers`]) and a note of each thread's last sleep for late sends ([`park`]), the operator
//! ([`operator`]) and the watch on the backend ([`watch`]), the aggregator ([`progress`]) and
//! the dashboard's frames ([`live`]), worker processes ([`workers`], [`wire`]), the process
//! limits a run needs ([`open_files`]) and `fleetsim run` itself ([`run`]).
//!
//! The engine names no backend: it asks the dialect through the seam in [`crate::dialect`],
//! and is instantiated once per dialect.

pub mod clock;
pub mod context;
pub mod driver;
pub mod exporter;
pub mod live;
pub mod open_files;
pub mod operator;
pub mod park;
pub mod pause;
pub mod perform;
pub mod process_stats;
pub mod progress;
pub mod run;
pub mod shard;
pub mod timers;
pub mod watch;
pub mod wire;
pub mod workers;
