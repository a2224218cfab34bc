//! Backends as devices see them: one file per backend (`embedded` now; `mqtt`, `hawkbit`,
//! `lwm2m`, `thingsboard` and `aws-iot` follow), each mapping the device's intents
//! (provision, connect, report) to that backend's protocol.

pub mod embedded;
