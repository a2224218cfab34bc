//! Metrics: the stable metric names ([`names`]) that gates, reports and dashboards share.

pub mod names;
