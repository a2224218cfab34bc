//! Any bytes an MQTT 3.1.1 server sends a device are framed and read as the device reads them
//! (PUBLISH, PUBACK, SUBACK and the rest); none of it may panic. Run:
//! `cargo +nightly fuzz run mqtt_device -- -max_total_time=300`.
#![no_main]

use bytes::BytesMut;
use fleetsim::transport::mqtt::read_incoming;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Until the bytes run out, end in a partial packet, or stop being MQTT 3.1.1.
    while let Ok(Some(_)) = read_incoming(&mut buf) {}
});
