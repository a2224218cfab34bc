//! fleetsim's reference device-management backend: an MQTT device gateway tied to a durable
//! registry, configuration, commands, OTA campaigns and decommissioning (ARCHITECTURE
//! section 7). It is the system under test that `fleetsim run` embeds by default.
//!
//! The crate builds in the workspace from the start so that its dependencies and lints are
//! checked with everything else; the service itself lands with its own issue.
