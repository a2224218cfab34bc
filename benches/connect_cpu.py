#!/usr/bin/env python3
"""The harness's CPU per connect, from a run's summary.json: the CPU of every second in which
more than 50 devices (--min N: N) connected, divided by the connects of those seconds. It counts all the
harness did in those seconds (the devices already connected, the dashboard's second), so it is
an upper bound on a connect's own cost; compare runs of the same shape. The same figure less the
run's idle baseline (its mean CPU a second over the seconds without a connect) comes beside it.

With --split S, the seconds up to S (devices arriving: first connects) and after S (a reconnect
storm after an outage at S) are counted apart, with the handshakes the run counted and the
connects a second the storm reached.

Used by benches/scale.sh; by hand: python3 benches/connect_cpu.py [--split S] [--min N] SUMMARY.json..."""

import json
import sys


def connect_cpu(summary, least, start=0.0, end=None):
    """(CPU seconds, connects, peak connects a second, seconds counted, idle CPU a second) over
    the seconds start < s <= end."""
    harness = summary["harness"]
    columns = harness["seconds_columns"]
    connects, cpu = columns.index("connects"), columns.index("cpu_s")
    spent, connected, peak, counted, before = 0.0, 0, 0, 0, 0.0
    idle, idle_seconds = 0.0, 0
    # One row a second from the first: row k ends at k + 1 s.
    for k, second in enumerate(harness["seconds"]):
        in_window = k + 1 > start and (end is None or k + 1 <= end)
        if in_window and second[connects] > least:
            spent += second[cpu] - before
            connected += second[connects]
            peak = max(peak, second[connects])
            counted += 1
        elif second[connects] == 0 and k > 0:
            idle += second[cpu] - before
            idle_seconds += 1
        before = second[cpu]
    if not connected:
        return None
    return spent, connected, peak, counted, idle / max(idle_seconds, 1)


def line(label, measured, least):
    if measured is None:
        return f"  {label}: no second with more than {least} connects"
    spent, connected, peak, counted, idle = measured
    ms = spent * 1000 / connected
    above = max(spent - idle * counted, 0.0) * 1000 / connected
    return (f"  {label}: {connected} connects (peak {peak}/s), {ms:.3f} ms of harness CPU each, "
            f"{above:.3f} ms above the idle {idle * 100:.1f}% of a core "
            f"(about {1000 / max(above, 1e-9):,.0f} a second per harness core)")


if __name__ == "__main__":
    args = sys.argv[1:]
    split, least = None, 50
    while args[:1] in (["--split"], ["--min"]):
        if args[0] == "--split":
            split = float(args[1])
        else:
            least = int(args[1])
        args = args[2:]
    for path in args:
        with open(path) as f:
            summary = json.load(f)
        if split is None:
            print(f"{path}:")
            print(line("while devices arrived", connect_cpu(summary, least), least))
            continue
        counters = summary["metrics"]["counters"]
        print(f"{path}: {counters.get('tls.handshakes.full', 0)} full and "
              f"{counters.get('tls.handshakes.resumed', 0)} resumed handshakes in all")
        print(line("first connects (arrivals)", connect_cpu(summary, least, 0, split), least))
        print(line(f"reconnect storm (after {split:g} s)", connect_cpu(summary, least, split), least))
