//! No datagram from a device makes the LwM2M front's reading panic: seeded mutations of real
//! requests (libcoap's provisioning, Register, Update and De-register, captured on the wire)
//! go through the CoAP decode and the request's reading, as in the front. The deterministic,
//! every-build cousin of `fuzz/fuzz_targets/lwm2m_front.rs`.

use fleetsim_backend::lwm2m::read_datagram;

#[path = "common/bytes64.rs"]
mod bytes64;
use bytes64::Bytes64;

/// Requests `coap-client-notls` sent a UDP socket (libcoap 4.3.1, 2026-12-05, as `-m post -e
/// ... 'coap://127.0.0.1:25683/provision?ep=SN-C&claim=factory'` and so on): provisioning, a
/// Register with its links, an Update with a lifetime, a De-register, and a Register without
/// `ep`.
const SEEDS: [&str; 5] = [
    "41028161017264534970726f766973696f6e4765703d534e2d430d00636c61696d3d666163746f7279ff7b22736563726574223a22733363726574222c226d6f64656c223a226d227d",
    "410240fe0172645342726411283765703d534e2d43056c743d3630096c776d326d3d312e3103623d55ff3c2f312f303e2c3c2f332f303e",
    "4102d3d7017264534272640131466c743d333030",
    "41048f7f017264534272640131",
    "4102315101726453427264456c743d3630",
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

#[test]
fn unmutated_seeds_read_or_are_refused_as_they_should_be() {
    let read: Vec<bool> = SEEDS
        .iter()
        .map(|s| matches!(read_datagram(&hex(s)), Some(Ok(_))))
        .collect();
    assert_eq!(read, [true, true, true, true, false], "the last has no ep");
}

#[test]
fn mutated_requests_never_panic() {
    let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| hex(s)).collect();
    let mut rng = Bytes64(0x1D2D_C0A9_5EED);
    let (mut read, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut bytes = seeds[rng.below(seeds.len())].clone();
        rng.mutate(&mut bytes);
        match read_datagram(&bytes) {
            Some(Ok(_)) => read += 1,
            Some(Err(_)) => refused += 1,
            None => {}
        }
    }
    // The mutations reach the reading: some still read, some are refused with an answer.
    assert!(read > 100 && refused > 100, "read {read}, refused {refused}");
}
