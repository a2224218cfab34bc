//! The per-device memory budgets, for every dialect: an idle connected device costs its task's
//! future for the whole run, and a sleeping device its sleeper's box in the timer heap, so
//! both are held to a size here (ARCHITECTURE section 9; docs/scale.md's figures are
//! measured by `benches/scale.sh`). A new dialect adds its line to each list.

use std::rc::Rc;

use fleetsim::device::SimTime;
use fleetsim::dialect::embedded::Embedded;
use fleetsim::dialect::hawkbit::{DdiAuth, Hawkbit};
use fleetsim::dialect::lwm2m::Lwm2m;
use fleetsim::dialect::mqtt::Broker;
use fleetsim::dialect::{Devices, Dialect, Inbox, Shared};
use fleetsim::engine::clock::RunClock;
use fleetsim::engine::context::{Life, Member, ShardCtx, Sleeper};
use fleetsim::engine::driver::{Running, awake};
use fleetsim::scenario::parse_model;
use tokio::time::Instant;

/// The most an idle connected device's task future may hold, by dialect. Tokio lays a task
/// out in multiples of 128 bytes, its header and trailer taking 104 of them, so every byte
/// here can cost a whole step: 408 bytes is the most that fits a 512-byte task, 536 a
/// 640-byte one. A broker's device (the one `benches/peers.sh` and docs/scale.md's idle figures
/// measure) is held to 408: its future was 896 bytes before its waits were polled rather than
/// nested, 648 before the wait held only its timer and the task no slot for a first event
/// (`driver::awake_with`), and 528 before the shard's calendar kept its wake-up (an 8-byte
/// alarm in place of a 112-byte tokio timer) and its publishes in flight took one word. The
/// others, 456 (hawkBit), 480 (embedded) and 536 (LwM2M) bytes now, are held to their
/// 640-byte tasks.
const TASK_BUDGETS: [(&str, usize); 4] = [("embedded", 536), ("mqtt", 408), ("hawkbit", 536), ("lwm2m", 536)];
/// The most a sleeping device's state may take in its box (of the 512 bytes it may cost in
/// all, with its heap slot and its credentials).
const SLEEPER_BUDGET: usize = 320;

fn member() -> Rc<Member> {
    let text =
        "name = \"m\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\n[telemetry]\ninterval = \"1m\"\npayload_bytes = 8\n";
    let model = parse_model(std::path::Path::new("m.toml"), text).expect("valid model");
    Rc::new(Member {
        model,
        group: "g".into(),
        incidents: Vec::new(),
    })
}

/// The size of an awake device's task future against `dialect`.
fn task_size<D: Dialect>(dialect: D) -> usize {
    let clock = RunClock::new(Instant::now(), 1.0, std::time::Duration::ZERO);
    let shard = Rc::new(ShardCtx::new(1, clock, dialect, Shared::default(), None, false));
    let member = member();
    let life = Life::new(1, &member, 0, SimTime(0));
    let task = awake(Running::new(shard, member, life, None, Inbox::default()));
    std::mem::size_of_val(&task)
}

fn addr() -> std::net::SocketAddr {
    "127.0.0.1:1883".parse().expect("addr")
}

#[test]
fn an_idle_devices_task_is_small_whatever_its_backend() {
    let sizes = [
        (
            "embedded",
            task_size(Embedded {
                mqtt: addr(),
                lwm2m: None,
                lwm2m_dtls: None,
                api: addr(),
                claim_secret: "s".into(),
                tls: None,
            }),
        ),
        (
            "mqtt",
            task_size(Broker {
                addr: addr(),
                telemetry_topic: "t".into(),
                command_topic: "c".into(),
                cluster: Vec::new(),
                tls: None,
            }),
        ),
        (
            "hawkbit",
            task_size(Hawkbit {
                addr: addr(),
                tenant: "DEFAULT".into(),
                auth: DdiAuth::None,
                management: None,
                imposed: Default::default(),
            }),
        ),
        (
            "lwm2m",
            task_size(Lwm2m {
                addr: addr(),
                reference: None,
                secured: None,
                bootstrap: false,
            }),
        ),
    ];
    println!("device task futures, bytes: {sizes:?}");
    for ((dialect, size), (budgeted, budget)) in sizes.into_iter().zip(TASK_BUDGETS) {
        assert_eq!(dialect, budgeted, "one budget a dialect, in the same order");
        assert!(
            size <= budget,
            "a {dialect} device's task future grew to {size} bytes, past its {budget}: \
             its tokio task would take another 128"
        );
    }
}

#[test]
fn a_sleeping_device_is_small_whatever_its_backend() {
    fn size<D: Dialect>() -> usize {
        std::mem::size_of::<Sleeper<D>>()
    }
    let sizes = [
        ("embedded", size::<Embedded>()),
        ("mqtt", size::<Broker>()),
        ("hawkbit", size::<Hawkbit>()),
        ("lwm2m", size::<Lwm2m>()),
    ];
    println!("sleepers, bytes: {sizes:?}");
    for (dialect, size) in sizes {
        assert!(
            size <= SLEEPER_BUDGET,
            "a sleeping {dialect} device's state grew to {size} bytes"
        );
    }
    // What a sleeping device keeps of its dialect: its credentials at most.
    assert!(std::mem::size_of::<Option<<Embedded as Devices>::Kept>>() <= 64);
}
