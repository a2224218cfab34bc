//! Metrics: the stable metric names ([`names`]) that gates, reports and dashboards share, and
//! the shard-local recorder ([`recorder`]) devices record latencies and counts into.

pub mod names;
pub mod recorder;
