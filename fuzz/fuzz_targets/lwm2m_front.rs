//! Any datagram a device sends the reference backend's LwM2M front goes through its reading:
//! the CoAP decode, the request's path, query and payload (provisioning, Register, Update,
//! De-register), and the refusal it would answer with; none of it may panic. Run: `cargo
//! +nightly fuzz run lwm2m_front -- -max_total_time=300`.
#![no_main]

use fleetsim_backend::lwm2m::read_datagram;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_datagram(data);
});
