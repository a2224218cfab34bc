//! Software updates: the firmware store ([`firmware`]) that uploads land in and devices
//! download from (HTTP with Range, so interrupted downloads resume), and the campaign engine
//! ([`campaign`]) that rolls an image out to a group in waves and halts a bad one.

pub mod campaign;
pub mod firmware;
