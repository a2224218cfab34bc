//! Any datagram a device sends the reference backend's LwM2M front goes through its reading:
//! the CoAP decode, the request's path, query and payload (provisioning, Register, Update,
//! De-register, Bootstrap-Request), and the refusal it would answer with; and the same bytes
//! through the TLV reader both sides share; none of it may panic. Run: `cargo
//! +nightly fuzz run lwm2m_front -- -max_total_time=300`.
#![no_main]

use fleetsim_backend::lwm2m::read_datagram;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_datagram(data);
    if let Some(entries) = fleetsim_backend::lwm2m::tlv::entries(data) {
        for entry in entries {
            let _ = fleetsim_backend::lwm2m::tlv::entries(entry.value);
            let _ = fleetsim_backend::lwm2m::tlv::integer(entry.value);
        }
    }
});
