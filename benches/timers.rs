//! The sleepers' timer heap at ten million entries: inserting a wake-up, and taking the
//! earliest one out, each measured with the heap holding 10M others (a fleet of ten million
//! sleeping devices). And how late a shard's thread wakes for an instant, on tokio's timer
//! wheel and on the timerfd a shard sleeps on. Run: `cargo bench -p fleetsim --bench timers`.
//!
//! The entries here are 4-byte slots rather than the engine's boxed sleepers: a heap slot is
//! 16 bytes either way (`timers::tests::a_slot_is_sixteen_bytes`), and boxing 10M sleepers
//! would measure the allocator, not the heap.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fleetsim::device::SimTime;
use fleetsim::dialect::precise_timer::Timer;
use fleetsim::engine::timers::Timers;

const ENTRIES: u32 = 10_000_000;
/// Wake-ups spread over a 15-minute report interval, in microseconds.
const SPREAD_US: u64 = 900_000_000;

/// SplitMix64: a cheap, well-spread sequence of wake times.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn full_heap() -> Timers<u32> {
    let mut timers = Timers::default();
    for slot in 0..ENTRIES {
        timers.insert(SimTime(mix(u64::from(slot)) % SPREAD_US), slot);
    }
    timers
}

fn timers_at_ten_million(c: &mut Criterion) {
    let mut timers = full_heap();
    let mut group = c.benchmark_group("timers_10M");
    // The steady state of a sleeping fleet: each wake-up taken out is filed again one
    // interval later, so the heap stays at 10M.
    let mut n = u64::from(ENTRIES);
    group.bench_function("expire_then_insert", |b| {
        b.iter(|| {
            let (at, slot) = timers.pop_if(|_| true).expect("the heap holds 10M entries");
            n += 1;
            let next = SimTime(at.0 + SPREAD_US / 2 + mix(n) % SPREAD_US);
            timers.insert(next, black_box(slot));
        })
    });
    // Inserts alone, then as many expiries (untimed) to bring the heap back to 10M; and the
    // other way round.
    group.bench_function("insert", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                n += 1;
                timers.insert(SimTime(mix(n) % (2 * SPREAD_US)), 0);
            }
            let spent = started.elapsed();
            for _ in 0..iters {
                timers.pop_if(|_| true);
            }
            spent
        })
    });
    group.bench_function("expire", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                black_box(timers.pop_if(|_| true));
            }
            let spent = started.elapsed();
            for _ in 0..iters {
                n += 1;
                timers.insert(SimTime(mix(n) % (2 * SPREAD_US)), 0);
            }
            spent
        })
    });
    group.finish();
}

/// A sleep until 250 µs on, each iteration the 250 µs and how late the thread woke after
/// them: tokio's wheel wakes on a millisecond of its own (docs/scale.md, "Waking on time").
fn waking_on_time(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("sleep_250us");
    for (name, timer) in [
        ("wheel", Timer::Wheel),
        ("timerfd", {
            let _inside = runtime.enter();
            Timer::precise()
        }),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(timer.sleep_until(tokio::time::Instant::now() + Duration::from_micros(250))))
        });
    }
    group.finish();
}

criterion_group!(benches, timers_at_ten_million, waking_on_time);
criterion_main!(benches);
