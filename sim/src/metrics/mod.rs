//! Metrics: the stable metric names ([`names`]) that gates, reports and dashboards share, the
//! shard-local recorder ([`recorder`]) devices record latencies and counts into, and the
//! metrics reference rendered from both ([`reference`], `docs/metrics.md`).

pub mod names;
pub mod recorder;
pub mod reference;
