//! No certificate signing request a device sends makes the backend's CA checks panic, and
//! nearly every damaged one is refused: seeded mutations (bytes flipped, cut, spliced) of real
//! requests, P-256 and RSA-2048, go through `check_csr_der`. The deterministic, every-build
//! cousin of `fuzz/fuzz_targets/csr.rs`.

use fleetsim_backend::certs::{CsrRefusal, check_csr, check_csr_der};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize};

#[path = "common/bytes64.rs"]
mod bytes64;
use bytes64::Bytes64;

fn request(key: &KeyPair) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "SN-1");
    params.serialize_request(key).expect("a CSR").der().to_vec()
}

#[test]
fn mutated_requests_are_refused_and_never_panic() {
    let p256 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let rsa = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).expect("key");
    let seeds = [request(&p256), request(&rsa)];
    for seed in &seeds {
        assert!(check_csr_der(seed, "SN-1").is_ok(), "the intact request passes");
    }
    let mut rng = Bytes64(0x5EED_C5A1_0000_0001);
    let (mut passed, mut tried) = (0, 0);
    for round in 0..4000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        match rng.below(4) {
            0 => {
                // Flip a few bits.
                for _ in 0..=rng.below(3) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            1 => bytes.truncate(rng.below(bytes.len())),
            2 => {
                // Splice in a run of random bytes.
                let at = rng.below(bytes.len());
                let run: Vec<u8> = (0..rng.below(16) + 1).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, run);
            }
            _ => {
                // A length byte set to something else.
                let at = rng.below(bytes.len().min(8));
                bytes[at] = rng.next() as u8;
            }
        }
        tried += 1;
        if check_csr_der(&bytes, "SN-1").is_ok() {
            passed += 1;
        }
    }
    // A bit flip in the request's unused encoding room may leave it intact in meaning (DER has
    // almost none); anything that still passes must still carry a valid signature, which the
    // check verified. Nearly all must be refused.
    assert!(passed * 100 < tried, "{passed} of {tried} mutated requests passed");
    assert_eq!(check_csr("", "SN-1").unwrap_err(), CsrRefusal::Malformed);
    assert_eq!(check_csr_der(&[], "SN-1").unwrap_err(), CsrRefusal::Malformed);
}
