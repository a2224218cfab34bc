//! Any bytes a device sends as a certificate signing request go through the backend's CSR
//! checks (DER parsing, the signature, the key type, the subject); none of it may panic, and
//! nothing but a request for the right serial, signed by its own P-256 or RSA-2048 key, may
//! pass. Run: `cargo +nightly fuzz run csr -- -max_total_time=300`.
#![no_main]

use fleetsim_backend::certs::check_csr_der;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check_csr_der(data, "SN-1");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fleetsim_backend::certs::check_csr(text, "SN-1");
    }
});
