//! Any datagram an LwM2M server sends a device goes through what the device does with it: the
//! CoAP decoding, the request's options and path, the content formats it reads (text, TLV,
//! LwM2M JSON, SenML JSON), observations started and cancelled; none of it may panic. The
//! same bytes also go to each format's decoder as a written value, and, as a request of a
//! bootstrap server, to a device being bootstrapped (its TLV writes of the Security and Server
//! objects). One device, and one bootstrap, live through each run, so the state requests leave
//! behind (observations, attributes, its lifetime, the accounts written) is fuzzed too. Run: `cargo +nightly fuzz run lwm2m_device -- -max_total_time=300`.
#![no_main]

use std::cell::RefCell;
use std::path::Path;

use fleetsim::dialect::lwm2m::Lwm2m;
use fleetsim::dialect::lwm2m::bootstrap::{Written, serve};
use fleetsim::dialect::lwm2m::device::{Device, answer};
use fleetsim::dialect::lwm2m::formats::{Format, decode_integer};
use fleetsim::dialect::{DeviceCx, Devices, Shared};
use fleetsim::scenario::{DeviceModel, parse_model};
use libfuzzer_sys::fuzz_target;

const MODEL: &str = "name = \"m\"\nprotocol = \"coap\"\nfirmware = \"1.0\"\n\
                     [telemetry]\ninterval = \"1m\"\npayload_bytes = 8\n\
                     [battery]\ncapacity_mah = 100\nsleep_ua = 1\ntx_mas = 1\n";

thread_local! {
    static WORLD: (DeviceModel, Shared) = (
        // A fixed, valid model.
        parse_model(Path::new("m.toml"), MODEL).expect("the model parses"),
        Shared::default(),
    );
    static BOOTSTRAP: RefCell<Written> = RefCell::new(Written::default());
    static DEVICE: RefCell<Device> = RefCell::new(Lwm2m { addr: ([127, 0, 0, 1], 5683).into(), reference: None, secured: None, bootstrap: false }.wake(None));
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|(model, shared)| {
        let cx = DeviceCx {
            shared,
            index: 7,
            model,
            group: "g",
            source: None,
        };
        DEVICE.with(|device| {
            let _ = answer(&cx, &mut device.borrow_mut(), data);
        });
    });
    if let Some(request) = fleetsim::transport::coap::decode(data) {
        BOOTSTRAP.with(|written| {
            let _ = serve(&mut written.borrow_mut(), &request, 1);
        });
    }
    for format in [
        Format::Text,
        Format::Tlv,
        Format::Json,
        Format::SenmlJson,
        Format::LinkFormat,
    ] {
        let _ = decode_integer(format, data);
    }
});
