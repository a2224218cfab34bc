//! Running a fleet: the clock that maps simulated to real time ([`clock`]), the driver that
//! runs each device over its transport ([`driver`]), shards of devices on their own threads
//! ([`shard`]), polling devices' hawkBit exchanges ([`ddi`]), the operator ([`operator`]),
//! the aggregator ([`progress`]), worker processes ([`workers`]), the process limits a run
//! needs ([`open_files`]) and `fleetsim run` itself ([`run`]).

pub mod campaign_watch;
pub mod clock;
pub mod ddi;
pub mod download;
pub mod driver;
pub mod figures;
pub mod link;
pub mod live;
pub mod open_files;
pub mod operator;
pub mod operator_ddi;
pub mod operator_log;
pub mod pause;
pub mod perform;
pub mod process_stats;
pub mod progress;
pub mod run;
pub mod shard;
pub mod target;
pub mod timers;
pub mod watch;
pub mod wire;
pub mod workers;
