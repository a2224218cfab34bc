//! Any bytes an MQTT 5 server sends a device are framed and read as the device reads them
//! (CONNACK, PUBLISH with its properties, PUBACK and DISCONNECT with their reason codes, the
//! short DISCONNECT forms); none of it may panic. Run:
//! `cargo +nightly fuzz run mqtt5_device -- -max_total_time=300`.
#![no_main]

use bytes::BytesMut;
use fleetsim::transport::mqtt::read_incoming_v5;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Until the bytes run out, end in a partial packet, or stop being MQTT 5.
    while let Ok(Some(_)) = read_incoming_v5(&mut buf) {}
});
